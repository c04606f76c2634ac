package worker

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// A task's scratch directory is scratch/<job>-<frame>-<epoch>, its
// renderer's HOME scratch/<job>-<frame>-<epoch>.home. Making two
// directories and removing them again for every task costs a frame of the
// built-in renderer several times its render (inode and block allocation,
// under the scratch area's directory lock), so a task's directories are not
// removed when it is released: they are emptied, their modes restored, and
// renamed into the spare area beside the scratch area (spare/<n> and
// spare/<n>.home), from which the next task renames them into place under
// its own names. A home holds an empty tmp/, the renderer's TMPDIR, kept
// (emptied) with it. A pair is held by one task at a time, from its preparation
// to its release, so tasks in hand at once never share a directory. A pair
// that cannot be emptied is removed and never reused.

const (
	scratchPerm = 0o755 // a task's scratch directory
	homePerm    = 0o700 // its renderer's HOME, and the TMPDIR in it
	homeTmp     = "tmp" // the TMPDIR in HOME (backend.Task.Home)
)

// spares are the empty scratch directory pairs waiting for a task.
type spares struct {
	dir string // the spare area
	max int    // pairs kept at most: the tasks a worker holds at once

	mu   sync.Mutex
	free []string // spare pairs, by the path of their scratch directory
	next int      // number of the next pair named
}

// take returns a spare pair's scratch directory, if there is one.
func (s *spares) take() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.free) == 0 {
		return "", false
	}
	p := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	return p, true
}

// name returns a new name for a spare pair's scratch directory, or false if
// the area holds as many pairs as it keeps.
func (s *spares) name() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.free) >= s.max {
		return "", false
	}
	s.next++
	return filepath.Join(s.dir, strconv.Itoa(s.next)), true
}

func (s *spares) put(p string) {
	s.mu.Lock()
	s.free = append(s.free, p)
	s.mu.Unlock()
}

// clear removes the spare pairs.
func (s *spares) clear() error {
	s.mu.Lock()
	free := s.free
	s.free = nil
	s.mu.Unlock()
	var errs []error
	for _, p := range free {
		errs = append(errs, forceRemoveAll(p), forceRemoveAll(p+".home"))
	}
	return errors.Join(errs...)
}

// scratch gives the task its scratch directory and, beside it, the
// renderer's private home, both empty: a spare pair renamed into place, or
// new directories. The paths are absolute, since the worker's directory is.
func (w *Worker) scratch(t *task) error {
	first := t.leases[0]
	t.dir = filepath.Join(w.scr, fmt.Sprintf("%d-%d-%d", first.Job, first.Frame, first.Epoch))
	if first.Server != "" { // a lent frame: its epoch is another server's
		t.dir = filepath.Join(w.scr, fmt.Sprintf("%s-%d-%d-%d", first.Server, first.Job, first.Frame, first.Epoch))
	}
	t.home = t.dir + ".home"
	if p, ok := w.spare.take(); ok {
		err := os.Rename(p, t.dir)
		if err == nil {
			if err = os.Rename(p+".home", t.home); err == nil {
				return nil
			}
		}
		w.cfg.Log.Warn("spare scratch directory not reused", "err", err)
		forceRemoveAll(p)
		forceRemoveAll(p + ".home")
		forceRemoveAll(t.dir)
		forceRemoveAll(t.home)
	}
	if err := os.Mkdir(t.dir, scratchPerm); err != nil {
		return fmt.Errorf("scratch directory: %w", err)
	}
	if err := os.Mkdir(t.home, homePerm); err != nil {
		return fmt.Errorf("scratch directory: %w", err)
	}
	if err := os.Mkdir(filepath.Join(t.home, homeTmp), homePerm); err != nil {
		return fmt.Errorf("scratch directory: %w", err)
	}
	return nil
}

// recycle empties a released task's scratch directory and home and keeps
// them as a spare pair; what cannot be emptied is removed.
func (w *Worker) recycle(dir, home string) {
	err := emptyDir(dir, scratchPerm, "")
	if err == nil {
		err = emptyDir(home, homePerm, homeTmp)
	}
	if err == nil {
		p, ok := w.spare.name()
		if !ok {
			err = errSparesFull
		} else if err = os.Rename(dir, p); err == nil {
			if err = os.Rename(home, p+".home"); err == nil {
				w.spare.put(p)
				return
			}
			forceRemoveAll(p)
		}
	}
	if !errors.Is(err, errSparesFull) {
		w.cfg.Log.Warn("scratch directory not reused", "dir", filepath.Base(dir), "err", err)
	}
	if err := errors.Join(forceRemoveAll(dir), forceRemoveAll(home)); err != nil {
		w.cfg.Log.Warn("scratch directory not removed", "dir", filepath.Base(dir), "err", err)
	}
}

var errSparesFull = errors.New("the spare area is full")

// emptyDir removes everything in dir and restores its mode to perm; if
// keep is not "", dir is left holding keep, an empty directory of mode
// perm. dir must be a directory, not a link to one. It fails, leaving dir
// to be removed whole, on anything it cannot remove.
func emptyDir(dir string, perm fs.FileMode, keep string) error {
	f, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != perm {
		if err := f.Chmod(perm); err != nil {
			return err
		}
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	kept := false
	for _, name := range names {
		if name == keep && !kept {
			if err := emptyDir(filepath.Join(dir, keep), perm, ""); err == nil {
				kept = true
				continue
			}
		}
		var uerr error
		if err := sc.Control(func(fd uintptr) { uerr = unix.Unlinkat(int(fd), name, 0) }); err != nil {
			return err
		}
		if errors.Is(uerr, unix.EISDIR) {
			uerr = forceRemoveAll(filepath.Join(dir, name))
		}
		if uerr != nil && !errors.Is(uerr, fs.ErrNotExist) {
			return fmt.Errorf("emptying %s: %s: %w", filepath.Base(dir), name, uerr)
		}
	}
	if keep != "" && !kept {
		if err := os.Mkdir(filepath.Join(dir, keep), perm); err != nil {
			return err
		}
	}
	return nil
}

// forceRemoveAll removes path and everything beneath it, making the
// directories a renderer left read-only writable first if it must.
func forceRemoveAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil {
		return nil
	}
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if d != nil && d.IsDir() {
			os.Chmod(p, 0o700) // before WalkDir reads it
		}
		return nil
	})
	return os.RemoveAll(path)
}
