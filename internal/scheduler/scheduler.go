// Package scheduler owns the farm's scheduling decisions as pure logic over
// state and an explicit clock: the dependency counters that make frames
// ready, the ready queues ordered by priority, deadline and submission, the
// placement of frames on the workers whose backends can render them, chunks
// of consecutive frames, leases with their expiry and fencing epochs,
// retries and lost leases, the blocklist of workers that keep failing a
// job, and the frames that cannot run because a frame they depend on failed
// or was canceled.
//
// It has no goroutines, no store, no transport and no wall clock: every
// operation that needs the time is given it (now), and every decision is a
// change of the in-memory state that the caller — the session's dispatcher
// — makes durable. The caller serializes calls.
package scheduler

import (
	"fmt"
	"slices"
	"time"

	"github.com/distren/distren/internal/durl"
	"github.com/distren/distren/internal/manifest"
)

// MaxLostLeases is how many times a frame may lose its lease — its worker
// vanished, or could not be heard from for a lease — before it fails. Lost
// leases do not count against the job's retries (a network partition says
// nothing about the frame), but a frame that loses lease after lease may be
// what kills its workers.
const MaxLostLeases = 10

// Clock tells the time. The session reads it once per command and hands the
// time to the scheduler.
type Clock interface {
	Now() time.Time
}

// WallClock is the system's clock.
type WallClock struct{}

// Now returns the current time.
func (WallClock) Now() time.Time { return time.Now() }

// Options configure a scheduler.
type Options struct {
	Name           string        // the server's name, for cross-job dependencies
	LeaseTTL       time.Duration // lease length; heartbeats extend it
	BlocklistAfter int           // failed attempts after which a worker stops getting a job's frames
	// Chunks reports whether a backend renders a range of frames in one
	// task; nil means none does. A job's <chunk> applies only to those.
	Chunks func(backend string) bool
	// Peers are the servers whose frames this server's frames may depend
	// on (remote.go).
	Peers []string
}

// FrameKey names a frame of any job.
type FrameKey struct{ Job, Frame int64 }

// Scheduler holds the jobs, workers and leases, and decides.
type Scheduler struct {
	opt      Options
	jobs     map[int64]*Job
	active   []*Job // jobs that may have ready frames, in scheduling order
	running  map[FrameKey]struct{}
	workers  map[string]*Worker // by name
	boot     int64
	epochSeq uint64
	woke     bool // frames became ready since Woke was last called
	// remote holds the frames of other servers that frames here depend
	// on, one stand-in job per job there (remote.go).
	remote     map[remoteKey]*Job
	nextRemote int64
	// changed lists the jobs whose frames changed state since
	// TakeChanged was last called.
	changed []*Job
}

// New returns an empty scheduler. Options must be complete (LeaseTTL and
// BlocklistAfter above zero).
func New(opt Options) *Scheduler {
	return &Scheduler{opt: opt, jobs: map[int64]*Job{}, running: map[FrameKey]struct{}{}, workers: map[string]*Worker{},
		remote: map[remoteKey]*Job{}}
}

// LeaseTTL returns the lease length.
func (s *Scheduler) LeaseTTL() time.Duration { return s.opt.LeaseTTL }

// SetBoot sets the server's incarnation, the high half of every epoch
// issued from now on.
func (s *Scheduler) SetBoot(boot int64) { s.boot = boot }

// Reset drops every job and lease, keeping the workers and the epoch
// sequence: the state is about to be rebuilt from what is durable.
func (s *Scheduler) Reset() {
	s.jobs = map[int64]*Job{}
	s.active = s.active[:0]
	s.running = map[FrameKey]struct{}{}
	s.remote = map[remoteKey]*Job{}
	s.changed = s.changed[:0]
}

// Woke reports whether frames became ready since it was last called.
func (s *Scheduler) Woke() bool {
	w := s.woke
	s.woke = false
	return w
}

// Job returns the job of the given id, or nil.
func (s *Scheduler) Job(id int64) *Job { return s.jobs[id] }

// Workers returns the workers by name, for reading.
func (s *Scheduler) Workers() map[string]*Worker { return s.workers }

// Running returns the frames leased, for reading.
func (s *Scheduler) Running() map[FrameKey]struct{} { return s.running }

// Live reports whether w was heard from within a lease period before now.
func (s *Scheduler) Live(w *Worker, now time.Time) bool { return now.Sub(w.Seen) < s.opt.LeaseTTL }

// Seen records that worker w was heard from at now.
func (s *Scheduler) Seen(now time.Time, w string) *Worker {
	wk := s.workers[w]
	if wk == nil {
		wk = &Worker{}
		s.workers[w] = wk
	}
	wk.Seen = now
	return wk
}

// Resolve finds the frame that dependency d of a frame of j names.
func (s *Scheduler) Resolve(j *Job, d manifest.Dep) (*Job, int32, error) {
	t := j
	if !d.Local() {
		if d.Server != s.opt.Name {
			return s.resolveRemote(d)
		}
		if t = s.jobs[d.Job]; t == nil || d.Job == j.ID {
			return nil, 0, fmt.Errorf("depends on %s: job %d does not exist", durl.Frame(d.Server, d.Job, d.Frame), d.Job)
		}
	}
	i, ok := t.FrameIndex(d.Frame)
	if !ok {
		return nil, 0, fmt.Errorf("depends on %s: job %d has no frame %d", durl.Frame(s.opt.Name, t.ID, d.Frame), t.ID, d.Frame)
	}
	return t, i, nil
}

// Check reports the first dependency of j that does not resolve, naming
// its frame; j is not added.
func (s *Scheduler) Check(j *Job) error {
	for i := range j.M.Frames {
		for _, d := range j.M.Frames[i].Deps {
			if _, _, err := s.Resolve(j, d); err != nil {
				return fmt.Errorf("frame %d: %w", j.Frames[i].ID, err)
			}
		}
	}
	return nil
}

// Submit adds a new job whose dependencies resolve (Check): frames with no
// unmet dependency are ready, and a frame that depends on a failed or
// canceled frame of another job is blocked at once rather than wait forever.
func (s *Scheduler) Submit(j *Job) error {
	s.jobs[j.ID] = j
	j.sched = s
	if err := s.link(j); err != nil {
		delete(s.jobs, j.ID)
		return err
	}
	for i := range j.Frames {
		if j.Frames[i].State != Waiting {
			continue
		}
		if b, ok := s.badDep(j, int32(i)); ok {
			s.block(Ref{j, int32(i)}, s.RootOf(b))
			s.markBad(Ref{j, int32(i)})
		}
	}
	s.addActive(j)
	s.woke = true
	return nil
}

// Add adds a job being restored from the store, its frames' stored states
// set already (Job.SetState); Restore links them once all are added.
func (s *Scheduler) Add(j *Job) {
	s.jobs[j.ID] = j
	j.sched = s
}

// Restore links the jobs added (in the order given, by id) with the frames
// they depend on, makes frames with no unmet dependency ready and blocks
// those that wait for a failed or canceled frame: that is derived, not
// stored.
func (s *Scheduler) Restore(order []*Job) error {
	for _, j := range order {
		if err := s.link(j); err != nil {
			return fmt.Errorf("stored job %d: %w", j.ID, err)
		}
		s.addActive(j)
	}
	for _, j := range order {
		for i := range j.Frames {
			if isRoot(Ref{j, int32(i)}) {
				s.markBad(Ref{j, int32(i)})
			}
		}
	}
	for _, j := range order {
		j.FixError()
	}
	s.woke = true
	return nil
}

// Remove drops job j: its leases end, and frames of other jobs no longer
// count it among their dependents.
func (s *Scheduler) Remove(j *Job) {
	for i := range j.Frames {
		delete(s.running, FrameKey{j.ID, j.Frames[i].ID})
	}
	for i := range j.Frames { // frames of this job waiting on other jobs
		for _, d := range j.M.Frames[i].Deps {
			if t, ti, err := s.Resolve(j, d); err == nil && t != j {
				tf := &t.Frames[ti]
				tf.Dependents = slices.DeleteFunc(tf.Dependents, func(r Ref) bool { return r.Job == j })
			}
		}
	}
	delete(s.jobs, j.ID)
	s.active = slices.DeleteFunc(s.active, func(a *Job) bool { return a == j })
}

// link registers each frame with the frames it depends on (done frames too:
// a retry may render them again), counts the unmet dependencies of those not
// done, and makes waiting frames with none ready.
func (s *Scheduler) link(j *Job) error {
	for i := range j.M.Frames {
		f := &j.Frames[i]
		for _, d := range j.M.Frames[i].Deps {
			t, ti, err := s.Resolve(j, d)
			if err != nil {
				return fmt.Errorf("frame %d: %w", f.ID, err)
			}
			t.Frames[ti].Dependents = append(t.Frames[ti].Dependents, Ref{j, int32(i)})
			if f.State != Done && t.Frames[ti].State != Done {
				f.Unmet++
			}
		}
	}
	for i := range j.Frames {
		if j.Frames[i].State == Waiting && j.Frames[i].Unmet == 0 {
			j.SetState(int32(i), Ready)
		}
	}
	return nil
}

// Activate puts j back in the list of jobs that may have ready frames.
func (s *Scheduler) Activate(j *Job) { s.addActive(j) }

func (s *Scheduler) addActive(j *Job) {
	if slices.Contains(s.active, j) {
		return
	}
	i, _ := slices.BinarySearchFunc(s.active, j, func(a, b *Job) int {
		if a.less(b) {
			return -1
		}
		if b.less(a) {
			return 1
		}
		return 0
	})
	s.active = slices.Insert(s.active, i, j)
}

func (s *Scheduler) nextEpoch() uint64 {
	s.epochSeq++
	return uint64(s.boot)<<32 | s.epochSeq&0xffffffff
}
