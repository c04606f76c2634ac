package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/store"
)

const ttl = 10 * time.Second

var builtinOnly = map[string]string{"builtin": "1"}

var ctx = context.Background()

// job builds a submission from the <frames> part of a manifest.
func mkjob(t *testing.T, extra, frames string) Submission {
	t.Helper()
	raw := fmt.Sprintf(`<distrenjob version="1"><name>t</name>%s<backend name="builtin"/>
<frames>%s</frames><outputs><output>*.png</output></outputs></distrenjob>`, extra, frames)
	m, err := manifest.Parse(strings.NewReader(raw), "test.xml", manifest.Options{})
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	return Submission{Manifest: m, Raw: []byte(raw)}
}

func open(t *testing.T, st store.Store) *Session {
	t.Helper()
	s, err := Open(ctx, st, Options{Name: "farm", LeaseTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func submit(t *testing.T, s *Session, sub Submission) int64 {
	t.Helper()
	r, err := s.Submit(ctx, sub)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return r.ID
}

func claim(t *testing.T, s *Session, w string, n int) []Lease {
	t.Helper()
	ls, err := s.Claim(ctx, ClaimRequest{Worker: w, Max: n, Backends: builtinOnly})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return ls
}

func frames(ls []Lease) []int64 {
	var out []int64
	for _, l := range ls {
		out = append(out, l.Frame)
	}
	return out
}

func complete(t *testing.T, s *Session, w string, l Lease) {
	t.Helper()
	err := s.Complete(ctx, Completion{Worker: w, Job: l.Job, Frame: l.Frame, Epoch: l.Epoch,
		Output: fmt.Sprintf("%064d", l.Frame), Size: 1, Files: []OutFile{{Path: fmt.Sprintf("f%d.png", l.Frame), Size: 1}}})
	if err != nil {
		t.Fatalf("complete %d: %v", l.Frame, err)
	}
}

func state(t *testing.T, s *Session, job, frame int64) string {
	t.Helper()
	f, err := s.Frame(job, frame)
	if err != nil {
		t.Fatal(err)
	}
	return f.State
}

func TestDependencies(t *testing.T) {
	s := open(t, store.NewMem())
	id := submit(t, s, mkjob(t, "", `<range first="1" last="2"/><frame id="3"><depends on="1"/><depends on="2"/></frame>
		<frame id="4"><depends on="3"/></frame>`))
	ls := claim(t, s, "w", 10)
	if got := frames(ls); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("claimed %v, want [1 2]", got)
	}
	complete(t, s, "w", ls[0])
	if st := state(t, s, id, 3); st != StateWaiting {
		t.Fatalf("frame 3 is %s with a dependency unmet", st)
	}
	complete(t, s, "w", ls[1])
	ls = claim(t, s, "w", 10)
	if got := frames(ls); !slices.Equal(got, []int64{3}) {
		t.Fatalf("claimed %v, want [3]", got)
	}
	if len(ls[0].Deps) != 2 || ls[0].Deps[0].Frame != 1 || ls[0].Deps[0].Output != fmt.Sprintf("%064d", 1) {
		t.Fatalf("lease deps = %+v", ls[0].Deps)
	}
	complete(t, s, "w", ls[0])
	complete(t, s, "w", claim(t, s, "w", 10)[0])
	j, _ := s.Job(id)
	if j.State != JobDone || j.Counts[StateDone] != 4 {
		t.Fatalf("job = %+v", j)
	}
	// Output files are numbered after the (no) inputs, in completion order.
	fs, _ := s.Files(id)
	if len(fs) != 4 || fs[0].N != 1 || fs[3].N != 4 {
		t.Fatalf("files = %+v", fs)
	}
}

func TestCrossJobDependency(t *testing.T) {
	s := open(t, store.NewMem())
	a := submit(t, s, mkjob(t, "", `<frame id="7"/>`))
	b := submit(t, s, mkjob(t, "", fmt.Sprintf(`<frame id="1"><depends on="distren://farm/%d/frame/7"/></frame>`, a)))
	ls := claim(t, s, "w", 10)
	if len(ls) != 1 || ls[0].Job != a {
		t.Fatalf("claimed %+v, want only job %d frame 7", ls, a)
	}
	complete(t, s, "w", ls[0])
	ls = claim(t, s, "w", 10)
	if len(ls) != 1 || ls[0].Job != b || ls[0].Deps[0].Job != a {
		t.Fatalf("claimed %+v", ls)
	}
	for _, bad := range []string{
		`<frame id="1"><depends on="distren://farm/99/frame/7"/></frame>`,
		fmt.Sprintf(`<frame id="1"><depends on="distren://farm/%d/frame/8"/></frame>`, a),
		`<frame id="1"><depends on="distren://other/1/frame/7"/></frame>`,
	} {
		if _, err := s.Submit(ctx, mkjob(t, "", bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("submit %s: err = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestOrder(t *testing.T) {
	s := open(t, store.NewMem())
	low := submit(t, s, mkjob(t, "<priority>10</priority>", `<range first="1" last="2"/>`))
	late := submit(t, s, mkjob(t, "<deadline>2030-01-02T00:00:00Z</deadline>", `<range first="1" last="2"/>`))
	early := submit(t, s, mkjob(t, "<deadline>2030-01-01T00:00:00Z</deadline>", `<range first="1" last="2"/>`))
	none := submit(t, s, mkjob(t, "", `<range first="1" last="2"/>`))
	high := submit(t, s, mkjob(t, "<priority>90</priority>", `<range first="5" last="6"/>`))
	var got []int64
	for range 10 {
		l := claim(t, s, "w", 1)[0]
		got = append(got, l.Job)
	}
	want := []int64{high, high, early, early, late, late, none, none, low, low}
	if !slices.Equal(got, want) {
		t.Fatalf("claim order by job = %v, want %v", got, want)
	}
}

func TestLeaseExpiryAndEpochs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := open(t, store.NewMem())
		id := submit(t, s, mkjob(t, "", `<frame id="1"/>`))
		l := claim(t, s, "w1", 1)[0]
		// Heartbeats keep the lease.
		for range 3 {
			time.Sleep(ttl * 3 / 4)
			hb, err := s.Heartbeat(ctx, Heartbeat{Worker: "w1", Leases: []LeaseProgress{{LeaseRef: ref(l), Progress: 0.5}}})
			if err != nil || len(hb.Stop) != 0 {
				t.Fatalf("heartbeat = %+v, %v", hb, err)
			}
		}
		if f, _ := s.Frame(id, 1); f.State != StateRunning || f.Progress != 0.5 {
			t.Fatalf("frame = %+v, want running at 50%%", f)
		}
		// Without them it expires, and the frame goes to another worker with a new epoch.
		time.Sleep(ttl + ttl/2)
		synctest.Wait()
		if st := state(t, s, id, 1); st != StateReady {
			t.Fatalf("frame is %s after its lease expired", st)
		}
		l2 := claim(t, s, "w2", 1)[0]
		if l2.Epoch <= l.Epoch {
			t.Fatalf("new epoch %d not after %d", l2.Epoch, l.Epoch)
		}
		err := s.Complete(ctx, Completion{Worker: "w1", Job: id, Frame: 1, Epoch: l.Epoch, Output: fmt.Sprintf("%064d", 0)})
		if !errors.Is(err, ErrStaleLease) {
			t.Fatalf("stale completion: %v", err)
		}
		hb, _ := s.Heartbeat(ctx, Heartbeat{Worker: "w1", Leases: []LeaseProgress{{LeaseRef: ref(l)}}})
		if len(hb.Stop) != 1 {
			t.Fatalf("heartbeat with a stale lease: %+v", hb)
		}
		complete(t, s, "w2", l2)
		f, _ := s.Frame(id, 1)
		if f.State != StateDone || f.Attempts != 2 || f.Worker != "w2" {
			t.Fatalf("frame = %+v", f)
		}
		// A second completion of the same lease is refused: never completed twice.
		if err := s.Complete(ctx, Completion{Worker: "w2", Job: id, Frame: 1, Epoch: l2.Epoch}); !errors.Is(err, ErrStaleLease) {
			t.Fatalf("second completion: %v", err)
		}
	})
}

func ref(l Lease) LeaseRef { return LeaseRef{Job: l.Job, Frame: l.Frame, Epoch: l.Epoch} }

func TestRetriesOnAnotherWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := open(t, store.NewMem())
		id := submit(t, s, mkjob(t, "<retries>1</retries>", `<frame id="1"/>`))
		if _, err := s.Heartbeat(ctx, Heartbeat{Worker: "w2"}); err != nil { // w2 is alive and idle
			t.Fatal(err)
		}
		l := claim(t, s, "w1", 1)
		if len(l) != 1 {
			t.Fatalf("w1 got %d frames", len(l))
		}
		first, owner := l[0], "w1"
		if err := s.Fail(ctx, owner, id, 1, first.Epoch, "exit status 1", false); err != nil {
			t.Fatal(err)
		}
		other := map[string]string{"w1": "w2", "w2": "w1"}[owner]
		if got := claim(t, s, owner, 1); len(got) != 0 {
			t.Fatalf("%s got back the frame it failed while %s is alive", owner, other)
		}
		again := claim(t, s, other, 1)
		if len(again) != 1 {
			t.Fatalf("%s got nothing", other)
		}
		if err := s.Fail(ctx, other, id, 1, again[0].Epoch, "exit status 2", false); err != nil {
			t.Fatal(err)
		}
		f, _ := s.Frame(id, 1)
		j, _ := s.Job(id)
		if f.State != StateFailed || f.Attempts != 2 || j.State != JobFailed || !strings.Contains(j.Error, "exit status 2") {
			t.Fatalf("after the last retry: frame %+v job %+v", f, j)
		}
		n, err := s.Retry(ctx, id, nil)
		if err != nil || n != 1 || state(t, s, id, 1) != StateReady {
			t.Fatalf("retry = %d, %v; frame %s", n, err, state(t, s, id, 1))
		}
	})
}

func TestSingleWorkerStillRetries(t *testing.T) {
	s := open(t, store.NewMem())
	id := submit(t, s, mkjob(t, "<retries>2</retries>", `<frame id="1"/>`))
	for i := range 3 {
		ls := claim(t, s, "only", 1)
		if len(ls) != 1 {
			t.Fatalf("attempt %d: the only worker got nothing", i+1)
		}
		s.Fail(ctx, "only", id, 1, ls[0].Epoch, "boom", false)
	}
	if st := state(t, s, id, 1); st != StateFailed {
		t.Fatalf("frame is %s after 3 failed attempts with retries=2", st)
	}
}

func TestBlocklist(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := open(t, store.NewMem())
		bad := submit(t, s, mkjob(t, "<retries>10</retries>", `<range first="1" last="20"/>`))
		claim(t, s, "good", 0) // good is alive
		for range 3 {
			ls := claim(t, s, "flaky", 1)
			if len(ls) != 1 || ls[0].Job != bad {
				t.Fatalf("flaky got %+v", ls)
			}
			s.Fail(ctx, "flaky", bad, ls[0].Frame, ls[0].Epoch, "segfault", false)
		}
		if ls := claim(t, s, "flaky", 5); len(ls) != 0 {
			t.Fatalf("blocklisted worker got %v", frames(ls))
		}
		other := submit(t, s, mkjob(t, "", `<frame id="1"/>`))
		if ls := claim(t, s, "flaky", 5); len(ls) != 1 || ls[0].Job != other {
			t.Fatalf("flaky should still get other jobs' frames, got %+v", ls)
		}
		claim(t, s, "good", 0)
		if ls := claim(t, s, "good", 5); len(ls) != 5 || ls[0].Job != bad {
			t.Fatalf("good got %+v", ls)
		}
		// When no other worker is alive, the blocklisted one gets work rather than none.
		time.Sleep(2 * ttl)
		if ls := claim(t, s, "flaky", 1); len(ls) != 1 {
			t.Fatal("the only live worker got nothing")
		}
	})
}

func TestCancel(t *testing.T) {
	s := open(t, store.NewMem())
	id := submit(t, s, mkjob(t, "", `<range first="1" last="5"/>`))
	ls := claim(t, s, "w", 2)
	n, err := s.Cancel(ctx, id)
	if err != nil || n != 5 {
		t.Fatalf("cancel = %d, %v", n, err)
	}
	hb, _ := s.Heartbeat(ctx, Heartbeat{Worker: "w", Leases: []LeaseProgress{{LeaseRef: ref(ls[0])}, {LeaseRef: ref(ls[1])}}})
	if len(hb.Stop) != 2 {
		t.Fatalf("running frames of a canceled job not stopped: %+v", hb)
	}
	if err := s.Complete(ctx, Completion{Worker: "w", Job: id, Frame: ls[0].Frame, Epoch: ls[0].Epoch}); !errors.Is(err, ErrStaleLease) {
		t.Fatalf("completion after cancel: %v", err)
	}
	if got := claim(t, s, "w", 10); len(got) != 0 {
		t.Fatalf("claimed %v from a canceled job", frames(got))
	}
	j, _ := s.Job(id)
	if j.State != JobCanceled || j.Counts[StateCanceled] != 5 {
		t.Fatalf("job = %+v", j)
	}
	if n, err := s.Retry(ctx, id, nil); err != nil || n != 5 {
		t.Fatalf("retry of canceled job = %d, %v", n, err)
	}
	if got := claim(t, s, "w", 10); len(got) != 5 {
		t.Fatalf("after retry claimed %v", frames(got))
	}
}

func TestRetryDoneFrameRerendersAndHoldsDependents(t *testing.T) {
	s := open(t, store.NewMem())
	id := submit(t, s, mkjob(t, "", `<frame id="1"/><frame id="2"><depends on="1"/></frame>`))
	complete(t, s, "w", claim(t, s, "w", 1)[0])
	if n, err := s.Retry(ctx, id, []manifest.Range{{First: 1, Last: 1}}); err != nil || n != 1 {
		t.Fatalf("retry = %d, %v", n, err)
	}
	if st := state(t, s, id, 2); st != StateWaiting {
		t.Fatalf("dependent is %s while its dependency renders again", st)
	}
	ls := claim(t, s, "w", 5)
	if !slices.Equal(frames(ls), []int64{1}) {
		t.Fatalf("claimed %v", frames(ls))
	}
}

func TestRestartKeepsDoneAndRequeuesRunning(t *testing.T) {
	st := store.NewMem()
	s, err := Open(ctx, st, Options{Name: "farm", LeaseTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	id := submit(t, s, mkjob(t, "", `<range first="1" last="3"/><frame id="4"><depends on="1"/></frame>`))
	ls := claim(t, s, "w", 3)
	complete(t, s, "w", ls[0])
	s.Fail(ctx, "w", id, 3, ls[2].Epoch, "boom", false) // attempts survive
	s.Close()                                           // as after kill -9: nothing more is written at close

	s2 := open(t, st)
	want := map[int64]string{1: StateDone, 2: StateReady, 3: StateReady, 4: StateReady}
	for f, w := range want {
		if got := state(t, s2, id, f); got != w {
			t.Errorf("frame %d is %s after restart, want %s", f, got, w)
		}
	}
	if f, _ := s2.Frame(id, 3); f.Attempts != 1 || f.Error != "boom" {
		t.Errorf("frame 3 after restart = %+v", f)
	}
	// The old process's lease on frame 2 is refused.
	if err := s2.Complete(ctx, Completion{Worker: "w", Job: id, Frame: 2, Epoch: ls[1].Epoch}); !errors.Is(err, ErrStaleLease) {
		t.Errorf("completion with a lease from before the restart: %v", err)
	}
	l := claim(t, s2, "w", 10)
	if !slices.Equal(frames(l), []int64{2, 3, 4}) {
		t.Errorf("claimed %v after restart", frames(l))
	}
	for _, x := range l {
		if x.Epoch == ls[1].Epoch || x.Epoch == ls[2].Epoch {
			t.Errorf("epoch %d reused after restart", x.Epoch)
		}
	}
	if id2 := submit(t, s2, mkjob(t, "", `<frame id="1"/>`)); id2 != id+1 {
		t.Errorf("job id after restart = %d, want %d", id2, id+1)
	}
}

func TestCommitFailureLosesNothingAcknowledged(t *testing.T) {
	st := store.NewMem()
	s := open(t, st)
	a := submit(t, s, mkjob(t, "", `<frame id="1"/>`))
	st.FailCommit = errors.New("no space left on device")
	if _, err := s.Submit(ctx, mkjob(t, "", `<frame id="1"/>`)); !errors.Is(err, ErrNotSaved) || !strings.Contains(err.Error(), "no space") {
		t.Fatalf("submit with a failing store: %v", err)
	}
	if js := s.Jobs(); len(js) != 1 {
		t.Fatalf("unsaved job visible: %+v", js)
	}
	st.FailCommit = nil
	b := submit(t, s, mkjob(t, "", `<frame id="1"/>`))
	if b != a+1 {
		t.Fatalf("next id = %d, want %d (the failed submission was never acknowledged)", b, a+1)
	}
}

// TestLostLeasesDoNotUseRetries: a frame whose lease expires is an attempt
// lost, not failed — with no retries it is still requeued — until it has
// lost MaxLostLeases+1 leases, also across a restart; a real failure after
// lost leases fails it as its retries say.
func TestLostLeasesDoNotUseRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := store.NewMem()
		s := open(t, st)
		id := submit(t, s, mkjob(t, "<retries>0</retries>", `<frame id="1"/><frame id="2"/>`))
		lose := func(s *Session, frame int64, w string) Frame {
			t.Helper()
			ls := claim(t, s, w, 1)
			if i := slices.IndexFunc(ls, func(l Lease) bool { return l.Frame == frame }); i < 0 {
				t.Fatalf("%s was not leased frame %d: %v", w, frame, frames(ls))
			}
			time.Sleep(ttl + ttl/2)
			synctest.Wait()
			f, _ := s.Frame(id, frame)
			return f
		}
		for n := 1; n <= MaxLostLeases; n++ {
			if f := lose(s, 1, fmt.Sprintf("w%d", n)); f.State != StateReady || f.Attempts != n || f.Lost != n ||
				!strings.Contains(f.Error, "lease expired") {
				t.Fatalf("after %d lost leases: %+v, want ready, %d attempts, %d lost", n, f, n, n)
			}
		}
		s.Close()
		s = open(t, st)
		f := lose(s, 1, "last")
		if f.State != StateFailed || f.Lost != MaxLostLeases+1 || !strings.Contains(f.Error, fmt.Sprintf("lost its lease %d times", MaxLostLeases+1)) {
			t.Fatalf("after %d lost leases and a restart: %+v, want failed", MaxLostLeases+1, f)
		}
		// Frame 2 loses a lease, then fails for real: with no retries, that
		// failure is its last attempt.
		if f := lose(s, 2, "w-lost"); f.Lost != 1 || f.State != StateReady {
			t.Fatalf("frame 2 after a lost lease: %+v", f)
		}
		l := claim(t, s, "w-fail", 1)
		if len(l) != 1 || l[0].Frame != 2 {
			t.Fatalf("claimed %v, want frame 2", frames(l))
		}
		if err := s.Fail(ctx, "w-fail", id, 2, l[0].Epoch, "boom", false); err != nil {
			t.Fatal(err)
		}
		if f, _ := s.Frame(id, 2); f.State != StateFailed || f.Error != "boom" {
			t.Fatalf("frame 2 after a failure: %+v, want failed", f)
		}
	})
}

func TestFailedReloadRefusesUntilReloaded(t *testing.T) {
	st := store.NewMem()
	s := open(t, st)
	a := submit(t, s, mkjob(t, "", `<frame id="1"/>`))
	st.FailCommit = errors.New("no space left on device")
	st.FailLoad = errors.New("input/output error")
	if _, err := s.Submit(ctx, mkjob(t, "", `<frame id="1"/>`)); !errors.Is(err, ErrNotSaved) || !strings.Contains(err.Error(), "reloading failed") {
		t.Fatalf("submit with a failing store: %v", err)
	}
	// Memory may be ahead of the store: nothing is decided on it, even a
	// command that writes nothing (a claim).
	st.FailCommit = nil
	if _, err := s.Claim(ctx, ClaimRequest{Worker: "w", Max: 1, Backends: map[string]string{"builtin": "1"}}); !errors.Is(err, ErrNotSaved) {
		t.Fatalf("claim while the state could not be reloaded: %v", err)
	}
	st.FailLoad = nil
	b := submit(t, s, mkjob(t, "", `<frame id="1"/>`))
	if b != a+1 {
		t.Fatalf("next id = %d, want %d (the failed submission was never acknowledged)", b, a+1)
	}
	if js := s.Jobs(); len(js) != 2 {
		t.Fatalf("after the reload: %d jobs, want 2", len(js))
	}
}

func TestConcurrentSubmitsGetDistinctIDs(t *testing.T) {
	s := open(t, store.NewMem())
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			id := submit(t, s, mkjob(t, "", `<frame id="1"/>`))
			mu.Lock()
			seen[id] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(seen) != 50 {
		t.Fatalf("%d distinct ids for 50 jobs", len(seen))
	}
}

func TestClaimWaitWakesOnReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := open(t, store.NewMem())
		got := make(chan []Lease)
		go func() {
			ls, _ := s.ClaimWait(ctx, ClaimRequest{Worker: "w", Max: 4, Backends: builtinOnly}, time.Minute)
			got <- ls
		}()
		synctest.Wait()
		submit(t, s, mkjob(t, "", `<range first="1" last="3"/>`))
		ls := <-got
		if len(ls) != 3 {
			t.Fatalf("long-poll claim got %d frames", len(ls))
		}
		start := time.Now()
		ls, _ = s.ClaimWait(ctx, ClaimRequest{Worker: "w", Max: 4, Backends: builtinOnly}, 5*time.Second)
		if len(ls) != 0 || time.Since(start) != 5*time.Second {
			t.Fatalf("empty claim returned %d after %s", len(ls), time.Since(start))
		}
	})
}
