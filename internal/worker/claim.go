package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/distren/distren/internal/api"
)

func (w *Worker) claimLoop(ctx context.Context, claimed chan<- *task) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		// One token per frame held, from claim to report; only this loop
		// takes tokens, so len(w.tokens) can only fall behind its back.
		window := w.window()
		for len(w.tokens) >= window {
			select {
			case <-w.freed:
			case <-ctx.Done():
				return nil
			}
			window = w.window()
		}
		n := 0
		for len(w.tokens) < window {
			w.tokens <- struct{}{}
			n++
		}
		// The server answers within the wait; a claim unanswered well past
		// it is lost on a dead connection.
		cctx, cancel := context.WithTimeout(ctx, w.cfg.ClaimWait+stallLimit)
		resp, err := w.cfg.Server.Claim(cctx, api.ClaimRequest{Worker: w.cfg.Name, Max: n,
			WaitMS: int(w.cfg.ClaimWait.Milliseconds()), Backends: w.backends})
		cancel()
		tasks := group(resp.Leases)
		for range n - len(tasks) {
			<-w.tokens
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ErrDenied) {
				return fmt.Errorf("worker %s: the server refused its token: %w", w.cfg.Name, err)
			}
			w.cfg.Log.Warn("claim failed", "server", w.cfg.Server.String(), "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		for _, ls := range tasks {
			tctx, cancel := context.WithCancel(ctx)
			t := &task{leases: ls, ctx: tctx, cancel: cancel, progress: map[int64]float64{}, done: map[int64]bool{}, sent: map[int64]bool{},
				aborts: map[int64]context.CancelCauseFunc{}}
			w.mu.Lock()
			for _, l := range ls {
				w.held[ref(l)] = t
			}
			w.mu.Unlock()
			claimed <- t // capacity covers every token
		}
	}
	return nil
}

// group splits leases into tasks: a chunk's leases (same Chunk, which the
// server sends together) make one task, any other lease a task of its own.
func group(ls []api.Lease) [][]api.Lease {
	var out [][]api.Lease
	for i := 0; i < len(ls); {
		j := i + 1
		for ls[i].Chunk != 0 && j < len(ls) && ls[j].Chunk == ls[i].Chunk {
			j++
		}
		out = append(out, ls[i:j])
		i = j
	}
	return out
}

// fingerprint finds which backends this machine has, concurrently: the
// claims tell the server, which sends only frames the worker can render.
func (w *Worker) fingerprint(ctx context.Context) {
	if w.backends != nil {
		return
	}
	have, missing := w.cfg.Backends.Fingerprints(ctx)
	w.backends = map[string]string{}
	for name, fp := range have {
		w.backends[name] = fp.Version
	}
	var names []string
	for name, fp := range have {
		names = append(names, name+" "+fp.Version)
	}
	slices.Sort(names)
	w.cfg.Log.Info("backends", "worker", w.cfg.Name, "have", strings.Join(names, ", "))
	for name, err := range missing {
		w.cfg.Log.Info("backend unavailable", "worker", w.cfg.Name, "backend", name, "reason", err)
	}
}

// release forgets a task and frees its token and scratch directory, which
// is emptied for a later task.
func (w *Worker) release(t *task) {
	t.cancel()
	w.mu.Lock()
	for _, l := range t.leases {
		delete(w.held, ref(l))
	}
	w.mu.Unlock()
	if t.dir != "" {
		w.recycle(t.dir, t.home)
	}
	w.idx.unpin(t.pinned)
	<-w.tokens
	select {
	case w.freed <- struct{}{}:
	default:
	}
}

// window is how many frames the worker holds at most: its slots, and the
// frames claimed ahead of them — enough to keep about aheadTarget of work
// waiting when frames are short, within [minAhead, maxAhead].
func (w *Worker) window() int {
	ahead := w.minAhead
	if avg := time.Duration(w.frameNS.Load()); avg > 0 && w.maxAhead > w.minAhead {
		want := int(int64(w.cfg.Slots) * int64(aheadTarget) / int64(avg))
		ahead = min(max(want, w.minAhead), w.maxAhead)
	}
	return w.cfg.Slots + ahead
}

// aheadTarget is the work a worker keeps in hand beyond its slots when
// frames are short: a few round trips to the server.
const aheadTarget = 50 * time.Millisecond

// observe folds a render time into the moving average (weight 1/8).
func (w *Worker) observe(d time.Duration) {
	d = max(d, time.Microsecond)
	for {
		old := w.frameNS.Load()
		nu := int64(d)
		if old > 0 {
			nu = old + (int64(d)-old)/8
		}
		if w.frameNS.CompareAndSwap(old, nu) {
			return
		}
	}
}
