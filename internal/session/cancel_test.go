package session

import (
	"fmt"
	"slices"
	"testing"

	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/store"
)

func counts(t *testing.T, s *Session, id int64) string {
	t.Helper()
	j := jobOf(t, s, id)
	return fmt.Sprintf("%s %v", j.State, j.Counts)
}

// TestRetryFramesOfCanceledJob: `retry --frames` on a canceled job puts
// back only the frames named; the others stay canceled, also across a
// restart, and the job ends canceled. A retry without frames puts back the
// rest; a second cancel cancels what was put back.
func TestRetryFramesOfCanceledJob(t *testing.T) {
	for _, sto := range stores {
		t.Run(sto.name, func(t *testing.T) {
			st, reopen := sto.open(t)
			s := open(t, st)
			id := submit(t, s, mkjob(t, "", `<range first="1" last="5"/>`))
			ls := claim(t, s, "w", 2) // 1 and 2 run
			failFrame(t, s, "w", ls[1], "out of memory", false)
			if n, err := s.Cancel(ctx, id); err != nil || n != 5 {
				t.Fatalf("cancel = %d, %v", n, err)
			}
			if got := counts(t, s, id); got != "canceled map[canceled:5]" {
				t.Fatalf("after cancel: %s", got)
			}
			n, err := s.Retry(ctx, id, []manifest.Range{{First: 1, Last: 2}})
			if err != nil || n != 2 {
				t.Fatalf("retry --frames 1-2 = %d, %v", n, err)
			}
			check := func(s *Session, when string) {
				t.Helper()
				want := map[int64]string{1: StateReady, 2: StateReady, 3: StateCanceled, 4: StateCanceled, 5: StateCanceled}
				for f, w := range want {
					if got := state(t, s, id, f); got != w {
						t.Errorf("%s: frame %d is %s, want %s", when, f, got, w)
					}
				}
				if got := counts(t, s, id); got != "queued map[canceled:3 ready:2]" {
					t.Errorf("%s: job %s", when, got)
				}
				if f := frameOf(t, s, id, 2); f.Attempts != 1 {
					t.Errorf("%s: frame 2 lost its attempts: %+v", when, f)
				}
			}
			check(s, "after retry --frames 1-2")
			s.Close()
			s = open(t, reopen())
			check(s, "after a restart")

			ls = claim(t, s, "w", 10)
			if got := frames(ls); !slices.Equal(got, []int64{1, 2}) {
				t.Fatalf("claimed %v, want [1 2]", got)
			}
			for _, l := range ls {
				complete(t, s, "w", l)
			}
			if got := counts(t, s, id); got != "canceled map[canceled:3 done:2]" {
				t.Errorf("once frames 1-2 are done: %s", got)
			}
			// Put back 4, then cancel again: it is canceled with the rest.
			if n, err := s.Retry(ctx, id, []manifest.Range{{First: 4, Last: 4}}); err != nil || n != 1 {
				t.Fatalf("retry --frames 4 = %d, %v", n, err)
			}
			if n, err := s.Cancel(ctx, id); err != nil || n != 1 {
				t.Fatalf("second cancel = %d, %v", n, err)
			}
			s.Close()
			s = open(t, reopen())
			if got := counts(t, s, id); got != "canceled map[canceled:3 done:2]" {
				t.Errorf("after a second cancel and a restart: %s", got)
			}
			if n, err := s.Retry(ctx, id, nil); err != nil || n != 3 {
				t.Fatalf("retry = %d, %v", n, err)
			}
			if got := frames(claim(t, s, "w", 10)); !slices.Equal(got, []int64{3, 4, 5}) {
				t.Errorf("after retry claimed %v, want [3 4 5]", got)
			}
			s.Close()
			s = open(t, reopen())
			if got := counts(t, s, id); got != "running map[done:2 ready:3]" {
				t.Errorf("after a full retry and a restart: %s", got)
			}
		})
	}
}

// TestRetryFrameWhoseDependencyStaysCanceled: a frame put back while a
// frame it depends on stays canceled cannot run: it fails naming that frame,
// and the job, with nothing else to run, ends.
func TestRetryFrameWhoseDependencyStaysCanceled(t *testing.T) {
	s := open(t, store.NewMem())
	id := submit(t, s, mkjob(t, "", `<frame id="1"/><frame id="2"><depends on="1"/></frame>`))
	s.Cancel(ctx, id)
	if n, err := s.Retry(ctx, id, []manifest.Range{{First: 2, Last: 2}}); err != nil || n != 1 {
		t.Fatalf("retry --frames 2 = %d, %v", n, err)
	}
	if f := frameOf(t, s, id, 2); f.State != StateFailed || f.Error != "depends on distren://farm/1/frame/1, which was canceled" {
		t.Errorf("frame 2 = %+v", f)
	}
	if got := counts(t, s, id); got != "canceled map[canceled:1 failed:1]" {
		t.Errorf("job: %s", got)
	}
	if n, err := s.Retry(ctx, id, []manifest.Range{{First: 1, Last: 1}}); err != nil || n != 1 {
		t.Fatalf("retry --frames 1 = %d, %v", n, err)
	}
	if got := counts(t, s, id); got != "queued map[ready:1 waiting:1]" {
		t.Errorf("job after its first frame is back: %s", got)
	}
}

func TestMergeRanges(t *testing.T) {
	for _, c := range []struct{ a, b, want string }{
		{"", "1-2", "1-2"},
		{"1-2", "3", "1-3"},
		{"5-9", "1-2,4", "1-2,4-9"},
		{"1-10", "2-3", "1-10"},
		{"9223372036854775807", "0-9223372036854775806", "0-9223372036854775807"},
	} {
		var a []manifest.Range
		if c.a != "" {
			a, _ = manifest.ParseFrameSet(c.a)
		}
		b, _ := manifest.ParseFrameSet(c.b)
		if got := manifest.FormatFrameSet(mergeRanges(a, b)); got != c.want {
			t.Errorf("%s ∪ %s = %s, want %s", c.a, c.b, got, c.want)
		}
	}
}
