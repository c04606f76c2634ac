package worker

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/backend"
)

// ino is the inode number of path: the same directory under another name
// keeps it. (t.Error, not t.Fatal: renderers' goroutines call it.)
func ino(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Error(err)
		return 0
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// contents lists everything beneath dir (directories too), relative; a
// failure to read it fails the test (with t.Error, as for ino).
func contents(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	return out
}

// mess leaves in a task's directories what renderers leave: outputs, a
// read-only file, nested directories, HOME dotfiles and caches, links to
// files outside, and modes changed. It returns a file outside both, which
// a link points to and which must survive.
func mess(t *testing.T, dir, home string) string {
	t.Helper()
	outside := filepath.Join(t.TempDir(), "precious")
	if err := leaveMess(dir, home, outside); err != nil {
		t.Fatal(err)
	}
	return outside
}

// leaveMess is mess, for a renderer's goroutine: outside is the file the
// links point to.
func leaveMess(dir, home, outside string) error {
	for _, f := range []struct {
		path string
		mode fs.FileMode
	}{
		{filepath.Join(dir, "frame-0001.png"), 0o644},
		{filepath.Join(dir, "locked.txt"), 0o400},
		{filepath.Join(dir, "a", "b", "c.tmp"), 0o644},
		{filepath.Join(home, ".povrayrc"), 0o600},
		{filepath.Join(home, ".cache", "blender", "kernels.bin"), 0o600},
		{filepath.Join(home, "tmp", "spill"), 0o600},
		{outside, 0o644},
	} {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f.path, []byte("left over"), f.mode); err != nil {
			return err
		}
	}
	for _, l := range [][2]string{{outside, filepath.Join(dir, "link")}, {filepath.Dir(outside), filepath.Join(home, "dirlink")}} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "a"), 0o500); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(home, "tmp"), 0o777); err != nil {
		return err
	}
	return os.Chmod(home, 0o755|fs.ModeSetgid)
}

// checkFresh fails unless tk's directories are empty, but for HOME's
// empty tmp/, with their modes.
func checkFresh(t *testing.T, tk *task) {
	t.Helper()
	for _, d := range []struct {
		path string
		perm fs.FileMode
		want []string
	}{{tk.dir, scratchPerm, nil}, {tk.home, homePerm, []string{"tmp"}}, {filepath.Join(tk.home, "tmp"), homePerm, nil}} {
		if c := contents(t, d.path); !slices.Equal(c, d.want) {
			t.Errorf("%s holds %v, want %v", d.path, c, d.want)
		}
		fi, err := os.Lstat(d.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() &^ fs.ModeDir; got != d.perm {
			t.Errorf("%s has mode %v, want %v", d.path, got, d.perm)
		}
	}
}

// TestScratchReusedEmpty: a released task's scratch directory and home are
// the next task's, renamed to its names, with nothing of the first task
// left — files, a read-only file, nested and read-only directories, HOME
// dotfiles, links (whose targets outside survive) — and their modes
// restored; the first task's names are gone.
func TestScratchReusedEmpty(t *testing.T) {
	w, err := New(Config{Dir: t.TempDir(), Backends: backend.Registry{}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	m := parse(t, `<distrenjob version="1"><name>s</name><backend name="builtin"/>
<frames><frame id="1"/><frame id="2"/><frame id="3"/></frames><outputs><output>*.png</output></outputs></distrenjob>`)
	a := newTask(t, w, m, 1)
	dirIno, homeIno := ino(t, a.dir), ino(t, a.home)
	outside := mess(t, a.dir, a.home)
	w.recycle(a.dir, a.home)
	for _, p := range []string{a.dir, a.home} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s after its task was released: %v, want it gone", p, err)
		}
	}

	b := newTask(t, w, m, 2)
	if b.dir != filepath.Join(w.scr, "5-2-1") || b.home != b.dir+".home" {
		t.Errorf("second task's directories %s and %s, want scratch/5-2-1 and scratch/5-2-1.home", b.dir, b.home)
	}
	if ino(t, b.dir) != dirIno || ino(t, b.home) != homeIno {
		t.Errorf("the second task got new directories, want the first task's reused")
	}
	checkFresh(t, b)
	if got, err := os.ReadFile(outside); err != nil || string(got) != "left over" {
		t.Errorf("the file a link pointed to: %q, %v; want it untouched", got, err)
	}
	if ents, err := os.ReadDir(w.spare.dir); err != nil || len(ents) != 0 {
		t.Errorf("spare area while its pair is in use: %v %v", ents, err)
	}

	// Released again, emptied again.
	os.WriteFile(filepath.Join(b.dir, "frame-0002.png"), []byte("png"), 0o644)
	w.recycle(b.dir, b.home)
	c := newTask(t, w, m, 3)
	checkFresh(t, c)
}

// TestScratchReplacedByLinkNotReused: a task that replaced its scratch
// directory with a link to another directory gets that link removed, not
// followed: the other directory keeps its files, and the next task has a
// new, empty directory.
func TestScratchReplacedByLinkNotReused(t *testing.T) {
	w, err := New(Config{Dir: t.TempDir(), Backends: backend.Registry{}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	m := parse(t, `<distrenjob version="1"><name>s</name><backend name="builtin"/>
<frames><frame id="1"/><frame id="2"/></frames><outputs><output>*.png</output></outputs></distrenjob>`)
	a := newTask(t, w, m, 1)
	elsewhere := t.TempDir()
	if err := os.WriteFile(filepath.Join(elsewhere, "keep"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(a.dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, a.dir); err != nil {
		t.Fatal(err)
	}
	w.recycle(a.dir, a.home)
	if _, err := os.Stat(filepath.Join(elsewhere, "keep")); err != nil {
		t.Errorf("the linked directory lost its file: %v", err)
	}
	for _, p := range []string{a.dir, a.home} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s after its task was released: %v, want it gone", p, err)
		}
	}
	b := newTask(t, w, m, 2)
	if fi, err := os.Lstat(b.dir); err != nil || !fi.IsDir() {
		t.Fatalf("next task's scratch directory: %v %v", fi, err)
	}
	checkFresh(t, b)
}

// TestScratchTasksNeverShare: tasks in hand at once have directories of
// their own — never the same directory under two names — however the
// spare pairs go round, and the spare area keeps no more pairs than the
// tasks a worker holds at once.
func TestScratchTasksNeverShare(t *testing.T) {
	w, err := New(Config{Dir: t.TempDir(), Slots: 2, Prefetch: -1, Backends: backend.Registry{}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	m := parse(t, `<distrenjob version="1"><name>s</name><backend name="builtin"/>
<frames><frame id="1"/><frame id="2"/><frame id="3"/><frame id="4"/><frame id="5"/><frame id="6"/></frames>
<outputs><output>*.png</output></outputs></distrenjob>`)
	distinct := func(ts ...*task) {
		t.Helper()
		seen := map[uint64]string{}
		for _, tk := range ts {
			for _, p := range []string{tk.dir, tk.home} {
				n := ino(t, p)
				if other, ok := seen[n]; ok {
					t.Errorf("%s and %s are the same directory", other, p)
				}
				seen[n] = p
			}
		}
	}
	a, b := newTask(t, w, m, 1), newTask(t, w, m, 2)
	distinct(a, b)
	aIno := ino(t, a.dir)
	w.recycle(a.dir, a.home)
	c := newTask(t, w, m, 3)
	distinct(b, c)
	if ino(t, c.dir) != aIno {
		t.Errorf("the third task did not reuse the first's directory")
	}
	w.recycle(b.dir, b.home)
	w.recycle(c.dir, c.home)
	d, e := newTask(t, w, m, 4), newTask(t, w, m, 5)
	distinct(d, e)
	checkFresh(t, d)
	checkFresh(t, e)

	// A third pair released while two are spare is removed, not kept.
	f := newTask(t, w, m, 6)
	for _, tk := range []*task{d, e, f} {
		w.recycle(tk.dir, tk.home)
	}
	if ents, err := os.ReadDir(w.spare.dir); err != nil || len(ents) != 4 {
		t.Errorf("spare area holds %v (%v), want two pairs", ents, err)
	}
	if ents, err := os.ReadDir(w.scr); err != nil || len(ents) != 0 {
		t.Errorf("scratch area holds %v (%v), want nothing", ents, err)
	}
}

// TestRunLeftoversGoneBeforeNextTask: a worker whose renderer leaves
// files, directories, a read-only file and HOME dotfiles behind renders
// its next frame in the same directories — reused — with none of it there;
// the outputs were uploaded; and once the worker stops, neither scratch
// nor spare area holds anything.
func TestRunLeftoversGoneBeforeNextTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeServer()
		s.addJob(1, job(`<backend name="messy"/>`, 3, "frame-*.png"), 1<<20)
		type seen struct {
			dir, home       []string
			dirIno, homeIno uint64
		}
		saw := make(chan seen, 3)
		outside := t.TempDir()
		messy := funcBackend{name: "messy", render: func(ctx context.Context, bt *backend.Task) error {
			saw <- seen{contents(t, bt.Dir), contents(t, bt.Home), ino(t, bt.Dir), ino(t, bt.Home)}
			return leaveMess(bt.Dir, bt.Home, filepath.Join(outside, "precious"))
		}}
		r := startWorker(t, s, messy)
		stopped := false
		defer func() {
			if !stopped {
				r.stop()
			}
		}()
		ls := []api.Lease{lease(1, 1, 1), lease(1, 2, 1), lease(1, 3, 1)}
		var first seen
		for i, l := range ls {
			s.offer(l)
			synctest.Wait()
			if len(s.completed(ref(l))) != 1 {
				t.Fatalf("frame %d not completed: fails %+v, logs:\n%s", l.Frame, s.failed(ref(l)), r.logs)
			}
			var v seen
			select {
			case v = <-saw:
			default:
				t.Fatalf("frame %d was not rendered", l.Frame)
			}
			if len(v.dir) != 0 || !slices.Equal(v.home, []string{"tmp"}) {
				t.Errorf("frame %d found %v in its scratch directory and %v in its HOME, want nothing but HOME's tmp", l.Frame, v.dir, v.home)
			}
			if i == 0 {
				first = v
			} else if v.dirIno != first.dirIno || v.homeIno != first.homeIno {
				t.Errorf("frame %d rendered in new directories, want the first frame's reused", l.Frame)
			}
		}
		stopped = true
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{r.w.scr, r.w.spare.dir} {
			if ents, err := os.ReadDir(d); err != nil || len(ents) != 0 {
				t.Errorf("%s after the worker stopped: %v %v", filepath.Base(d), ents, err)
			}
		}
	})
}

// TestRunSlotsNeverShareScratch: two slots rendering at once work in
// directories of their own, HOME included.
func TestRunSlotsNeverShareScratch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeServer()
		s.addJob(1, job(`<backend name="pair"/>`, 4, "*.txt"), 1<<20)
		var mu sync.Mutex
		var inos [][2]uint64
		both := make(chan struct{})
		pair := funcBackend{name: "pair", render: func(ctx context.Context, bt *backend.Task) error {
			mu.Lock()
			inos = append(inos, [2]uint64{ino(t, bt.Dir), ino(t, bt.Home)})
			wait := both
			if len(inos)%2 == 0 {
				close(both)
				both = make(chan struct{})
			}
			mu.Unlock()
			select { // until the other slot renders too
			case <-wait:
			case <-ctx.Done():
				return ctx.Err()
			}
			return os.WriteFile(filepath.Join(bt.Dir, "out.txt"), []byte("x"), 0o644)
		}}
		reg := backend.Registry{"pair": pair}
		w, err := New(Config{Server: s, Name: "w2", Slots: 2, Prefetch: -1, Dir: t.TempDir(), Backends: reg,
			Log: slog.New(slog.DiscardHandler), ClaimWait: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		defer func() { // on a failure below
			cancel()
			if done != nil {
				<-done
			}
		}()
		for round := range 2 {
			ls := []api.Lease{lease(1, int64(2*round+1), 1), lease(1, int64(2*round+2), 1)}
			s.offer(ls...)
			synctest.Wait()
			for _, l := range ls {
				if len(s.completed(ref(l))) != 1 {
					t.Fatalf("frame %d not completed: fails %+v", l.Frame, s.failed(ref(l)))
				}
			}
		}
		cancel()
		err = <-done
		done = nil
		if err != nil {
			t.Fatal(err)
		}
		if len(inos) != 4 {
			t.Fatalf("%d renders, want 4", len(inos))
		}
		for i := 0; i < 4; i += 2 {
			a, b := inos[i], inos[i+1]
			all := []uint64{a[0], a[1], b[0], b[1]}
			slices.Sort(all)
			if len(slices.Compact(all)) != 4 {
				t.Errorf("renders %d and %d at once shared a directory (inodes %v and %v)", i+1, i+2, a, b)
			}
		}
	})
}
