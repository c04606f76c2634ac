package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/durl"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/scheduler"
	"github.com/distren/distren/internal/store"
)

// Errors the session returns, for errors.Is; the messages around them name
// the job, frame or lease at fault.
var (
	ErrNotFound   = errors.New("not found")
	ErrStaleLease = errors.New("lease is not held")
	ErrInvalid    = errors.New("invalid request")
	ErrClosed     = errors.New("session is closed")
	ErrNotSaved   = errors.New("state could not be saved")
)

// Options configure a session.
type Options struct {
	Name           string        // the server's name, for URLs and cross-job dependencies
	LeaseTTL       time.Duration // lease length; heartbeats extend it (default 30s)
	BlocklistAfter int           // failed attempts after which a worker stops getting a job's frames (default 3)
	MaxBatch       int           // commands grouped into one transaction at most (default 512)
	// Chunks reports whether a backend renders a range of frames in one
	// task; nil means none does. A job's <chunk> applies only to those.
	Chunks func(backend string) bool
	// Clock tells the time for leases, heartbeats and the times recorded;
	// nil means the wall clock. Lease expiry is checked every LeaseTTL/4 of
	// wall time against it.
	Clock scheduler.Clock
	// Peers are the servers whose frames the frames of this server's jobs
	// may depend on (remote.go).
	Peers []string
	// Observer, if set, is told what the session does (metrics).
	Observer Observer
}

// Observer is told what the session does, for metrics (internal/metrics).
// Its methods are called by the dispatcher or a claim's goroutine: they
// must return quickly and must not call the session.
type Observer interface {
	// Batch: a batch of commands applied, and its commit (0 if nothing
	// durable changed).
	Batch(commands int, commit time.Duration)
	// Claimed: a claim got frames after waiting so long for them.
	Claimed(frames int, waited time.Duration)
	// Expired: leases ran out.
	Expired(leases int)
	// Rendered: a frame completed, rendered by backend in so long (as the
	// worker measured it).
	Rendered(backend string, render time.Duration)
}

type noObserver struct{}

func (noObserver) Batch(int, time.Duration)       {}
func (noObserver) Claimed(int, time.Duration)     {}
func (noObserver) Expired(int)                    {}
func (noObserver) Rendered(string, time.Duration) {}

// Session is the farm's state. All changes go through its dispatcher.
type Session struct {
	opt   Options
	name  string
	store store.Store

	cmds   chan *command
	stop   chan struct{}
	done   chan struct{}
	closed sync.Once

	clock scheduler.Clock

	mu      sync.RWMutex // guards everything below; the dispatcher writes, readers read
	jobs    map[int64]*job
	sched   *scheduler.Scheduler // the scheduling state and decisions
	nextJob int64
	boot    int64
	readyCh chan struct{} // closed and replaced when frames become ready
	notify  bool          // the batch being applied made frames ready
	// remote holds what is known of the peers' frames that frames here
	// depend on (remote.go); remoteCh is closed and replaced when frames
	// here may have come to wait for more of them.
	remote    map[scheduler.RemoteFrame]frameOut
	remoteCh  chan struct{}
	remoteNew bool
	// feed is the next change to publish (changes.go); touched lists the
	// jobs changed by the batch being applied besides their frames'
	// states (submitted, deleted, canceled).
	feed    *Change
	recent  []*Change // the last KeepChanges published, oldest first
	touched []int64
	// stale, if set, is why memory may be ahead of the store: a commit
	// failed and reloading failed too. Commands are refused until a
	// reload succeeds.
	stale error
}

type command struct {
	apply func(tx store.Tx) (any, error)
	res   any
	err   error
	done  chan struct{}
}

// Open loads the state from st, records a new incarnation (so that leases of
// an earlier process are never mistaken for current ones) and starts the
// dispatcher. Frames that were running when the last process stopped are
// ready again; frames that completed stay complete.
func Open(ctx context.Context, st store.Store, opt Options) (*Session, error) {
	if opt.LeaseTTL <= 0 {
		opt.LeaseTTL = 30 * time.Second
	}
	if opt.BlocklistAfter <= 0 {
		opt.BlocklistAfter = 3
	}
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 512
	}
	if opt.Clock == nil {
		opt.Clock = scheduler.WallClock{}
	}
	if opt.Observer == nil {
		opt.Observer = noObserver{}
	}
	s := &Session{
		opt: opt, name: opt.Name, store: st, clock: opt.Clock,
		sched: scheduler.New(scheduler.Options{Name: opt.Name, LeaseTTL: opt.LeaseTTL,
			BlocklistAfter: opt.BlocklistAfter, Chunks: opt.Chunks, Peers: opt.Peers}),
		cmds: make(chan *command, 4096), stop: make(chan struct{}), done: make(chan struct{}),
		readyCh: make(chan struct{}), remote: map[scheduler.RemoteFrame]frameOut{}, remoteCh: make(chan struct{}),
		feed: newChange(1),
	}
	snap, err := st.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading state: %w", err)
	}
	if err := s.rebuild(snap); err != nil {
		return nil, err
	}
	s.boot = snap.Counters["boot"] + 1
	s.sched.SetBoot(s.boot)
	tx, err := st.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if err := tx.SetCounter("boot", s.boot); err != nil {
		tx.Rollback()
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	go s.dispatch()
	go s.expireLoop()
	return s, nil
}

// Close stops the dispatcher. Commands after Close fail with ErrClosed.
func (s *Session) Close() {
	s.closed.Do(func() { close(s.stop) })
	<-s.done
}

// Name returns the server name the session was opened with.
func (s *Session) Name() string { return s.name }

// do sends a command to the dispatcher and waits for its acknowledgement.
func (s *Session) do(ctx context.Context, apply func(tx store.Tx) (any, error)) (any, error) {
	c := &command{apply: apply, done: make(chan struct{})}
	select {
	case s.cmds <- c:
	case <-s.stop:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-s.done:
		return nil, ErrClosed
	}
	// Once queued, a command is applied even if ctx ends: its outcome must
	// not depend on whether the caller still listens.
}

// lazyTx begins the store transaction at its first write, so batches that
// change nothing durable (claims, heartbeats) cost no commit.
type lazyTx struct {
	s   *Session
	tx  store.Tx
	err error
}

func (l *lazyTx) get() store.Tx {
	if l.tx == nil && l.err == nil {
		l.tx, l.err = l.s.store.Begin(context.Background())
	}
	return l.tx
}

func (l *lazyTx) call(f func(store.Tx) error) error {
	if tx := l.get(); tx != nil && l.err == nil {
		l.err = f(tx)
	}
	return l.err
}

func (l *lazyTx) SetCounter(n string, v int64) error {
	return l.call(func(t store.Tx) error { return t.SetCounter(n, v) })
}
func (l *lazyTx) AddJob(j *store.Job) error {
	return l.call(func(t store.Tx) error { return t.AddJob(j) })
}
func (l *lazyTx) UpdateJob(j *store.Job) error {
	return l.call(func(t store.Tx) error { return t.UpdateJob(j) })
}
func (l *lazyTx) PutFrame(f *store.Frame) error {
	return l.call(func(t store.Tx) error { return t.PutFrame(f) })
}
func (l *lazyTx) PutFiles(f []store.File) error {
	return l.call(func(t store.Tx) error { return t.PutFiles(f) })
}
func (l *lazyTx) AddFailure(job int64, w string) error {
	return l.call(func(t store.Tx) error { return t.AddFailure(job, w) })
}
func (l *lazyTx) ClearFailures(job int64) error {
	return l.call(func(t store.Tx) error { return t.ClearFailures(job) })
}
func (l *lazyTx) Commit() error   { return errors.New("the dispatcher commits") }
func (l *lazyTx) Rollback() error { return errors.New("the dispatcher rolls back") }

// dispatch applies commands in order, grouping those that arrive while a
// commit is under way into the next transaction.
func (s *Session) dispatch() {
	defer close(s.done)
	batch := make([]*command, 0, s.opt.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case c := <-s.cmds:
			batch = append(batch, c)
		case <-s.stop:
			return
		}
	drain:
		for len(batch) < s.opt.MaxBatch {
			select {
			case c := <-s.cmds:
				batch = append(batch, c)
			default:
				break drain
			}
		}
		s.apply(batch)
	}
}

func (s *Session) apply(batch []*command) {
	if s.stale != nil && !s.reload(batch) {
		return
	}
	ltx := &lazyTx{s: s}
	// The lock is held until the batch is durable (or undone): no reader
	// sees a change the store may yet lose — a frame reported done must
	// stay done through a crash.
	s.mu.Lock()
	for _, c := range batch {
		c.res, c.err = c.apply(ltx)
		if ltx.err != nil {
			break
		}
	}
	notify := s.sched.Woke() || s.notify
	s.notify = false
	err := ltx.err
	var commit time.Duration
	if ltx.tx != nil {
		if err != nil {
			ltx.tx.Rollback()
		} else {
			t0 := time.Now()
			err = ltx.tx.Commit()
			commit = time.Since(t0)
		}
	}
	s.opt.Observer.Batch(len(batch), commit)
	if err != nil {
		// Memory is ahead of the store: rebuild it from what is durable and
		// fail every command of the batch. Nothing unsaved was acknowledged.
		if lerr := s.loadLocked(); lerr != nil {
			s.stale = fmt.Errorf("%w (and reloading failed: %v)", err, lerr)
			err = s.stale
		}
		for _, c := range batch {
			c.res, c.err = nil, fmt.Errorf("%w: %w", ErrNotSaved, err)
		}
		notify = true
	}
	if notify {
		close(s.readyCh)
		s.readyCh = make(chan struct{})
	}
	if s.remoteNew {
		s.remoteNew = false
		close(s.remoteCh)
		s.remoteCh = make(chan struct{})
	}
	if err == nil {
		s.publish()
	} else {
		s.sched.TakeChanged(nil)
		s.touched = s.touched[:0]
	}
	s.mu.Unlock()
	for _, c := range batch {
		close(c.done)
	}
}

// load replaces the in-memory state with what the store holds.
func (s *Session) load() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadLocked()
}

// loadLocked is load with s.mu held.
func (s *Session) loadLocked() error {
	snap, err := s.store.Load(context.Background())
	if err == nil {
		err = s.rebuild(snap)
	}
	return err
}

// reload tries again to bring memory back to the store after a failed
// reload; until it succeeds the batch is refused, so nothing is decided on
// unsaved state. It reports whether the batch may be applied.
func (s *Session) reload(batch []*command) bool {
	if err := s.load(); err != nil {
		for _, c := range batch {
			c.res, c.err = nil, fmt.Errorf("%w: %w; reloading the state store: %v", ErrNotSaved, s.stale, err)
			close(c.done)
		}
		return false
	}
	s.stale = nil
	s.mu.Lock()
	s.notify = true
	s.mu.Unlock()
	return true
}

// rebuild replaces the in-memory state with snap. Frames that were running
// are ready again.
func (s *Session) rebuild(snap *store.Snapshot) error {
	s.jobs = make(map[int64]*job, len(snap.Jobs))
	s.sched.Reset()
	s.remote = map[scheduler.RemoteFrame]frameOut{} // asked of the peers again
	s.remoteNew = true
	s.nextJob = max(snap.Counters["next_job"], 1)
	var order []*job
	for _, rec := range snap.Jobs {
		if rec.Deleted {
			continue
		}
		m, err := manifest.Parse(bytes.NewReader(rec.Manifest), fmt.Sprintf("job %d: %s", rec.ID, manifest.FileName),
			manifest.Options{MaxBytes: int64(len(rec.Manifest)) + 1, MaxFrames: 1 << 30})
		if err != nil {
			return fmt.Errorf("stored job %d no longer parses: %w", rec.ID, err)
		}
		inputs, err := decodeInputs(rec.Inputs)
		if err != nil {
			return fmt.Errorf("stored job %d: %w", rec.ID, err)
		}
		j := newJob(rec, m, inputs)
		if rec.Back != "" {
			if j.Back, err = manifest.ParseFrameSet(rec.Back); err != nil {
				return fmt.Errorf("stored job %d: its retried frames: %w", rec.ID, err)
			}
		}
		s.jobs[rec.ID] = j
		s.sched.Add(j.Job)
		order = append(order, j)
	}
	for _, fr := range snap.Frames {
		j := s.jobs[fr.Job]
		if j == nil {
			continue
		}
		i, ok := j.FrameIndex(fr.ID)
		if !ok {
			continue
		}
		f := &j.Frames[i]
		f.Attempts, f.Lost, f.Err, f.Worker = fr.Attempts, uint8(min(fr.Lost, MaxLostLeases+1)), fr.Error, fr.Worker
		switch fr.State {
		case store.FrameDone:
			o := &j.outs[i]
			o.output, o.size, o.render = fr.Output, fr.Size, fr.Render
			j.SetState(i, fsDone)
		case store.FrameFailed:
			j.SetState(i, fsFailed)
		}
	}
	// A canceled or stopped job's unfinished frames are canceled, but for
	// those retried since.
	for _, j := range order {
		if !j.inScope() {
			continue
		}
		for i := range j.Frames {
			if st := j.Frames[i].State; st == fsWaiting && !manifest.Contains(j.Back, j.Frames[i].ID) {
				j.SetState(int32(i), fsCanceled)
			}
		}
	}
	for _, fl := range snap.Files {
		if j := s.jobs[fl.Job]; j != nil {
			j.files = append(j.files, fl)
			// The next file number follows from the files issued: a
			// completion records its files, not the job (Complete).
			j.rec.NextFile = max(j.rec.NextFile, fl.N+1)
			if i, ok := j.FrameIndex(fl.Frame); ok && j.outs[i].output == fl.Tar {
				j.outs[i].files = append(j.outs[i].files, fl.N)
			}
		}
	}
	for _, j := range order {
		j.nameOutputs() // collide.go
	}
	for k, n := range snap.Failures {
		var id int64
		fmt.Sscan(k[0], &id)
		if j := s.jobs[id]; j != nil {
			j.failures[k[1]] = n
		}
	}
	// Dependencies, readiness, and the frames that cannot run because a
	// frame they wait for failed or was canceled: derived, not stored.
	sj := make([]*scheduler.Job, len(order))
	for k, j := range order {
		sj[k] = j.Job
	}
	if err := s.sched.Restore(sj); err != nil {
		return err
	}
	s.sched.TakeChanged(nil) // the state loaded is no change of the next batch's
	s.notify = true
	return nil
}

func newJob(rec store.Job, m *manifest.Manifest, inputs []cdc.File) *job {
	if rec.Priority != nil { // changed after submission
		m.Priority = *rec.Priority
	}
	sj := scheduler.NewJob(rec.ID, m)
	j := &job{Job: sj, m: m, inputs: inputs, outs: make([]frameOut, len(m.Frames)), failures: sj.Failures}
	j.setRec(rec)
	return j
}

func jobURL(server string, id int64) string      { return durl.Job(server, id) }
func frameURL(server string, id, f int64) string { return durl.Frame(server, id, f) }
