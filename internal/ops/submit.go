package ops

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"syscall"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/jobpkg"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/session"
)

// Accepting a package. The package arrives as a tar stream, unpacked as it
// arrives into a directory of TmpDir, or as a tree whose chunks the caller
// uploaded first (PutChunk). Either way the manifest is parsed and checked
// against the package's files before any of its bytes reach the vault, and
// recording the job is the only step that excludes a collection (gc.go).

// SubmitTar accepts a package sent as a tar stream. size is the stream's
// length if known in advance (-1 if not), so that one over the limit is
// refused before it is read.
func (f *Farm) SubmitTar(ctx context.Context, tarball io.Reader, size int64) (session.Submitted, error) {
	since := f.collections()
	// The tar stream may be larger than its content by its headers and
	// padding: up to a few blocks per file, and the end-of-archive marker.
	limit := f.lim.MaxPackageBytes + 1<<20 + 2048*int64(f.lim.MaxPackageFiles)
	if limit < f.lim.MaxPackageBytes {
		limit = math.MaxInt64 // a limit so large that the sum overflows
	}
	over := func(n int64) error {
		if n < 0 {
			return errorf(TooLarge, "package: the tar stream is larger than the limit of %d bytes (--max-package-bytes %d, with room for tar headers)",
				limit, f.lim.MaxPackageBytes)
		}
		return errorf(TooLarge, "package: a request body of %d bytes is over the limit of %d (--max-package-bytes %d, with room for tar headers)",
			n, limit, f.lim.MaxPackageBytes)
	}
	if size > limit {
		return session.Submitted{}, over(size)
	}
	dir, err := os.MkdirTemp(f.tmp, "upload-")
	if err != nil {
		return session.Submitted{}, err
	}
	defer os.RemoveAll(dir)
	files, err := jobpkg.Extract(bufio.NewReaderSize(capReader(tarball, limit, over), 256<<10), dir,
		jobpkg.Limits{MaxBytes: f.lim.MaxPackageBytes, MaxEntries: f.lim.MaxPackageFiles})
	if err != nil {
		return session.Submitted{}, tarballError(fmt.Errorf("package: %w", err))
	}
	if len(files) == 0 {
		return session.Submitted{}, errorf(Invalid, "package: the tarball holds no file; a package needs %s at its root", manifest.FileName)
	}
	raw, err := f.readLimited(dir, manifest.FileName)
	if err != nil {
		return session.Submitted{}, err
	}
	have := make(map[string]bool, len(files))
	for _, file := range files {
		have[file.Path] = true
	}
	m, err := f.parse(raw, have)
	if err != nil {
		return session.Submitted{}, err
	}
	// Only an accepted package's files reach the vault.
	inputs, err := f.ingest(ctx, dir, files)
	if err != nil {
		return session.Submitted{}, err
	}
	// If a collection ran since the chunks were stored, those it removed
	// are stored again from the unpacked package.
	again := func() error {
		if ok, err := f.allStored(ctx, inputs); ok || err != nil {
			return err
		}
		var err error
		inputs, err = f.ingest(ctx, dir, files)
		return err
	}
	return f.submit(ctx, since, again, m, raw, &inputs)
}

// SubmitTree accepts a package given by its encoded tree (cdc.EncodeTree),
// read from tree: every chunk it names must be in the vault already.
func (f *Farm) SubmitTree(ctx context.Context, tree io.Reader) (session.Submitted, error) {
	since := f.collections()
	over := func(int64) error {
		return errorf(TooLarge, "package tree: larger than the limit of %d bytes", int64(cdc.MaxTreeEncoded))
	}
	b, err := io.ReadAll(capReader(tree, cdc.MaxTreeEncoded, over))
	if err != nil {
		if KindOf(err) == TooLarge {
			return session.Submitted{}, err
		}
		return session.Submitted{}, errorf(Invalid, "package tree: %v", err)
	}
	t, err := cdc.DecodeTree(b)
	if err != nil {
		return session.Submitted{}, errorf(Invalid, "package tree: %v", err)
	}
	inputs, raw, err := f.treeInputs(ctx, t)
	if err != nil {
		return session.Submitted{}, err
	}
	have := make(map[string]bool, len(inputs))
	for _, in := range inputs {
		have[in.Path] = true
	}
	m, err := f.parse(raw, have)
	if err != nil {
		return session.Submitted{}, err
	}
	// A tree's chunks removed by a collection meanwhile must be uploaded
	// again: the farm holds no copy of them.
	again := func() error {
		if ok, err := f.allStored(ctx, inputs); ok || err != nil {
			return err
		}
		return errorf(Conflict, "package: some of its chunks were removed by a garbage collection while it was submitted; submit it again (the chunks missing are sent again)")
	}
	return f.submit(ctx, since, again, m, raw, &inputs)
}

// parse parses and checks the manifest raw against the package's files.
func (f *Farm) parse(raw []byte, have map[string]bool) (*manifest.Manifest, error) {
	m, err := manifest.Parse(bytes.NewReader(raw), manifest.FileName, manifest.Options{
		MaxBytes: f.lim.MaxManifestBytes, MaxFrames: f.lim.MaxFrames, Backends: f.backends.Known})
	if errors.Is(err, manifest.ErrLimit) {
		return nil, &Error{TooLarge, err} // frames or dependencies over the limit
	}
	if err != nil {
		return nil, err
	}
	// The backends' elements, and every file the manifest names.
	if err := f.backends.CheckPackage(m, func(p string) bool { return have[p] }); err != nil {
		return nil, err
	}
	return m, nil
}

// submit records the job, once its inputs are stored.
func (f *Farm) submit(ctx context.Context, since uint64, again func() error, m *manifest.Manifest, raw []byte, inputs *[]cdc.File) (session.Submitted, error) {
	var sub session.Submitted
	err := f.record(since, again, func() error {
		var err error
		sub, err = f.sess.Submit(ctx, session.Submission{Manifest: m, Raw: raw, Inputs: *inputs,
			MaxFramesHeld: f.lim.MaxFramesHeld})
		return err
	})
	if err != nil {
		return session.Submitted{}, err
	}
	f.log.Info("job submitted", "job", sub.URL, "name", sub.Name, "frames", sub.Frames, "files", len(*inputs))
	return sub, nil
}

// readLimited reads the file name of directory dir, of at most
// MaxManifestBytes.
func (f *Farm) readLimited(dir, name string) ([]byte, error) {
	limit := f.lim.MaxManifestBytes
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("package: %w", err)
	}
	defer root.Close()
	file, err := root.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errorf(Invalid, "package: no %s at the package's root", manifest.FileName)
	}
	if err != nil {
		return nil, fmt.Errorf("package: %w", err)
	}
	defer file.Close()
	if fi, err := file.Stat(); err == nil && !fi.Mode().IsRegular() {
		return nil, errorf(Invalid, "package: %s is a directory, not a file", manifest.FileName)
	}
	b, err := io.ReadAll(io.LimitReader(file, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errorf(TooLarge, "%s: larger than the limit of %d bytes", manifest.FileName, limit)
	}
	return b, nil
}

// ingest stores the files of an unpacked package in the vault as chunks,
// in the order of files (by path, as Extract returns them). The files are
// opened through an os.Root, by their paths in the package: a path as long
// as a package may hold works under any upload directory, and no error
// names the server's directories. (Walking the directory instead would
// cost, through an os.Root, the square of a path's depth.)
func (f *Farm) ingest(ctx context.Context, dir string, files []jobpkg.File) ([]cdc.File, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("package: %w", err)
	}
	defer root.Close()
	inputs := make([]cdc.File, 0, len(files))
	for _, file := range files {
		if file.Path == manifest.FileName {
			continue
		}
		in, err := f.ingestFile(ctx, root, file)
		if err != nil {
			return nil, fmt.Errorf("storing %q: %w", jobpkg.Shorten(file.Path), err)
		}
		inputs = append(inputs, in)
	}
	return inputs, nil
}

func (f *Farm) ingestFile(ctx context.Context, root *os.Root, file jobpkg.File) (cdc.File, error) {
	in := cdc.File{Path: file.Path, Mode: uint32(file.Mode), Size: file.Size}
	r, err := root.Open(file.Path)
	if err != nil {
		return in, err
	}
	defer r.Close()
	err = f.chunker.Split(r, func(c cdc.Chunk) error {
		h := hex.EncodeToString(c.Hash[:])
		ok, err := f.vault.Has(ctx, h)
		if err != nil {
			return err
		}
		if !ok {
			if _, err := f.vault.Put(ctx, bytes.NewReader(c.Data), h); err != nil {
				return err
			}
		}
		in.Chunks = append(in.Chunks, cdc.ChunkRef{Hash: c.Hash, Size: int64(c.Size)})
		return nil
	})
	return in, err
}

// allStored reports whether the vault holds every chunk of inputs.
func (f *Farm) allStored(ctx context.Context, inputs []cdc.File) (bool, error) {
	for _, in := range inputs {
		for _, c := range in.Chunks {
			if ok, err := f.vault.Has(ctx, hex.EncodeToString(c.Hash[:])); !ok || err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

// treeInputs turns a decoded tree into the job's input files, checking that
// the vault holds every chunk, and returns the manifest's bytes.
func (f *Farm) treeInputs(ctx context.Context, t cdc.Tree) ([]cdc.File, []byte, error) {
	if n := len(t.Files); n > f.lim.MaxPackageFiles {
		return nil, nil, errorf(TooLarge, "package: %d files, over the limit of %d", n, f.lim.MaxPackageFiles)
	}
	if size := t.Size(); size > f.lim.MaxPackageBytes {
		return nil, nil, errorf(TooLarge, "package: %d bytes, over the limit of %d", size, f.lim.MaxPackageBytes)
	}
	var hasErr error
	missing := cdc.Missing(t, func(h [32]byte) bool {
		ok, err := f.vault.Has(ctx, hex.EncodeToString(h[:]))
		hasErr = cmp.Or(hasErr, err)
		return ok || err != nil // unknown is not missing: the error answers
	})
	if hasErr != nil {
		return nil, nil, fmt.Errorf("package: %w", hasErr)
	}
	if len(missing) > 0 {
		return nil, nil, errorf(Conflict, "package: %d of its chunks are not on the server (first %x); upload them first (POST /v1/chunks/missing, PUT /v1/chunks/{hash})", len(missing), missing[0].Hash)
	}
	var raw []byte
	inputs := make([]cdc.File, 0, len(t.Files))
	for _, in := range t.Files {
		if in.Path == manifest.FileName {
			if in.Size > f.lim.MaxManifestBytes {
				return nil, nil, errorf(TooLarge, "%s: larger than the limit of %d bytes", manifest.FileName, f.lim.MaxManifestBytes)
			}
			var err error
			if raw, err = f.readManifest(ctx, in.Chunks); err != nil {
				return nil, nil, err
			}
			continue
		}
		inputs = append(inputs, in)
	}
	if raw == nil {
		return nil, nil, errorf(Invalid, "package: no %s at the package's root", manifest.FileName)
	}
	return inputs, raw, nil
}

// readManifest returns the manifest of a tree. Each chunk is checked against
// the size the tree gives it before it is read, so that what is read is the
// size checked against the limit: a tree may name a large chunk with a
// small size, or the same chunk millions of times.
func (f *Farm) readManifest(ctx context.Context, parts []cdc.ChunkRef) ([]byte, error) {
	var b bytes.Buffer
	for _, p := range parts {
		h := hex.EncodeToString(p.Hash[:])
		o, err := f.vault.Open(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", manifest.FileName, err)
		}
		if o.Size() != p.Size {
			o.Close()
			return nil, errorf(Invalid, "package: %s: chunk %s holds %d bytes, not %d as the tree says", manifest.FileName, h, o.Size(), p.Size)
		}
		_, err = io.Copy(&b, o.Verified())
		o.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", manifest.FileName, err)
		}
	}
	return b.Bytes(), nil
}

// tarballError gives an error from reading a tarball its Kind. Errors with
// a kind of their own (over a limit, an unsafe entry) keep it; of the rest,
// only the server's file system failing is Failed: a truncated or
// malformed stream, or entries whose paths collide ("a" as a file and as
// the directory of "a/b"), are the sender's fault.
func tarballError(err error) error {
	switch {
	case KindOf(err) != Failed:
		return err
	case errors.Is(err, jobpkg.ErrTooLarge), errors.Is(err, jobpkg.ErrTooMany):
		return &Error{TooLarge, err}
	case errors.Is(err, jobpkg.ErrUnsafe):
		return &Error{Invalid, err}
	case errors.Is(err, syscall.ENOSPC), localFailure(err):
		return err
	}
	return &Error{Invalid, err}
}

// localFailure reports whether err is the server's file system failing
// (a full disk, an I/O error, a permission), not what a tarball asked of it.
func localFailure(err error) bool {
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return false // the stream: its format, its compression, its end
	}
	for _, e := range []error{fs.ErrExist, syscall.ENOTDIR, syscall.EISDIR, syscall.ENAMETOOLONG} {
		if errors.Is(pe.Err, e) {
			return false // paths of the tarball that collide or are too long
		}
	}
	return true
}

// capReader returns r, failing with over(-1) once more than limit bytes are
// read from it.
func capReader(r io.Reader, limit int64, over func(int64) error) io.Reader {
	return &capped{r: r, left: limit, over: over}
}

type capped struct {
	r    io.Reader
	left int64
	over func(int64) error
	err  error
}

func (c *capped) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if int64(len(p)) > c.left+1 && c.left < math.MaxInt64 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	if int64(n) <= c.left {
		c.left -= int64(n)
		return n, err
	}
	n, c.left = int(c.left), 0
	c.err = c.over(-1)
	return n, c.err
}
