package worker

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distren/distren/internal/api"
)

// TestWatchdog: a transfer that keeps moving bytes lives as long as it
// needs; one that stops is canceled a limit after its last byte, with a
// cause that says so.
func TestWatchdog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, stop := watch(context.Background(), time.Minute)
		defer stop()
		r := d.Reader(strings.NewReader(strings.Repeat("x", 10)))
		b := make([]byte, 1)
		for range 10 { // ten minutes, a byte every 50 seconds
			time.Sleep(50 * time.Second)
			if _, err := r.Read(b); err != nil {
				t.Fatal(err)
			}
			if err := d.Context().Err(); err != nil {
				t.Fatalf("a transfer making progress was canceled: %v", err)
			}
		}
		if _, err := r.Read(b); err != io.EOF { // no bytes: no progress
			t.Fatalf("read past the end: %v", err)
		}
		time.Sleep(59 * time.Second)
		synctest.Wait()
		if err := d.Context().Err(); err != nil {
			t.Fatalf("canceled before the limit: %v", err)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if !errors.Is(context.Cause(d.Context()), errStalled) {
			t.Fatalf("a stalled transfer's context: %v, cause %v", d.Context().Err(), context.Cause(d.Context()))
		}
		if err := explain(d, context.Canceled); !errors.Is(err, errStalled) || !strings.Contains(err.Error(), "no progress for 1m0s") {
			t.Errorf("explain: %v", err)
		}
	})
}

// TestWatchdogStop: a transfer over is not canceled as stalled later.
func TestWatchdogStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, stop := watch(context.Background(), time.Minute)
		stop()
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if errors.Is(context.Cause(d.Context()), errStalled) {
			t.Error("a finished transfer was canceled as stalled")
		}
		if err := explain(d, errors.New("x")); errors.Is(err, errStalled) {
			t.Errorf("explain: %v", err)
		}
	})
}

// TestHeartbeatRenewsFramesBeingSent: a frame is renewed while it renders
// and while its result is sent, not after.
func TestHeartbeatRenewsFramesBeingSent(t *testing.T) {
	w, err := New(Config{Dir: t.TempDir(), Name: "w"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ls := []api.Lease{
		{Job: 1, Frame: 1, Epoch: 11, TTLMS: 2000, Chunk: 11}, // sent
		{Job: 1, Frame: 2, Epoch: 12, TTLMS: 2000, Chunk: 11}, // being sent
		{Job: 1, Frame: 3, Epoch: 13, TTLMS: 2000, Chunk: 11}, // rendering
	}
	tk := &task{leases: ls, progress: map[int64]float64{3: 0.5}, done: map[int64]bool{1: true, 2: true}, sent: map[int64]bool{1: true}}
	for _, l := range ls {
		w.held[ref(l)] = tk
	}
	hb, ttl := w.heartbeat()
	got := map[int64]float64{}
	for _, l := range hb.Leases {
		got[l.Frame] = l.Progress
	}
	if len(got) != 2 || got[3] != 0.5 || hb.Worker != "w" {
		t.Errorf("heartbeat %+v renews frames %v; want 2 and 3", hb, got)
	}
	if _, ok := got[2]; !ok {
		t.Error("the frame whose result is being sent is not renewed")
	}
	if ttl != 2*time.Second {
		t.Errorf("ttl = %s, want the leases' 2s", ttl)
	}
}
