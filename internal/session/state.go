// Package session owns the farm's state and every change to it: jobs, frames,
// workers and their leases, changed only by commands that one dispatcher
// applies in order, groups into one store transaction and acknowledges after
// commit. It holds the scheduler: dependency counters, ready queues ordered by
// priority, deadline and submission, leases with epochs, retries and
// blocklists. It is pure logic over the store.Store interface: no transport,
// no files.
package session

import (
	"container/heap"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/durl"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/store"
)

type frameState uint8

const (
	fsWaiting frameState = iota
	fsReady
	fsRunning
	fsDone
	fsFailed
	// fsBlocked: the frame cannot run because a frame it depends on, in
	// this job or another, failed or was canceled (or is blocked itself).
	// It is not stored: the session derives it from the frames it depends
	// on, and it ends when they are retried. The API reports it as failed,
	// with a message naming the frame at fault.
	fsBlocked
	// fsCanceled: canceled by a user, or by the farm when it stopped the
	// job for a fault of its own (job.rec.Stop).
	fsCanceled
	nStates
)

var stateNames = [nStates]string{api.StateWaiting, api.StateReady, api.StateRunning, api.StateDone, api.StateFailed,
	api.StateFailed, api.StateCanceled}

// frameRef points at a frame of any job.
type frameRef struct {
	job *job
	idx int32
}

type frame struct {
	id         int64
	state      frameState
	queued     bool // in the job's ready heap (entries are removed lazily)
	unmet      int32
	attempts   int
	epoch      uint64
	chunk      uint64 // the chunk its lease belongs to (the chunk's first epoch), 0 if none
	worker     string
	expires    time.Time
	started    time.Time
	progress   float64
	req        uint8 // index of the backend it needs in job.reqs
	lost       uint8 // attempts whose lease expired (at most MaxLostLeases+1)
	dependents []frameRef
	failedOn   []string // workers whose attempts failed, for retrying elsewhere
	output     string
	size       int64
	render     time.Duration
	err        string
	files      []int64
}

type job struct {
	rec      store.Job
	m        *manifest.Manifest
	inputs   []cdc.File
	frames   []frame // in m.Frames order (by id)
	reqs     []requirement
	ready    []readyHeap // ready frames, one heap per requirement
	readyN   []int       // ready frames per requirement
	counts   [nStates]int
	failures map[string]int // worker → failed attempts
	files    []store.File   // numbered output files, by N
	// blocked maps each fsBlocked frame to the failed or canceled frame
	// that it waits for in the end (the root of its blockage).
	blocked map[int32]frameRef
	// back holds the frames retried since the job was canceled or stopped
	// (rec.Back): they are not canceled.
	back []manifest.Range
	// errFrame is the failed or blocked frame whose message is the job's
	// error, or -1.
	errFrame int32
	suspect  *suspect // evidence that the job's failures are its own fault
	// names are the files' names in the result bundle (collide.go).
	names *outNames
}

func (j *job) frameIndex(id int64) (int32, bool) {
	lo, hi := 0, len(j.frames)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if j.frames[mid].id < id {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(j.frames) && j.frames[lo].id == id {
		return int32(lo), true
	}
	return 0, false
}

func (j *job) setState(i int32, s frameState) {
	f := &j.frames[i]
	j.counts[f.state]--
	j.counts[s]++
	if f.state == fsReady {
		j.readyN[f.req]--
	}
	if s == fsReady {
		j.readyN[f.req]++
	}
	f.state = s
	if s == fsReady {
		j.queue(i)
	}
}

// queue puts a ready frame in its requirement's heap, once.
func (j *job) queue(i int32) {
	f := &j.frames[i]
	if !f.queued {
		f.queued = true
		heap.Push(&j.ready[f.req], i)
	}
}

// top returns the lowest ready frame of requirement r, dropping entries of
// frames that are no longer ready.
func (j *job) top(r int) (int32, bool) {
	h := &j.ready[r]
	for h.Len() > 0 {
		i := (*h)[0]
		if j.frames[i].state == fsReady {
			return i, true
		}
		heap.Pop(h)
		j.frames[i].queued = false
	}
	return 0, false
}

// pop takes frame i, the top of requirement r's heap.
func (j *job) pop(r int) int32 {
	i := heap.Pop(&j.ready[r]).(int32)
	j.frames[i].queued = false
	return i
}

// spec returns the backend element frame i renders with.
func (j *job) spec(i int32) *manifest.Backend {
	if b := j.m.Frames[i].Backend; b != nil {
		return b
	}
	return &j.m.Backend
}

// requirement is what a worker needs to render a frame: a backend, and a
// version of it if the manifest asks for one.
type requirement struct {
	backend, version string
}

func (r requirement) String() string {
	if r.version == "" {
		return r.backend
	}
	return r.backend + " " + r.version
}

// worker is a worker as the session knows it.
type worker struct {
	seen     time.Time
	backends map[string]string // backend → version
}

// live reports whether the worker was heard from within a lease period.
func (s *Session) live(w *worker, now time.Time) bool { return now.Sub(w.seen) < s.opt.LeaseTTL }

func (w *worker) can(r requirement) bool {
	v, ok := w.backends[r.backend]
	return ok && manifest.VersionMatches(r.version, v)
}

// inScope reports whether the job's unfinished frames are canceled, but
// for those retried since (back): a user canceled it, or the farm stopped it.
func (j *job) inScope() bool { return j.rec.Canceled || j.rec.Stop != "" }

// state reports the job's state from its counters. A job some of whose
// frames can still run (waiting frames wait only for frames that can) is
// queued or running. One none of whose frames can run any more is done if
// every frame is; failed if the farm stopped it (and frames are still
// canceled by that); canceled if some frames are canceled; failed otherwise
// (frames failed, or cannot run because a frame they depend on failed or
// was canceled).
func (j *job) state() string {
	c := &j.counts
	switch {
	case c[fsDone] == len(j.frames):
		return api.JobDone
	case c[fsRunning] > 0:
		return api.JobRunning
	case c[fsReady]+c[fsWaiting] > 0:
		if c[fsDone]+c[fsFailed]+c[fsBlocked] > 0 {
			return api.JobRunning
		}
		return api.JobQueued
	case j.rec.Stop != "" && c[fsCanceled] > 0:
		return api.JobFailed
	case c[fsCanceled] > 0:
		return api.JobCanceled
	}
	return api.JobFailed
}

// finished reports whether nothing more will happen to the job by itself.
func (j *job) finished() bool {
	s := j.state()
	return s == api.JobDone || s == api.JobFailed || s == api.JobCanceled
}

// less orders jobs for scheduling: priority (higher first), then deadline
// (earlier first, none last), then submission (job id).
func (j *job) less(o *job) bool {
	if j.m.Priority != o.m.Priority {
		return j.m.Priority > o.m.Priority
	}
	jd, od := j.m.Deadline, o.m.Deadline
	if !jd.Equal(od) {
		switch {
		case jd.IsZero():
			return false
		case od.IsZero():
			return true
		}
		return jd.Before(od)
	}
	return j.rec.ID < o.rec.ID
}

// readyHeap holds frame indexes; lower index (lower frame id) first.
type readyHeap []int32

func (h readyHeap) Len() int           { return len(h) }
func (h readyHeap) Less(a, b int) bool { return h[a] < h[b] }
func (h readyHeap) Swap(a, b int)      { h[a], h[b] = h[b], h[a] }
func (h *readyHeap) Push(x any)        { *h = append(*h, x.(int32)) }
func (h *readyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// frameInfo renders a frame for the API.
func (s *Session) frameInfo(j *job, i int32) api.Frame {
	out := s.frameBare(j, i)
	out.URL = frameURL(s.name, j.rec.ID, out.ID)
	return out
}

// frameBare is frameInfo without the frame's URL, which a long listing
// writes itself rather than have one allocated per frame (read.go).
func (s *Session) frameBare(j *job, i int32) api.Frame {
	f := &j.frames[i]
	out := api.Frame{
		ID: f.id, State: stateNames[f.state], Attempts: f.attempts, Lost: int(f.lost),
		Worker: f.worker, Error: f.err, Output: f.output, Size: f.size,
		RenderMS: f.render.Milliseconds(), Files: f.files,
	}
	switch f.state {
	case fsRunning:
		out.Progress = f.progress
	case fsBlocked:
		out.Error = s.blockedMessage(j, i)
	}
	return out
}

// jobError is the job's error: why the farm stopped it (while frames are
// canceled by that), or the message of its first failed frame (or, if none,
// of its first frame that cannot run).
func (s *Session) jobError(j *job) string {
	if j.rec.Stop != "" && j.counts[fsCanceled] > 0 {
		return j.rec.Stop
	}
	i := j.errFrame
	if i < 0 || int(i) >= len(j.frames) {
		return ""
	}
	switch f := &j.frames[i]; f.state {
	case fsFailed:
		return fmt.Sprintf("frame %d: %s", f.id, f.err)
	case fsBlocked:
		return fmt.Sprintf("frame %d: %s", f.id, s.blockedMessage(j, i))
	}
	return ""
}

// noteError makes failed or blocked frame i the job's error frame if the
// job has none, or has only a blocked one and i failed.
func (j *job) noteError(i int32) {
	if e := j.errFrame; e >= 0 && int(e) < len(j.frames) {
		switch j.frames[e].state {
		case fsFailed:
			return
		case fsBlocked:
			if j.frames[i].state != fsFailed {
				return
			}
		}
	}
	j.errFrame = i
}

// fixError finds the job's error frame again if the one it had is no longer
// failed or blocked: its first failed frame, else its first blocked one.
func (j *job) fixError() {
	if e := j.errFrame; e >= 0 && int(e) < len(j.frames) {
		if st := j.frames[e].state; st == fsFailed || st == fsBlocked && j.counts[fsFailed] == 0 {
			return
		}
	}
	j.errFrame = -1
	if j.counts[fsFailed]+j.counts[fsBlocked] == 0 {
		return
	}
	for i := range j.frames {
		if st := j.frames[i].state; st == fsFailed || st == fsBlocked {
			j.noteError(int32(i))
			if st == fsFailed {
				return
			}
		}
	}
}

func (s *Session) jobInfo(j *job) api.Job {
	out := api.Job{
		ID: j.rec.ID, URL: jobURL(s.name, j.rec.ID), Name: j.rec.Name, State: j.state(),
		Priority: j.m.Priority, Submitted: j.rec.Submitted, Frames: len(j.frames),
		Counts: map[string]int{}, Error: s.jobError(j),
	}
	if !j.m.Deadline.IsZero() {
		d := j.m.Deadline
		out.Deadline = &d
	}
	out.Waiting = s.waiting(j)
	out.Warning = j.warningOf()
	for st, n := range j.counts {
		if n == 0 {
			continue
		}
		out.Counts[stateNames[st]] += n
	}
	return out
}

// waiting says why ready frames of j are not running, if no live worker can
// run them.
func (s *Session) waiting(j *job) string {
	if j.counts[fsReady] == 0 {
		return ""
	}
	now := time.Now()
	live := 0
	for _, w := range s.workers {
		if s.live(w, now) {
			live++
		}
	}
	if live == 0 {
		return "waiting for a worker: none is connected"
	}
	var missing []string
	n := 0
	for r, req := range j.reqs {
		if j.readyN[r] == 0 {
			continue
		}
		capable := false
		for _, w := range s.workers {
			if s.live(w, now) && w.can(req) {
				capable = true
				break
			}
		}
		if !capable {
			missing = append(missing, req.String())
			n += j.readyN[r]
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("waiting for a capable worker: %d ready frames need %s, which none of the %d connected workers has",
		n, strings.Join(missing, " or "), live)
}

// A job's inputs are stored in the vault's tree encoding (cdc.Tree.Encode),
// the form a client submits them in. Jobs stored before held a JSON array
// of files; decodeInputs reads both.

func encodeInputs(in []cdc.File) ([]byte, error) {
	b, err := cdc.Tree{Files: in}.Encode()
	if err != nil {
		return nil, fmt.Errorf("encoding the input tree: %w", err)
	}
	return b, nil
}

func decodeInputs(b []byte) ([]cdc.File, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] == '[' || string(b) == "null" {
		return decodeLegacyInputs(b)
	}
	t, err := cdc.DecodeTree(b)
	if err != nil {
		return nil, fmt.Errorf("decoding the input tree: %w", err)
	}
	return t.Files, nil
}

// decodeLegacyInputs reads the JSON array a job's inputs were stored as
// before the tree encoding: its files, each a list of chunks or, older
// still, one whole-file object.
func decodeLegacyInputs(b []byte) ([]cdc.File, error) {
	var legacy []struct {
		Path   string `json:"path"`
		Mode   uint32 `json:"mode"`
		Size   int64  `json:"size"`
		Hash   string `json:"hash"`
		Chunks []struct {
			Hash string `json:"hash"`
			Size int64  `json:"size"`
		} `json:"chunks"`
	}
	if err := json.Unmarshal(b, &legacy); err != nil {
		return nil, fmt.Errorf("decoding the input list: %w", err)
	}
	files := make([]cdc.File, len(legacy))
	for i, l := range legacy {
		f := cdc.File{Path: l.Path, Mode: l.Mode, Size: l.Size}
		ref := func(h string, size int64) error {
			var c cdc.ChunkRef
			if _, err := hex.Decode(c.Hash[:], []byte(h)); err != nil || len(h) != 64 {
				return fmt.Errorf("decoding the input list: file %q: object %q is not a SHA-256 in hex", l.Path, h)
			}
			c.Size = size
			f.Chunks = append(f.Chunks, c)
			return nil
		}
		for _, c := range l.Chunks {
			if err := ref(c.Hash, c.Size); err != nil {
				return nil, err
			}
		}
		if len(l.Chunks) == 0 && l.Hash != "" { // one object holds the whole file
			if err := ref(l.Hash, l.Size); err != nil {
				return nil, err
			}
		}
		files[i] = f
	}
	return files, nil
}

func fileURL(server string, id, n int64) string { return durl.File(server, id, n) }

func slicesSortJobs(js []api.Job) {
	slices.SortFunc(js, func(a, b api.Job) int { return int(b.ID - a.ID) })
}
