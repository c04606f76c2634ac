package session

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/distren/distren/internal/store"
)

// manualClock is a clock that moves only when told to.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestExplicitClock: the session reads the time from Options.Clock alone —
// submission and finish times, workers' liveness, lease grants, heartbeats
// and expiry — so leases expire when the clock says, with no sleeping. The
// lease is long (an hour) so that the expiry loop's wall-clock ticker never
// runs during the test: expiry is checked by hand.
func TestExplicitClock(t *testing.T) {
	const lease = time.Hour
	clk := &manualClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	st := store.NewMem()
	s, err := Open(ctx, st, Options{Name: "farm", LeaseTTL: lease, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	id := submit(t, s, mkjob(t, "<retries>0</retries>", `<frame id="1"/>`))
	if j, _ := s.Job(id); !j.Submitted.Equal(clk.Now()) {
		t.Fatalf("submitted at %v, the clock says %v", j.Submitted, clk.Now())
	}
	l := claim(t, s, "w1", 1)[0]
	expire := func(want string) {
		t.Helper()
		if err := s.expire(ctx); err != nil {
			t.Fatal(err)
		}
		if st := state(t, s, id, 1); st != want {
			t.Fatalf("frame is %s at %v, want %s", st, clk.Now(), want)
		}
	}
	// Heartbeats keep the lease past its first expiry.
	clk.add(lease * 3 / 4)
	if hb, err := s.Heartbeat(ctx, Heartbeat{Worker: "w1", Leases: []LeaseProgress{{LeaseRef: ref(l)}}}); err != nil || len(hb.Stop) != 0 {
		t.Fatalf("heartbeat = %+v, %v", hb, err)
	}
	clk.add(lease / 2)
	expire(StateRunning)
	if n := s.Workers(); n != 1 {
		t.Fatalf("%d live workers, want 1", n)
	}
	// A lease after the last heartbeat, it expires: a lost attempt, not a
	// failure, though the job allows no retry.
	clk.add(lease/2 - time.Nanosecond)
	expire(StateRunning)
	clk.add(time.Nanosecond)
	expire(StateReady)
	if f, _ := s.Frame(id, 1); f.Attempts != 1 || f.Lost != 1 {
		t.Fatalf("frame = %+v, want 1 attempt, 1 lost", f)
	}
	if n := s.Workers(); n != 0 {
		t.Fatalf("%d live workers after a lease of silence, want 0", n)
	}
	// The next worker's lease fences the first one's.
	l2 := claim(t, s, "w2", 1)[0]
	err = s.Complete(ctx, Completion{Worker: "w1", Job: id, Frame: 1, Epoch: l.Epoch, Output: fmt.Sprintf("%064d", 1)})
	if !errors.Is(err, ErrStaleLease) {
		t.Fatalf("stale completion: %v", err)
	}
	clk.add(time.Minute)
	complete(t, s, "w2", l2)
	if f, _ := s.Frame(id, 1); f.State != StateDone || f.Attempts != 2 {
		t.Fatalf("frame = %+v, want done after 2 attempts", f)
	}
	snap, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, fr := range snap.Frames {
		if want := clk.Now().UTC(); fr.ID == 1 && !fr.Finished.Equal(want) {
			t.Fatalf("frame finished at %v, the clock says %v", fr.Finished, want)
		}
	}
	// Workers not heard from for ten leases are forgotten.
	clk.add(10*lease + time.Second)
	if err := s.expire(ctx); err != nil {
		t.Fatal(err)
	}
	if ws := s.WorkerList(); len(ws) != 0 {
		t.Fatalf("workers = %+v, want none", ws)
	}
}
