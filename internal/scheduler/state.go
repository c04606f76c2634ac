package scheduler

import (
	"time"

	"github.com/distren/distren/internal/manifest"
)

// State is where a frame stands.
type State uint8

// Frame states.
const (
	Waiting State = iota
	Ready
	Running
	Done
	Failed
	// Blocked: the frame cannot run because a frame it depends on, in
	// this job or another, failed or was canceled (or is blocked itself).
	// It is not stored: it follows from the frames it depends on, and it
	// ends when they are retried (blocked.go).
	Blocked
	// Canceled: canceled by a user, or by the farm when it stopped the
	// job for a fault of its own (Job.Canceled).
	Canceled
	NStates
)

// Ref points at a frame of any job.
type Ref struct {
	Job *Job
	Idx int32
}

// Frame is a frame as the scheduler knows it.
type Frame struct {
	ID       int64
	State    State
	queued   bool // in the job's ready heap (entries are removed lazily)
	Unmet    int32
	Attempts int
	Epoch    uint64
	Chunk    uint64 // the chunk its lease belongs to (the chunk's first epoch), 0 if none
	Worker   string
	Expires  time.Time
	Started  time.Time
	Progress float64
	Req      uint8 // index of the backend it needs in Job.Reqs
	Lost     uint8 // attempts whose lease expired (at most MaxLostLeases+1)
	// Dependents are the frames that depend on this one, in any job.
	Dependents []Ref
	FailedOn   []string // workers whose attempts failed, for retrying elsewhere
	Err        string   // the last failed attempt's message
}

// Job is a job as the scheduler knows it: its frames in manifest order (by
// id), one ready heap per backend requirement, counters per state and the
// failures of each worker.
type Job struct {
	ID     int64
	M      *manifest.Manifest
	Frames []Frame
	Reqs   []Requirement
	ready  []readyHeap // ready frames, one heap per requirement
	readyN []int       // ready frames per requirement
	Counts [NStates]int
	// Failures counts failed attempts by worker (the blocklist).
	Failures map[string]int
	// blocked maps each Blocked frame to the failed or canceled frame
	// that it waits for in the end (the root of its blockage).
	blocked map[int32]Ref
	// Canceled is set while the job's unfinished frames are canceled, but
	// for those in Back: a user canceled it, or the farm stopped it.
	Canceled bool
	// Back holds the frames retried since the job was canceled or stopped:
	// they are not canceled.
	Back []manifest.Range
	// Paused: none of its frames is given out; those running finish.
	Paused bool
	// ErrFrame is the failed or blocked frame whose message is the job's
	// error, or -1.
	ErrFrame int32

	// Remote is set on the stand-in of another server's job (remote.go):
	// that server's name; RemoteID is the job's id there, and index finds
	// its frames, which are added as frames here come to depend on them.
	Remote   string
	RemoteID int64
	index    map[int64]int32

	sched   *Scheduler // whose changed list it joins (nil: not added)
	changed bool       // in sched.changed
}

// NewJob makes the scheduler's job id of manifest m: every frame waiting,
// its frames grouped by the backend they need.
func NewJob(id int64, m *manifest.Manifest) *Job {
	j := &Job{ID: id, M: m, Frames: make([]Frame, len(m.Frames)), Failures: map[string]int{}, ErrFrame: -1}
	index := map[Requirement]uint8{}
	for i := range m.Frames {
		j.Frames[i].ID = m.Frames[i].ID
		b := j.Spec(int32(i))
		r := Requirement{b.Name, b.Version}
		k, ok := index[r]
		if !ok { // at most manifest.MaxRequirements
			k = uint8(len(j.Reqs))
			index[r] = k
			j.Reqs = append(j.Reqs, r)
		}
		j.Frames[i].Req = k
	}
	j.ready = make([]readyHeap, len(j.Reqs))
	j.readyN = make([]int, len(j.Reqs))
	j.Counts[Waiting] = len(j.Frames)
	return j
}

// FrameIndex finds the frame of the given id.
func (j *Job) FrameIndex(id int64) (int32, bool) {
	if j.index != nil {
		i, ok := j.index[id]
		return i, ok
	}
	lo, hi := 0, len(j.Frames)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if j.Frames[mid].ID < id {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(j.Frames) && j.Frames[lo].ID == id {
		return int32(lo), true
	}
	return 0, false
}

// SetState moves frame i to state s, keeping the counters and the ready
// heaps.
func (j *Job) SetState(i int32, s State) {
	f := &j.Frames[i]
	j.Counts[f.State]--
	j.Counts[s]++
	if f.State == Ready {
		j.readyN[f.Req]--
	}
	if s == Ready {
		j.readyN[f.Req]++
	}
	f.State = s
	if s == Ready {
		j.queue(i)
	}
	if !j.changed && j.sched != nil {
		j.changed = true
		j.sched.changed = append(j.sched.changed, j)
	}
}

// ReadyOf returns how many frames of requirement r are ready.
func (j *Job) ReadyOf(r int) int { return j.readyN[r] }

// queue puts a ready frame in its requirement's heap, once.
func (j *Job) queue(i int32) {
	f := &j.Frames[i]
	if !f.queued {
		f.queued = true
		j.ready[f.Req].push(i)
	}
}

// top returns the lowest ready frame of requirement r, dropping entries of
// frames that are no longer ready.
func (j *Job) top(r int) (int32, bool) {
	h := &j.ready[r]
	for h.Len() > 0 {
		i := (*h)[0]
		if j.Frames[i].State == Ready {
			return i, true
		}
		h.pop()
		j.Frames[i].queued = false
	}
	return 0, false
}

// pop takes frame i, the top of requirement r's heap.
func (j *Job) pop(r int) int32 {
	i := j.ready[r].pop()
	j.Frames[i].queued = false
	return i
}

// Spec returns the backend element frame i renders with.
func (j *Job) Spec(i int32) *manifest.Backend {
	if b := j.M.Frames[i].Backend; b != nil {
		return b
	}
	return &j.M.Backend
}

// inScope reports whether the job's unfinished frames are canceled, but
// for those retried since (Back).
func (j *Job) inScope() bool { return j.Canceled }

// Unfinished counts the frames of j that can still run.
func (j *Job) Unfinished() int {
	return j.Counts[Waiting] + j.Counts[Ready] + j.Counts[Running] + j.Counts[Blocked]
}

// Requirement is what a worker needs to render a frame: a backend, and a
// version of it if the manifest asks for one.
type Requirement struct {
	Backend, Version string
}

func (r Requirement) String() string {
	if r.Version == "" {
		return r.Backend
	}
	return r.Backend + " " + r.Version
}

// Worker is a worker as the scheduler knows it.
type Worker struct {
	Seen     time.Time
	Backends map[string]string // backend → version
}

// Can reports whether the worker has the backend r needs.
func (w *Worker) Can(r Requirement) bool {
	v, ok := w.Backends[r.Backend]
	return ok && manifest.VersionMatches(r.Version, v)
}

// less orders jobs for scheduling: priority (higher first), then deadline
// (earlier first, none last), then submission (job id).
func (j *Job) less(o *Job) bool {
	if j.M.Priority != o.M.Priority {
		return j.M.Priority > o.M.Priority
	}
	jd, od := j.M.Deadline, o.M.Deadline
	if !jd.Equal(od) {
		switch {
		case jd.IsZero():
			return false
		case od.IsZero():
			return true
		}
		return jd.Before(od)
	}
	return j.ID < o.ID
}

// readyHeap holds frame indexes; lower index (lower frame id) first. It is
// a binary min-heap on int32 written out, rather than container/heap, whose
// interface boxes every index pushed or popped: an allocation per claim.
type readyHeap []int32

func (h readyHeap) Len() int { return len(h) }

func (h *readyHeap) push(x int32) {
	*h = append(*h, x)
	a := *h
	for k := len(a) - 1; k > 0; {
		p := (k - 1) / 2
		if a[p] <= a[k] {
			break
		}
		a[p], a[k] = a[k], a[p]
		k = p
	}
}

func (h *readyHeap) pop() int32 {
	a := *h
	top := a[0]
	n := len(a) - 1
	a[0] = a[n]
	a = a[:n]
	for k := 0; ; {
		c := 2*k + 1
		if c >= n {
			break
		}
		if c+1 < n && a[c+1] < a[c] {
			c++
		}
		if a[k] <= a[c] {
			break
		}
		a[k], a[c] = a[c], a[k]
		k = c
	}
	*h = a
	return top
}

// NoteError makes failed or blocked frame i the job's error frame if the
// job has none, or has only a blocked one and i failed.
func (j *Job) NoteError(i int32) {
	if e := j.ErrFrame; e >= 0 && int(e) < len(j.Frames) {
		switch j.Frames[e].State {
		case Failed:
			return
		case Blocked:
			if j.Frames[i].State != Failed {
				return
			}
		}
	}
	j.ErrFrame = i
}

// FixError finds the job's error frame again if the one it had is no longer
// failed or blocked: its first failed frame, else its first blocked one.
func (j *Job) FixError() {
	if e := j.ErrFrame; e >= 0 && int(e) < len(j.Frames) {
		if st := j.Frames[e].State; st == Failed || st == Blocked && j.Counts[Failed] == 0 {
			return
		}
	}
	j.ErrFrame = -1
	if j.Counts[Failed]+j.Counts[Blocked] == 0 {
		return
	}
	for i := range j.Frames {
		if st := j.Frames[i].State; st == Failed || st == Blocked {
			j.NoteError(int32(i))
			if st == Failed {
				return
			}
		}
	}
}

// Finished reports whether none of the job's frames can run any more by
// itself: none is waiting, ready or running.
func (j *Job) Finished() bool {
	return j.Counts[Waiting]+j.Counts[Ready]+j.Counts[Running] == 0
}
