package ops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/distren/distren/internal/jobpkg"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/vault"
)

// Report names the lease under which a worker reports on a frame.
type Report struct {
	Worker string
	Job    int64
	Frame  int64
	Epoch  uint64
}

// AcceptOutput receives the tarball of a frame's output, reported under a
// lease: it checks the lease, stores the tarball as it arrives while a
// second reader checks and indexes it, and completes the frame. render is
// how long the render took, as the worker measured it.
func (f *Farm) AcceptOutput(ctx context.Context, rep Report, render time.Duration, tarball io.Reader) error {
	if err := f.sess.CheckLease(rep.Worker, rep.Job, rep.Frame, rep.Epoch); err != nil {
		return err
	}
	over := func(int64) error {
		return errorf(TooLarge, "frame %d output: larger than the server's limit of %d bytes (serve --max-output-bytes)", rep.Frame, f.lim.MaxOutputBytes)
	}
	body := capReader(tarball, f.lim.MaxOutputBytes, over)
	since := f.collections()
	complete := func(ref vault.Ref, files []session.OutFile) func() error {
		return func() error {
			return f.sess.Complete(ctx, session.Completion{Worker: rep.Worker, Job: rep.Job, Frame: rep.Frame, Epoch: rep.Epoch,
				Output: ref.Hash, Size: ref.Size, Files: files, Render: render})
		}
	}
	// An output of at most spoolMemory bytes — most frames' — is read
	// whole first, with no lock, then checked and indexed, and stored and
	// recorded with no collection running (gc.go): no second goroutine, no
	// copy, and nothing stored of a tarball refused.
	buf := smallOutputs.Get().(*[]byte)
	defer smallOutputs.Put(buf)
	n, err := io.ReadFull(body, *buf)
	head := (*buf)[:n]
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		files, err := scanOutput(bytes.NewReader(head), f.lim.MaxOutputBytes)
		if err != nil {
			return tarballError(fmt.Errorf("frame %d output: %w", rep.Frame, err))
		}
		if len(files) == 0 {
			return errorf(Invalid, "frame %d output: the tarball holds no file", rep.Frame)
		}
		return f.record(since, nil, func() error {
			ref, err := f.vault.Put(ctx, bytes.NewReader(head), "")
			if err != nil {
				return fmt.Errorf("frame %d output: %w", rep.Frame, err)
			}
			return complete(ref, files)()
		})
	case err != nil:
		if KindOf(err) == TooLarge {
			return err
		}
		return fmt.Errorf("frame %d output: %w", rep.Frame, err)
	}
	// A larger one is stored as it arrives, with no lock, while a second
	// reader checks and indexes it, and a copy is kept (gc.go).
	sp := &spool{dir: f.tmp}
	defer sp.remove()
	pr, pw := io.Pipe()
	var files []session.OutFile
	scanned := make(chan error, 1)
	go func() {
		fs, err := scanOutput(pr, f.lim.MaxOutputBytes)
		files = fs
		io.Copy(io.Discard, pr)
		scanned <- err
	}()
	ref, err := f.vault.Put(ctx, io.TeeReader(io.TeeReader(io.MultiReader(bytes.NewReader(head), body), sp), pw), "")
	pw.CloseWithError(err)
	serr := <-scanned
	if err != nil {
		if KindOf(err) == TooLarge {
			return err
		}
		return fmt.Errorf("frame %d output: %w", rep.Frame, err)
	}
	if serr != nil {
		return tarballError(fmt.Errorf("frame %d output: %w", rep.Frame, serr))
	}
	if len(files) == 0 {
		return errorf(Invalid, "frame %d output: the tarball holds no file", rep.Frame)
	}
	again := func() error {
		r, err := sp.reader()
		if err == nil {
			_, err = f.vault.Put(ctx, r, ref.Hash)
		}
		if err != nil {
			return fmt.Errorf("frame %d output: %w", rep.Frame, err)
		}
		return nil
	}
	return f.record(since, again, complete(ref, files))
}

// smallOutputs holds the buffers outputs are first read into: one more byte
// than spoolMemory, to tell an output that fits from one that does not.
var smallOutputs = sync.Pool{New: func() any { b := make([]byte, spoolMemory+1); return &b }}

// scanOutput lists the files of an output tarball, checking it.
func scanOutput(r io.Reader, limit int64) ([]session.OutFile, error) {
	var files []session.OutFile
	err := jobpkg.Scan(r, jobpkg.Limits{MaxBytes: limit}, func(file jobpkg.File, _ io.Reader) error {
		files = append(files, session.OutFile{Path: file.Path, Size: file.Size})
		return nil
	})
	return files, err
}

// MaxFailureMessage bounds the message of a failed attempt that is kept:
// its end, where a renderer says what went wrong.
const MaxFailureMessage = 64 << 10

// Fail records that an attempt failed, with the renderer's message (its
// last MaxFailureMessage bytes, without the server's directories: the
// local slots render in DATA/worker). jobError says that the backend
// blames the job, not the frame or the worker.
func (f *Farm) Fail(ctx context.Context, rep Report, msg string, jobError bool) error {
	if len(msg) > MaxFailureMessage {
		msg = msg[len(msg)-MaxFailureMessage:]
	}
	return f.sess.Fail(ctx, rep.Worker, rep.Job, rep.Frame, rep.Epoch, f.Redact(msg), jobError)
}

// Release hands a frame back unrendered: the worker could not start it (it
// is stopping), which counts as no attempt.
func (f *Farm) Release(ctx context.Context, rep Report) error {
	return f.sess.Release(ctx, rep.Worker, rep.Job, rep.Frame, rep.Epoch)
}

// notFound marks the vault's "no such object" as NotFound.
func notFound(err error) error {
	if errors.Is(err, vault.ErrNotFound) && KindOf(err) == Failed {
		return &Error{NotFound, err}
	}
	return err
}
