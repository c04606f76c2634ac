package scheduler

import (
	"slices"

	"github.com/distren/distren/internal/manifest"
)

// Frames that cannot run. A frame that depends on a frame — of its own job
// or of another — that failed or was canceled can never be rendered as
// things stand: it is Blocked, and its job ends like any job whose frames
// failed. Blocking is never stored: it follows from the states of the
// frames depended on, which are, so it is derived again at start (Restore),
// and it ends by itself when those frames are retried (putBack).

// maxWalk bounds the walk from a blocked frame to the frame at fault when
// the root recorded for it is out of date.
const maxWalk = 1 << 16

// isRoot reports whether frame r is at fault itself: it failed or was
// canceled.
func isRoot(r Ref) bool {
	st := r.Job.Frames[r.Idx].State
	return st == Failed || st == Canceled
}

// bad reports whether frame r can never complete as things stand: it
// failed, was canceled, or is blocked.
func bad(r Ref) bool { return isRoot(r) || r.Job.Frames[r.Idx].State == Blocked }

// BadDep returns the first frame that frame i of j depends on that is bad:
// failed, canceled or blocked.
func (s *Scheduler) BadDep(j *Job, i int32) (Ref, bool) { return s.badDep(j, i) }

func (s *Scheduler) badDep(j *Job, i int32) (Ref, bool) {
	for _, d := range j.M.Frames[i].Deps {
		t, ti, err := s.Resolve(j, d)
		if err == nil && bad(Ref{t, ti}) {
			return Ref{t, ti}, true
		}
	}
	return Ref{}, false
}

// RootOf returns the failed or canceled frame at the bottom of bad frame r.
func (s *Scheduler) RootOf(r Ref) Ref {
	for range maxWalk {
		if r.Job.Frames[r.Idx].State != Blocked {
			return r
		}
		if root, ok := r.Job.blocked[r.Idx]; ok && isRoot(root) {
			return root
		}
		// The recorded root was retried, but r is still blocked through
		// another frame: follow it.
		next, ok := s.badDep(r.Job, r.Idx)
		if !ok {
			return r
		}
		r = next
	}
	return r
}

// recount sets the unmet-dependency counter of frame i of j from the frames
// it depends on, for a frame that is not done.
func (s *Scheduler) recount(j *Job, i int32) {
	f := &j.Frames[i]
	f.Unmet = 0
	for _, d := range j.M.Frames[i].Deps {
		if t, ti, err := s.Resolve(j, d); err == nil && t.Frames[ti].State != Done {
			f.Unmet++
		}
	}
}

// block makes waiting or ready frame r blocked, root being the frame at fault.
func (s *Scheduler) block(r, root Ref) {
	j := r.Job
	j.SetState(r.Idx, Blocked)
	if j.blocked == nil {
		j.blocked = map[int32]Ref{}
	}
	j.blocked[r.Idx] = root
	j.NoteError(r.Idx)
}

// markBad spreads the news that frame r can never complete as things stand
// (it failed, was canceled, or is blocked) to the frames that wait for it,
// in any job, and on to theirs.
func (s *Scheduler) markBad(r Ref) {
	root := s.RootOf(r)
	todo := []Ref{r}
	for len(todo) > 0 {
		x := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, d := range x.Job.Frames[x.Idx].Dependents {
			switch d.Job.Frames[d.Idx].State {
			case Waiting, Ready:
				s.block(d, root)
				todo = append(todo, d)
			case Blocked:
				if !isRoot(d.Job.blocked[d.Idx]) { // its root was retried meanwhile
					d.Job.blocked[d.Idx] = root
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
func (s *Scheduler) place(r Ref) {
	j, i := r.Job, r.Idx
	delete(j.blocked, i)
	if j.inScope() && !manifest.Contains(j.Back, j.Frames[i].ID) {
		j.SetState(i, Canceled)
		s.markBad(r)
		return
	}
	if j.Frames[i].Unmet == 0 {
		j.SetState(i, Ready)
		s.woke = true
		return
	}
	j.SetState(i, Waiting)
	if b, ok := s.badDep(j, i); ok {
		s.block(r, s.RootOf(b))
		s.markBad(r)
	}
}

// putBack returns frames to the queue (they were retried or are no longer
// canceled; their unmet counters are right), then looks again at the frames
// blocked because of them: those with nothing else at fault wait again.
func (s *Scheduler) putBack(refs []Ref) {
	for _, r := range refs {
		s.place(r)
	}
	s.unblockDown(refs)
}

// unblockDown looks again at the frames blocked because of refs, which
// are no longer bad: those with nothing else at fault wait again.
func (s *Scheduler) unblockDown(refs []Ref) {
	// The frames downstream of them that are blocked, through blocked
	// frames only: what else stays blocked is decided below.
	seen := map[Ref]bool{}
	var down []Ref
	todo := slices.Clone(refs)
	for len(todo) > 0 {
		x := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, d := range x.Job.Frames[x.Idx].Dependents {
			if d.Job.Frames[d.Idx].State == Blocked && !seen[d] {
				seen[d] = true
				down = append(down, d)
				todo = append(todo, d)
			}
		}
	}
	touched := map[*Job]bool{}
	for _, d := range down {
		delete(d.Job.blocked, d.Idx)
		if d.Job.Frames[d.Idx].Unmet == 0 {
			d.Job.SetState(d.Idx, Ready)
			s.woke = true
		} else {
			d.Job.SetState(d.Idx, Waiting)
		}
		touched[d.Job] = true
	}
	for _, d := range down {
		if st := d.Job.Frames[d.Idx].State; st == Waiting {
			if b, ok := s.badDep(d.Job, d.Idx); ok {
				s.block(d, s.RootOf(b))
				s.markBad(d)
			}
		}
	}
	for j := range touched {
		j.FixError()
		s.addActive(j)
	}
}
