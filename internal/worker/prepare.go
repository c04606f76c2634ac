package worker

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/jobpkg"
	"github.com/distren/distren/internal/manifest"
)

// spec returns the job's spec, fetching and parsing it once per job.
func (w *Worker) spec(ctx context.Context, job jobKey) *jobSpec {
	w.mu.Lock()
	s := w.specs[job]
	if s == nil {
		s = &jobSpec{ready: make(chan struct{})}
		if len(w.specs) > 256 {
			clear(w.specs)
		}
		w.specs[job] = s
		w.mu.Unlock()
		js, err := w.cfg.Server.Spec(ctx, job.server, job.id)
		if err == nil {
			s.in = js.Inputs
			s.m, err = manifest.Parse(strings.NewReader(js.Manifest), fmt.Sprintf("job %s: %s", job, manifest.FileName),
				manifest.Options{MaxBytes: int64(len(js.Manifest)) + 1, MaxFrames: 1 << 30})
		}
		s.err = err
		if err != nil {
			w.mu.Lock()
			delete(w.specs, job) // fetch again next time
			w.mu.Unlock()
		}
		close(s.ready)
		return s
	}
	w.mu.Unlock()
	select {
	case <-s.ready:
	case <-ctx.Done():
		return &jobSpec{err: ctx.Err()}
	}
	return s
}

// object makes sure the cache holds an object, downloading it once.
func (w *Worker) object(ctx context.Context, hash string) error {
	_, err := w.fetchObject(ctx, hash)
	return err
}

// fetchObject is object, also returning the bytes it downloaded (0 when the
// cache held the object or another task fetched it).
func (w *Worker) fetchObject(ctx context.Context, hash string) (int64, error) {
	for {
		if w.cache.Has(hash) {
			return 0, nil
		}
		w.mu.Lock()
		ch, busy := w.fetch[hash]
		if !busy {
			ch = make(chan struct{})
			w.fetch[hash] = ch
		}
		w.mu.Unlock()
		if busy {
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		n, err := w.download(ctx, hash)
		w.mu.Lock()
		delete(w.fetch, hash)
		close(ch)
		w.mu.Unlock()
		return n, err
	}
}

func (w *Worker) download(ctx context.Context, hash string) (int64, error) {
	dog, stop := watch(ctx, stallLimit)
	defer stop()
	rc, err := w.cfg.Server.Blob(dog.Context(), hash)
	if err != nil {
		return 0, fmt.Errorf("fetching object %s: %w", hash, explain(dog, err))
	}
	defer rc.Close()
	n, err := w.cache.Put(dog.Reader(rc), hash)
	if err != nil {
		return 0, fmt.Errorf("fetching object %s: %w", hash, explain(dog, err))
	}
	return n, nil
}

// prepare fills the task's scratch directory.
func (w *Worker) prepare(ctx context.Context, t *task) {
	first := t.leases[0]
	t.spec = w.spec(t.ctx, t.job())
	if t.err = t.spec.err; t.err != nil {
		t.err = fmt.Errorf("job %s spec: %w", t.job(), t.err)
		return
	}
	if t.err = w.scratch(t); t.err != nil {
		return
	}
	root, err := os.OpenRoot(t.dir)
	if err != nil {
		t.err = err
		return
	}
	defer root.Close()
	t.before = map[string]fileStamp{}
	objs := w.localObjects() // nil: through the cache
	var fetched, inputBytes int64
	for _, in := range t.spec.in {
		parts := in.Parts()
		for _, p := range parts {
			if objs != nil {
				break // read where the server holds it, below
			}
			w.pin(t, p.Hash, p.Size)
			n, err := w.fetchObject(t.ctx, p.Hash)
			if err != nil {
				t.err = fmt.Errorf("input %s: %w", in.Path, err)
				return
			}
			fetched += n
		}
		inputBytes += in.Size
		dst := filepath.Join(t.dir, filepath.FromSlash(in.Path))
		if dir := path.Dir(in.Path); dir != "." {
			if t.err = root.MkdirAll(dir, 0o755); t.err != nil {
				return
			}
		}
		perm := fs.FileMode(in.Mode)&0o755 | 0o600
		if objs != nil {
			t.err = copyObjects(t.ctx, objs, parts, root, filepath.FromSlash(in.Path), perm)
		} else {
			t.err = w.materialize(parts, dst, perm)
		}
		if t.err != nil {
			t.err = fmt.Errorf("input %s: %w", in.Path, t.err)
			return
		}
	}
	if fetched > 0 { // what the cache did not hold
		if n := w.idx.evict(w.cache.Remove); n > 0 {
			w.cfg.Log.Info("cache trimmed", "evicted", n, "bytes", w.idx.usedBytes(), "limit", w.cfg.CacheBytes)
		}
		w.cfg.Log.Info("inputs downloaded", "job", first.Job, "frames", frameList(t.frames()), "bytes", inputBytes, "downloaded", fetched)
	}
	var deps []api.DepOutput
	for _, l := range t.leases { // a chunk's frames may share dependencies
		for _, d := range l.Deps {
			if !slices.Contains(deps, d) {
				deps = append(deps, d)
			}
		}
	}
	for _, d := range deps {
		if objs == nil {
			w.pin(t, d.Output, d.Size)
			if t.err = w.object(t.ctx, d.Output); t.err != nil {
				t.err = fmt.Errorf("output of frame %d of job %d: %w", d.Frame, d.Job, t.err)
				return
			}
		}
		if t.err = w.unpack(root, d, t, objs); t.err != nil {
			t.err = fmt.Errorf("output of frame %d of job %d: %w", d.Frame, d.Job, t.err)
			return
		}
	}
	t.err = filepath.WalkDir(t.dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(t.dir, p)
		t.before[filepath.ToSlash(rel)] = fileStamp{info.Size(), info.ModTime()}
		return nil
	})
}

// pin marks a cached object as needed by t (and used now) until t is
// released, so that eviction leaves it alone. It is pinned before it is
// fetched: an object found in the cache cannot be evicted before it is used.
func (w *Worker) pin(t *task, hash string, size int64) {
	w.idx.use(hash, size)
	t.pinned = append(t.pinned, hash)
}

// materialize writes the concatenation of cached objects to dst, a file of
// its own: cloned where the file system has reflinks, copied in the kernel
// otherwise, never hard-linked, since renderers may write to their inputs
// (see store.materialize).
func (w *Worker) materialize(parts []api.ChunkRef, dst string, perm fs.FileMode) error {
	return w.cache.materialize(parts, dst, perm)
}

// unpack writes a dependency's output files into the scratch directory. The
// files are extracted from the tarball — cached, or read from the server's
// own store if objs is not nil — so they share nothing with it.
func (w *Worker) unpack(root *os.Root, d api.DepOutput, t *task, objs LocalObjects) error {
	var src io.Reader
	if objs != nil {
		rc, _, err := openObject(t.ctx, objs, d.Output)
		if err != nil {
			return err
		}
		defer rc.Close()
		src = rc
	} else {
		p, err := w.cache.Path(d.Output)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		src = f
	}
	err := jobpkg.Scan(src, jobpkg.Limits{}, func(e jobpkg.File, c io.Reader) error {
		if dir := path.Dir(e.Path); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		out, err := root.OpenFile(e.Path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, e.Mode|0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, c)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err == nil && !slices.Contains(t.depFiles, e.Path) {
			t.depFiles = append(t.depFiles, e.Path)
		}
		return err
	})
	if err != nil {
		if objs != nil {
			return fmt.Errorf("unpacking object %s: %w", d.Output, err)
		}
		return fmt.Errorf("unpacking cached object %s: %w", d.Output, err)
	}
	return nil
}

// localObjects returns the worker's server as LocalObjects if it holds the
// objects itself, nil otherwise.
func (w *Worker) localObjects() LocalObjects {
	objs, _ := w.cfg.Server.(LocalObjects)
	return objs
}

// openObject opens an object of the server's own store and returns its
// size. Reads end with ctx (a lease lost, the worker stopping).
func openObject(ctx context.Context, objs LocalObjects, hash string) (io.ReadCloser, int64, error) {
	rc, size, err := objs.OpenObject(ctx, hash)
	if err != nil {
		return nil, 0, fmt.Errorf("reading object %s: %w", hash, err)
	}
	return ctxReader{ctx, rc}, size, nil
}

// ctxReader is a reader that fails once its context ends.
type ctxReader struct {
	ctx context.Context
	io.ReadCloser
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.ReadCloser.Read(p)
}

// copyObjects creates the file name in root (mode perm, subject to the
// umask) holding the concatenation of the objects parts, read from the
// server's own store. A plain copy: the store's objects are encoded, so no
// file can share their blocks. Errors name the file as in root, since they
// are reported to the server.
func copyObjects(ctx context.Context, objs LocalObjects, parts []api.ChunkRef, root *os.Root, name string, perm fs.FileMode) (err error) {
	out, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("writing %s: %w", name, cerr)
		}
	}()
	for _, p := range parts {
		rc, size, err := openObject(ctx, objs, p.Hash)
		if err != nil {
			return err
		}
		n, err := copyObject(out, rc)
		rc.Close()
		if err == nil && n != size {
			err = fmt.Errorf("%d bytes read of %d", n, size)
		}
		if err != nil {
			return fmt.Errorf("copying object %s: %w", p.Hash, err)
		}
	}
	return nil
}
