package worker

import (
	"testing"
	"time"
)

func TestClaimWindowAdaptsToFrameTimes(t *testing.T) {
	for _, c := range []struct {
		name           string
		slots, ahead   int
		frame          time.Duration
		before, steady int // window before any frame, and after many of this length
	}{
		{"adaptive, millisecond frames", 2, 0, 100 * time.Microsecond, 4, 18},
		{"adaptive, 20ms frames", 2, 0, 20 * time.Millisecond, 4, 7},
		{"adaptive, long frames", 4, 0, 2 * time.Minute, 8, 8},
		{"fixed", 2, 3, 100 * time.Microsecond, 5, 5},
		{"none", 2, -1, 100 * time.Microsecond, 2, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, err := New(Config{Slots: c.slots, Prefetch: c.ahead, Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if got := w.window(); got != c.before {
				t.Errorf("window before any frame = %d, want %d", got, c.before)
			}
			for range 100 {
				w.observe(c.frame)
			}
			if got := w.window(); got != c.steady {
				t.Errorf("window after %s frames = %d, want %d", c.frame, got, c.steady)
			}
			if cap(w.tokens) < c.steady {
				t.Errorf("%d tokens cannot cover a window of %d", cap(w.tokens), c.steady)
			}
		})
	}
}

func TestWorkerDirIsLocked(t *testing.T) {
	dir := t.TempDir()
	w, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Dir: dir}); err == nil {
		t.Fatal("a second worker opened a locked directory")
	}
	w.Close()
	w2, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	w2.Close()
}
