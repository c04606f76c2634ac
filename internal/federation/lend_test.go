package federation

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/worker"
)

var (
	builtin = map[string]string{"builtin": "1"}
	blender = map[string]string{"blender": "4.2"}
)

// TestLendingYieldsToOwnWorkers: a peer's claim takes no frame while an own
// worker waiting for frames has not tried since they became ready; once it
// has tried and found nothing it can take, or has left, or has taken what
// it wants, the peer's claim takes the rest.
func TestLendingYieldsToOwnWorkers(t *testing.T) {
	for _, c := range []struct {
		name     string
		backends map[string]string // the own worker's
		leave    bool              // the own worker's claim ends while trying
		own      []int64           // frames the own worker gets
		lent     []int64           // frames the peer's worker gets
	}{
		{name: "own worker tried", backends: blender, lent: []int64{1, 2}},
		{name: "own worker left", backends: builtin, leave: true, lent: []int64{1, 2}},
		{name: "own worker first", backends: builtin, own: []int64{1}, lent: []int64{2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testLendingYields(t, c.backends, c.leave, c.own, c.lent) })
		})
	}
}

func testLendingYields(t *testing.T, backends map[string]string, leave bool, wantOwn, wantLent []int64) {
	home := newFakeHome(t, "home")
	f := newFed(t, home, newFakePeer(t, "peerb"))
	ownCtx, leaveOwn := context.WithCancel(context.Background())
	defer leaveOwn()
	own := claimAsync(ownCtx, f.Work(), api.ClaimRequest{Worker: "w", Max: 1, WaitMS: 60_000, Backends: backends})
	lent := claimAsync(context.Background(), f.Work(), api.ClaimRequest{Worker: "peerb/w", Max: 2, WaitMS: 60_000, Backends: builtin})
	synctest.Wait()
	if _, ok := answered(lent); ok {
		t.Fatal("the peer's claim returned with nothing ready")
	}

	// The own worker's next try is held: it has not tried since the frames
	// below became ready.
	trying := make(chan struct{})
	release := make(chan struct{})
	home.setHold(func(ctx context.Context, req api.ClaimRequest) error {
		if req.Worker != "w" {
			return nil
		}
		close(trying)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	home.offer(frameFor("builtin", 7, 1), frameFor("builtin", 7, 2))
	synctest.Wait()
	select {
	case <-trying:
	default:
		t.Fatal("the own worker did not try when frames became ready")
	}
	if r, ok := answered(lent); ok {
		t.Fatalf("the peer's claim returned %+v while an own worker had not tried", r)
	}
	if n := home.queued(); n != 2 {
		t.Fatalf("%d of 2 frames left while an own worker had not tried", n)
	}

	if leave {
		leaveOwn()
	} else {
		close(release)
	}
	synctest.Wait()
	r, ok := answered(lent)
	if !ok {
		t.Fatal("the peer's claim still waits once the own worker tried or left")
	}
	if r.err != nil || !reflect.DeepEqual(framesOf(r.r), wantLent) {
		t.Errorf("the peer's claim: %v %+v, want frames %v", r.err, r.r, wantLent)
	}
	o, ok := answered(own)
	switch {
	case leave:
		if !ok || !errors.Is(o.err, context.Canceled) {
			t.Errorf("the own claim that left: %+v (answered %v)", o, ok)
		}
	case wantOwn != nil:
		if !ok || o.err != nil || !reflect.DeepEqual(framesOf(o.r), wantOwn) {
			t.Errorf("the own claim: %+v (answered %v), want frames %v", o, ok, wantOwn)
		}
	default:
		if ok {
			t.Errorf("the own claim returned %+v with no frame for it", o)
		}
		leaveOwn()
		<-own
	}
}

func framesOf(r api.ClaimResponse) []int64 {
	var fs []int64
	for _, l := range r.Leases {
		fs = append(fs, l.Frame)
	}
	return fs
}

// TestLendClaimRefusals: a claim of a worker of a server that is not a peer
// takes nothing; one whose requester left as the frames were granted gives
// them back unattempted; one that finds nothing returns at its wait.
func TestLendClaimRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		home := newFakeHome(t, "home")
		f := newFed(t, home, newFakePeer(t, "peerb"))
		home.offer(frameFor("builtin", 7, 1))

		_, err := f.Work().Claim(context.Background(), api.ClaimRequest{Worker: "zz/w", Max: 1, Backends: builtin})
		if !errors.Is(err, ErrNotPeer) || home.queued() != 1 {
			t.Errorf("a claim of a server's worker that is not a peer: %v, %d of 1 frames left", err, home.queued())
		}

		start := time.Now()
		r, err := f.Work().Claim(context.Background(), api.ClaimRequest{Worker: "peerb/w", Max: 1, WaitMS: 5_000, Backends: blender})
		if err != nil || len(r.Leases) != 0 || time.Since(start) != 5*time.Second {
			t.Errorf("a claim with nothing for it: %v %+v after %v, want none after 5s", err, r, time.Since(start))
		}

		ctx, cancel := context.WithCancel(context.Background())
		granting := make(chan struct{})
		grant := make(chan struct{})
		home.setHold(func(context.Context, api.ClaimRequest) error {
			close(granting)
			<-grant // the requester's end does not stop the grant
			return nil
		})
		c := claimAsync(ctx, f.Work(), api.ClaimRequest{Worker: "peerb/w", Max: 1, WaitMS: 5_000, Backends: builtin})
		<-granting
		cancel()
		close(grant)
		if r := <-c; !errors.Is(r.err, context.Canceled) || len(r.r.Leases) != 0 {
			t.Errorf("a claim whose requester left: %+v", r)
		}
		want := []failure{{api.LeaseRef{Job: 7, Frame: 1, Epoch: 1}, api.Failure{Worker: "peerb/w", Epoch: 1, NotRun: true}}}
		if got := home.snapshot().fails; !reflect.DeepEqual(got, want) {
			t.Errorf("given back %+v, want %+v", got, want)
		}
	})
}

// TestTakeOutput: the lender checks a lent frame's report before it fetches
// a byte of its output from the borrower; a report it takes is read from
// the borrower into the farm and counted.
func TestTakeOutput(t *testing.T) {
	home := newFakeHome(t, "home")
	pb := newFakePeer(t, "pb")
	pb.blobs["out-1"] = []byte("rendered")
	f := newFed(t, home, pb)
	ctx := context.Background()
	out := api.PeerOutput{Worker: "pb/w", Epoch: 3, Output: "out-1", Size: 8, RenderMS: 2000}

	home.completeErr = fmt.Errorf("%w: the lease of frame 1 is at epoch 4", worker.ErrStale)
	if err := f.TakeOutput(ctx, 7, 1, out); !errors.Is(err, worker.ErrStale) {
		t.Errorf("a stale report: %v, want ErrStale", err)
	}
	if n := pb.snapshot().blobGets["out-1"]; n != 0 {
		t.Errorf("the output of a stale report fetched %d times", n)
	}
	if p := peerInfo(t, f, "pb"); p.LentDone != 0 {
		t.Errorf("lent done %d after a stale report", p.LentDone)
	}

	home.set(func(h *fakeHome) { h.completeErr = nil })
	if err := f.TakeOutput(ctx, 7, 1, out); err != nil {
		t.Fatalf("TakeOutput: %v", err)
	}
	want := []completion{{worker: "pb/w", ref: api.LeaseRef{Job: 7, Frame: 1, Epoch: 3}, render: 2 * time.Second, body: "rendered", size: 8}}
	if got := home.snapshot().completes; !reflect.DeepEqual(got, want) {
		t.Errorf("completes %+v, want %+v", got, want)
	}
	if n := pb.snapshot().blobGets["out-1"]; n != 1 {
		t.Errorf("the output fetched %d times, want once", n)
	}
	if p := peerInfo(t, f, "pb"); p.LentDone != 1 {
		t.Errorf("lent done %d, want 1", p.LentDone)
	}

	// The borrower fails to hand the output over: the peer failed, not
	// the report.
	pb.set(func(p *fakePeer) { p.blobErr = errors.New("connection reset") })
	if err := f.TakeOutput(ctx, 7, 2, out); !errors.Is(err, ErrPeer) {
		t.Errorf("an output the borrower fails to send: %v, want ErrPeer", err)
	}
	if p := peerInfo(t, f, "pb"); p.LentDone != 1 {
		t.Errorf("lent done %d after a failed fetch, want 1", p.LentDone)
	}

	bad := out
	bad.Worker = "w"
	if err := f.TakeOutput(ctx, 7, 1, bad); !errors.Is(err, worker.ErrRejected) {
		t.Errorf("a report of an own worker's name: %v, want ErrRejected", err)
	}
	bad.Worker = "zz/w"
	if err := f.TakeOutput(ctx, 7, 1, bad); !errors.Is(err, ErrNotPeer) {
		t.Errorf("a report of a server that is not a peer: %v, want ErrNotPeer", err)
	}
}
