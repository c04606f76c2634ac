package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/distren/distren/internal/api"
)

func ref(l api.Lease) api.LeaseRef { return l.Ref() }

// heartbeats renews the leases held until ctx ends. A heartbeat refused
// for the worker's credential (revoked since the last claim) stops the
// worker through stop, as a refused claim does: it could report nothing
// of what it renders.
func (w *Worker) heartbeats(ctx context.Context, stop context.CancelCauseFunc) {
	period := 100 * time.Millisecond // until a lease tells its length: heartbeats with no lease send nothing
	for {
		select {
		case <-time.After(period):
		case <-ctx.Done():
			return
		}
		hb, ttl := w.heartbeat()
		if len(hb.Leases) == 0 {
			continue
		}
		period = min(max(ttl/3, 50*time.Millisecond), 5*time.Second)
		// A heartbeat that has not arrived within a lease is of no use; one
		// stuck on a dead connection must not hold back the next.
		hctx, cancel := context.WithTimeout(ctx, ttl)
		resp, err := w.cfg.Server.Heartbeat(hctx, hb)
		cancel()
		if errors.Is(err, ErrDenied) {
			stop(fmt.Errorf("worker %s: the server refused its token: %w", w.cfg.Name, err))
			return
		}
		if err != nil {
			w.cfg.Log.Warn("heartbeat failed", "err", err)
			continue
		}
		w.stop(resp.Stop)
	}
}

// errLeaseLost ends the upload of a result whose lease the server no
// longer holds: it would be refused when it arrived.
var errLeaseLost = errors.New("lease no longer held")

// stop abandons the leases a heartbeat's answer lists: a frame still
// rendering is stopped, a result still uploading is not sent on.
func (w *Worker) stop(refs []api.LeaseRef) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range refs {
		t := w.held[r]
		switch {
		case t == nil || t.sent[r.Frame]:
		case !t.done[r.Frame]:
			w.cfg.Log.Info("abandoning frame", "job", r.Job, "frame", r.Frame, "reason", "lease no longer held")
			t.cancel()
		case t.aborts[r.Frame] != nil:
			t.aborts[r.Frame](errLeaseLost)
		}
	}
}

// heartbeat returns the leases to renew, and the lease length (default 30s).
// A frame whose result is being sent is still running on the server until
// the upload is in: its lease is renewed meanwhile, so that an upload may
// take longer than a lease.
func (w *Worker) heartbeat() (api.Heartbeat, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	hb := api.Heartbeat{Worker: w.cfg.Name}
	ttl := 30 * time.Second
	for r, t := range w.held {
		if t.sent[r.Frame] {
			continue // reported: the server no longer holds it as running
		}
		hb.Leases = append(hb.Leases, api.LeaseProgress{LeaseRef: r, Progress: t.progress[r.Frame], Waiting: !t.started})
		if l := time.Duration(t.leases[0].TTLMS) * time.Millisecond; l > 0 {
			ttl = l
		}
	}
	return hb, ttl
}
