// Package session owns the farm's state and every change to it: jobs, frames,
// workers and their leases, changed only by commands that one dispatcher
// applies in order, groups into one store transaction and acknowledges after
// commit, and the signal that wakes long-polling claims. It asks the
// scheduler (internal/scheduler) for every scheduling decision — which
// frames a claim gets, lease expiry, retry or failure, readiness — and
// makes their effects durable. It reads the time from one clock
// (Options.Clock) and hands it to the scheduler. It is pure logic over the
// store.Store interface: no transport, no files.
package session

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/durl"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/scheduler"
	"github.com/distren/distren/internal/store"
)

var stateNames = [scheduler.NStates]string{StateWaiting, StateReady, StateRunning, StateDone, StateFailed,
	StateFailed, StateCanceled}

// Frame states, as the scheduler names them.
const (
	fsWaiting  = scheduler.Waiting
	fsReady    = scheduler.Ready
	fsRunning  = scheduler.Running
	fsDone     = scheduler.Done
	fsFailed   = scheduler.Failed
	fsBlocked  = scheduler.Blocked
	fsCanceled = scheduler.Canceled
)

// frameRef points at a frame of any job.
type frameRef = scheduler.Ref

// job is a job as the session holds it: the scheduler's job (its frames and
// their scheduling state), with what the session records beside it.
type job struct {
	*scheduler.Job
	rec    store.Job
	m      *manifest.Manifest // Job.M
	inputs []cdc.File
	outs   []frameOut // what each frame produced, in Frames order
	// failures is Job.Failures: worker → failed attempts.
	failures map[string]int
	files    []store.File // numbered output files, by N
	suspect  *suspect     // evidence that the job's failures are its own fault
	// names are the files' names in the result bundle (collide.go).
	names *outNames
}

// frameOut is what a done frame produced.
type frameOut struct {
	output string
	size   int64
	render time.Duration
	files  []int64
}

// inScope reports whether the job's unfinished frames are canceled, but
// for those retried since (back): a user canceled it, or the farm stopped it.
func (j *job) inScope() bool { return j.rec.Canceled || j.rec.Stop != "" }

// setRec records rec as the job's record, telling the scheduler whether
// the job's unfinished frames are canceled.
func (j *job) setRec(rec store.Job) {
	j.rec = rec
	j.Canceled = j.inScope()
	j.Paused = rec.Paused
}

// state reports the job's state from its counters. A job some of whose
// frames can still run (waiting frames wait only for frames that can) is
// queued or running. One none of whose frames can run any more is done if
// every frame is; failed if the farm stopped it (and frames are still
// canceled by that); canceled if some frames are canceled; failed otherwise
// (frames failed, or cannot run because a frame they depend on failed or
// was canceled).
func (j *job) state() string {
	c := &j.Counts
	switch {
	case c[fsDone] == len(j.Frames):
		return JobDone
	case j.Paused && c[fsRunning]+c[fsReady]+c[fsWaiting] > 0:
		return JobPaused
	case c[fsRunning] > 0:
		return JobRunning
	case c[fsReady]+c[fsWaiting] > 0:
		if c[fsDone]+c[fsFailed]+c[fsBlocked] > 0 {
			return JobRunning
		}
		return JobQueued
	case j.rec.Stop != "" && c[fsCanceled] > 0:
		return JobFailed
	case c[fsCanceled] > 0:
		return JobCanceled
	}
	return JobFailed
}

// finished reports whether nothing more will happen to the job by itself.
func (j *job) finished() bool {
	s := j.state()
	return s == JobDone || s == JobFailed || s == JobCanceled
}

// frameInfo renders a frame for the API.
func (s *Session) frameInfo(j *job, i int32) Frame {
	out := s.frameBare(j, i)
	out.URL = frameURL(s.name, j.rec.ID, out.ID)
	return out
}

// frameBare is frameInfo without the frame's URL, which a long listing
// writes itself rather than have one allocated per frame (read.go).
func (s *Session) frameBare(j *job, i int32) Frame {
	f := &j.Frames[i]
	o := &j.outs[i]
	out := Frame{
		ID: f.ID, State: stateNames[f.State], Attempts: f.Attempts, Lost: int(f.Lost),
		Error: f.Err, Output: o.output, Size: o.size,
		RenderMS: o.render.Milliseconds(), Files: o.files,
	}
	if f.Worker != "" {
		out.Server, out.Worker = s.name, f.Worker
		if peer, w, ok := SplitPeerWorker(f.Worker); ok {
			out.Server, out.Worker = peer, w
		}
	}
	switch f.State {
	case fsRunning:
		out.Progress = f.Progress
	case fsBlocked:
		out.Error = s.blockedMessage(j, i)
	}
	return out
}

// jobError is the job's error: why the farm stopped it (while frames are
// canceled by that), or the message of its first failed frame (or, if none,
// of its first frame that cannot run).
func (s *Session) jobError(j *job) string {
	if j.rec.Stop != "" && j.Counts[fsCanceled] > 0 {
		return j.rec.Stop
	}
	i := j.ErrFrame
	if i < 0 || int(i) >= len(j.Frames) {
		return ""
	}
	switch f := &j.Frames[i]; f.State {
	case fsFailed:
		return fmt.Sprintf("frame %d: %s", f.ID, f.Err)
	case fsBlocked:
		return fmt.Sprintf("frame %d: %s", f.ID, s.blockedMessage(j, i))
	}
	return ""
}

func (s *Session) jobInfo(j *job) Job {
	out := Job{
		ID: j.rec.ID, URL: jobURL(s.name, j.rec.ID), Name: j.rec.Name, State: j.state(),
		Priority: j.m.Priority, Submitted: j.rec.Submitted, Frames: len(j.Frames),
		Counts: map[string]int{}, Error: s.jobError(j),
	}
	if !j.m.Deadline.IsZero() {
		d := j.m.Deadline
		out.Deadline = &d
	}
	out.Waiting = s.waiting(j)
	out.Warning = j.warningOf()
	for st, n := range j.Counts {
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
	if j.Counts[fsReady] == 0 || j.Paused {
		return ""
	}
	now := s.clock.Now()
	live := s.sched.LiveWorkers(now)
	if live == 0 && len(s.opt.Peers) > 0 {
		return fmt.Sprintf("waiting for a worker: none is connected here, and no worker of a peer (%s) has asked for frames yet", strings.Join(s.opt.Peers, ", "))
	}
	if live == 0 {
		return "waiting for a worker: none is connected"
	}
	missing, n := s.sched.Unplaceable(now, j.Job)
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

func slicesSortJobs(js []Job) {
	slices.SortFunc(js, func(a, b Job) int { return int(b.ID - a.ID) })
}
