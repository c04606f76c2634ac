package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/distren/distren/internal/api"
)

// pagingServer serves /v1/jobs/1/frames from frames ids as docs/api.md
// describes the paging, recording the queries it got; paged false: as a
// server from before paging, which ignores ?after= and ?limit=.
type pagingServer struct {
	ids     []int64
	paged   bool
	mu      sync.Mutex
	queries []string
}

func (ps *pagingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ps.mu.Lock()
	ps.queries = append(ps.queries, r.URL.RawQuery)
	ps.mu.Unlock()
	if r.URL.Path != "/v1/jobs/1/frames" {
		http.Error(w, `{"error":"no such endpoint"}`, 404)
		return
	}
	page := ps.ids
	if ps.paged {
		q := r.URL.Query()
		limit, err := strconv.Atoi(q.Get("limit"))
		if err != nil || limit < 1 || limit > api.MaxPage {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error":"limit %q: expected a whole number 1..%d"}`, q.Get("limit"), api.MaxPage)
			return
		}
		if q.Has("after") {
			after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
			i, found := slices.BinarySearch(page, after)
			if found {
				i++
			}
			page = page[i:]
		}
		if len(page) > limit {
			page = page[:limit]
			w.Header().Set(api.NextHeader, strconv.FormatInt(page[limit-1], 10))
		}
	}
	fs := make([]api.Frame, len(page))
	for i, id := range page {
		fs[i] = api.Frame{ID: id, URL: fmt.Sprintf("distren://s/1/frame/%d", id), State: api.StateReady}
	}
	json.NewEncoder(w).Encode(fs)
}

func ids(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i * 3) // with gaps
	}
	return out
}

// TestFramesFollowsPages: the client asks for pages of its page size and
// follows the server's cursor to the end.
func TestFramesFollowsPages(t *testing.T) {
	ps := &pagingServer{ids: ids(23), paged: true}
	hs := httptest.NewServer(ps)
	defer hs.Close()
	c, err := New(hs.URL, WithPageSize(5))
	if err != nil {
		t.Fatal(err)
	}
	fs, err := c.Frames(context.Background(), 1, "1-100")
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, f := range fs {
		got = append(got, f.ID)
	}
	if !slices.Equal(got, ps.ids) {
		t.Errorf("frames %v, want %v", got, ps.ids)
	}
	want := []string{"frames=1-100&limit=5", "after=12&frames=1-100&limit=5", "after=27&frames=1-100&limit=5",
		"after=42&frames=1-100&limit=5", "after=57&frames=1-100&limit=5"}
	if !slices.Equal(ps.queries, want) {
		t.Errorf("queries:\n%s\nwant:\n%s", strings.Join(ps.queries, "\n"), strings.Join(want, "\n"))
	}
}

// TestFramesFromServerWithoutPaging: a server that answers the whole list
// and no cursor is read once.
func TestFramesFromServerWithoutPaging(t *testing.T) {
	ps := &pagingServer{ids: ids(2500)}
	hs := httptest.NewServer(ps)
	defer hs.Close()
	c, _ := New(hs.URL)
	fs, err := c.Frames(context.Background(), 1, "")
	if err != nil || len(fs) != 2500 || len(ps.queries) != 1 {
		t.Errorf("%d frames in %d requests (%v), want 2500 in 1", len(fs), len(ps.queries), err)
	}
}

// TestEachFrameStops: EachFrame hands frames over as they are decoded, and
// an error of its function ends the listing with that error.
func TestEachFrameStops(t *testing.T) {
	ps := &pagingServer{ids: ids(50), paged: true}
	hs := httptest.NewServer(ps)
	defer hs.Close()
	c, _ := New(hs.URL, WithPageSize(10))
	stop := errors.New("enough")
	n := 0
	err := c.EachFrame(context.Background(), 1, "", func(f api.Frame) error {
		if n++; n == 15 {
			return stop
		}
		return nil
	})
	if err != stop || n != 15 || len(ps.queries) != 2 {
		t.Errorf("stopped after %d frames and %d requests with %v; want 15, 2, %v", n, len(ps.queries), err, stop)
	}
}

// TestListingErrors: a server's error answer and a server that names the
// same page again end the listing with an error.
func TestListingErrors(t *testing.T) {
	hs := httptest.NewServer(&pagingServer{ids: ids(5), paged: true})
	defer hs.Close()
	c, _ := New(hs.URL, WithPageSize(api.MaxPage+1))
	if _, err := c.Frames(context.Background(), 1, ""); !IsStatus(err, 400) || !strings.Contains(err.Error(), `limit "10001"`) {
		t.Errorf("over the largest page: %v", err)
	}
	if _, err := c.Frames(context.Background(), 2, ""); !IsStatus(err, 404) {
		t.Errorf("no such job: %v", err)
	}
	loop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(api.NextHeader, "7")
		fmt.Fprint(w, `[{"id":7}]`)
	}))
	defer loop.Close()
	c, _ = New(loop.URL)
	if _, err := c.Frames(context.Background(), 1, ""); err == nil || !strings.Contains(err.Error(), `the server named "7" as the next page again`) {
		t.Errorf("a server repeating its page: %v", err)
	}
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"id":7}`) }))
	defer bad.Close()
	c, _ = New(bad.URL)
	if _, err := c.Jobs(context.Background()); err == nil || !strings.Contains(err.Error(), "expected a JSON array") {
		t.Errorf("an object for a listing: %v", err)
	}
}
