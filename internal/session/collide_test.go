package session

import (
	"fmt"
	"strings"
	"testing"

	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/store"
)

// TestBundleNames: frames writing files of the same path get distinct names
// in the result bundle, by the documented rule (collide.go): in the order
// files were recorded, a file keeps its path unless another frame's took
// it first, then it is frame-<id>/<path> (or frame-<id>-2/<path> if even
// that is taken). The names do not change as more frames complete, when a
// frame is rendered again, or after a restart; the first collision sets the
// job's warning, naming the frames and the file.
func TestBundleNames(t *testing.T) {
	st := store.NewMem()
	s := open(t, st)
	id := submit(t, s, mkjob(t, "", `<range first="1" last="4"/>`))
	ls := claim(t, s, "w", 4) // frames 1..4, in order
	done := func(s *Session, l Lease, paths ...string) {
		t.Helper()
		var files []OutFile
		for _, p := range paths {
			files = append(files, OutFile{Path: p, Size: 1})
		}
		err := s.Complete(ctx, Completion{Worker: "w", Job: l.Job, Frame: l.Frame, Epoch: l.Epoch,
			Output: fmt.Sprintf("%063d%d", l.Frame, l.Epoch%10), Size: 1, Files: files})
		if err != nil {
			t.Fatalf("complete %d: %v", l.Frame, err)
		}
	}
	done(s, ls[1], "out.png") // frame 2 first: it keeps out.png
	if j, _ := s.Job(id); j.Warning != "" {
		t.Fatalf("a warning before any collision: %q", j.Warning)
	}
	done(s, ls[0], "out.png", "a.png")
	j, _ := s.Job(id)
	for _, want := range []string{`frames 2 and 1 both wrote "out.png"`, `"frame-1/out.png"`, "{frame}"} {
		if !strings.Contains(j.Warning, want) {
			t.Errorf("warning %q does not say %q", j.Warning, want)
		}
	}
	// Frame 3 writes, besides out.png, the very name frame 1's got, and
	// the name its own out.png gets; frame 4 writes that name too, and
	// the name its a.png would get.
	done(s, ls[2], "frame-1/out.png", "out.png", "frame-3/out.png")
	done(s, ls[3], "frame-3/out.png", "frame-4/a.png", "a.png")
	want := map[[2]any]string{
		{int64(2), "out.png"}: "out.png",
		{int64(1), "out.png"}: "frame-1/out.png",
		{int64(1), "a.png"}:   "a.png",
		// frame-1/out.png is a name frame 1's file has: frame 3's real
		// file of that path is renamed.
		{int64(3), "frame-1/out.png"}: "frame-3/frame-1/out.png",
		{int64(3), "out.png"}:         "frame-3/out.png",
		// frame 3 wrote frame-3/out.png itself, but its out.png took that
		// name first.
		{int64(3), "frame-3/out.png"}: "frame-3/frame-3/out.png",
		{int64(4), "frame-3/out.png"}: "frame-4/frame-3/out.png",
		{int64(4), "frame-4/a.png"}:   "frame-4/a.png",
		// frame-4/a.png taken by a file frame 4 wrote: the next name.
		{int64(4), "a.png"}: "frame-4-2/a.png",
	}
	check := func(s *Session, when string) {
		t.Helper()
		seen := map[string]bool{}
		for k, w := range want {
			got := s.BundleName(id, k[0].(int64), k[1].(string))
			if got != w {
				t.Errorf("%s: frame %d's %s is named %q in the bundle, want %q", when, k[0], k[1], got, w)
			}
			if seen[got] {
				t.Errorf("%s: the name %q twice", when, got)
			}
			seen[got] = true
		}
	}
	check(s, "once done")
	if j, _ = s.Job(id); !strings.Contains(j.Warning, "(6 files renamed so far)") {
		t.Errorf("warning %q does not count the 6 files renamed", j.Warning)
	}

	// Frame 1 rendered again keeps its names; so does everything else.
	if _, err := s.Retry(ctx, id, []manifest.Range{{First: 1, Last: 1}}); err != nil {
		t.Fatal(err)
	}
	l := claim(t, s, "w", 1)
	if len(l) != 1 || l[0].Frame != 1 {
		t.Fatalf("claimed %v after the retry", frames(l))
	}
	done(s, l[0], "out.png", "a.png")
	check(s, "after frame 1 was rendered again")

	// A restart rebuilds the same names from the store.
	s.Close()
	s2 := open(t, st)
	check(s2, "after a restart")
	if j2, _ := s2.Job(id); j2.Warning != j.Warning {
		t.Errorf("warning after a restart %q, want %q", j2.Warning, j.Warning)
	}
	if got := s2.BundleName(id+1, 1, "x"); got != "x" {
		t.Errorf("a file of no job: %q", got)
	}
}
