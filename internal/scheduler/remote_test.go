package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// withPeers is a scheduler of the server "farm" whose peers are peers,
// with jobs (ids 1, 2, ... in this order) checked and submitted.
func withPeers(t *testing.T, peers []string, jobs ...string) *Scheduler {
	t.Helper()
	s := New(Options{Name: "farm", LeaseTTL: ttl, BlocklistAfter: 3, Peers: peers})
	s.SetBoot(7)
	for k, raw := range jobs {
		j := NewJob(int64(k+1), parse(t, raw))
		if err := s.Check(j); err != nil {
			t.Fatal(err)
		}
		if err := s.Submit(j); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func rf(server string, job, frame int64) RemoteFrame { return RemoteFrame{server, job, frame} }

func waits(s *Scheduler) string {
	var out []string
	for _, r := range s.RemoteWaits() {
		out = append(out, r.String())
	}
	return strings.Join(out, " ")
}

// states shows the states of the frames of job, in order.
func states(s *Scheduler, job int64) string {
	j := s.Job(job)
	var out []string
	for i := range j.Frames {
		out = append(out, fmt.Sprintf("%d:%v", j.Frames[i].ID, j.Frames[i].State))
	}
	return strings.Join(out, " ")
}

// TestRemoteWaits: frames that depend on frames of peers wait; the peers'
// frames waited for are listed sorted, once each, while they wait and
// frames here depend on them; a peer's frame done readies the frames that
// have no other unmet dependency (a local one included); news of frames
// not waited for, or already ended, changes nothing.
func TestRemoteWaits(t *testing.T) {
	s := withPeers(t, []string{"b", "c"}, manifestXML("", `
<frame id="1"><depends on="distren://c/1/frame/5"/></frame>
<frame id="2"><depends on="distren://b/7/frame/3"/><depends on="distren://b/7/frame/1"/></frame>
<frame id="3"><depends on="distren://b/7/frame/3"/></frame>
<frame id="4"/>
<frame id="5"><depends on="4"/><depends on="distren://b/7/frame/1"/></frame>
<frame id="6"><depends on="distren://b/10/frame/2"/></frame>`))
	if got, want := states(s, 1), "1:waiting 2:waiting 3:waiting 4:ready 5:waiting 6:waiting"; got != want {
		t.Fatalf("after submit: %s, want %s", got, want)
	}
	if got, want := waits(s), "distren://b/7/frame/1 distren://b/7/frame/3 distren://b/10/frame/2 distren://c/1/frame/5"; got != want {
		t.Fatalf("RemoteWaits = %s\nwant           %s", got, want)
	}

	if !s.RemoteDone(rf("b", 7, 3)) {
		t.Fatal("RemoteDone of a frame waited for reported no change")
	}
	if got, want := states(s, 1), "1:waiting 2:waiting 3:ready 4:ready 5:waiting 6:waiting"; got != want {
		t.Errorf("after b/7/3 done: %s, want %s", got, want)
	}
	if !s.Woke() {
		t.Error("a frame became ready and Woke does not say so")
	}
	if got, want := waits(s), "distren://b/7/frame/1 distren://b/10/frame/2 distren://c/1/frame/5"; got != want {
		t.Errorf("RemoteWaits after b/7/3 done = %s, want %s", got, want)
	}

	for _, r := range []RemoteFrame{rf("b", 7, 3), rf("b", 7, 99), rf("b", 8, 1), rf("c", 7, 3), rf("zz", 1, 5)} {
		if s.RemoteDone(r) {
			t.Errorf("RemoteDone(%v) reported a change", r)
		}
		if s.RemoteFailed(r, false, "late") {
			t.Errorf("RemoteFailed(%v) reported a change", r)
		}
	}
	if got, want := states(s, 1), "1:waiting 2:waiting 3:ready 4:ready 5:waiting 6:waiting"; got != want {
		t.Errorf("after news of frames not waited for: %s, want %s", got, want)
	}

	// Frame 5 waits for frame 4 here as well.
	s.RemoteDone(rf("b", 7, 1))
	if got, want := states(s, 1), "1:waiting 2:ready 3:ready 4:ready 5:waiting 6:waiting"; got != want {
		t.Errorf("after b/7/1 done: %s, want %s", got, want)
	}
	j, i := lease(t, s, t0, "w", 1, 2)
	s.Complete(j, i)
	j, i = lease(t, s, t0, "w", 1, 3)
	s.Complete(j, i)
	j, i = lease(t, s, t0, "w", 1, 4)
	s.Complete(j, i)
	if got := state(s, 1, 5); got != Ready {
		t.Errorf("frame 5 is %v once b/7/1 and 4 are done", got)
	}

	// A job depending on a peer's frame already done does not wait for it.
	j2 := NewJob(2, parse(t, manifestXML("", `<frame id="1"><depends on="distren://b/7/frame/3"/></frame>`)))
	if err := s.Check(j2); err != nil {
		t.Fatal(err)
	}
	if err := s.Submit(j2); err != nil {
		t.Fatal(err)
	}
	if got := state(s, 2, 1); got != Ready {
		t.Errorf("a frame depending on a peer's frame known done is %v", got)
	}

	// Once no frame here depends on a peer's frame, it is not waited for.
	s.Remove(s.Job(1))
	if got := waits(s); got != "" {
		t.Errorf("RemoteWaits after the job is removed = %s, want none", got)
	}
}

// TestRemoteFailed: a peer's frame that failed, or was canceled, there
// blocks the frames that depend on it, transitively and across jobs, and
// is their root; a job submitted afterwards is blocked at once.
func TestRemoteFailed(t *testing.T) {
	for _, canceled := range []bool{false, true} {
		t.Run(fmt.Sprintf("canceled=%v", canceled), func(t *testing.T) {
			s := withPeers(t, []string{"b"},
				manifestXML("", `<frame id="1"><depends on="distren://b/7/frame/3"/></frame>
<frame id="2"><depends on="1"/></frame><frame id="3"/><frame id="4"><depends on="distren://b/7/frame/4"/></frame>`),
				manifestXML("", `<frame id="1"><depends on="distren://farm/1/frame/2"/></frame><frame id="2"/>`))
			if !s.RemoteFailed(rf("b", 7, 3), canceled, "scene b.pov does not parse") {
				t.Fatal("RemoteFailed of a frame waited for reported no change")
			}
			if got, want := states(s, 1), "1:blocked 2:blocked 3:ready 4:waiting"; got != want {
				t.Errorf("job 1: %s, want %s", got, want)
			}
			if got, want := states(s, 2), "1:blocked 2:ready"; got != want {
				t.Errorf("job 2: %s, want %s", got, want)
			}
			want := Failed
			if canceled {
				want = Canceled
			}
			for _, r := range []Ref{{s.Job(1), 0}, {s.Job(1), 1}, {s.Job(2), 0}} {
				root := s.RootOf(r)
				rj := root.Job
				if rj.Remote != "b" || rj.RemoteID != 7 || rj.Frames[root.Idx].ID != 3 ||
					rj.Frames[root.Idx].State != want || rj.Frames[root.Idx].Err != "scene b.pov does not parse" {
					t.Errorf("root of %d/%d: server %q job %d frame %d, %v %q; want b/7/3, %v", r.Job.ID, r.Job.Frames[r.Idx].ID,
						rj.Remote, rj.RemoteID, rj.Frames[root.Idx].ID, rj.Frames[root.Idx].State, rj.Frames[root.Idx].Err, want)
				}
			}
			if e := s.Job(2).ErrFrame; e != 0 {
				t.Errorf("job 2's error frame is %d, want its blocked frame 0", e)
			}
			if got, want := waits(s), "distren://b/7/frame/4"; got != want {
				t.Errorf("RemoteWaits = %q, want %q", got, want)
			}
			if s.RemoteFailed(rf("b", 7, 3), false, "again") || s.RemoteDone(rf("b", 7, 3)) {
				t.Error("news of a peer's frame that ended already reported a change")
			}
			if got := s.RootOf(Ref{s.Job(1), 0}); got.Job.Frames[got.Idx].Err != "scene b.pov does not parse" {
				t.Errorf("a second report changed the message to %q", got.Job.Frames[got.Idx].Err)
			}

			j3 := NewJob(3, parse(t, manifestXML("", `<frame id="1"><depends on="distren://b/7/frame/3"/></frame>`)))
			if err := s.Check(j3); err != nil {
				t.Fatal(err)
			}
			if err := s.Submit(j3); err != nil {
				t.Fatal(err)
			}
			if got := state(s, 3, 1); got != Blocked {
				t.Errorf("a job submitted after the peer's frame ended badly: its frame is %v, want blocked", got)
			}
			if g := grants(s.Claim(t0, "w", builtin, 10)); g != "1/3 2/2" {
				t.Errorf("claim %q, want only the frames not blocked (1/3 2/2)", g)
			}
		})
	}
}

// TestRemoteNotAPeer: a dependency on a server that is neither this one
// nor a peer is refused, naming the peers; the frames of peers named by a
// refused job are not waited for.
func TestRemoteNotAPeer(t *testing.T) {
	cases := []struct {
		peers []string
		want  []string
	}{
		{[]string{"b", "c"}, []string{"frame 2", "distren://zz/1/frame/5", `server "zz"`, "(farm)", "its peers are b, c"}},
		{nil, []string{"frame 1", "distren://b/4/frame/1", `server "b"`, "it has none"}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.peers), func(t *testing.T) {
			s := withPeers(t, c.peers)
			j := NewJob(1, parse(t, manifestXML("", `<frame id="1"><depends on="distren://b/4/frame/1"/></frame>
<frame id="2"><depends on="distren://zz/1/frame/5"/></frame>`)))
			err := s.Check(j)
			if err == nil {
				t.Fatal("Check accepted a dependency on a server that is not a peer")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if got := waits(s); got != "" {
				t.Errorf("RemoteWaits after a refused job = %s, want none", got)
			}
		})
	}
}

// TestTakeChanged: the jobs whose frames changed state are returned once
// each, after dst, never a peer's stand-in, and not again.
func TestTakeChanged(t *testing.T) {
	s := withPeers(t, []string{"b"},
		manifestXML("", `<frame id="1"><depends on="distren://b/7/frame/3"/></frame><frame id="2"><depends on="distren://b/7/frame/3"/></frame>`),
		manifestXML("", `<frame id="1"/><frame id="2"/>`),
		manifestXML("", `<frame id="1"><depends on="distren://b/7/frame/4"/></frame>`))
	// Job 1's and 3's frames all wait: nothing of them changed state.
	if got := s.TakeChanged(nil); !slices.Equal(got, []int64{2}) {
		t.Errorf("after submits: %v, want [2]", got)
	}
	if got := s.TakeChanged(nil); len(got) != 0 {
		t.Errorf("taken again: %v, want none", got)
	}
	s.RemoteDone(rf("b", 7, 3)) // two frames of job 1 ready, and the stand-in's frame done
	j, i := lease(t, s, t0, "w", 1, 1)
	if got := s.TakeChanged([]int64{99}); !slices.Equal(got, []int64{99, 1}) {
		t.Errorf("after b/7/3 done and a claim: %v, want [99 1]", got)
	}
	s.Complete(j, i)
	s.RemoteFailed(rf("b", 7, 4), true, "")
	j, i = lease(t, s, t0, "w", 1, 2)
	s.Release(j, i)
	got := s.TakeChanged(nil)
	slices.Sort(got)
	if !slices.Equal(got, []int64{1, 3}) {
		t.Errorf("after a completion, a release and b/7/4 canceled: %v, want [1 3]", got)
	}
	if got := s.TakeChanged(nil); len(got) != 0 {
		t.Errorf("taken again: %v, want none", got)
	}
}
