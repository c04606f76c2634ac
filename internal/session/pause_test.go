package session

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/distren/distren/internal/store"
)

// TestPause: a paused job's frames are not given out — those running
// finish — and it says paused; resumed, they are; both outlive a restart.
func TestPause(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   func(t *testing.T) store.Store
	}{{"mem", func(*testing.T) store.Store { return store.NewMem() }}, {"sqlite", sqliteStore}} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.st(t)
			s := open(t, st)
			id := submit(t, s, mkjob(t, "", `<range first="1" last="3"/>`))
			running := claim(t, s, "w", 1)
			j, err := s.Pause(ctx, id, true)
			if err != nil || j.State != JobPaused {
				t.Fatalf("pause: %+v %v, want paused", j, err)
			}
			if got := claim(t, s, "w2", 10); len(got) != 0 {
				t.Errorf("claimed %v of a paused job", frames(got))
			}
			complete(t, s, "w", running[0]) // a running frame finishes
			if got := state(t, s, id, running[0].Frame); got != StateDone {
				t.Errorf("the frame running when paused: %s, want done", got)
			}
			s.Close()

			s = open(t, st)
			if j, _ := s.Job(id); j.State != JobPaused {
				t.Fatalf("after a restart: %s, want paused", j.State)
			}
			if got := claim(t, s, "w", 10); len(got) != 0 {
				t.Errorf("claimed %v of a paused job after a restart", frames(got))
			}
			if j, err := s.Pause(ctx, id, false); err != nil || j.State != JobQueued && j.State != JobRunning {
				t.Fatalf("resume: %+v %v", j, err)
			}
			if got := frames(claim(t, s, "w", 10)); !slices.Equal(got, []int64{2, 3}) {
				t.Errorf("claimed %v once resumed, want [2 3]", got)
			}
		})
	}
}

// TestSetPriority: a job's priority changed after submission orders its
// frames before those of a job of higher priority before, also after a
// restart; out of range is refused.
func TestSetPriority(t *testing.T) {
	st := sqliteStore(t)
	s := open(t, st)
	submit(t, s, mkjob(t, "<priority>60</priority>", `<range first="1" last="2"/>`))
	b := submit(t, s, mkjob(t, "<priority>40</priority>", `<range first="1" last="2"/>`))
	if _, err := s.SetPriority(ctx, b, 101); err == nil {
		t.Error("priority 101 was taken")
	}
	j, err := s.SetPriority(ctx, b, 90)
	if err != nil || j.Priority != 90 {
		t.Fatalf("set priority: %+v %v", j, err)
	}
	if l := claim(t, s, "w", 1); l[0].Job != b {
		t.Errorf("first claim got job %d, want %d (priority 90 over 60)", l[0].Job, b)
	}
	s.Close()
	s = open(t, st)
	if j, _ := s.Job(b); j.Priority != 90 {
		t.Errorf("after a restart job %d has priority %d, want 90", b, j.Priority)
	}
	if l := claim(t, s, "w", 1); l[0].Job != b {
		t.Errorf("after a restart the first claim got job %d, want %d", l[0].Job, b)
	}
}

// sqliteStore is a SQLite store in the test's directory, closed with it.
func sqliteStore(t *testing.T) store.Store {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
