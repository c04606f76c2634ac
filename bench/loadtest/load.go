package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
)

// load is a set of simulated workers and the jobs they are given.
type load struct {
	o        options
	admin    *client.Client
	workers  int
	frames   int             // per job
	duration time.Duration   // of submitting; 0: one job
	gone     <-chan struct{} // closed if the server exits

	mu    sync.Mutex
	jobs  map[int64]*jobTrack
	order []*jobTrack   // appended by control, under mu
	regCh chan struct{} // closed and replaced when a job is registered

	claims, empty, frameDone, heartbeats atomic.Int64
	errs                                 errorLog
	problems                             problemLog
	ws                                   []*simWorker
	loadTime, drain                      time.Duration
}

// jobTrack is what the load test knows of a job it submitted.
type jobTrack struct {
	id        int64
	frames    int
	reported  []atomic.Int32 // completions acknowledged, by frame id - 1
	completed atomic.Int64
	checked   bool // verified done and deleted; control's own
}

func newLoad(o options, admin *client.Client, gone <-chan struct{}, workers, frames int, duration time.Duration) *load {
	return &load{o: o, admin: admin, gone: gone, workers: workers, frames: frames, duration: duration,
		jobs: map[int64]*jobTrack{}, regCh: make(chan struct{})}
}

// run submits jobs for the duration, waits for them to finish and checks
// them, then stops the workers.
func (l *load) run(ctx context.Context) error {
	stop, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg sync.WaitGroup
	for i := range l.workers {
		c, err := client.New(l.admin.Base())
		if err != nil {
			return err
		}
		w := &simWorker{name: fmt.Sprintf("load-%04d-of-%d", i, l.workers), c: c, l: l}
		l.ws = append(l.ws, w)
		wg.Go(func() { w.run(stop, ctx) })
	}
	start := time.Now()
	err := l.control(ctx, start)
	stopWorkers()
	wg.Wait()
	return err
}

// control submits jobs while the duration lasts and the queue runs low,
// checks and deletes the jobs that are done, and returns when every job
// submitted is.
func (l *load) control(ctx context.Context, start time.Time) error {
	submitted := 0
	var stopped time.Time
	for {
		loading := time.Since(start) < l.duration || submitted == 0
		if !loading && stopped.IsZero() {
			stopped = time.Now()
			l.loadTime = stopped.Sub(start)
		}
		js, err := l.admin.Jobs(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			l.errs.add("list jobs", err)
		}
		queued, open := 0, 0
		for _, j := range js {
			jt := l.job(j.ID)
			if jt == nil || jt.checked {
				continue
			}
			switch j.State {
			case api.JobDone:
				if err := l.finish(ctx, jt); err != nil {
					return err
				}
			case api.JobFailed, api.JobCanceled:
				l.problems.add("job %d is %s: %s", j.ID, j.State, j.Error)
				jt.checked = true
			default:
				open++
				queued += j.Counts[api.StateReady] + j.Counts[api.StateWaiting]
			}
		}
		if loading && queued < max(l.frames/2, 1) {
			if err := l.submit(ctx, submitted); err != nil {
				return err
			}
			submitted++
			continue
		}
		if !loading && open == 0 && l.allChecked() {
			l.drain = time.Since(stopped)
			return nil
		}
		if !loading && time.Since(stopped) > l.o.drainLimit {
			for _, jt := range l.order {
				if !jt.checked {
					l.problems.add("job %d: %d of %d frames reported done %s after the load ended", jt.id, jt.completed.Load(), jt.frames, l.o.drainLimit)
				}
			}
			l.drain = time.Since(stopped)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.gone:
			return errors.New("the server exited during the load")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// allChecked reports whether every job submitted is checked; for control.
func (l *load) allChecked() bool {
	for _, jt := range l.order {
		if !jt.checked {
			return false
		}
	}
	return true
}

// submit uploads a job of l.frames frames.
func (l *load) submit(ctx context.Context, n int) error {
	pkg, err := jobPackage(fmt.Sprintf("load-%d-of-%d", n, l.frames), l.frames)
	if err != nil {
		return err
	}
	sub, err := l.admin.Submit(ctx, bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		return fmt.Errorf("submitting a job: %w", err)
	}
	if sub.Frames != l.frames {
		return fmt.Errorf("job %d: %d frames submitted, the server counts %d", sub.ID, l.frames, sub.Frames)
	}
	jt := &jobTrack{id: sub.ID, frames: l.frames, reported: make([]atomic.Int32, l.frames)}
	l.mu.Lock()
	l.jobs[sub.ID] = jt
	l.order = append(l.order, jt)
	close(l.regCh)
	l.regCh = make(chan struct{})
	l.mu.Unlock()
	return nil
}

func (l *load) job(id int64) *jobTrack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.jobs[id]
}

// leased returns the job a lease names, waiting for its submission to
// return if the job's frames went out before (its id is known once Submit
// returns, but its frames are claimable as soon as it is durable).
func (l *load) leased(ctx context.Context, id int64) *jobTrack {
	deadline := time.After(30 * time.Second)
	for {
		l.mu.Lock()
		jt, ch := l.jobs[id], l.regCh
		l.mu.Unlock()
		if jt != nil {
			return jt
		}
		select {
		case <-ch:
		case <-deadline:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// finish checks a job the server reports done — every frame done, in one
// attempt, and reported done by exactly one worker — and deletes it.
func (l *load) finish(ctx context.Context, jt *jobTrack) error {
	// The server marks a frame done before its worker has the answer.
	for t0 := time.Now(); jt.completed.Load() < int64(jt.frames) && time.Since(t0) < 30*time.Second; {
		time.Sleep(10 * time.Millisecond)
	}
	frames, err := l.admin.Frames(ctx, jt.id, "")
	if err != nil {
		return fmt.Errorf("checking job %d: %w", jt.id, err)
	}
	if len(frames) != jt.frames {
		l.problems.add("job %d: the server lists %d frames, %d were submitted", jt.id, len(frames), jt.frames)
	}
	for _, f := range frames {
		switch {
		case f.ID < 1 || f.ID > int64(jt.frames):
			l.problems.add("job %d: the server lists frame %d, which was not submitted", jt.id, f.ID)
			continue
		case f.State != api.StateDone:
			l.problems.add("job %d frame %d: %s", jt.id, f.ID, f.State)
		case f.Attempts != 1:
			l.problems.add("job %d frame %d: done after %d attempts (a lease was lost: %s)", jt.id, f.ID, f.Attempts, f.Error)
		}
	}
	for i := range jt.reported {
		if n := jt.reported[i].Load(); n != 1 {
			l.problems.add("job %d frame %d: reported done %d times", jt.id, i+1, n)
		} else {
			l.frameDone.Add(1)
		}
	}
	if err := l.admin.Delete(ctx, jt.id); err != nil {
		return fmt.Errorf("deleting job %d: %w", jt.id, err)
	}
	jt.checked = true
	return nil
}

// fill adds the load's figures to the report.
func (l *load) fill(r *report) {
	r.Duration, r.Drain = l.loadTime, l.drain
	r.Jobs = len(l.order)
	r.FramesSubmitted = int64(len(l.order) * l.frames)
	r.FramesDone = l.frameDone.Load()
	r.Claims, r.EmptyClaims, r.Heartbeats = l.claims.Load(), l.empty.Load(), l.heartbeats.Load()
	var claim, empty, hb, out []time.Duration
	for _, w := range l.ws {
		claim = append(claim, w.claimLat...)
		empty = append(empty, w.emptyLat...)
		hb = append(hb, w.hbLat...)
		out = append(out, w.outLat...)
	}
	r.ClaimLat, r.EmptyLat, r.HeartbeatLat, r.OutputLat = summarize(claim), summarize(empty), summarize(hb), summarize(out)
	r.Errors += l.errs.n.Load()
	r.ErrorSamples = append(r.ErrorSamples, l.errs.samples()...)
	r.Problems = append(r.Problems, l.problems.list()...)
}

// simWorker is one simulated worker: a name and a connection.
type simWorker struct {
	name                              string
	c                                 *client.Client
	l                                 *load
	n                                 int // frames taken
	claimLat, emptyLat, hbLat, outLat []time.Duration
}

// backends is the simulated workers' fingerprint.
var backends = map[string]string{"builtin": "1 (loadtest)"}

// run claims and reports frames until stop ends. A frame once leased is
// reported under ctx, whatever stop does.
func (w *simWorker) run(stop, ctx context.Context) {
	req := api.ClaimRequest{Worker: w.name, Max: w.l.o.maxClaim, WaitMS: int(w.l.o.wait.Milliseconds()), Backends: backends}
	backoff := 50 * time.Millisecond
	for stop.Err() == nil {
		t0 := time.Now()
		resp, err := w.c.Claim(stop, req)
		took := time.Since(t0)
		if err != nil {
			if stop.Err() != nil {
				break
			}
			w.l.errs.add("claim", err)
			sleep(stop, backoff)
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		if len(resp.Leases) == 0 {
			w.emptyLat = append(w.emptyLat, took)
			w.l.empty.Add(1)
			continue
		}
		w.claimLat = append(w.claimLat, took)
		w.l.claims.Add(1)
		for _, le := range resp.Leases {
			w.frame(ctx, le)
		}
	}
	w.hangUp()
}

// hangUp leaves as a worker that is stopped does: in the middle of a claim,
// which cuts its connection. (A worker that saw stop between two requests
// would otherwise keep an idle connection, and the server its goroutine,
// until the idle timeouts.) Nothing is ready by now, so the claim waits
// until it is cut.
func (w *simWorker) hangUp() {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	resp, err := w.c.Claim(ctx, api.ClaimRequest{Worker: w.name, Max: 1, WaitMS: 30_000, Backends: backends})
	switch {
	case err == nil && len(resp.Leases) > 0:
		w.l.errs.add("claim", fmt.Errorf("%d frames leased after every job was done", len(resp.Leases)))
	case err != nil && !errors.Is(err, context.DeadlineExceeded):
		w.l.errs.add("claim", err)
	}
}

// frame reports a leased frame done, with a heartbeat first for the
// worker's first frame and every n-th after: a worker that renders a frame
// at all heartbeats, however the frames spread over the workers.
func (w *simWorker) frame(ctx context.Context, le api.Lease) {
	ref := api.LeaseRef{Job: le.Job, Frame: le.Frame, Epoch: le.Epoch}
	jt := w.l.leased(ctx, le.Job)
	if jt == nil || le.Frame < 1 || le.Frame > int64(jt.frames) {
		w.l.errs.add("claim", fmt.Errorf("leased frame %d of job %d, which the load test did not submit", le.Frame, le.Job))
		return
	}
	w.n++
	if hb := w.l.o.heartbeat; hb > 0 && (w.n-1)%hb == 0 {
		t0 := time.Now()
		resp, err := w.c.Heartbeat(ctx, api.Heartbeat{Worker: w.name, Leases: []api.LeaseProgress{{LeaseRef: ref, Progress: 0.5}}})
		w.hbLat = append(w.hbLat, time.Since(t0))
		w.l.heartbeats.Add(1)
		if err != nil {
			w.l.errs.add("heartbeat", err)
		} else if len(resp.Stop) > 0 {
			w.l.errs.add("heartbeat", fmt.Errorf("job %d frame %d epoch %d: the server says to abandon a lease just claimed", le.Job, le.Frame, le.Epoch))
			return
		}
	}
	if d := w.l.o.render; d > 0 {
		sleep(ctx, d)
	}
	tarball := outputTar(le.Job, le.Frame, w.name)
	t0 := time.Now()
	err := w.c.Complete(ctx, w.name, ref, w.l.o.render, bytes.NewReader(tarball), int64(len(tarball)))
	w.outLat = append(w.outLat, time.Since(t0))
	if err != nil {
		w.l.errs.add("output", err)
		return
	}
	jt.reported[le.Frame-1].Add(1)
	jt.completed.Add(1)
}

// outputTar is a frame's output: a tar of one small file.
func outputTar(job, frame int64, worker string) []byte {
	body := fmt.Sprintf("job %d frame %d rendered by %s\n", job, frame, worker)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("frame-%06d.txt", frame), Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write([]byte(body))
	tw.Close()
	return b.Bytes()
}

// jobPackage is a tar of a distrenjob.xml of n built-in frames in blocks of
// ten: nine independent frames, then one that depends on them.
func jobPackage(name string, n int) ([]byte, error) {
	var m strings.Builder
	fmt.Fprintf(&m, `<distrenjob version="1">
  <name>%s</name>
  <retries>0</retries>
  <backend name="builtin"><width>1</width><height>1</height><output>frame-{frame:06}.png</output></backend>
  <frames>
`, name)
	for a := 1; a <= n; a += 10 {
		fmt.Fprintf(&m, "    <range first=\"%d\" last=\"%d\"/><frame id=\"%d\"><depends first=\"%d\" last=\"%d\"/></frame>\n", a, a+8, a+9, a, a+8)
	}
	m.WriteString("  </frames>\n  <outputs><output>frame-*</output></outputs>\n</distrenjob>\n")
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: "distrenjob.xml", Mode: 0o644, Size: int64(m.Len()), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := io.WriteString(tw, m.String()); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// errorLog counts failed requests and keeps the first messages.
type errorLog struct {
	n     atomic.Int64
	mu    sync.Mutex
	first []string
}

func (e *errorLog) add(op string, err error) {
	e.n.Add(1)
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.first) < 10 {
		e.first = append(e.first, op+": "+err.Error())
	}
}

func (e *errorLog) samples() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.first)
}

// problemLog keeps what the checks found, the first 20 in full.
type problemLog struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (p *problemLog) add(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if len(p.first) < 20 {
		p.first = append(p.first, fmt.Sprintf(format, args...))
	}
}

func (p *problemLog) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(p.first)
	if p.n > len(p.first) {
		out = append(out, fmt.Sprintf("... and %d more", p.n-len(p.first)))
	}
	return out
}
