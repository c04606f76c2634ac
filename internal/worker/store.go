package worker

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/cdc"
)

// store is the worker's object cache: plain files named by the hex SHA-256
// of their content, in DIR/objects/ab/<hash>, so that they can be cloned or
// copied into scratch directories as they are. An object is written to a
// temporary file in DIR/tmp and renamed into place once its content is
// verified, so a file under a valid name is never partial. Nothing is
// fsynced: after a crash an object may be lost, which costs a download, but
// never half-written.
type store struct {
	objects string // DIR/objects
	tmp     string // DIR/tmp: writes in progress, cleared at open
}

// bufPool holds the buffers of the copies through user space.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 128<<10); return &b }}

// errMismatch is returned by Put for content that does not hash to the name
// it was fetched under.
var errMismatch = errors.New("object content does not match its name")

// openStore opens (creating if needed) the cache in dir and removes the
// temporary files an earlier process left behind.
func openStore(dir string) (*store, error) {
	s := &store{objects: filepath.Join(dir, "objects"), tmp: filepath.Join(dir, "tmp")}
	if err := os.RemoveAll(s.tmp); err != nil {
		return nil, fmt.Errorf("worker cache: clearing partial writes in %s: %w", s.tmp, err)
	}
	for _, d := range []string{s.objects, s.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("worker cache: %w", err)
		}
	}
	return s, nil
}

func invalidHash(hash string) error {
	return fmt.Errorf("worker cache: invalid object name %q", hash)
}

func (s *store) path(hash string) string { return filepath.Join(s.objects, hash[:2], hash) }

// Path returns the file that holds (or would hold) an object.
func (s *store) Path(hash string) (string, error) {
	if !cdc.ValidHash(hash) {
		return "", invalidHash(hash)
	}
	return s.path(hash), nil
}

// Has reports whether the cache holds the object.
func (s *store) Has(hash string) bool {
	if !cdc.ValidHash(hash) {
		return false
	}
	_, err := os.Stat(s.path(hash))
	return err == nil
}

// Open opens an object for reading. A missing object's error matches
// fs.ErrNotExist.
func (s *store) Open(hash string) (*os.File, error) {
	if !cdc.ValidHash(hash) {
		return nil, invalidHash(hash)
	}
	f, err := os.Open(s.path(hash))
	if err != nil {
		return nil, fmt.Errorf("worker cache: object %s: %w", hash, err)
	}
	return f, nil
}

// Put stores the content of r as the object want and returns its size. The
// content must hash to want: otherwise Put stores nothing and its error
// (matching errMismatch) names both hashes.
func (s *store) Put(r io.Reader, want string) (int64, error) {
	if !cdc.ValidHash(want) {
		return 0, invalidHash(want)
	}
	f, err := os.CreateTemp(s.tmp, "put-*")
	if err != nil {
		return 0, fmt.Errorf("worker cache: writing object %s: %w", want, err)
	}
	stored := false
	defer func() {
		if !stored {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	bp := bufPool.Get().(*[]byte)
	n, err := io.CopyBuffer(io.MultiWriter(f, h), r, *bp)
	bufPool.Put(bp)
	if err != nil {
		return 0, fmt.Errorf("worker cache: writing object %s: %w", want, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return 0, fmt.Errorf("worker cache: %w: content hashes to %s, expected %s", errMismatch, got, want)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("worker cache: writing object %s: %w", want, err)
	}
	dst := s.path(want)
	err = os.Rename(f.Name(), dst)
	if errors.Is(err, fs.ErrNotExist) { // first object of its shard
		if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
			err = os.Rename(f.Name(), dst)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("worker cache: storing object %s: %w", want, err)
	}
	stored = true
	return n, nil
}

// Remove deletes an object. Readers that have it open keep reading it.
func (s *store) Remove(hash string) error {
	if !cdc.ValidHash(hash) {
		return invalidHash(hash)
	}
	if err := os.Remove(s.path(hash)); err != nil {
		return fmt.Errorf("worker cache: removing object %s: %w", hash, err)
	}
	return nil
}

// Close releases the store. It holds nothing open between calls, so this
// only marks the end of its use.
func (s *store) Close() error { return nil }

// materialize creates dst (mode perm, subject to the umask) holding the
// concatenation of the objects parts, for a scratch directory:
//
//   - a file of one chunk is a clone of the object (FICLONE) where the file
//     system has reflinks (btrfs, XFS, bcachefs...): no byte is copied, and
//     the blocks are shared until either side writes;
//   - otherwise, and for each chunk of a file of several, the object is
//     copied with copy_file_range, which shares extents where the file
//     system can (block-aligned ranges) and copies in the kernel otherwise;
//   - where copy_file_range is not supported, by reading and writing.
//
// Cache files are never hard-linked into scratch directories: renderers may
// write to their inputs (or truncate them, or change their mode), and
// through a link that would change the cached object, which later tasks
// would then use as if it still held its named content.
func (s *store) materialize(parts []api.ChunkRef, dst string, perm fs.FileMode) (err error) {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("writing %s: %w", dst, cerr)
		}
	}()
	for _, p := range parts {
		in, err := s.Open(p.Hash)
		if err != nil {
			return err
		}
		// A clone replaces the whole destination: only for a file of one
		// chunk. Any failure (not supported by the file system, different
		// file systems...) leaves dst empty, and the copy follows.
		if len(parts) == 1 && ficlone(int(out.Fd()), int(in.Fd())) == nil {
			in.Close()
			return nil
		}
		_, err = copyObject(out, in)
		in.Close()
		if err != nil {
			return fmt.Errorf("copying object %s to %s: %w", p.Hash, dst, err)
		}
	}
	return nil
}

// The system calls materialize uses, replaced by tests to force each path.
var (
	ficlone       = unix.IoctlFileClone
	copyFileRange = unix.CopyFileRange
)

// copyObject appends src to dst, from and to their current offsets, and
// returns the bytes copied. When src is a file it copies with
// copy_file_range, and falls back to reading and writing for what is left
// when the kernel or the file systems do not support that.
func copyObject(dst *os.File, src io.Reader) (int64, error) {
	var done int64
	if f, ok := src.(*os.File); ok {
		st, err := f.Stat()
		if err != nil {
			return 0, err
		}
		for left := st.Size(); left > 0; {
			n, err := copyFileRange(int(f.Fd()), nil, int(dst.Fd()), nil, int(min(left, 1<<30)), 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil && !rangeUnsupported(err) {
				return done, err
			}
			if err != nil || n == 0 {
				break // the offsets moved by what was copied: read and write the rest
			}
			done += int64(n)
			left -= int64(n)
		}
		if done == st.Size() {
			return done, nil
		}
	}
	// Hide ReadFrom and WriteTo, through which io.CopyBuffer would try
	// copy_file_range and splice again.
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	n, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *bp)
	return done + n, err
}

// rangeUnsupported reports whether copy_file_range failed because it cannot
// do this copy (old kernel, different or unsupporting file systems, a
// seccomp filter), in which case reading and writing will: the same list as
// the Go runtime's own use of the call.
func rangeUnsupported(err error) bool {
	switch err {
	case unix.ENOSYS, unix.EXDEV, unix.EINVAL, unix.EOPNOTSUPP, unix.EPERM, unix.EIO:
		return true
	}
	return false
}
