package api

// Listings (GET /v1/jobs, /v1/jobs/{job}/frames, /v1/jobs/{job}/files,
// /v1/workers) answer a JSON array. Without paging parameters the array is
// the whole listing, streamed; with ?after=CURSOR and/or ?limit=N it is one
// page, and NextHeader carries the cursor of the next page when more follow
// (docs/api.md, "Listings and paging").
const (
	// NextHeader names the response header holding the cursor to pass as
	// ?after= for the next page; absent on the last page.
	NextHeader = "X-Distren-Next"
	// DefaultPage is the limit of a paged request that gives none.
	DefaultPage = 1000
	// MaxPage is the largest limit a paged request may give.
	MaxPage = 10_000
)
