package ops

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/jobpkg"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/session"
)

// Reading what the farm made: a job's result bundle, one of its numbered
// files, a frame's output, an object of the vault. The streaming ones call
// the caller's start function once what they will write is known and
// before they write a byte, so that an error before it (no such job, no
// such object) can still be answered as an error; an error after it means
// the stream written is incomplete, and its receiver must be told so (a
// transport cuts the connection).

// Object is an object of the vault, open for reading.
type Object interface {
	io.ReadSeekCloser
	Size() int64
}

// WriteResult writes the result bundle of job id: the outputs of its done
// frames in ranges (all if nil), in frame order, as one tar, built as it is
// written. start receives the number of frames and returns where to write.
// A file another frame wrote first under the same path is renamed
// (internal/session collide.go), so that the bundle never holds a path
// twice.
func (f *Farm) WriteResult(ctx context.Context, id int64, ranges []manifest.Range, start func(frames int) io.Writer) error {
	outs, err := f.sess.Outputs(id, ranges)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(start(len(outs)), 256<<10)
	tw := tar.NewWriter(bw)
	for _, o := range outs {
		if err := ctx.Err(); err != nil {
			return err
		}
		obj, err := f.vault.Open(ctx, o.Hash)
		if err != nil {
			return fmt.Errorf("frame %d output: %w", o.Frame, err)
		}
		vr := obj.Verified()
		// Each file under its name in the bundle: its path, but for
		// those renamed because another frame wrote that path first.
		rename := func(p string) string { return f.sess.BundleName(id, o.Frame, p) }
		err = jobpkg.CopyEntries(tw, bufio.NewReaderSize(vr, 64<<10), jobpkg.Limits{MaxBytes: f.lim.MaxOutputBytes}, rename)
		if err == nil {
			_, err = io.Copy(io.Discard, vr) // the tar's padding: the check comes with the last byte
		}
		obj.Close()
		if err != nil {
			return fmt.Errorf("frame %d output: %w", o.Frame, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// WriteFile writes file n of job id. start receives the file's name (the
// last element of its path) and size, and returns where to write.
func (f *Farm) WriteFile(ctx context.Context, id, n int64, start func(name string, size int64) io.Writer) error {
	loc, err := f.sess.File(id, n)
	if err != nil {
		return err
	}
	name := path.Base(loc.Path)
	if !loc.InTar {
		// The first part is opened before anything is written: a
		// missing object is an error answer, not a cut stream.
		var w io.Writer
		for i, p := range loc.Parts {
			o, err := f.vault.Open(ctx, hex.EncodeToString(p.Hash[:]))
			if err != nil {
				return f.fileError(n, loc.Path, notFound(err))
			}
			if i == 0 {
				w = start(name, loc.Size)
			}
			_, err = io.Copy(w, o.Verified())
			o.Close()
			if err != nil {
				return f.fileError(n, loc.Path, err)
			}
		}
		if w == nil {
			start(name, 0)
		}
		return nil
	}
	o, err := f.vault.Open(ctx, loc.Hash)
	if err != nil {
		return notFound(err)
	}
	defer o.Close()
	found := errors.New("found")
	err = jobpkg.Scan(bufio.NewReader(o), jobpkg.Limits{MaxBytes: f.lim.MaxOutputBytes}, func(e jobpkg.File, c io.Reader) error {
		if e.Path != loc.Path {
			return nil
		}
		if _, err := io.Copy(start(name, e.Size), c); err != nil {
			return err
		}
		return found
	})
	if errors.Is(err, found) {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("file %d (%s) is missing from its frame output", n, loc.Path)
	}
	return err
}

func (f *Farm) fileError(n int64, p string, err error) error {
	return fmt.Errorf("file %d (%s): %w", n, jobpkg.Shorten(p), err)
}

// FrameOutput opens the output tarball of a done frame.
func (f *Farm) FrameOutput(ctx context.Context, id, frame int64) (Object, error) {
	fr, err := f.sess.Frame(id, frame)
	if err != nil {
		return nil, err
	}
	if fr.State != session.StateDone {
		return nil, errorf(NotFound, "frame %s is %s: it has no output yet", fr.URL, fr.State)
	}
	o, err := f.vault.Open(ctx, fr.Output)
	if err != nil {
		return nil, notFound(err)
	}
	return o, nil
}

// Blob opens the vault's object of the given hash.
func (f *Farm) Blob(ctx context.Context, hash string) (Object, error) {
	if !cdc.ValidHash(hash) {
		return nil, errorf(Invalid, "blob %q: not a SHA-256 in hex (64 lowercase hex digits)", hash)
	}
	o, err := f.vault.Open(ctx, hash)
	if err != nil {
		return nil, notFound(err)
	}
	return o, nil
}
