package worker

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
)

func TestClaimWindowAdaptsToFrameTimes(t *testing.T) {
	for _, c := range []struct {
		name           string
		slots, ahead   int
		frame          time.Duration
		before, steady int // window before any frame, and after many of this length
	}{
		{"adaptive, millisecond frames", 2, 0, 100 * time.Microsecond, 4, 18},
		{"adaptive, 20ms frames", 2, 0, 20 * time.Millisecond, 4, 7},
		{"adaptive, long frames", 4, 0, 2 * time.Minute, 8, 8},
		{"fixed", 2, 3, 100 * time.Microsecond, 5, 5},
		{"none", 2, -1, 100 * time.Microsecond, 2, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, err := New(Config{Slots: c.slots, Prefetch: c.ahead, Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if got := w.window(); got != c.before {
				t.Errorf("window before any frame = %d, want %d", got, c.before)
			}
			for range 100 {
				w.observe(c.frame)
			}
			if got := w.window(); got != c.steady {
				t.Errorf("window after %s frames = %d, want %d", c.frame, got, c.steady)
			}
			if cap(w.tokens) < c.steady {
				t.Errorf("%d tokens cannot cover a window of %d", cap(w.tokens), c.steady)
			}
		})
	}
}

func TestWorkerDirIsLocked(t *testing.T) {
	dir := t.TempDir()
	w, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Dir: dir}); err == nil {
		t.Fatal("a second worker opened a locked directory")
	}
	w.Close()
	w2, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	w2.Close()
}

// TestStopAbandonsUpload: a heartbeat answer that the server no longer holds
// a lease ends the upload of that frame's result at once (it would only be
// refused when it arrived), stops a frame still rendering, and leaves a
// frame whose result was sent alone.
func TestStopAbandonsUpload(t *testing.T) {
	var logs bytes.Buffer
	w := &Worker{cfg: Config{Log: slog.New(slog.NewTextHandler(&logs, nil))}, held: map[api.LeaseRef]*task{}}
	uploading, rendering, sent := api.LeaseRef{Job: 1, Frame: 1, Epoch: 7}, api.LeaseRef{Job: 1, Frame: 2, Epoch: 8}, api.LeaseRef{Job: 1, Frame: 3, Epoch: 9}
	tctx, cancel := context.WithCancel(context.Background())
	tk := &task{ctx: tctx, cancel: cancel, done: map[int64]bool{1: true, 3: true}, sent: map[int64]bool{3: true},
		aborts: map[int64]context.CancelCauseFunc{}}
	for _, r := range []api.LeaseRef{uploading, rendering, sent} {
		w.held[r] = tk
	}
	rctx, abort := context.WithCancelCause(context.Background())
	tk.aborts[1] = abort

	reported := make(chan error, 1)
	go func() {
		reported <- w.report(rctx, w.cfg.Log, func(ctx context.Context) error {
			<-ctx.Done() // an upload that would go on for a long time
			return ctx.Err()
		})
	}()
	w.stop([]api.LeaseRef{uploading, sent})
	select {
	case err := <-reported:
		if err != nil {
			t.Fatalf("report of an abandoned upload returned %v, want nil (nothing to report as failed)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upload went on after the server said the lease is gone")
	}
	if !strings.Contains(logs.String(), "result refused: lease no longer held") {
		t.Errorf("log: %s", logs.String())
	}
	if tctx.Err() != nil {
		t.Fatal("stopping an uploading frame stopped the task's other frames")
	}
	w.stop([]api.LeaseRef{rendering})
	if tctx.Err() == nil {
		t.Fatal("a frame still rendering was not stopped")
	}
}
