// Package dirlock owns the exclusive locks that keep two distren processes
// from sharing a data or worker directory. The kernel releases a lock when
// its process dies, so a crash never leaves a directory locked.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrBusy is returned when another process holds the lock.
var ErrBusy = errors.New("directory in use by another process")

// Lock takes an exclusive lock on dir (through the file dir/lock, created if
// needed) and returns the function that releases it. what names the
// directory's use in the error, e.g. "data directory".
func Lock(dir, what string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, dir, err)
	}
	p := filepath.Join(dir, "lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s %s: %w (%s is locked)", what, dir, ErrBusy, p)
		}
		return nil, fmt.Errorf("%s %s: locking %s: %w", what, dir, p, err)
	}
	return func() { f.Close() }, nil
}
