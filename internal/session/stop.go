package session

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/distren/distren/internal/store"
)

// A job's own mistakes. A scene that does not parse, an <outputs> pattern
// that matches nothing, a file the package lacks: retrying such a failure
// spends every frame's retries for nothing. The farm stops the job instead
// — its unfinished frames are canceled and it is failed, with a reason
// naming the frames tried (job.rec.Stop) — when the backend blames the job
// (a JobError), or when its first frames to fail all fail the same way and
// none of its frames is done (the suspect rule below). `retry` starts it
// again.

// suspectFrames is how many frames, at most, must have failed the same way
// before the farm suspects the job itself.
const suspectFrames = 3

// suspect is the evidence gathered against a job: the first frames of it to
// fail, as long as every failed attempt of the job ended the same way.
type suspect struct {
	off    bool   // a failure ended differently: the rule does not apply
	key    string // failureKey of the failures
	msg    string // the first of them, for the reason
	frames []suspectFrame
}

type suspectFrame struct {
	ID      int64
	n       int // failed attempts
	workers []string
}

// suspectFailure records a failed attempt of frame i of j on worker (not a
// lost lease, not one the backend blamed on the job) and returns why the job
// should be stopped, given how many frames that cancels, if the evidence is
// now enough (else nil); see the rule in
// docs/manifest.md (<retries>):
//
//   - no frame of the job is done;
//   - every failed attempt of the job so far failed the same way
//     (failureKey);
//   - each of the first min(3, frames) frames to fail has failed twice (once
//     if <retries> is 0);
//   - those attempts were made on at least two workers, or — only for jobs
//     of three frames or more — on the one worker that could render the job.
func (s *Session) suspectFailure(j *job, i int32, worker, msg string) func(canceled int) string {
	if j.Counts[fsDone] > 0 {
		return nil
	}
	sp := j.suspect
	if sp == nil {
		sp = &suspect{}
		j.suspect = sp
	}
	if sp.off {
		return nil
	}
	f := &j.Frames[i]
	key := failureKey(f.ID, msg)
	switch {
	case sp.key == "":
		sp.key, sp.msg = key, fmt.Sprintf("frame %d: %s", f.ID, msg)
	case key != sp.key:
		*sp = suspect{off: true}
		return nil
	}
	want := min(suspectFrames, len(j.Frames))
	k := slices.IndexFunc(sp.frames, func(x suspectFrame) bool { return x.ID == f.ID })
	if k < 0 {
		if len(sp.frames) >= want {
			return nil // a later frame, failing the same way
		}
		sp.frames = append(sp.frames, suspectFrame{ID: f.ID})
		k = len(sp.frames) - 1
	}
	sf := &sp.frames[k]
	sf.n++
	if !slices.Contains(sf.workers, worker) {
		sf.workers = append(sf.workers, worker)
	}
	need := 2
	if j.m.Retries == 0 {
		need = 1
	}
	if len(sp.frames) < want {
		return nil
	}
	var workers []string
	var ids []string
	for _, x := range sp.frames {
		if x.n < need {
			return nil
		}
		ids = append(ids, strconv.FormatInt(x.ID, 10))
		for _, w := range x.workers {
			if !slices.Contains(workers, w) {
				workers = append(workers, w)
			}
		}
	}
	if len(workers) < 2 && (want < suspectFrames || s.otherCapable(j, workers[0])) {
		return nil
	}
	times := "twice"
	if need == 1 {
		times = "once"
	}
	first, tried := sp.msg, "frames "+list(ids)+", the first to fail, each"
	if len(ids) == 1 {
		tried = "frame " + ids[0] + ", the first to fail,"
	}
	return func(n int) string {
		return fmt.Sprintf("the farm stopped the job: %s failed %s the same way on %s %s and no frame is done, "+
			"so the fault is likely the job's own; %s canceled. Fix the package and submit it again, "+
			"or `distren retry %d` if the cause lay elsewhere. %s",
			tried, times, plural(len(workers), "worker", "workers"), list(workers), framesCanceled(n), j.rec.ID, first)
	}
}

// jobFault is the reason the farm stops a job when frame i failed with a
// JobError, given how many frames that cancels.
func (s *Session) jobFault(j *job, i int32, msg string) func(canceled int) string {
	id := j.Frames[i].ID
	return func(n int) string {
		return fmt.Sprintf("the farm stopped the job: frame %d failed for a reason in the job, not the worker, "+
			"so %s canceled. Fix the package and submit it again. frame %d: %s", id, framesCanceled(n), id, msg)
	}
}

func framesCanceled(n int) string {
	if n == 1 {
		return "its 1 unfinished frame was"
	}
	return fmt.Sprintf("its %d unfinished frames were", n)
}

// otherCapable reports whether a live worker other than w has a backend
// some frame of j needs.
func (s *Session) otherCapable(j *job, w string) bool {
	return s.sched.OtherCapable(s.clock.Now(), j.Job, w)
}

// stopJob stops job j for a fault of its own: its unfinished frames are
// canceled (running ones learn it at their worker's next heartbeat) and the
// job is failed with reason. The other frames of the failing frame's chunk
// (chunk, leased to worker) are left to end: those before it in the chunk
// are rendered and their outputs on their way, those after it are given
// back unattempted (and then canceled: place). A job with nothing left to
// cancel is not stopped: its failed frame says it all.
func (s *Session) stopJob(tx store.Tx, j *job, reason func(canceled int) string, chunk uint64, worker string) error {
	idx := s.sched.Cancelable(j.Job, chunk, worker)
	if len(idx) == 0 {
		return nil
	}
	upd := j.rec
	upd.Stop, upd.Back = reason(len(idx)), ""
	if err := tx.UpdateJob(&upd); err != nil {
		return err
	}
	j.setRec(upd)
	j.Back = nil
	j.suspect = nil
	s.sched.Cancel(j.Job, idx)
	return nil
}

// failureKey reduces a failure message to what the failures of different
// frames share when they fail the same way: its first and last lines, with
// every number equal to the frame's own id blanked out (f-0003.png of frame
// 3 and f-0004.png of frame 4 are the same).
func failureKey(frame int64, msg string) string {
	msg = strings.TrimSpace(msg)
	first, _, _ := strings.Cut(msg, "\n")
	last := msg[strings.LastIndexByte(msg, '\n')+1:]
	key := strings.TrimSpace(first) + "\n" + strings.TrimSpace(last)
	var b strings.Builder
	for k := 0; k < len(key); {
		if key[k] < '0' || key[k] > '9' {
			b.WriteByte(key[k])
			k++
			continue
		}
		e := k
		for e < len(key) && key[e] >= '0' && key[e] <= '9' {
			e++
		}
		if n, err := strconv.ParseInt(key[k:e], 10, 64); err == nil && n == frame {
			b.WriteString("#")
		} else {
			b.WriteString(key[k:e])
		}
		k = e
	}
	return b.String()
}

// list joins items as "a", "a and b", "a, b and c".
func list(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
