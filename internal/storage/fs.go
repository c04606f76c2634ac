package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// FS is the filesystem module: objects are files beneath a directory. A Put
// writes a temporary file in DIR/tmp, syncs it, renames it into
// DIR/objects and syncs the directory; the temporary files of a process that
// died are removed by NewFS.
type FS struct {
	dir, tmp string
	noSync   bool
	dirs     sync.Map // directories known to exist
}

// FSOptions configure the filesystem module.
type FSOptions struct {
	// NoSync skips fsync: for caches whose loss after a crash is harmless.
	NoSync bool
}

// NewFS opens (creating if needed) the filesystem module in dir, removing
// partial writes left by an earlier process.
func NewFS(dir string, opt FSOptions) (*FS, error) {
	m := &FS{dir: filepath.Join(dir, "objects"), tmp: filepath.Join(dir, "tmp"), noSync: opt.NoSync}
	if err := os.RemoveAll(m.tmp); err != nil {
		return nil, fmt.Errorf("storage %s: clearing partial writes: %w", dir, err)
	}
	for _, d := range []string{m.dir, m.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("storage %s: %w", dir, err)
		}
	}
	return m, nil
}

func (m *FS) String() string { return "fs:" + filepath.Dir(m.dir) }

func (m *FS) path(name string) string { return filepath.Join(m.dir, filepath.FromSlash(name)) }

// Put implements Module.
func (m *FS) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := checkName(name); err != nil {
		return wrap("put", m, name, err)
	}
	if err := ctx.Err(); err != nil {
		return wrap("put", m, name, err)
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(m.tmp, hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return wrap("put", m, name, err)
	}
	err = m.write(ctx, f, r, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		dst := m.path(name)
		if err = m.mkdirs(filepath.Dir(dst)); err == nil {
			err = os.Rename(tmp, dst)
		}
		if err == nil && !m.noSync {
			err = SyncDir(filepath.Dir(dst))
		}
	}
	if err != nil {
		os.Remove(tmp)
		return wrap("put", m, name, err)
	}
	return nil
}

func (m *FS) write(ctx context.Context, f *os.File, r io.Reader, size int64) error {
	src := r
	if size >= 0 {
		src = io.LimitReader(r, size+1) // one more, to notice a longer stream
	}
	n, err := io.Copy(f, ctxReader{ctx, src})
	switch {
	case err != nil:
		return err
	case size >= 0 && n != size:
		return fmt.Errorf("got %d bytes, want %d", n, size)
	}
	if m.noSync {
		return nil
	}
	return f.Sync()
}

func (m *FS) mkdirs(dir string) error {
	if _, ok := m.dirs.Load(dir); ok {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	m.dirs.Store(dir, true)
	return nil
}

// Get implements Module.
func (m *FS) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	return m.open(ctx, name, func(f *os.File) io.Reader { return f })
}

// GetRange implements Module.
func (m *FS) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := checkRange(off, length); err != nil {
		return nil, wrap("get", m, name, err)
	}
	return m.open(ctx, name, func(f *os.File) io.Reader { return io.NewSectionReader(f, off, length) })
}

// open opens object name for reading what part picks of its file.
func (m *FS) open(ctx context.Context, name string, part func(*os.File) io.Reader) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, wrap("get", m, name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, wrap("get", m, name, err)
	}
	f, err := os.Open(m.path(name))
	if err != nil {
		return nil, wrap("get", m, name, notFound(err))
	}
	return &fileReader{ctxReader{ctx, part(f)}, f, m, name}, nil
}

// fileReader reads an object until its context ends.
type fileReader struct {
	ctxReader
	f    *os.File
	m    *FS
	name string
}

func (r *fileReader) Read(p []byte) (int, error) {
	n, err := r.ctxReader.Read(p)
	if err != nil && err != io.EOF {
		err = wrap("get", r.m, r.name, err)
	}
	return n, err
}

func (r *fileReader) Close() error { return r.f.Close() }

// Stat implements Module.
func (m *FS) Stat(ctx context.Context, name string) (Info, error) {
	if err := checkName(name); err != nil {
		return Info{}, wrap("stat", m, name, err)
	}
	if err := ctx.Err(); err != nil {
		return Info{}, wrap("stat", m, name, err)
	}
	fi, err := os.Stat(m.path(name))
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if err != nil {
		return Info{}, wrap("stat", m, name, notFound(err))
	}
	return Info{Name: name, Size: fi.Size()}, nil
}

// List implements Module.
func (m *FS) List(ctx context.Context, prefix string, fn func(Info) error) error {
	// Directories whose names cannot lead to the prefix are skipped.
	err := filepath.WalkDir(m.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(m.dir, p)
		name := filepath.ToSlash(rel)
		if d.IsDir() {
			if name != "." && !strings.HasPrefix(name+"/", prefix) && !strings.HasPrefix(prefix, name+"/") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(name, prefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted meanwhile
		} else if err != nil {
			return err
		}
		return fn(Info{Name: name, Size: fi.Size()})
	})
	if err != nil {
		return fmt.Errorf("listing %q on %s: %w", prefix, m, err)
	}
	return nil
}

// Delete implements Module.
func (m *FS) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return wrap("delete", m, name, err)
	}
	if err := ctx.Err(); err != nil {
		return wrap("delete", m, name, err)
	}
	if err := os.Remove(m.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return wrap("delete", m, name, err)
	}
	return nil
}

func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	return err
}

// SyncDir makes a directory's entries (a file created or renamed in it)
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteFileSync replaces the file name with data durably: written to a
// temporary file beside it, synced, renamed over it, and the directory
// synced, so that after a crash the file holds either its old content or
// data, never a part of it.
func WriteFileSync(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, nothing to remove
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err == nil {
		err = SyncDir(filepath.Dir(name))
	}
	return err
}

// ContextReader returns a reader of r whose reads fail once ctx ends.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
