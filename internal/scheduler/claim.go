package scheduler

import (
	"fmt"
	"slices"
	"time"
)

// Grant is one frame a claim leased.
type Grant struct {
	Job   *Job
	Idx   int32
	Epoch uint64
	// Chunk is the first epoch of the chunk the frame belongs to, 0 if it
	// is a task of its own.
	Chunk uint64
}

// Claim leases up to limit tasks (at least 1, at most 1024) of ready frames
// to worker w at now, and records that w was heard from and has the given
// backends (nil: as before). Jobs are taken in scheduling order; within a
// job, the lowest ready frame among the backends w has. A worker with
// BlocklistAfter failed attempts in a job gets none of its frames while
// another live worker could; a frame that failed on w is passed over while
// another live worker that did not fail it could take it. A job with
// <chunk> whose backend renders ranges gives out consecutive frames with
// the same backend element together, one task, each with its own lease.
func (s *Scheduler) Claim(now time.Time, w string, backends map[string]string, limit int) []Grant {
	wk := s.Seen(now, w)
	if backends != nil {
		wk.Backends = backends
	}
	limit = min(max(limit, 1), 1024)
	tasks := 0
	var out []Grant
	keep := s.active[:0]
	for _, j := range s.active {
		if j.Finished() {
			continue // leaves the active list; retry brings it back
		}
		keep = append(keep, j)
		if tasks >= limit || j.Counts[Ready] == 0 || j.Paused {
			continue
		}
		if j.Failures[w] >= s.opt.BlocklistAfter && s.otherWorker(now, w, func(v string) bool {
			return j.Failures[v] < s.opt.BlocklistAfter
		}) {
			continue
		}
		var skipped []int32
		for tasks < limit {
			// The lowest ready frame among the backends this worker has.
			r, i := -1, int32(0)
			for k, rq := range j.Reqs {
				if j.readyN[k] == 0 || !wk.Can(rq) {
					continue
				}
				if top, ok := j.top(k); ok && (r < 0 || top < i) {
					r, i = k, top
				}
			}
			if r < 0 {
				break
			}
			j.pop(r)
			f := &j.Frames[i]
			if slices.Contains(f.FailedOn, w) && len(skipped) < 64 && s.otherWorker(now, w, func(v string) bool {
				return !slices.Contains(f.FailedOn, v) && j.Failures[v] < s.opt.BlocklistAfter
			}) {
				skipped = append(skipped, i)
				continue
			}
			first := s.take(j, i, w, now, 0)
			out = append(out, first)
			tasks++
			// A chunk: the next frames by id with the same backend element.
			if j.M.Chunk < 2 || s.opt.Chunks == nil || !s.opt.Chunks(j.Reqs[r].Backend) {
				continue
			}
			for n := int32(1); n < int32(j.M.Chunk); n++ {
				k, ok := j.top(r)
				if !ok || k != i+n || j.Frames[k].ID != f.ID+int64(n) || j.Spec(k) != j.Spec(i) || slices.Contains(j.Frames[k].FailedOn, w) {
					break
				}
				j.pop(r)
				if n == 1 {
					out[len(out)-1].Chunk = first.Epoch
					f.Chunk = first.Epoch
				}
				out = append(out, s.take(j, k, w, now, first.Epoch))
			}
		}
		for _, i := range skipped {
			j.queue(i)
		}
	}
	clear(s.active[len(keep):])
	s.active = keep
	return out
}

// Pause stops giving out j's frames (paused), or starts again; the frames
// running are not touched. It reports whether anything changed.
func (s *Scheduler) Pause(j *Job, paused bool) bool {
	if j.Paused == paused {
		return false
	}
	j.Paused = paused
	if !paused && j.Counts[Ready] > 0 {
		s.addActive(j)
		s.woke = true
	}
	return true
}

// SetPriority changes j's priority (its manifest's, as held in memory),
// and its place among the jobs.
func (s *Scheduler) SetPriority(j *Job, p int) {
	if j.M.Priority == p {
		return
	}
	s.active = slices.DeleteFunc(s.active, func(a *Job) bool { return a == j })
	j.M.Priority = p
	if !j.Finished() {
		s.addActive(j)
	}
	s.woke = true
}

// ReadyFor reports whether frames are ready that worker w has the
// backends for (as it last said), blocklists aside: whether its next claim
// would likely get frames of this server's own.
func (s *Scheduler) ReadyFor(w string) bool {
	wk := s.workers[w]
	if wk == nil {
		return false
	}
	for _, j := range s.active {
		if j.Finished() || j.Counts[Ready] == 0 || j.Paused {
			continue
		}
		for k, rq := range j.Reqs {
			if j.readyN[k] > 0 && wk.Can(rq) {
				return true
			}
		}
	}
	return false
}

// take leases ready frame i of j to worker w.
func (s *Scheduler) take(j *Job, i int32, w string, now time.Time, chunk uint64) Grant {
	f := &j.Frames[i]
	f.Epoch = s.nextEpoch()
	f.Worker, f.Started, f.Expires, f.Progress, f.Chunk = w, now, now.Add(s.opt.LeaseTTL), 0, chunk
	j.SetState(i, Running)
	s.running[FrameKey{j.ID, f.ID}] = struct{}{}
	return Grant{Job: j, Idx: i, Epoch: f.Epoch, Chunk: chunk}
}

// otherWorker reports whether a live worker other than w satisfies ok.
func (s *Scheduler) otherWorker(now time.Time, w string, ok func(string) bool) bool {
	for v, wk := range s.workers {
		if v != w && s.Live(wk, now) && ok(v) {
			return true
		}
	}
	return false
}

// OtherCapable reports whether a live worker other than w has a backend
// some frame of j needs.
func (s *Scheduler) OtherCapable(now time.Time, j *Job, w string) bool {
	for v, wk := range s.workers {
		if v == w || !s.Live(wk, now) {
			continue
		}
		for _, r := range j.Reqs {
			if wk.Can(r) {
				return true
			}
		}
	}
	return false
}

// Held reports whether frame i of j is running under the lease of worker
// and epoch: a lease that is not (canceled, re-leased, or of an earlier
// incarnation) is fenced off.
func (s *Scheduler) Held(j *Job, i int32, worker string, epoch uint64) bool {
	f := &j.Frames[i]
	return f.State == Running && f.Epoch == epoch && f.Worker == worker
}

// Extend renews the lease of running frame i of j at now, with the
// worker's progress (clamped to 0..1).
func (s *Scheduler) Extend(now time.Time, j *Job, i int32, progress float64) {
	f := &j.Frames[i]
	f.Expires = now.Add(s.opt.LeaseTTL)
	f.Progress = min(max(progress, 0), 1)
}

// Complete makes running frame i of j done: its dependents' counters go
// down, and those with none left become ready.
func (s *Scheduler) Complete(j *Job, i int32) {
	f := &j.Frames[i]
	f.Attempts++
	f.Err = ""
	delete(s.running, FrameKey{j.ID, f.ID})
	s.done(j, i)
}

// done makes frame i of j done and readies the dependents it was the last
// unmet dependency of.
func (s *Scheduler) done(j *Job, i int32) {
	f := &j.Frames[i]
	j.SetState(i, Done)
	for _, d := range f.Dependents {
		df := &d.Job.Frames[d.Idx]
		if df.State != Done { // unmet counters are kept for every frame not done
			df.Unmet--
			if df.Unmet == 0 && df.State == Waiting {
				d.Job.SetState(d.Idx, Ready)
				s.woke = true
			}
		}
	}
}

// Release gives running frame i of j back unattempted: it is placed again,
// with no attempt counted.
func (s *Scheduler) Release(j *Job, i int32) {
	f := &j.Frames[i]
	f.Epoch, f.Worker = 0, ""
	delete(s.running, FrameKey{j.ID, f.ID})
	s.place(Ref{j, i})
}

// Outcome is what a failed attempt of a frame comes to.
type Outcome struct {
	Attempts, Lost int
	Err            string
	Failed         bool // the frame fails; else it is retried
}

// Attempt decides the outcome of a failed attempt of running frame i of j
// with message msg, without changing anything: final fails it at once; a
// lost attempt (its lease expired) counts against MaxLostLeases, not
// against the job's <retries>.
func (s *Scheduler) Attempt(j *Job, i int32, msg string, final, lost bool) Outcome {
	f := &j.Frames[i]
	o := Outcome{Attempts: f.Attempts + 1, Lost: int(f.Lost), Err: msg}
	if lost {
		o.Lost++
		if o.Lost > MaxLostLeases {
			final = true
			o.Err = fmt.Sprintf("%s; the frame lost its lease %d times (it may be what stops its workers)", msg, o.Lost)
		}
	}
	o.Failed = o.Attempts-o.Lost > j.M.Retries || final
	return o
}

// Fail applies outcome o (Attempt) to frame i of j: its lease ends, the
// worker is noted so that a retry prefers another, and the frame fails —
// blocking the frames waiting for it — or is placed again.
func (s *Scheduler) Fail(j *Job, i int32, o Outcome) {
	f := &j.Frames[i]
	f.Attempts, f.Lost, f.Err = o.Attempts, uint8(o.Lost), o.Err
	if !slices.Contains(f.FailedOn, f.Worker) {
		f.FailedOn = append(f.FailedOn, f.Worker)
	}
	f.Epoch = 0
	delete(s.running, FrameKey{j.ID, f.ID})
	if o.Failed {
		j.SetState(i, Failed)
		j.NoteError(i)
		s.markBad(Ref{j, i}) // the frames waiting for it cannot run
	} else {
		s.place(Ref{j, i})
	}
	s.woke = true
}

// Expired lists the running frames whose leases ran out at now.
func (s *Scheduler) Expired(now time.Time) []Ref {
	var out []Ref
	for k := range s.running {
		j := s.jobs[k.Job]
		i, _ := j.FrameIndex(k.Frame)
		if !now.Before(j.Frames[i].Expires) {
			out = append(out, Ref{j, i})
		}
	}
	return out
}

// Forget drops the workers not heard from for ten lease periods before now.
func (s *Scheduler) Forget(now time.Time) {
	for w, wk := range s.workers {
		if now.Sub(wk.Seen) > 10*s.opt.LeaseTTL {
			delete(s.workers, w)
		}
	}
}

// Cancelable lists the frames of j that have not ended, but for those of
// chunk (if not 0) leased to worker.
func (s *Scheduler) Cancelable(j *Job, chunk uint64, worker string) []int32 {
	var out []int32
	for i := range j.Frames {
		switch f := &j.Frames[i]; f.State {
		case Running:
			if chunk == 0 || f.Chunk != chunk || f.Worker != worker {
				out = append(out, int32(i))
			}
		case Ready, Waiting, Blocked:
			out = append(out, int32(i))
		}
	}
	return out
}

// Cancel cancels frames idx of j (their leases end); frames of other jobs
// waiting for them cannot run now.
func (s *Scheduler) Cancel(j *Job, idx []int32) {
	for _, i := range idx {
		f := &j.Frames[i]
		if f.State == Running {
			delete(s.running, FrameKey{j.ID, f.ID})
			f.Epoch = 0
		}
		delete(j.blocked, i)
		j.SetState(i, Canceled)
	}
	for _, i := range idx {
		s.markBad(Ref{j, i})
	}
	j.FixError()
}

// Retry puts frames idx of j back: failed and done ones start their
// attempts again (the dependents of a done one wait for its new output),
// canceled ones keep theirs. The worker failures of j are forgotten. Frames
// that could not run because of them wait again, in any job.
func (s *Scheduler) Retry(j *Job, idx []int32) {
	back := make([]Ref, 0, len(idx))
	for _, i := range idx {
		f := &j.Frames[i]
		switch f.State {
		case Canceled:
			// Attempts kept.
		case Done, Failed:
			if f.State == Done {
				for _, d := range f.Dependents {
					df := &d.Job.Frames[d.Idx]
					if df.State != Done {
						df.Unmet++
						if df.State == Ready {
							d.Job.SetState(d.Idx, Waiting)
						}
					}
				}
			}
			f.Attempts, f.Lost, f.Err, f.FailedOn = 0, 0, "", nil
		default:
			continue
		}
		j.SetState(i, Waiting) // placed below
		back = append(back, Ref{j, i})
	}
	clear(j.Failures)
	for _, r := range back {
		s.recount(j, r.Idx)
	}
	s.putBack(back)
	j.FixError()
	s.addActive(j)
	s.woke = true
}

// LiveWorkers counts the workers heard from within a lease period before now.
func (s *Scheduler) LiveWorkers(now time.Time) int {
	n := 0
	for _, w := range s.workers {
		if s.Live(w, now) {
			n++
		}
	}
	return n
}

// Unplaceable returns the requirements of j's ready frames that no live
// worker meets at now, and how many ready frames need them.
func (s *Scheduler) Unplaceable(now time.Time, j *Job) (missing []string, frames int) {
	for r, req := range j.Reqs {
		if j.readyN[r] == 0 {
			continue
		}
		capable := false
		for _, w := range s.workers {
			if s.Live(w, now) && w.Can(req) {
				capable = true
				break
			}
		}
		if !capable {
			missing = append(missing, req.String())
			frames += j.readyN[r]
		}
	}
	return missing, frames
}
