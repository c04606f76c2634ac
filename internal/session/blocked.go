package session

import (
	"fmt"
	"slices"
	"strings"

	"github.com/distren/distren/internal/manifest"
)

// Frames that cannot run. A frame that depends on a frame — of its own job
// or of another — that failed or was canceled can never be rendered as
// things stand: it is blocked (fsBlocked), reported as failed with a message
// naming the URL of the frame at fault, and its job ends like any job whose
// frames failed. Blocking is never stored: it follows from the states of the
// frames depended on, which are, so it is derived again at start (rebuild),
// and it ends by itself when those frames are retried (putBack).

// maxWalk bounds the walk from a blocked frame to the frame at fault when
// the root recorded for it is out of date.
const maxWalk = 1 << 16

// isRoot reports whether frame r is at fault itself: it failed or was
// canceled.
func isRoot(r frameRef) bool {
	st := r.job.frames[r.idx].state
	return st == fsFailed || st == fsCanceled
}

// bad reports whether frame r can never complete as things stand: it
// failed, was canceled, or is blocked.
func bad(r frameRef) bool { return isRoot(r) || r.job.frames[r.idx].state == fsBlocked }

// badDep returns the first frame that frame i of j depends on that is bad.
func (s *Session) badDep(j *job, i int32) (frameRef, bool) {
	for _, d := range j.m.Frames[i].Deps {
		t, ti, err := s.resolve(j, d)
		if err == nil && bad(frameRef{t, ti}) {
			return frameRef{t, ti}, true
		}
	}
	return frameRef{}, false
}

// rootOf returns the failed or canceled frame at the bottom of bad frame r.
func (s *Session) rootOf(r frameRef) frameRef {
	for range maxWalk {
		if r.job.frames[r.idx].state != fsBlocked {
			return r
		}
		if root, ok := r.job.blocked[r.idx]; ok && isRoot(root) {
			return root
		}
		// The recorded root was retried, but r is still blocked through
		// another frame: follow it.
		next, ok := s.badDep(r.job, r.idx)
		if !ok {
			return r
		}
		r = next
	}
	return r
}

// recount sets the unmet-dependency counter of frame i of j from the frames
// it depends on, for a frame that is not done.
func (s *Session) recount(j *job, i int32) {
	f := &j.frames[i]
	f.unmet = 0
	for _, d := range j.m.Frames[i].Deps {
		if t, ti, err := s.resolve(j, d); err == nil && t.frames[ti].state != fsDone {
			f.unmet++
		}
	}
}

// block makes waiting or ready frame r blocked, root being the frame at fault.
func (s *Session) block(r, root frameRef) {
	j := r.job
	j.setState(r.idx, fsBlocked)
	if j.blocked == nil {
		j.blocked = map[int32]frameRef{}
	}
	j.blocked[r.idx] = root
	j.noteError(r.idx)
}

// markBad spreads the news that frame r can never complete as things stand
// (it failed, was canceled, or is blocked) to the frames that wait for it,
// in any job, and on to theirs.
func (s *Session) markBad(r frameRef) {
	root := s.rootOf(r)
	todo := []frameRef{r}
	for len(todo) > 0 {
		x := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, d := range x.job.frames[x.idx].dependents {
			switch d.job.frames[d.idx].state {
			case fsWaiting, fsReady:
				s.block(d, root)
				todo = append(todo, d)
			case fsBlocked:
				if !isRoot(d.job.blocked[d.idx]) { // its root was retried meanwhile
					d.job.blocked[d.idx] = root
					todo = append(todo, d)
				}
			}
		}
	}
}

// place puts frame r, which is not done, back in the queue: ready, waiting
// for the frames it depends on, or blocked if one of them cannot complete —
// or canceled, in a job canceled or stopped, unless it was retried since (a
// frame that was left to end its attempt when the farm stopped its job).
func (s *Session) place(r frameRef) {
	j, i := r.job, r.idx
	delete(j.blocked, i)
	if j.inScope() && !manifest.Contains(j.back, j.frames[i].id) {
		j.setState(i, fsCanceled)
		s.markBad(r)
		return
	}
	if j.frames[i].unmet == 0 {
		j.setState(i, fsReady)
		s.notify = true
		return
	}
	j.setState(i, fsWaiting)
	if b, ok := s.badDep(j, i); ok {
		s.block(r, s.rootOf(b))
		s.markBad(r)
	}
}

// putBack returns frames to the queue (they were retried or are no longer
// canceled; their unmet counters are right), then looks again at the frames
// blocked because of them: those with nothing else at fault wait again.
func (s *Session) putBack(refs []frameRef) {
	for _, r := range refs {
		s.place(r)
	}
	// The frames downstream of them that are blocked, through blocked
	// frames only: what else stays blocked is decided below.
	seen := map[frameRef]bool{}
	var down []frameRef
	todo := slices.Clone(refs)
	for len(todo) > 0 {
		x := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, d := range x.job.frames[x.idx].dependents {
			if d.job.frames[d.idx].state == fsBlocked && !seen[d] {
				seen[d] = true
				down = append(down, d)
				todo = append(todo, d)
			}
		}
	}
	touched := map[*job]bool{}
	for _, d := range down {
		delete(d.job.blocked, d.idx)
		if d.job.frames[d.idx].unmet == 0 {
			d.job.setState(d.idx, fsReady)
			s.notify = true
		} else {
			d.job.setState(d.idx, fsWaiting)
		}
		touched[d.job] = true
	}
	for _, d := range down {
		if st := d.job.frames[d.idx].state; st == fsWaiting {
			if b, ok := s.badDep(d.job, d.idx); ok {
				s.block(d, s.rootOf(b))
				s.markBad(d)
			}
		}
	}
	for j := range touched {
		j.fixError()
		s.addActive(j)
	}
}

// blockedMessage says why blocked frame i of j cannot run, naming the URL
// of the frame at fault.
func (s *Session) blockedMessage(j *job, i int32) string {
	via, ok := s.badDep(j, i)
	if !ok {
		return "cannot run: a frame it depends on failed or was canceled"
	}
	root := s.rootOf(via)
	if via == root {
		return fmt.Sprintf("depends on %s, which %s", s.refURL(via), s.fault(root))
	}
	return fmt.Sprintf("depends on %s, which waits for %s, which %s", s.refURL(via), s.refURL(root), s.fault(root))
}

func (s *Session) refURL(r frameRef) string {
	return frameURL(s.name, r.job.rec.ID, r.job.frames[r.idx].id)
}

// fault says what happened to root, a failed or canceled frame.
func (s *Session) fault(root frameRef) string {
	switch {
	case root.job.frames[root.idx].state == fsFailed:
		return "failed: " + summary(root.job.frames[root.idx].err)
	case root.job.rec.Stop != "":
		return fmt.Sprintf("was canceled when the farm stopped its job %s for a fault of its own", jobURL(s.name, root.job.rec.ID))
	}
	return "was canceled"
}

// summary shortens a failure message to one line: its first, and, if that
// only announces what follows (it ends with a colon), its last.
func summary(msg string) string {
	msg = strings.TrimSpace(msg)
	first, rest, more := strings.Cut(msg, "\n")
	first = strings.TrimSpace(first)
	if more && strings.HasSuffix(first, ":") {
		rest = strings.TrimSpace(rest)
		first += " " + strings.TrimSpace(rest[strings.LastIndexByte(rest, '\n')+1:])
	}
	return first
}
