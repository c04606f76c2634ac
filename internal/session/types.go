package session

import "time"

// The session's own view of jobs, frames, files, workers and leases: what it
// returns to the layers above, which convert it to their wire formats at
// their edge (internal/server to internal/api). Renaming a field of the API
// changes nothing here, nor in what the store holds.

// Frame states.
const (
	StateWaiting  = "waiting"  // dependencies not complete
	StateReady    = "ready"    // queued for a worker
	StateRunning  = "running"  // leased to a worker
	StateDone     = "done"     // output stored
	StateFailed   = "failed"   // attempts exhausted, stopped, or blocked by a dependency
	StateCanceled = "canceled" // canceled before the frame completed
)

// Job states.
const (
	JobQueued   = "queued"   // no frame running yet
	JobRunning  = "running"  // frames running or ready
	JobDone     = "done"     // every frame done
	JobFailed   = "failed"   // a frame failed and nothing else can run
	JobCanceled = "canceled" // canceled by a user
	JobPaused   = "paused"   // paused by a user: no frame starts; those running finish
)

// Submitted is a job just accepted.
type Submitted struct {
	ID     int64
	URL    string
	Name   string
	Frames int
}

// Job is a job's summary.
type Job struct {
	ID        int64
	URL       string
	Name      string
	State     string
	Priority  int
	Deadline  *time.Time
	Submitted time.Time
	Frames    int
	Counts    map[string]int // frame state → frames
	Error     string         // the first failed frame's message
	// Waiting says why ready frames are not running, when no connected
	// worker has the backend (and version) they need.
	Waiting string
	// Warning is set once two frames of the job wrote a file of the same
	// path (collide.go).
	Warning string
}

// Frame is one frame's state.
type Frame struct {
	ID       int64
	URL      string
	State    string
	Attempts int
	Lost     int // attempts whose lease expired (not counted against <retries>)
	// Server is the server whose worker renders or rendered the frame;
	// Worker that worker's name there. A frame lent to a peer is held by
	// the worker "PEER/NAME" (PeerWorker), shown as Server PEER, Worker NAME.
	Server   string
	Worker   string
	Error    string
	Progress float64 // 0..1 while running, where the renderer reports it
	Output   string  // vault name of the output tarball
	Size     int64
	RenderMS int64
	Files    []int64 // numbers of the frame's output files
}

// File is one numbered file of a job.
type File struct {
	N     int64
	URL   string
	Path  string
	Size  int64
	Frame *int64 // the frame that produced it; nil for inputs
}

// Worker is a worker as the session knows it.
type Worker struct {
	Name     string
	LastSeen time.Time
	Live     bool // heard from within a lease period
	Backends map[string]string
	Running  int // frames leased to it
}

// ClaimRequest asks for up to Max tasks — a frame, or a chunk of frames
// where the job asks for chunks — for a worker with these backends (name →
// version: its fingerprint).
type ClaimRequest struct {
	Worker   string
	Max      int
	Backends map[string]string
}

// DepOutput is the output of a frame a leased frame depends on.
type DepOutput struct {
	Job    int64
	Frame  int64
	Output string // vault name of its output tarball
	Size   int64
}

// Lease is a frame leased to a worker until it reports or the lease expires.
type Lease struct {
	Job   int64
	Frame int64
	Epoch uint64
	TTL   time.Duration
	Deps  []DepOutput
	// Chunk is shared by the leases of frames to be rendered together in
	// one task; 0 for a frame on its own.
	Chunk uint64
}

// LeaseRef names a lease.
type LeaseRef struct {
	Job   int64
	Frame int64
	Epoch uint64
}

// LeaseProgress reports a lease still being worked on.
type LeaseProgress struct {
	LeaseRef
	Progress float64
}

// Heartbeat extends a worker's leases.
type Heartbeat struct {
	Worker string
	Leases []LeaseProgress
}

// HeartbeatResponse lists the leases the worker must abandon (canceled,
// expired or superseded).
type HeartbeatResponse struct {
	Stop []LeaseRef
}

// PeerWorker is the name under which a worker of a peer holds this
// server's frames: the peer's name, a slash, the worker's own name (which
// has no slash). internal/federation claims under it.
func PeerWorker(peer, worker string) string { return peer + "/" + worker }

// SplitPeerWorker splits a PeerWorker name; ok is false for a worker of
// this server's own.
func SplitPeerWorker(name string) (peer, worker string, ok bool) {
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			return name[:i], name[i+1:], true
		}
	}
	return "", name, false
}
