package vault

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Touch marks an object as in use now, so that a Sweep with a grace period
// keeps it (a client was just told the server holds it). Packed objects are
// never swept and need no touch.
func (v *Vault) Touch(hash string) {
	if !ValidHash(hash) {
		return
	}
	now := time.Now()
	if os.Chtimes(v.path(hash), now, now) != nil {
		os.Chtimes(v.path(hash)+compressedSuffix, now, now)
	}
}

// SweepResult counts what Sweep removed.
type SweepResult struct {
	Objects int
	Bytes   int64 // stored bytes freed
	Kept    int   // unreferenced objects kept because they are recent
}

// Sweep removes the object files that live does not name and that were
// written or touched before cutoff. Objects newer than cutoff are kept even
// if unreferenced: they may belong to an upload whose job is not submitted
// yet. Objects in packs (small frame outputs) stay until packs are
// compacted.
func (v *Vault) Sweep(ctx context.Context, live func(hash string) bool, cutoff time.Time) (SweepResult, error) {
	var res SweepResult
	err := v.objectFiles(ctx, func(p, name string, _ bool, d fs.DirEntry) error {
		if !ValidHash(name) || live(name) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if !info.ModTime().Before(cutoff) {
			res.Kept++
			return nil
		}
		if err := os.Remove(p); err == nil {
			res.Objects++
			res.Bytes += info.Size()
		}
		return nil
	})
	return res, err
}

// objectFiles calls fn for every file under objects/: its path, the object
// name it stands for (without the compressed suffix, not checked), whether it
// is stored compressed, and its entry. It stops when ctx ends.
func (v *Vault) objectFiles(ctx context.Context, fn func(p, name string, compressed bool, d fs.DirEntry) error) error {
	return filepath.WalkDir(v.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		name, compressed := strings.CutSuffix(d.Name(), compressedSuffix)
		return fn(p, name, compressed, d)
	})
}
