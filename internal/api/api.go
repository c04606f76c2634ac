// Package api owns the wire types of distren's HTTP API (/v1/...): the JSON
// bodies exchanged by the server, its clients, its workers and its tests.
// docs/api.md describes the endpoints that carry them.
package api

import "time"

// Frame states as reported by the API.
const (
	StateWaiting  = "waiting"  // dependencies not complete
	StateReady    = "ready"    // queued for a worker
	StateRunning  = "running"  // leased to a worker
	StateDone     = "done"     // output stored
	StateFailed   = "failed"   // attempts exhausted
	StateCanceled = "canceled" // job canceled before the frame completed
)

// Job states as reported by the API.
const (
	JobQueued   = "queued"   // no frame running yet
	JobRunning  = "running"  // frames running or ready
	JobDone     = "done"     // every frame done
	JobFailed   = "failed"   // a frame failed and nothing else can run
	JobCanceled = "canceled" // canceled by a user
	JobPaused   = "paused"   // paused: no frame starts, those running finish (POST /v1/jobs/{job}/pause)
)

// Error is the body of every non-2xx response.
type Error struct {
	Error string `json:"error"`
}

// Server describes the server (GET /v1/server).
type Server struct {
	Name    string `json:"name"`
	URL     string `json:"url"`
	Version string `json:"version"`
	Workers int    `json:"workers"` // workers seen within a lease period
}

// Job is a job's summary (GET /v1/jobs, GET /v1/jobs/{job}).
type Job struct {
	ID        int64          `json:"id"`
	URL       string         `json:"url"`
	Name      string         `json:"name"`
	State     string         `json:"state"`
	Priority  int            `json:"priority"`
	Deadline  *time.Time     `json:"deadline,omitempty"`
	Submitted time.Time      `json:"submitted"`
	Frames    int            `json:"frames"`
	Counts    map[string]int `json:"counts"`          // frame state → frames
	Error     string         `json:"error,omitempty"` // the first failed frame's message
	// Waiting says why ready frames are not running, when no connected
	// worker has the backend (and version) they need.
	Waiting string `json:"waiting,omitempty"`
	// Warning is set once two frames of the job wrote a file of the same
	// path: it names them, says where the result bundle puts the second
	// one (docs/api.md, "The result bundle"), and how to name outputs
	// per frame.
	Warning string `json:"warning,omitempty"`
}

// Frame is one frame's state (GET /v1/jobs/{job}/frames).
type Frame struct {
	ID       int64  `json:"id"`
	URL      string `json:"url"`
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	Lost     int    `json:"lost,omitempty"` // attempts whose lease expired (not counted against <retries>)
	// Server is the server whose worker renders or rendered the frame:
	// this one's name, or a peer's for a frame lent to it.
	Server string `json:"server,omitempty"`
	// Worker is that worker's name (as its own server knows it).
	Worker   string  `json:"worker,omitempty"`
	Error    string  `json:"error,omitempty"`
	Progress float64 `json:"progress,omitempty"` // 0..1 while running, where the renderer reports it
	Output   string  `json:"output,omitempty"`   // vault name of the output tarball
	Size     int64   `json:"size,omitempty"`
	RenderMS int64   `json:"render_ms,omitempty"`
	Files    []int64 `json:"files,omitempty"` // numbers of the frame's output files
}

// File is one numbered file of a job (GET /v1/jobs/{job}/files).
type File struct {
	N     int64  `json:"n"`
	URL   string `json:"url"`
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	Frame *int64 `json:"frame,omitempty"` // the frame that produced it; absent for inputs
}

// Submitted answers a package upload (POST /v1/jobs).
type Submitted struct {
	ID     int64  `json:"id"`
	URL    string `json:"url"`
	Name   string `json:"name"`
	Frames int    `json:"frames"`
}

// InputFile is one file of a job's package as workers fetch it: the
// concatenation of its chunks.
type InputFile struct {
	Path   string     `json:"path"`
	Mode   uint32     `json:"mode"`
	Size   int64      `json:"size"`
	Chunks []ChunkRef `json:"chunks,omitempty"`
	// Hash names the whole file as one object: jobs stored before files
	// were chunked. Parts reads both forms.
	Hash string `json:"hash,omitempty"`
}

// ChunkRef names a chunk (a vault object) and its size.
type ChunkRef struct {
	Hash string `json:"hash"`
	Size int64  `json:"size"`
}

// Parts returns the objects whose concatenation is the file.
func (f InputFile) Parts() []ChunkRef {
	if len(f.Chunks) == 0 && f.Hash != "" {
		return []ChunkRef{{Hash: f.Hash, Size: f.Size}}
	}
	return f.Chunks
}

// TreeContentType marks a job submission whose body is a tree (the package's
// files as chunk lists, internal/cdc's encoding) rather than a tarball: its
// chunks must have been uploaded first.
const TreeContentType = "application/x-distren-tree"

// MissingRequest asks which chunks the server lacks (POST /v1/chunks/missing).
type MissingRequest struct {
	Chunks []string `json:"chunks"`
}

// MissingResponse lists them, in the order asked.
type MissingResponse struct {
	Missing []string `json:"missing"`
}

// MaxMissingBatch is the most chunks one MissingRequest may name.
const MaxMissingBatch = 50_000

// JobSpec is what a worker needs to render a job's frames (GET /v1/jobs/{job}/spec).
type JobSpec struct {
	ID       int64       `json:"id"`
	Manifest string      `json:"manifest"`
	Inputs   []InputFile `json:"inputs"`
}

// ClaimRequest asks for up to Max tasks — a frame, or a chunk of frames
// where the job asks for chunks — waiting up to WaitMS for some to be ready.
type ClaimRequest struct {
	Worker string `json:"worker"`
	Max    int    `json:"max"`
	WaitMS int    `json:"wait_ms"`
	// Backends are the renderers this worker has, by name, with their
	// versions (its fingerprint). Frames go only to workers that have their
	// backend, and the version the manifest asks for.
	Backends map[string]string `json:"backends"`
}

// Ref returns the reference of a lease.
func (l Lease) Ref() LeaseRef {
	return LeaseRef{Server: l.Server, Job: l.Job, Frame: l.Frame, Epoch: l.Epoch}
}

// Worker is a worker as the server knows it (GET /v1/workers).
type Worker struct {
	Name     string            `json:"name"`
	LastSeen time.Time         `json:"last_seen"`
	Live     bool              `json:"live"` // heard from within a lease period
	Backends map[string]string `json:"backends"`
	Running  int               `json:"running"` // frames leased to it
}

// DepOutput is the output of a frame a leased frame depends on.
type DepOutput struct {
	Job    int64  `json:"job"`
	Frame  int64  `json:"frame"`
	Output string `json:"output"` // vault name of its output tarball
	Size   int64  `json:"size"`
}

// Lease is a frame leased to a worker until it reports or the lease expires.
type Lease struct {
	// Server names the server whose job it is when that is not the server
	// the worker claimed from: a peer that lent the frame (federation).
	// Every request about the lease names it again (LeaseRef.Server).
	Server string      `json:"server,omitempty"`
	Job    int64       `json:"job"`
	Frame  int64       `json:"frame"`
	Epoch  uint64      `json:"epoch"`
	TTLMS  int64       `json:"ttl_ms"`
	Deps   []DepOutput `json:"deps,omitempty"`
	// Chunk is shared by the leases of frames to be rendered together in
	// one task; 0 for a frame on its own.
	Chunk uint64 `json:"chunk,omitempty"`
}

// ClaimResponse carries the leased frames (possibly none after the wait).
type ClaimResponse struct {
	Leases []Lease `json:"leases"`
}

// LeaseRef names a lease.
type LeaseRef struct {
	Server string `json:"server,omitempty"` // the lender, for a lent frame (Lease.Server)
	Job    int64  `json:"job"`
	Frame  int64  `json:"frame"`
	Epoch  uint64 `json:"epoch"`
}

// LeaseProgress reports a lease still being worked on.
type LeaseProgress struct {
	LeaseRef
	Progress float64 `json:"progress,omitempty"`
	// Waiting: claimed ahead, its rendering not begun. A server may answer
	// Stop for it — a frame borrowed from a peer, when frames of the
	// server's own are ready — and the worker drops it unrendered.
	Waiting bool `json:"waiting,omitempty"`
}

// Heartbeat extends a worker's leases (POST /v1/heartbeat).
type Heartbeat struct {
	Worker string          `json:"worker"`
	Leases []LeaseProgress `json:"leases"`
}

// HeartbeatResponse lists the leases the worker must abandon (canceled,
// expired or superseded): it stops rendering them and reports nothing.
type HeartbeatResponse struct {
	Stop []LeaseRef `json:"stop,omitempty"`
}

// Failure reports a failed attempt (POST /v1/jobs/{job}/frames/{frame}/fail).
type Failure struct {
	Worker string `json:"worker"`
	Epoch  uint64 `json:"epoch"`
	Error  string `json:"error"`
	// JobError blames the job (a scene that does not parse, a missing
	// file): the frame fails without further attempts.
	JobError bool `json:"job_error,omitempty"`
	// NotRun gives the frame back unattempted: it was in a chunk whose
	// renderer stopped at an earlier frame. It is queued again without
	// counting an attempt.
	NotRun bool `json:"not_run,omitempty"`
}

// Retry asks to render frames again (POST /v1/jobs/{job}/retry). Frames is a
// frame set ("1-10,20"); empty means every failed or canceled frame.
type Retry struct {
	Frames string `json:"frames,omitempty"`
}

// Priority changes a job's priority (POST /v1/jobs/{job}/priority).
type Priority struct {
	Priority *int `json:"priority"` // 0..100, higher first
}

// Changed answers cancel and retry: how many frames changed state.
type Changed struct {
	Frames int `json:"frames"`
}

// GCResult answers POST /v1/gc: what a garbage collection removed.
type GCResult struct {
	JobsDeleted int   `json:"jobs_deleted"` // finished jobs past retention
	Objects     int   `json:"objects"`      // vault objects removed
	Bytes       int64 `json:"bytes"`        // stored bytes freed
	Kept        int   `json:"kept"`         // unreferenced but recent objects kept
}

// The events of GET /v1/events: a job's summary (its data a Job), or a
// job deleted (its data {"id": N}).
const (
	EventJob     = "job"
	EventDeleted = "deleted"
	// EventReset tells a client that asked to resume (Last-Event-ID)
	// that the changes since are no longer kept: re-read what it shows.
	EventReset = "reset"
)

// MaxEventJobs is the most jobs one event stream may name (GET
// /v1/events?job=...).
const MaxEventJobs = 1000

// PeerHeader is the header a server's requests to a peer carry: its name
// and its instance (a random id per process), so that a peer tells a
// server from another that calls itself by the same name.
const PeerHeader = "X-Distren-Peer"

// PeerHello is what a server says of itself to its peers (GET /v1/peer).
type PeerHello struct {
	Name     string `json:"name"`
	Instance string `json:"instance"` // random per process: another process of the same name is another server
	Version  string `json:"version"`
	// Idle is how many tasks this server's idle workers are asking for
	// right now; Workers how many workers it has heard from within a
	// lease; Backends what they render with (name → versions).
	Idle     int                 `json:"idle"`
	Workers  int                 `json:"workers"`
	Backends map[string][]string `json:"backends,omitempty"`
	// Ready is how many of its own frames are ready and not taken.
	Ready int `json:"ready"`
}

// PeerOutput tells the lender that a frame it lent is rendered
// (POST /v1/jobs/{job}/frames/{frame}/lent): the lender checks the lease,
// then fetches the output tarball from the borrower (GET /v1/blobs/{hash}
// there) and records the frame done as for a worker's report.
type PeerOutput struct {
	Worker   string `json:"worker"` // the lease's worker: borrower/worker
	Epoch    uint64 `json:"epoch"`
	Output   string `json:"output"` // vault name of the output tarball, on the borrower
	Size     int64  `json:"size"`
	RenderMS int64  `json:"render_ms"`
}

// Peer is a peer as a server knows it (GET /v1/peers).
type Peer struct {
	Name  string `json:"name"`
	URL   string `json:"url"`
	State string `json:"state"` // "up", "unreachable", "refused", or "unknown" before the first contact
	Error string `json:"error,omitempty"`
	// What the peer said of itself at the last contact.
	Idle     int                 `json:"idle"`
	Workers  int                 `json:"workers"`
	Backends map[string][]string `json:"backends,omitempty"`
	Ready    int                 `json:"ready"`
	// Lent: frames of this server's jobs its workers hold now; Borrowed:
	// frames of its jobs this server's workers hold now. LentDone and
	// BorrowedDone count those completed since this server started.
	Lent         int   `json:"lent"`
	Borrowed     int   `json:"borrowed"`
	LentDone     int64 `json:"lent_done"`
	BorrowedDone int64 `json:"borrowed_done"`
	// GivenBack counts frames borrowed and given back unrendered since
	// this server started: frames of its own came first.
	GivenBack   int64      `json:"given_back"`
	LastContact *time.Time `json:"last_contact,omitempty"`
}

// Peer states.
const (
	PeerUnknown     = "unknown"
	PeerUp          = "up"
	PeerUnreachable = "unreachable"
	PeerRefused     = "refused"
)
