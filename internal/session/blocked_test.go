package session

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/store"
)

// stores are the store implementations a restart test runs against: each
// returns a store and a function that reopens it as after a kill -9.
var stores = []struct {
	name string
	open func(t *testing.T) (store.Store, func() store.Store)
}{
	{"mem", func(t *testing.T) (store.Store, func() store.Store) {
		m := store.NewMem()
		return m, func() store.Store { return m }
	}},
	{"sqlite", func(t *testing.T) (store.Store, func() store.Store) {
		path := filepath.Join(t.TempDir(), "state.db")
		open := func() store.Store {
			st, err := store.OpenSQLite(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}
		return open(), open
	}},
}

// failFrame fails a leased frame for good (retries 0) or once.
func failFrame(t *testing.T, s *Session, w string, l Lease, msg string, jobError bool) {
	t.Helper()
	if err := s.Fail(ctx, w, l.Job, l.Frame, l.Epoch, msg, jobError); err != nil {
		t.Fatalf("fail %d/%d: %v", l.Job, l.Frame, err)
	}
}

// leaseOf claims until job's frame is leased to w, completing nothing.
func leaseOf(t *testing.T, s *Session, w string, job, frame int64) Lease {
	t.Helper()
	for _, l := range claim(t, s, w, 64) {
		if l.Job == job && l.Frame == frame {
			return l
		}
	}
	t.Fatalf("frame %d of job %d was not leased", frame, job)
	return Lease{}
}

func frameOf(t *testing.T, s *Session, job, frame int64) Frame {
	t.Helper()
	f, err := s.Frame(job, frame)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestDependencyOnFrameThatCannotComplete: a frame that depends on a frame
// of another job that failed, was canceled, or was canceled when the farm
// stopped its job does not wait forever: it fails with a message naming
// that frame's URL, and so do the frames waiting for it (transitively, in
// its job); its job fails once nothing else can run. The same holds after
// a restart, and when the dependent job is submitted after the failure.
// Retrying the dependent job alone is refused with the frame to retry;
// retrying the frame at fault brings the dependents back.
func TestDependencyOnFrameThatCannotComplete(t *testing.T) {
	ends := []struct {
		name string
		end  func(t *testing.T, s *Session, a int64, ls []Lease) // makes frame 7 of job a (leased: ls) end badly
		want string                                              // in the dependents' messages
	}{
		{"failed", func(t *testing.T, s *Session, a int64, ls []Lease) {
			failFrame(t, s, "w", ls[1], "exit status 3; renderer output ends with:\nParse Error: no } near line 7", false)
		}, "which failed: exit status 3; renderer output ends with: Parse Error: no } near line 7"},
		{"canceled", func(t *testing.T, s *Session, a int64, ls []Lease) {
			if _, err := s.Cancel(ctx, a); err != nil {
				t.Fatal(err)
			}
		}, "which was canceled"},
		{"stopped", func(t *testing.T, s *Session, a int64, ls []Lease) {
			failFrame(t, s, "w", ls[0], "Parse Error: no matching }", true)
		}, "which was canceled when the farm stopped its job distren://farm/1 for a fault of its own"},
	}
	for _, end := range ends {
		for _, after := range []bool{false, true} {
			for _, sto := range stores {
				t.Run(fmt.Sprintf("%s/submitted-after=%v/%s", end.name, after, sto.name), func(t *testing.T) {
					st, reopen := sto.open(t)
					s := open(t, st)
					a := submit(t, s, mkjob(t, "<retries>0</retries>", `<frame id="6"/><frame id="7"/>`))
					b := a + 1
					dep := fmt.Sprintf(`<frame id="1"><depends on="distren://farm/%d/frame/7"/></frame>
						<frame id="2"><depends on="1"/></frame><frame id="3"/>`, a)
					ls := claim(t, s, "w", 2) // frames 6 and 7
					if !after {
						submit(t, s, mkjob(t, "", dep))
						if j := jobOf(t, s, b); j.State != JobQueued {
							t.Fatalf("job %d before the failure: %+v", b, j)
						}
					}
					end.end(t, s, a, ls)
					if after {
						submit(t, s, mkjob(t, "", dep))
					}
					check := func(s *Session, when string) {
						t.Helper()
						url7 := fmt.Sprintf("distren://farm/%d/frame/7", a)
						f1, f2 := frameOf(t, s, b, 1), frameOf(t, s, b, 2)
						if f1.State != StateFailed || f1.Error != "depends on "+url7+", "+end.want {
							t.Errorf("%s: frame 1 = %+v, want failed: depends on %s, %s", when, f1, url7, end.want)
						}
						want2 := fmt.Sprintf("depends on distren://farm/%d/frame/1, which waits for %s, %s", b, url7, end.want)
						if f2.State != StateFailed || f2.Error != want2 {
							t.Errorf("%s: frame 2 = %+v, want failed: %s", when, f2, want2)
						}
						j := jobOf(t, s, b)
						if j.Counts[StateFailed] != 2 || !strings.Contains(j.Error, "frame 1: depends on "+url7) {
							t.Errorf("%s: job %d = %+v", when, b, j)
						}
					}
					// Frame 3 of job b still renders; then the job has ended.
					complete(t, s, "w", leaseOf(t, s, "w", b, 3))
					check(s, "at once")
					if j := jobOf(t, s, b); j.State != JobFailed {
						t.Errorf("job %d has nothing left to run but is %s", b, j.State)
					}
					s.Close()
					s = open(t, reopen())
					check(s, "after a restart")
					if j := jobOf(t, s, b); j.State != JobFailed {
						t.Errorf("after a restart job %d is %s", b, j.State)
					}

					_, err := s.Retry(ctx, b, nil)
					if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf("distren retry distren://farm/%d --frames 7", a)) {
						t.Errorf("retrying job %d alone: %v, want the frame to retry named", b, err)
					}
					n, err := s.Retry(ctx, a, nil)
					if err != nil || n == 0 {
						t.Fatalf("retry of job %d = %d, %v", a, n, err)
					}
					for _, f := range []int64{1, 2} {
						if fr := frameOf(t, s, b, f); fr.State != StateWaiting || fr.Error != "" {
							t.Errorf("after retrying job %d, frame %d of job %d = %+v, want waiting", a, f, b, fr)
						}
					}
					if j := jobOf(t, s, b); j.State == JobFailed || j.Error != "" {
						t.Errorf("after retrying job %d, job %d = %+v", a, b, j)
					}
					complete(t, s, "w", leaseOf(t, s, "w", a, 7))
					complete(t, s, "w", leaseOf(t, s, "w", b, 1))
					complete(t, s, "w", leaseOf(t, s, "w", b, 2))
					if j := jobOf(t, s, b); j.State != JobDone {
						t.Errorf("job %d at the end: %+v", b, j)
					}
				})
			}
		}
	}
}

// TestDependencyOnFailedFrameInTheJob: within one job, the frames waiting
// for a failed frame fail too, naming it; the job fails once nothing else
// runs; a retry of the failed frame brings them back.
func TestDependencyOnFailedFrameInTheJob(t *testing.T) {
	s := open(t, store.NewMem())
	id := submit(t, s, mkjob(t, "<retries>0</retries>", `<frame id="1"/><frame id="2"><depends on="1"/></frame><frame id="3"/>`))
	ls := claim(t, s, "w", 2) // 1 and 3
	failFrame(t, s, "w", ls[0], "boom", false)
	if f := frameOf(t, s, id, 2); f.State != StateFailed || f.Error != "depends on distren://farm/1/frame/1, which failed: boom" {
		t.Errorf("frame 2 = %+v", f)
	}
	if j := jobOf(t, s, id); j.State != JobRunning || j.Error != "frame 1: boom" {
		t.Errorf("while frame 3 runs: %+v", j)
	}
	complete(t, s, "w", ls[1])
	if j := jobOf(t, s, id); j.State != JobFailed || j.Counts[StateFailed] != 2 || j.Counts[StateDone] != 1 {
		t.Errorf("at the end: %+v", j)
	}
	if n, err := s.Retry(ctx, id, []manifest.Range{{First: 1, Last: 1}}); err != nil || n != 1 {
		t.Fatalf("retry --frames 1 = %d, %v", n, err)
	}
	if f := frameOf(t, s, id, 2); f.State != StateWaiting {
		t.Errorf("frame 2 after frame 1 was retried: %+v", f)
	}
	complete(t, s, "w", leaseOf(t, s, "w", id, 1))
	complete(t, s, "w", leaseOf(t, s, "w", id, 2))
	if j := jobOf(t, s, id); j.State != JobDone {
		t.Errorf("job = %+v", j)
	}
}

// TestLongChainOfBlockedFrames: a chain of frames, each depending on the
// one before, fails down its whole length from its first frame, with
// messages of a bounded size, and comes back whole on a retry — also after
// a restart.
func TestLongChainOfBlockedFrames(t *testing.T) {
	const n = 3000
	st := store.NewMem()
	s := open(t, st)
	id := submit(t, s, mkjob(t, "<retries>0</retries>", fmt.Sprintf(`<frame id="1"/><range first="2" last="%d"><depends offset="-1"/></range>`, n)))
	failFrame(t, s, "w", leaseOf(t, s, "w", id, 1), "boom", false)
	check := func(s *Session) {
		t.Helper()
		j := jobOf(t, s, id)
		if j.State != JobFailed || j.Counts[StateFailed] != n {
			t.Fatalf("job = %+v", j)
		}
		last := frameOf(t, s, id, n)
		if want := fmt.Sprintf("depends on distren://farm/1/frame/%d, which waits for distren://farm/1/frame/1, which failed: boom", n-1); last.Error != want {
			t.Fatalf("frame %d: %q, want %q", n, last.Error, want)
		}
	}
	check(s)
	s.Close()
	s = open(t, st)
	check(s)
	if k, err := s.Retry(ctx, id, nil); err != nil || k != 1 {
		t.Fatalf("retry = %d, %v", k, err)
	}
	if j := jobOf(t, s, id); j.Counts[StateWaiting] != n-1 || j.Counts[StateReady] != 1 {
		t.Fatalf("after retry: %+v", j)
	}
}
