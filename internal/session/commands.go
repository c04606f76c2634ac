package session

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/scheduler"
	"github.com/distren/distren/internal/store"
)

// Submission is a validated job ready to be recorded.
type Submission struct {
	Manifest *manifest.Manifest
	Raw      []byte     // the manifest as submitted
	Inputs   []cdc.File // the package's files but the manifest, stored in the vault, sorted by path
	// MaxFramesHeld refuses the job (ErrTooManyFrames) if the session would
	// then hold more frames, in all its jobs; 0: no limit.
	MaxFramesHeld int64
}

// Submit records a job and returns its summary. The job id is issued when the
// job is durable and never again.
func (s *Session) Submit(ctx context.Context, sub Submission) (Submitted, error) {
	inputs, err := encodeInputs(sub.Inputs)
	if err != nil {
		return Submitted{}, err
	}
	r, err := s.do(ctx, func(tx store.Tx) (any, error) {
		if err := s.checkHeld(sub.Manifest.Name, len(sub.Manifest.Frames), sub.MaxFramesHeld); err != nil {
			return nil, err
		}
		rec := store.Job{
			ID: s.nextJob, Name: sub.Manifest.Name, Submitted: s.clock.Now().UTC(),
			Manifest: sub.Raw, Inputs: inputs, NextFile: int64(len(sub.Inputs)) + 1,
		}
		j := newJob(rec, sub.Manifest, sub.Inputs)
		// Check cross-job dependencies before touching anything.
		if err := s.sched.Check(j.Job); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if err := tx.SetCounter("next_job", s.nextJob+1); err != nil {
			return nil, err
		}
		if err := tx.AddJob(&j.rec); err != nil {
			return nil, err
		}
		s.nextJob++
		s.jobs[rec.ID] = j
		// Frames with no unmet dependency are ready; a frame that depends
		// on a failed or canceled frame of another job cannot run: the job
		// fails at once rather than wait forever.
		if err := s.sched.Submit(j.Job); err != nil { // cannot fail: dependencies resolved above
			return nil, err
		}
		s.touched = append(s.touched, rec.ID)
		s.remoteNew = s.remoteNew || len(s.opt.Peers) > 0
		return Submitted{ID: rec.ID, URL: jobURL(s.name, rec.ID), Name: rec.Name, Frames: len(j.Frames)}, nil
	})
	if err != nil {
		return Submitted{}, err
	}
	return r.(Submitted), nil
}

// ReadySignal returns a channel closed when frames next become ready. Take it
// before a Claim that found nothing, then wait on it.
func (s *Session) ReadySignal() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.readyCh
}

// Claim leases up to req.Max ready frames to req.Worker, at once: it does not
// wait (see ClaimWait). Leases are not durable: after a restart every running
// frame is ready again and the new incarnation's epochs refuse old leases.
func (s *Session) Claim(ctx context.Context, req ClaimRequest) ([]Lease, error) {
	if req.Worker == "" {
		return nil, fmt.Errorf("%w: claim without a worker name", ErrInvalid)
	}
	r, err := s.do(ctx, func(store.Tx) (any, error) { return s.claim(req), nil })
	if err != nil {
		return nil, err
	}
	return r.([]Lease), nil
}

// ClaimWait claims, waiting up to wait for frames to become ready.
func (s *Session) ClaimWait(ctx context.Context, req ClaimRequest, wait time.Duration) ([]Lease, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	t0 := time.Now()
	for {
		sig := s.ReadySignal()
		leases, err := s.Claim(ctx, req)
		if err == nil && len(leases) > 0 {
			s.opt.Observer.Claimed(len(leases), time.Since(t0))
		}
		if err != nil || len(leases) > 0 {
			return leases, err
		}
		select {
		case <-sig:
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.stop:
			return nil, ErrClosed
		}
	}
}

func (s *Session) claim(req ClaimRequest) []Lease {
	grants := s.sched.Claim(s.clock.Now(), req.Worker, req.Backends, req.Max)
	var out []Lease
	for _, g := range grants {
		l := s.lease(s.jobs[g.Job.ID], g.Idx)
		l.Chunk = g.Chunk
		out = append(out, l)
	}
	return out
}

func (s *Session) lease(j *job, i int32) Lease {
	f := &j.Frames[i]
	l := Lease{Job: j.rec.ID, Frame: f.ID, Epoch: f.Epoch, TTL: s.opt.LeaseTTL}
	for _, d := range j.m.Frames[i].Deps {
		t, ti, err := s.sched.Resolve(j.Job, d)
		if err != nil {
			continue // resolved at submit; jobs are not deleted while depended on
		}
		if t.Remote != "" { // a peer's frame, its output fetched here
			r, o := s.remoteOut(t, ti)
			l.Deps = append(l.Deps, DepOutput{Job: r.Job, Frame: r.Frame, Output: o.output, Size: o.size})
			continue
		}
		o := &s.jobs[t.ID].outs[ti]
		l.Deps = append(l.Deps, DepOutput{Job: t.ID, Frame: t.Frames[ti].ID, Output: o.output, Size: o.size})
	}
	return l
}

// held finds the running frame a lease names, if the lease is still current.
func (s *Session) held(worker string, jobID, frameID int64, epoch uint64) (*job, int32, error) {
	j := s.jobs[jobID]
	if j == nil {
		return nil, 0, fmt.Errorf("job %d: %w", jobID, ErrNotFound)
	}
	i, ok := j.FrameIndex(frameID)
	if !ok {
		return nil, 0, fmt.Errorf("job %d has no frame %d: %w", jobID, frameID, ErrNotFound)
	}
	if !s.sched.Held(j.Job, i, worker, epoch) {
		return nil, 0, fmt.Errorf("frame %s, epoch %d, worker %q: %w (the frame was canceled, re-leased or the server restarted)",
			frameURL(s.name, jobID, frameID), epoch, worker, ErrStaleLease)
	}
	return j, i, nil
}

// CheckLease reports whether worker holds the lease, without changing anything.
func (s *Session) CheckLease(worker string, job, frame int64, epoch uint64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, _, err := s.held(worker, job, frame, epoch)
	return err
}

// Heartbeat extends the worker's current leases and returns those it must abandon.
func (s *Session) Heartbeat(ctx context.Context, hb Heartbeat) (HeartbeatResponse, error) {
	r, err := s.do(ctx, func(store.Tx) (any, error) {
		now := s.clock.Now()
		s.sched.Seen(now, hb.Worker)
		var resp HeartbeatResponse
		for _, l := range hb.Leases {
			j, i, err := s.held(hb.Worker, l.Job, l.Frame, l.Epoch)
			if err != nil {
				resp.Stop = append(resp.Stop, l.LeaseRef)
				continue
			}
			s.sched.Extend(now, j.Job, i, l.Progress)
		}
		return resp, nil
	})
	if err != nil {
		return HeartbeatResponse{}, err
	}
	return r.(HeartbeatResponse), nil
}

// OutFile is one file of a frame's output tarball.
type OutFile struct {
	Path string
	Size int64
}

// Completion reports a rendered frame whose output is already stored.
type Completion struct {
	Worker string
	Job    int64
	Frame  int64
	Epoch  uint64
	Output string // vault name of the output tarball
	Size   int64
	Files  []OutFile
	Render time.Duration
}

// Complete records a frame as done. A stale lease is refused with ErrStaleLease,
// so a frame is never completed twice.
func (s *Session) Complete(ctx context.Context, c Completion) error {
	_, err := s.do(ctx, func(tx store.Tx) (any, error) {
		j, i, err := s.held(c.Worker, c.Job, c.Frame, c.Epoch)
		if err != nil {
			return nil, err
		}
		f := &j.Frames[i]
		files := make([]store.File, len(c.Files))
		nums := make([]int64, len(c.Files))
		for k, of := range c.Files {
			nums[k] = j.rec.NextFile + int64(k)
			files[k] = store.File{Job: j.rec.ID, N: nums[k], Frame: f.ID, Path: of.Path, Size: of.Size, Tar: c.Output}
		}
		rec := store.Frame{Job: j.rec.ID, ID: f.ID, State: store.FrameDone, Attempts: f.Attempts + 1, Worker: c.Worker,
			Output: c.Output, Size: c.Size, Render: c.Render, Finished: s.clock.Now().UTC()}
		if err := tx.PutFrame(&rec); err != nil {
			return nil, err
		}
		if len(files) > 0 {
			// The job's row is not written: its next file number follows
			// from the files stored, when the state is loaded (session.go).
			if err := tx.PutFiles(files); err != nil {
				return nil, err
			}
		}
		j.rec.NextFile += int64(len(files))
		j.files = append(j.files, files...)
		j.nameOutputs()
		j.outs[i] = frameOut{output: c.Output, size: c.Size, render: c.Render, files: nums}
		s.sched.Complete(j.Job, i)
		s.opt.Observer.Rendered(j.Spec(i).Name, c.Render)
		return nil, nil
	})
	return err
}

// MaxLostLeases is how many times a frame may lose its lease — its worker
// vanished, or could not be heard from for a lease — before it fails. Lost
// leases do not count against the job's retries (a network partition says
// nothing about the frame), but a frame that loses lease after lease may be
// what kills its workers.
const MaxLostLeases = scheduler.MaxLostLeases

// Fail records a failed attempt: the frame is retried, preferably on another
// worker, until the job's retry limit, then fails. A jobError (the job is at
// fault: its scene does not parse, say) fails the frame at once and stops
// the job: its unfinished frames are canceled and it is failed, saying why.
// So does a failure that completes the evidence that the job is at fault
// (suspectFailure).
func (s *Session) Fail(ctx context.Context, worker string, jobID, frameID int64, epoch uint64, msg string, jobError bool) error {
	_, err := s.do(ctx, func(tx store.Tx) (any, error) {
		j, i, err := s.held(worker, jobID, frameID, epoch)
		if err != nil {
			return nil, err
		}
		f := &j.Frames[i]
		chunk, w := f.Chunk, f.Worker
		if jobError { // the machine is not to blame
			if err := s.failAttempt(tx, j, i, msg, true, false); err != nil {
				return nil, err
			}
			return nil, s.stopJob(tx, j, s.jobFault(j, i, msg), chunk, w)
		}
		if err := tx.AddFailure(jobID, worker); err != nil {
			return nil, err
		}
		j.failures[worker]++
		if err := s.failAttempt(tx, j, i, msg, false, false); err != nil {
			return nil, err
		}
		if reason := s.suspectFailure(j, i, worker, msg); reason != nil {
			return nil, s.stopJob(tx, j, reason, chunk, w)
		}
		return nil, nil
	})
	return err
}

// Release gives a leased frame back unattempted (its chunk stopped at an
// earlier frame): it is ready again, with no attempt counted against it or
// the worker. Nothing durable changes.
func (s *Session) Release(ctx context.Context, worker string, jobID, frameID int64, epoch uint64) error {
	_, err := s.do(ctx, func(store.Tx) (any, error) {
		j, i, err := s.held(worker, jobID, frameID, epoch)
		if err != nil {
			return nil, err
		}
		s.sched.Release(j.Job, i)
		return nil, nil
	})
	return err
}

func (s *Session) failAttempt(tx store.Tx, j *job, i int32, msg string, final, lost bool) error {
	f := &j.Frames[i]
	o := s.sched.Attempt(j.Job, i, msg, final, lost)
	rec := store.Frame{Job: j.rec.ID, ID: f.ID, State: store.FramePending, Attempts: o.Attempts, Lost: o.Lost,
		Worker: f.Worker, Error: o.Err, Finished: s.clock.Now().UTC()}
	if o.Failed {
		rec.State = store.FrameFailed
	}
	if err := tx.PutFrame(&rec); err != nil {
		return err
	}
	s.sched.Fail(j.Job, i, o)
	return nil
}

// expire requeues frames whose leases ran out: their workers are lost.
func (s *Session) expire(ctx context.Context) error {
	_, err := s.do(ctx, func(tx store.Tx) (any, error) {
		now := s.clock.Now()
		expired := s.sched.Expired(now)
		if len(expired) > 0 {
			s.opt.Observer.Expired(len(expired))
		}
		for _, r := range expired {
			j, i := s.jobs[r.Job.ID], r.Idx
			msg := fmt.Sprintf("lease expired: no word from worker %q for %s", j.Frames[i].Worker, s.opt.LeaseTTL)
			if err := s.failAttempt(tx, j, i, msg, false, true); err != nil {
				return nil, err
			}
		}
		s.sched.Forget(now)
		return nil, nil
	})
	return err
}

func (s *Session) expireLoop() {
	t := time.NewTicker(max(s.opt.LeaseTTL/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.expire(context.Background()) // failures are retried on the next tick
		case <-s.stop:
			return
		}
	}
}

// Cancel stops a job: its frames that have not ended are canceled — ready
// and waiting ones withdrawn, running ones abandoned (their workers learn it
// at their next heartbeat). Frames of other jobs that wait for them cannot
// run. Returns the frames canceled; a job that has ended is left as it is.
func (s *Session) Cancel(ctx context.Context, jobID int64) (int, error) {
	r, err := s.do(ctx, func(tx store.Tx) (any, error) {
		j := s.jobs[jobID]
		if j == nil {
			return 0, fmt.Errorf("job %d: %w", jobID, ErrNotFound)
		}
		if j.Unfinished() == 0 {
			return 0, nil
		}
		upd := j.rec
		upd.Canceled, upd.Back = true, ""
		if err := tx.UpdateJob(&upd); err != nil {
			return 0, err
		}
		j.setRec(upd)
		j.Back = nil
		idx := s.sched.Cancelable(j.Job, 0, "")
		s.sched.Cancel(j.Job, idx)
		return len(idx), nil
	})
	if err != nil {
		return 0, err
	}
	return r.(int), nil
}

// Retry renders frames again. With no ranges: every failed and every
// canceled frame. With ranges: the frames they name that are failed,
// canceled, or done (done frames are rendered again; frames that depend on
// them and have not started wait for the new output); the job's other
// canceled frames stay canceled. Failed frames start their attempts again;
// canceled ones keep theirs. Frames that could not run because of the
// frames put back wait again, in any job. A job whose only unfinished
// frames wait for a failed or canceled frame of another job has nothing to
// retry itself: that is an ErrInvalid naming the frame to retry instead.
func (s *Session) Retry(ctx context.Context, jobID int64, ranges []manifest.Range) (int, error) {
	r, err := s.do(ctx, func(tx store.Tx) (any, error) {
		j := s.jobs[jobID]
		if j == nil {
			return 0, fmt.Errorf("job %d: %w", jobID, ErrNotFound)
		}
		named := func(id int64) bool { return ranges == nil || manifest.Contains(ranges, id) }
		found, n, stuck := false, 0, int32(-1)
		// Frames blocked by a peer's frame that failed or was canceled
		// there: that frame is asked of the peer again (it may have been
		// retried there), and they wait for its answer.
		remote, nRemote := map[frameRef]bool{}, 0
		for i := range j.Frames {
			f := &j.Frames[i]
			if !named(f.ID) {
				continue
			}
			found = true
			switch {
			case f.State == fsFailed, f.State == fsCanceled, f.State == fsDone && ranges != nil:
				n++
			case f.State == fsBlocked:
				if root := s.sched.RootOf(frameRef{Job: j.Job, Idx: int32(i)}); root.Job.Remote != "" {
					remote[root] = true
					nRemote++
				} else if stuck < 0 {
					stuck = int32(i)
				}
			}
		}
		if !found {
			return 0, fmt.Errorf("%w: job %d has no frame in the set given", ErrInvalid, jobID)
		}
		if n == 0 && nRemote == 0 && stuck >= 0 {
			root := s.sched.RootOf(frameRef{Job: j.Job, Idx: stuck})
			return 0, fmt.Errorf("%w: job %d has no failed or canceled frame to retry: its frame %d %s; retry that frame (distren retry %s --frames %d) and the frames waiting for it run again",
				ErrInvalid, jobID, j.Frames[stuck].ID, s.blockedMessage(j, stuck), jobURL(s.name, root.Job.ID), root.Job.Frames[root.Idx].ID)
		}
		upd := j.rec
		switch {
		case ranges == nil:
			upd.Canceled, upd.Stop, upd.Back = false, "", ""
		case j.inScope():
			upd.Back = manifest.FormatFrameSet(mergeRanges(j.Back, ranges))
		}
		if err := tx.UpdateJob(&upd); err != nil {
			return 0, err
		}
		if err := tx.ClearFailures(jobID); err != nil {
			return 0, err
		}
		var back []int32
		for i := range j.Frames {
			f := &j.Frames[i]
			if !named(f.ID) {
				continue
			}
			switch {
			case f.State == fsCanceled:
				// Back in the queue, attempts kept.
			case f.State == fsFailed, f.State == fsDone && ranges != nil:
				rec := store.Frame{Job: jobID, ID: f.ID, State: store.FramePending}
				if err := tx.PutFrame(&rec); err != nil {
					return 0, err
				}
				j.outs[i] = frameOut{}
			default:
				continue
			}
			back = append(back, int32(i))
		}
		j.setRec(upd)
		if ranges == nil {
			j.Back = nil
		} else if upd.Back != "" {
			j.Back = mergeRanges(j.Back, ranges)
		}
		j.suspect = nil
		s.sched.Retry(j.Job, back)
		for r := range remote {
			s.sched.RemoteRetry(r)
		}
		s.remoteNew = s.remoteNew || len(s.opt.Peers) > 0
		s.notify = true
		return len(back) + nRemote, nil
	})
	if err != nil {
		return 0, err
	}
	return r.(int), nil
}

// mergeRanges returns the union of a and b, sorted, with overlapping and
// adjacent ranges joined.
func mergeRanges(a, b []manifest.Range) []manifest.Range {
	all := slices.Concat(a, b)
	slices.SortFunc(all, func(x, y manifest.Range) int { return cmp.Compare(x.First, y.First) })
	var out []manifest.Range
	for _, r := range all {
		if k := len(out) - 1; k >= 0 && (r.First <= out[k].Last || out[k].Last < math.MaxInt64 && r.First == out[k].Last+1) {
			out[k].Last = max(out[k].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Pause stops (paused) or resumes giving out the job's frames: frames
// running finish, none starts while it is paused. A job that has ended is
// left as it is. It returns the job's summary.
func (s *Session) Pause(ctx context.Context, jobID int64, paused bool) (Job, error) {
	r, err := s.do(ctx, func(tx store.Tx) (any, error) {
		j := s.jobs[jobID]
		if j == nil {
			return Job{}, fmt.Errorf("job %d: %w", jobID, ErrNotFound)
		}
		if j.rec.Paused != paused && (!paused || !j.finished()) {
			upd := j.rec
			upd.Paused = paused
			if err := tx.UpdateJob(&upd); err != nil {
				return Job{}, err
			}
			s.sched.Pause(j.Job, paused)
			j.setRec(upd)
			s.touched = append(s.touched, jobID)
			if !paused {
				s.notify = true
			}
		}
		return s.jobInfo(j), nil
	})
	if err != nil {
		return Job{}, err
	}
	return r.(Job), nil
}

// SetPriority changes the job's priority (0..manifest.MaxPriority): its
// place among the jobs whose frames are given out.
func (s *Session) SetPriority(ctx context.Context, jobID int64, priority int) (Job, error) {
	if priority < 0 || priority > manifest.MaxPriority {
		return Job{}, fmt.Errorf("%w: priority %d: want 0 to %d", ErrInvalid, priority, manifest.MaxPriority)
	}
	r, err := s.do(ctx, func(tx store.Tx) (any, error) {
		j := s.jobs[jobID]
		if j == nil {
			return Job{}, fmt.Errorf("job %d: %w", jobID, ErrNotFound)
		}
		if j.m.Priority != priority {
			upd := j.rec
			upd.Priority = &priority
			if err := tx.UpdateJob(&upd); err != nil {
				return Job{}, err
			}
			s.sched.SetPriority(j.Job, priority)
			j.setRec(upd)
			s.touched = append(s.touched, jobID)
		}
		return s.jobInfo(j), nil
	})
	if err != nil {
		return Job{}, err
	}
	return r.(Job), nil
}
