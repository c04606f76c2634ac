package session

import (
	"fmt"
	"strings"
	"testing"

	"github.com/distren/distren/internal/store"
)

// TestJobErrorStopsJob: a failure the backend blames on the job stops the
// whole job at once: frames not started are never leased, running ones are
// told to stop at their next heartbeat, and the job is failed with a reason
// naming the frame — also after a restart. A retry starts it again.
func TestJobErrorStopsJob(t *testing.T) {
	for _, sto := range stores {
		t.Run(sto.name, func(t *testing.T) {
			st, reopen := sto.open(t)
			s := open(t, st)
			id := submit(t, s, mkjob(t, "<retries>5</retries>", `<range first="1" last="10"/>`))
			ls := claim(t, s, "w", 3) // 1, 2, 3
			complete(t, s, "w", ls[0])
			failFrame(t, s, "w", ls[1], "Parse Error: no matching } in 'object'", true)
			hb, err := s.Heartbeat(ctx, Heartbeat{Worker: "w", Leases: []LeaseProgress{{LeaseRef: ref(ls[2])}}})
			if err != nil || len(hb.Stop) != 1 {
				t.Errorf("the running frame 3 was not told to stop: %+v, %v", hb, err)
			}
			if got := claim(t, s, "w", 10); len(got) != 0 {
				t.Errorf("claimed %v from a stopped job", frames(got))
			}
			check := func(s *Session, when string) {
				t.Helper()
				j := jobOf(t, s, id)
				want := "the farm stopped the job: frame 2 failed for a reason in the job, not the worker, so its 8 unfinished frames were canceled. " +
					"Fix the package and submit it again. frame 2: Parse Error: no matching } in 'object'"
				if j.State != JobFailed || j.Error != want {
					t.Errorf("%s: job %s: %q, want failed: %q", when, j.State, j.Error, want)
				}
				if fmt.Sprint(j.Counts) != "map[canceled:8 done:1 failed:1]" {
					t.Errorf("%s: counts %v", when, j.Counts)
				}
				if f := frameOf(t, s, id, 2); f.State != StateFailed || f.Attempts != 1 {
					t.Errorf("%s: frame 2 = %+v", when, f)
				}
			}
			check(s, "at once")
			s.Close()
			s = open(t, reopen())
			check(s, "after a restart")
			if n, err := s.Retry(ctx, id, nil); err != nil || n != 9 {
				t.Fatalf("retry = %d, %v", n, err)
			}
			if j := jobOf(t, s, id); j.State != JobRunning || j.Error != "" || j.Counts[StateReady] != 9 {
				t.Errorf("after retry: %+v", j)
			}
		})
	}
}

// TestSuspectRule: a job whose first frames all fail the same way, with no
// frame done, is stopped before its frames spend their retries — on two
// workers, or on the only one when the job has three frames or more. Any
// other pattern is retried as before.
func TestSuspectRule(t *testing.T) {
	noMatch := func(f int64) string {
		return fmt.Sprintf("no output matches *.png (the renderer wrote f-%04d.txt)", f)
	}
	cases := []struct {
		name     string
		retries  int
		frames   int
		workers  []string
		msg      func(frame int64) string
		doneOne  bool   // frame 1 renders before the others fail
		stopped  bool   // the job is stopped
		attempts int    // failed attempts before the job ended
		tried    string // the frames the reason names
	}{
		// Frames are leased lowest first, so frame 1's retries come
		// before frame 2: 3 + 3 + 2 attempts (not 36) until frame 3 has
		// failed twice.
		{"two workers", 2, 12, []string{"a", "b"}, noMatch, false, true, 8, "frames 1, 2 and 3"},
		{"one worker", 2, 12, []string{"a"}, noMatch, false, true, 8, "frames 1, 2 and 3"},
		{"no retries", 0, 12, []string{"a", "b"}, noMatch, false, true, 3, "frames 1, 2 and 3"},
		{"one frame, two workers", 2, 1, []string{"a", "b"}, noMatch, false, true, 2, "frame 1"},
		{"one worker, two frames: its retries are spent", 2, 2, []string{"a"}, noMatch, false, false, 6, ""},
		{"different messages", 1, 6, []string{"a", "b"}, func(f int64) string {
			return fmt.Sprintf("exit status %d", f%2+1)
		}, false, false, 12, ""},
		{"a frame done", 1, 6, []string{"a", "b"}, noMatch, true, false, 10, ""},
		{"the last line differs", 1, 6, []string{"a", "b"}, func(f int64) string {
			return fmt.Sprintf("exit status 1; renderer output ends with:\nsegfault at 0x%x", 0xdead+f*16)
		}, false, false, 12, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t, store.NewMem())
			id := submit(t, s, mkjob(t, fmt.Sprintf("<retries>%d</retries>", c.retries), fmt.Sprintf(`<range first="1" last="%d"/>`, c.frames)))
			for _, w := range c.workers { // every worker is live from the start
				if _, err := s.Heartbeat(ctx, Heartbeat{Worker: w}); err != nil {
					t.Fatal(err)
				}
			}
			if c.doneOne {
				complete(t, s, c.workers[0], claim(t, s, c.workers[0], 1)[0])
			}
			failed := 0
			for round := 0; round < 100 && jobOf(t, s, id).Counts[StateReady] > 0; round++ {
				for _, w := range c.workers {
					for _, l := range claim(t, s, w, 1) {
						failFrame(t, s, w, l, c.msg(l.Frame), false)
						failed++
					}
				}
			}
			j := jobOf(t, s, id)
			if j.State != JobFailed {
				t.Fatalf("job is %s: %+v", j.State, j)
			}
			stopped := strings.HasPrefix(j.Error, "the farm stopped the job")
			if stopped != c.stopped || failed != c.attempts {
				t.Errorf("stopped %v after %d failed attempts, want %v after %d: %s", stopped, failed, c.stopped, c.attempts, j.Error)
			}
			if c.stopped && !strings.Contains(j.Error, "the farm stopped the job: "+c.tried+", the first to fail") {
				t.Errorf("the reason does not name %s: %s", c.tried, j.Error)
			}
			if c.stopped && !strings.Contains(j.Error, "frame 1: no output matches *.png (the renderer wrote f-0001.txt)") {
				t.Errorf("the reason does not quote the failure: %s", j.Error)
			}
		})
	}
}

func TestFailureKey(t *testing.T) {
	for _, c := range []struct {
		a, b string
		fa   int64
		fb   int64
		same bool
	}{
		{"no output matches *.png (the renderer wrote f-0003.txt)", "no output matches *.png (the renderer wrote f-0004.txt)", 3, 4, true},
		{"exit status 1", "exit status 2", 5, 6, false},
		{"exit status 1", "exit status 2", 1, 2, true}, // each is its frame's own number
		{"exit status 1; renderer output ends with:\nframe 3\nParse Error", "exit status 1; renderer output ends with:\nframe 4\nParse Error", 3, 4, true},
		{"exit status 1; renderer output ends with:\nParse Error", "exit status 1; renderer output ends with:\nout of memory", 3, 4, false},
		{"timed out after 10m0s", "timed out after 10m0s", 10, 11, false}, // 10 is frame 10's own number
		{"timed out after 10m0s", "timed out after 10m0s", 1, 2, true},
	} {
		if got := failureKey(c.fa, c.a) == failureKey(c.fb, c.b); got != c.same {
			t.Errorf("%q (frame %d) and %q (frame %d): same %v, want %v", c.a, c.fa, c.b, c.fb, got, c.same)
		}
	}
}

// TestJobErrorInChunkKeepsItsRenderedFrames: when a frame of a chunk fails
// for a reason in the job, the frames rendered before it in the chunk, whose
// outputs may still be on their way, are kept; the frames after it, given
// back unattempted, are canceled with the rest; another worker's chunk is
// stopped.
func TestJobErrorInChunkKeepsItsRenderedFrames(t *testing.T) {
	s := openChunking(t)
	id := submit(t, s, mkjobXML(t, chunkJob))
	pov := map[string]string{"povray": "3.7", "builtin": "1"}
	ls := claimWith(t, s, "a", 1, pov) // 1-4
	other := claimWith(t, s, "b", 1, pov)
	if fmt.Sprint(frames(ls), frames(other)) != "[1 2 3 4] [5 6 7 8]" {
		t.Fatalf("chunks %v and %v", frames(ls), frames(other))
	}
	failFrame(t, s, "a", ls[1], "Parse Error in frame 2", true)
	complete(t, s, "a", ls[0]) // frame 1's output arrives after frame 2's failure
	for _, l := range ls[2:] {
		if err := s.Release(ctx, "a", id, l.Frame, l.Epoch); err != nil {
			t.Fatal(err)
		}
	}
	hb, _ := s.Heartbeat(ctx, Heartbeat{Worker: "b", Leases: []LeaseProgress{{LeaseRef: ref(other[0])}}})
	if len(hb.Stop) != 1 {
		t.Errorf("the other worker's chunk was not stopped: %+v", hb)
	}
	fs, _ := s.Frames(id, nil)
	var got []string
	for _, f := range fs {
		got = append(got, fmt.Sprintf("%d:%s", f.ID, f.State))
	}
	if want := "[1:done 2:failed 3:canceled 4:canceled 5:canceled 6:canceled 7:canceled 8:canceled 9:canceled 10:canceled 12:canceled 13:canceled 14:canceled 15:canceled]"; fmt.Sprint(got) != want {
		t.Errorf("frames %v, want %s", got, want)
	}
	if j := jobOf(t, s, id); j.State != JobFailed || !strings.Contains(j.Error, "frame 2 failed for a reason in the job, not the worker, so its 10 unfinished frames were canceled") {
		t.Errorf("job %+v", j)
	}
}
