package session

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/distren/distren/internal/store"
)

// openPeered opens a session of the server "farm" whose peer is b.
func openPeered(t *testing.T, st store.Store) *Session {
	t.Helper()
	s, err := Open(ctx, st, Options{Name: "farm", LeaseTTL: ttl, Peers: []string{"b"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func waitList(s *Session) string {
	var out []string
	for _, r := range s.RemoteWaits() {
		out = append(out, r.String())
	}
	return strings.Join(out, " ")
}

// remoteJob's frame 1 depends on frame 3 of b's job 7, its frame 2 on its
// frame 1, and its frame 3 on nothing.
const remoteJob = `<frame id="1"><depends on="distren://b/7/frame/3"/></frame>
<frame id="2"><depends on="1"/></frame><frame id="3"/>`

// TestRemoteDone: a frame that depends on a peer's frame waits for it —
// the submission signals that the peer's frame is waited for — and, once
// the session is told it is done there, runs with its output, which stays
// live in the vault.
func TestRemoteDone(t *testing.T) {
	s := openPeered(t, store.NewMem())
	sig := s.RemoteSignal()
	id := submit(t, s, mkjob(t, "", remoteJob))
	if !closed(sig) {
		t.Fatal("RemoteSignal taken before the submission is not closed after it")
	}
	if closed(s.RemoteSignal()) {
		t.Error("the RemoteSignal after the submission is already closed")
	}
	if got, want := waitList(s), "distren://b/7/frame/3"; got != want {
		t.Fatalf("RemoteWaits = %q, want %q", got, want)
	}
	if got := frames(claim(t, s, "w", 10)); !slices.Equal(got, []int64{3}) {
		t.Fatalf("claimed %v, want only [3]: 1 waits for b/7/3, 2 for 1", got)
	}
	if st := state(t, s, id, 1); st != StateWaiting {
		t.Fatalf("frame 1 is %s", st)
	}

	out := fmt.Sprintf("%064x", 0xb73)
	if err := s.RemoteDone(ctx, RemoteFrame{Server: "b", Job: 7, Frame: 3}, out, 42); err != nil {
		t.Fatal(err)
	}
	if got := waitList(s); got != "" {
		t.Errorf("RemoteWaits after it is done = %q", got)
	}
	if st := state(t, s, id, 1); st != StateReady {
		t.Fatalf("frame 1 is %s once b/7/3 is done", st)
	}
	ls := claim(t, s, "w", 10)
	if len(ls) != 1 || ls[0].Frame != 1 {
		t.Fatalf("claimed %v, want [1]", frames(ls))
	}
	if want := []DepOutput{{Job: 7, Frame: 3, Output: out, Size: 42}}; !slices.Equal(ls[0].Deps, want) {
		t.Errorf("lease deps = %+v, want %+v", ls[0].Deps, want)
	}
	if !s.LiveObjects()[out] {
		t.Errorf("the peer's output %s is not among the live objects", out)
	}
	// A second report of it (a stream reconnected) changes nothing.
	if err := s.RemoteDone(ctx, RemoteFrame{Server: "b", Job: 7, Frame: 3}, fmt.Sprintf("%064x", 1), 1); err != nil {
		t.Fatal(err)
	}
	if s.LiveObjects()[fmt.Sprintf("%064x", 1)] {
		t.Error("a second report of a done frame replaced its output")
	}
}

// TestRemoteFailed: a frame that depends on a peer's frame that failed,
// or was canceled, there is reported failed naming that frame, and so is
// the frame that waits for it here; the job fails once nothing else runs.
func TestRemoteFailed(t *testing.T) {
	for _, c := range []struct {
		name     string
		canceled bool
		fault    string
	}{
		{"failed", false, "failed: scene b.pov does not parse"},
		{"canceled", true, "was canceled on b"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := openPeered(t, store.NewMem())
			id := submit(t, s, mkjob(t, "", remoteJob))
			complete(t, s, "w", leaseOf(t, s, "w", id, 3))
			if err := s.RemoteFailed(ctx, RemoteFrame{Server: "b", Job: 7, Frame: 3}, c.canceled, "scene b.pov does not parse\nat line 3"); err != nil {
				t.Fatal(err)
			}
			f1, f2 := frameOf(t, s, id, 1), frameOf(t, s, id, 2)
			if want := "depends on distren://b/7/frame/3, which " + c.fault; f1.State != StateFailed || f1.Error != want {
				t.Errorf("frame 1: %s %q\nwant failed %q", f1.State, f1.Error, want)
			}
			if want := fmt.Sprintf("depends on distren://farm/%d/frame/1, which waits for distren://b/7/frame/3, which %s", id, c.fault); f2.State != StateFailed || f2.Error != want {
				t.Errorf("frame 2: %s %q\nwant failed %q", f2.State, f2.Error, want)
			}
			j, err := s.Job(id)
			if err != nil {
				t.Fatal(err)
			}
			if j.State != JobFailed || !strings.Contains(j.Error, "distren://b/7/frame/3") {
				t.Errorf("job: %s %q, want failed naming b/7/3", j.State, j.Error)
			}
			if got := waitList(s); got != "" {
				t.Errorf("RemoteWaits after it failed = %q", got)
			}
		})
	}
}

// TestRemoteWaitAfterRestart: what is known of the peers' frames is not
// stored: after a restart the frame done there is waited for again, and
// the frames here that depend on it wait.
func TestRemoteWaitAfterRestart(t *testing.T) {
	for _, sc := range stores {
		t.Run(sc.name, func(t *testing.T) {
			st, reopen := sc.open(t)
			s := openPeered(t, st)
			id := submit(t, s, mkjob(t, "", remoteJob))
			if err := s.RemoteDone(ctx, RemoteFrame{Server: "b", Job: 7, Frame: 3}, fmt.Sprintf("%064x", 0xb73), 42); err != nil {
				t.Fatal(err)
			}
			if st := state(t, s, id, 1); st != StateReady {
				t.Fatalf("frame 1 is %s once b/7/3 is done", st)
			}
			s.Close()

			s = openPeered(t, reopen())
			if got, want := waitList(s), "distren://b/7/frame/3"; got != want {
				t.Errorf("RemoteWaits after the restart = %q, want %q", got, want)
			}
			for f, want := range map[int64]string{1: StateWaiting, 2: StateWaiting, 3: StateReady} {
				if got := state(t, s, id, f); got != want {
					t.Errorf("frame %d is %s after the restart, want %s", f, got, want)
				}
			}
			if got := frames(claim(t, s, "w", 10)); !slices.Equal(got, []int64{3}) {
				t.Errorf("claimed %v after the restart, want [3]", got)
			}
			// Told again, it proceeds again.
			if err := s.RemoteDone(ctx, RemoteFrame{Server: "b", Job: 7, Frame: 3}, fmt.Sprintf("%064x", 0xb73), 42); err != nil {
				t.Fatal(err)
			}
			if got := frames(claim(t, s, "w", 10)); !slices.Equal(got, []int64{1}) {
				t.Errorf("claimed %v once b/7/3 is done again, want [1]", got)
			}
		})
	}
}

// TestRemoteNotAPeer: a dependency on a server that is not a peer is
// refused at submission, naming the peers.
func TestRemoteNotAPeer(t *testing.T) {
	s := openPeered(t, store.NewMem())
	_, err := s.Submit(ctx, mkjob(t, "", `<frame id="1"><depends on="distren://c/7/frame/3"/></frame>`))
	if err == nil || !strings.Contains(err.Error(), `server "c"`) || !strings.Contains(err.Error(), "its peers are b") {
		t.Fatalf("submit: %v, want a refusal naming c and the peers", err)
	}
	if jobs := s.Jobs(); len(jobs) != 0 {
		t.Errorf("jobs after a refused submission: %+v", jobs)
	}
}

// TestRetryBlockedByRemote: retrying a job whose frames cannot run only
// because a peer's frame failed asks the peer for that frame again (it may
// have been retried there): the frames wait for it, and fail again, naming
// it where it is, if it is still failed.
func TestRetryBlockedByRemote(t *testing.T) {
	s := openPeered(t, store.NewMem())
	id := submit(t, s, mkjob(t, "", `<frame id="1"><depends on="distren://b/7/frame/3"/></frame>`))
	r := RemoteFrame{Server: "b", Job: 7, Frame: 3}
	if err := s.RemoteFailed(ctx, r, false, "boom"); err != nil {
		t.Fatal(err)
	}
	if waits := s.RemoteWaits(); len(waits) != 0 {
		t.Fatalf("waits once b/7/3 failed: %v", waits)
	}
	sig := s.RemoteSignal()
	n, err := s.Retry(ctx, id, nil)
	if err != nil || n != 1 {
		t.Fatalf("retry: %d frames, %v; want 1, nil", n, err)
	}
	select {
	case <-sig:
	default:
		t.Error("retry did not signal that frames wait for peers' frames again")
	}
	if waits := s.RemoteWaits(); !slices.Equal(waits, []RemoteFrame{r}) {
		t.Errorf("waits after the retry: %v, want [%v]", waits, r)
	}
	if f, _ := s.Frame(id, 1); f.State != StateWaiting {
		t.Errorf("frame 1 after the retry: %s, want waiting", f.State)
	}
	if err := s.RemoteFailed(ctx, r, false, "boom again"); err != nil {
		t.Fatal(err)
	}
	if f, _ := s.Frame(id, 1); f.State != StateFailed || !strings.Contains(f.Error, "distren://b/7/frame/3, which failed: boom again") {
		t.Errorf("frame 1 once b/7/3 failed again: %s %q", f.State, f.Error)
	}
}

// TestRemoteNoLongerNeeded: a peer's frame whose dependents here are all
// done is not followed again after a restart; once the jobs that used its
// output are deleted, the output is no longer kept from the collector.
func TestRemoteNoLongerNeeded(t *testing.T) {
	st := store.NewMem()
	s := openPeered(t, st)
	id := submit(t, s, mkjob(t, "", `<frame id="1"><depends on="distren://b/7/frame/3"/></frame>`))
	r := RemoteFrame{Server: "b", Job: 7, Frame: 3}
	const out = "aa00000000000000000000000000000000000000000000000000000000000000"
	if err := s.RemoteDone(ctx, r, out, 10); err != nil {
		t.Fatal(err)
	}
	complete(t, s, "w", claim(t, s, "w", 1)[0])
	s.Close()

	s = openPeered(t, st)
	if waits := s.RemoteWaits(); len(waits) != 0 {
		t.Errorf("after a restart with every dependent done, waits %v; want none", waits)
	}
	s.Close()

	s = openPeered(t, store.NewMem())
	id = submit(t, s, mkjob(t, "", `<frame id="1"><depends on="distren://b/7/frame/3"/></frame>`))
	if err := s.RemoteDone(ctx, r, out, 10); err != nil {
		t.Fatal(err)
	}
	if !s.LiveObjects()[out] {
		t.Fatal("the peer's output is not live while a job uses it")
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if s.LiveObjects()[out] {
		t.Error("the peer's output is still live once the job that used it is deleted")
	}
}
