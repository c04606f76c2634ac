package federation

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/session"
)

func remote(job, frame int64) session.RemoteFrame {
	return session.RemoteFrame{Server: "pb", Job: job, Frame: frame}
}

// summary is a job's summary with the given frame counts.
func summary(id int64, counts map[string]int) api.Job {
	return api.Job{ID: id, Counts: counts}
}

// watching starts the federation's following of the peers' jobs; it ends
// with the synctest bubble's test.
func watching(t *testing.T, f *Federation) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go f.watchRemotes(ctx)
	synctest.Wait()
}

// TestWatchSettles: one stream per job of the peer waited for; at its
// first event a frame done there has its output fetched into the vault,
// once, and the farm told; a frame still running is asked for again only
// when the job's count of ended frames changes; a failed frame fails here
// with the peer's message; once nothing waits for the job its stream is
// closed, and a frame that comes to wait for it opens another.
func TestWatchSettles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		home := newFakeHome(t, "home")
		pb := newFakePeer(t, "pb")
		out := hashOf([]byte("frame 1's output"))
		pb.set(func(p *fakePeer) { p.blobs[out] = []byte("frame 1's output") })
		pb.setFrame(7, api.Frame{ID: 1, State: api.StateDone, Output: out, Size: 16})
		pb.setFrame(7, api.Frame{ID: 2, State: api.StateRunning})
		f := newFed(t, home, pb)
		home.wait(remote(7, 1), remote(7, 2))
		watching(t, f)

		if got := pb.openStreams(); !slices.Equal(got, []int64{7}) {
			t.Fatalf("streams open before any event: %v, want one of job 7", got)
		}
		if got := home.remoteEnds(); len(got) != 0 {
			t.Fatalf("frames settled before the stream's first event: %+v", got)
		}

		pb.push(summary(7, map[string]int{api.StateDone: 1, api.StateRunning: 1}))
		synctest.Wait()
		if got, want := home.remoteEnds(), []remoteEnd{{frame: remote(7, 1), output: out}}; !slices.Equal(got, want) {
			t.Fatalf("after the first event: %+v, want %+v", got, want)
		}
		if b, ok := home.object(out); !ok || string(b) != "frame 1's output" {
			t.Errorf("the output is not kept here: %q %v", b, ok)
		}
		gets := 0
		pb.set(func(p *fakePeer) { gets = p.frameGets })

		// A change that ends no frame (progress, a claim) asks nothing.
		pb.push(summary(7, map[string]int{api.StateDone: 1, api.StateRunning: 1}))
		synctest.Wait()
		pb.set(func(p *fakePeer) {
			if p.frameGets != gets {
				t.Errorf("an event that ends no frame asked for %d frames", p.frameGets-gets)
			}
		})

		pb.setFrame(7, api.Frame{ID: 2, State: api.StateFailed, Error: "scene b.pov does not parse"})
		pb.push(summary(7, map[string]int{api.StateDone: 1, api.StateFailed: 1}))
		synctest.Wait()
		want := []remoteEnd{{frame: remote(7, 1), output: out}, {frame: remote(7, 2), failed: true, msg: "scene b.pov does not parse"}}
		if got := home.remoteEnds(); !slices.Equal(got, want) {
			t.Fatalf("after frame 2 failed: %+v, want %+v", got, want)
		}
		if got := pb.openStreams(); len(got) != 0 {
			t.Errorf("streams open once nothing waits: %v", got)
		}
		if got := pb.snapshot().blobGets[out]; got != 1 {
			t.Errorf("the output was fetched %d times, want once", got)
		}
		if got := home.snapshot().keeps; !slices.Equal(got, []string{out}) {
			t.Errorf("kept %v, want [%s]", got, out)
		}

		// Another frame comes to wait for the job: it is followed again.
		pb.setFrame(7, api.Frame{ID: 3, State: api.StateDone, Output: out, Size: 16})
		home.wait(remote(7, 3))
		synctest.Wait()
		if got := pb.openStreams(); !slices.Equal(got, []int64{7}) {
			t.Fatalf("streams open once 7/3 is waited for: %v, want one of job 7", got)
		}
		pb.push(summary(7, map[string]int{api.StateDone: 2, api.StateFailed: 1}))
		synctest.Wait()
		if got := home.remoteEnds(); len(got) != 3 || got[2] != (remoteEnd{frame: remote(7, 3), output: out}) {
			t.Errorf("after 7/3 done: %+v", got)
		}
		pb.set(func(p *fakePeer) {
			if !slices.Equal(p.eventCalls, []int64{7, 7}) {
				t.Errorf("streams opened for jobs %v, want [7 7]", p.eventCalls)
			}
		})
	})
}

// TestWatchEnds: a frame canceled there fails here as canceled; a frame
// the peer does not have, or of a job deleted there, cannot be had; each
// job waited for has its own stream.
func TestWatchEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		home := newFakeHome(t, "home")
		pb := newFakePeer(t, "pb")
		pb.setFrame(7, api.Frame{ID: 1, State: api.StateCanceled, Error: "canceled by a user"})
		pb.setFrame(9, api.Frame{ID: 4, State: api.StateRunning})
		f := newFed(t, home, pb)
		home.wait(remote(7, 1), remote(7, 5), remote(9, 4))
		watching(t, f)
		if got := pb.openStreams(); !slices.Equal(got, []int64{7, 9}) {
			t.Fatalf("streams open: %v, want one of job 7 and one of 9", got)
		}

		pb.push(summary(7, map[string]int{api.StateCanceled: 1}))
		synctest.Wait()
		ends := home.remoteEnds()
		if len(ends) != 2 {
			t.Fatalf("after job 7's first event: %+v, want 7/1 and 7/5 ended", ends)
		}
		if want := (remoteEnd{frame: remote(7, 1), failed: true, canceled: true, msg: "canceled by a user"}); ends[0] != want {
			t.Errorf("7/1: %+v, want %+v", ends[0], want)
		}
		if e := ends[1]; e.frame != remote(7, 5) || !e.failed || e.canceled ||
			!strings.Contains(e.msg, "distren://pb/7/frame/5 cannot be had") || !strings.Contains(e.msg, "no frame 5") {
			t.Errorf("7/5, which the peer does not have: %+v", e)
		}
		if got := pb.openStreams(); !slices.Equal(got, []int64{9}) {
			t.Errorf("streams open once nothing waits for job 7: %v, want [9]", got)
		}

		pb.push(summary(9, map[string]int{api.StateRunning: 1}))
		synctest.Wait()
		if got := len(home.remoteEnds()); got != 2 {
			t.Errorf("a running frame was settled: %+v", home.remoteEnds())
		}
		pb.set(func(p *fakePeer) { delete(p.frames, [2]int64{9, 4}) })
		pb.pushDeleted(9)
		synctest.Wait()
		ends = home.remoteEnds()
		if len(ends) != 3 || ends[2].frame != remote(9, 4) || !ends[2].failed || !strings.Contains(ends[2].msg, "cannot be had") {
			t.Errorf("after job 9 was deleted there: %+v, want 9/4 failed", ends)
		}
		if got := pb.openStreams(); len(got) != 0 {
			t.Errorf("streams open once nothing waits: %v", got)
		}
	})
}

// TestWatchReconnects: a stream that cannot be opened is tried again
// after 1 s, 2 s, 4 s; once open, its first event settles what happened
// meanwhile; a stream lost is opened again a second later, and its first
// event settles the frame whatever the counts.
func TestWatchReconnects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		home := newFakeHome(t, "home")
		pb := newFakePeer(t, "pb")
		pb.set(func(p *fakePeer) { p.eventsErr = errors.New("connection refused") })
		pb.setFrame(7, api.Frame{ID: 1, State: api.StateRunning})
		f := newFed(t, home, pb)
		home.wait(remote(7, 1))
		watching(t, f)

		calls := func() int {
			n := 0
			pb.set(func(p *fakePeer) { n = len(p.eventCalls) })
			return n
		}
		if n := calls(); n != 1 {
			t.Fatalf("%d attempts to open the stream at once, want 1", n)
		}
		for k, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
			time.Sleep(wait - time.Millisecond)
			synctest.Wait()
			if n := calls(); n != k+1 {
				t.Fatalf("attempt %d made before %v", n, wait)
			}
			if k == 2 {
				pb.set(func(p *fakePeer) { p.eventsErr = nil })
			}
			time.Sleep(time.Millisecond)
			synctest.Wait()
			if n := calls(); n != k+2 {
				t.Fatalf("%d attempts %v after the last, want %d", n, wait, k+2)
			}
		}
		if got := pb.openStreams(); !slices.Equal(got, []int64{7}) {
			t.Fatalf("streams open once the peer answers: %v", got)
		}
		pb.push(summary(7, map[string]int{api.StateRunning: 1}))
		synctest.Wait()
		if got := home.remoteEnds(); len(got) != 0 {
			t.Fatalf("a running frame was settled: %+v", got)
		}

		// The connection is lost; meanwhile the frame fails there.
		pb.setFrame(7, api.Frame{ID: 1, State: api.StateFailed, Error: "out of memory"})
		pb.drop(7)
		synctest.Wait()
		time.Sleep(time.Second - time.Millisecond)
		synctest.Wait()
		if n := calls(); n != 4 {
			t.Fatalf("the lost stream was opened again within a second (%d attempts)", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := pb.openStreams(); !slices.Equal(got, []int64{7}) {
			t.Fatalf("the lost stream was not opened again a second later: %v", got)
		}
		// The same counts as the lost stream's last event: a new stream's
		// first event settles all the same.
		pb.push(summary(7, map[string]int{api.StateRunning: 1}))
		synctest.Wait()
		if got, want := home.remoteEnds(), []remoteEnd{{frame: remote(7, 1), failed: true, msg: "out of memory"}}; !slices.Equal(got, want) {
			t.Fatalf("after reconnecting: %+v, want %+v", got, want)
		}
		if got := pb.openStreams(); len(got) != 0 {
			t.Errorf("streams open once nothing waits: %v", got)
		}
	})
}

// TestWatchRetriesFailedFetch: a peer's frame done whose output could not
// be fetched is fetched again later, though the peer's job changes no
// more (its stream only keeps alive).
func TestWatchRetriesFailedFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		home := newFakeHome(t, "home")
		pb := newFakePeer(t, "pb")
		out := hashOf([]byte("out"))
		pb.set(func(p *fakePeer) {
			p.blobs[out] = []byte("out")
			p.blobErr = errors.New("503 Service Unavailable")
		})
		pb.setFrame(7, api.Frame{ID: 1, State: api.StateDone, Output: out, Size: 3})
		f := newFed(t, home, pb)
		home.wait(remote(7, 1))
		watching(t, f)
		pb.push(summary(7, map[string]int{api.StateDone: 1}))
		synctest.Wait()
		if got := home.remoteEnds(); len(got) != 0 {
			t.Fatalf("settled though its output could not be fetched: %+v", got)
		}
		pb.set(func(p *fakePeer) { p.blobErr = nil })
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := home.remoteEnds(); len(got) != 1 {
			t.Errorf("a minute after the peer serves the output again: %+v, want 7/1 done", got)
		}
	})
}
