package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/backend"
)

// run renders a prepared task and reports the outcome of each of its frames.
//
// Results are sent in the background while the slot takes its next task:
// a report waits for the server to make the output durable, and a slot
// should be rendering meanwhile. In a chunk, each frame's result is sent as
// soon as the backend reports the frame done. The task's token (and so the
// claim window) is held until every report is done.
func (w *Worker) run(ctx context.Context, t *task) {
	log := w.cfg.Log.With("job", t.job().String(), "frames", frameList(t.frames()))
	if t.ctx.Err() != nil && ctx.Err() == nil {
		// Abandoned before a slot took it (the server stopped its lease
		// while it waited): nothing is started, nothing reported.
		log.Info("task abandoned before it began")
		t.pending.Wait()
		w.release(t)
		return
	}
	err := t.err
	var took time.Duration
	var rest []string // files of a single frame whose backend did not report it
	if err == nil {
		rest, took, err = w.render(t)
		w.observe(took / time.Duration(len(t.leases)))
	}
	if t.ctx.Err() != nil && ctx.Err() == nil && err != nil && errors.Is(err, context.Canceled) {
		log.Info("task abandoned")
		t.pending.Wait()
		w.release(t)
		return
	}
	if ctx.Err() != nil {
		t.pending.Wait()
		w.release(t) // shutting down: the leases expire and the frames are rendered again
		return
	}
	jobErr := backend.IsJobError(err)
	var failed int64 = -1 // the frame of a chunk whose failure stopped it
	for _, l := range t.leases {
		w.mu.Lock()
		done := t.done[l.Frame]
		t.done[l.Frame] = true
		w.mu.Unlock()
		switch {
		case done:
		case err == nil && rest != nil:
			w.sendDone(ctx, t, l, rest, took)
		case err == nil:
			w.sendFail(ctx, t, l, api.Failure{Error: fmt.Sprintf("the renderer finished without reporting frame %d done", l.Frame)})
		case failed >= 0:
			// A chunk renders in order: the frames after the one that
			// failed were never attempted and go back to the queue.
			w.sendFail(ctx, t, l, api.Failure{NotRun: true, Error: fmt.Sprintf("not rendered: frame %d of its chunk failed first", failed)})
		default:
			if len(t.leases) > 1 {
				failed = l.Frame
			}
			w.sendFail(ctx, t, l, api.Failure{Error: err.Error(), JobError: jobErr})
		}
	}
	w.reports.Go(func() {
		t.pending.Wait()
		w.release(t)
	})
}

// render runs the backend. Frames it reports done are sent at once; for a
// single frame it does not report, render returns the files the render
// created or changed that match the output globs.
func (w *Worker) render(t *task) ([]string, time.Duration, error) {
	m := t.spec.m
	first := t.leases[0]
	idx, ok := m.FrameIndex(first.Frame)
	if !ok {
		return nil, 0, fmt.Errorf("frame %d is not in job %d's manifest", first.Frame, first.Job)
	}
	spec := &m.Backend
	if b := m.Frames[idx].Backend; b != nil {
		spec = b
	}
	be, ok := w.cfg.Backends[spec.Name]
	if !ok {
		return nil, 0, fmt.Errorf("backend %q is not available on worker %s", spec.Name, w.cfg.Name)
	}
	ctx := t.ctx
	if m.Timeout > 0 {
		var cancel context.CancelFunc
		limit := m.Timeout * time.Duration(len(t.leases))
		ctx, cancel = context.WithTimeoutCause(ctx, limit, errTimeout)
		defer cancel()
	}
	tail := &tailBuffer{max: 4 << 10}
	start := time.Now()
	ev := &events{w: w, t: t, ctx: t.ctx, globs: m.Outputs, last: start}
	task := &backend.Task{Job: first.Job, Frames: t.frames(), Dir: t.dir, Home: t.home, Spec: spec, DepFiles: t.depFiles,
		Stderr: tail, Events: ev}
	err := be.Render(ctx, task)
	took := time.Since(start)
	if err != nil {
		if errors.Is(context.Cause(ctx), errTimeout) {
			err = fmt.Errorf("timed out after %s (the job's <timeout> per frame); renderer killed", m.Timeout*time.Duration(len(t.leases)))
		}
		return nil, took, withTail(err, tail)
	}
	if len(t.leases) > 1 || ev.reported {
		if ev.bad != nil {
			return nil, took, withTail(ev.bad, tail)
		}
		return nil, took, nil
	}
	out, err := collect(t.dir, m.Outputs, t.before)
	if err != nil {
		return nil, took, withTail(err, tail)
	}
	return out, took, nil
}

// events passes a backend's reports on: progress to the heartbeats, finished
// frames to the server.
type events struct {
	w        *Worker
	t        *task
	ctx      context.Context
	globs    []string
	last     time.Time // when the previous frame finished
	reported bool
	bad      error // a reported frame whose files could not be taken
}

func (e *events) Progress(frame int64, p float64) {
	e.w.mu.Lock()
	e.t.progress[frame] = min(max(p, 0), 1)
	e.w.mu.Unlock()
}

func (e *events) FrameDone(frame int64, files []string) {
	e.reported = true
	l, ok := e.t.lease(frame)
	if !ok {
		return
	}
	now := time.Now()
	took := now.Sub(e.last)
	e.last = now
	out, err := checkOutputs(e.t.dir, files, e.globs)
	if err != nil {
		e.bad = fmt.Errorf("frame %d: %w", frame, err)
		return
	}
	e.w.mu.Lock()
	if e.t.done[frame] {
		e.w.mu.Unlock()
		return
	}
	e.t.done[frame] = true
	e.t.progress[frame] = 1
	e.w.mu.Unlock()
	e.w.sendDone(e.ctx, e.t, l, out, took)
}

var errTimeout = errors.New("frame timeout")

// withTail adds the end of the renderer's output to a failure. The
// message's first line — what `distren status` shows — carries the
// renderer's own error line (backend.ErrorLine) unless it already does;
// the tail follows on the next lines.
func withTail(err error, tail *tailBuffer) error {
	s := strings.TrimSpace(tail.String())
	if s == "" {
		return err
	}
	first, _, _ := strings.Cut(err.Error(), "\n")
	if line := backend.ErrorLine(s); line != "" && !strings.Contains(first, line) {
		return fmt.Errorf("%w: %s\nrenderer output ends with:\n%s", err, line, s)
	}
	return fmt.Errorf("%w\nrenderer output ends with:\n%s", err, s)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
