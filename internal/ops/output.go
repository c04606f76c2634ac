package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	// The tarball is stored as it arrives, with no lock, while a second
	// reader checks and indexes it, and a copy is kept in case a
	// collection runs before the frame is recorded done (gc.go).
	since := f.collections()
	sp := &spool{dir: f.tmp}
	defer sp.remove()
	pr, pw := io.Pipe()
	var files []session.OutFile
	scanned := make(chan error, 1)
	go func() {
		err := jobpkg.Scan(pr, jobpkg.Limits{MaxBytes: f.lim.MaxOutputBytes}, func(file jobpkg.File, _ io.Reader) error {
			files = append(files, session.OutFile{Path: file.Path, Size: file.Size})
			return nil
		})
		io.Copy(io.Discard, pr)
		scanned <- err
	}()
	ref, err := f.vault.Put(ctx, io.TeeReader(io.TeeReader(body, sp), pw), "")
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
	return f.record(since, again, func() error {
		return f.sess.Complete(ctx, session.Completion{Worker: rep.Worker, Job: rep.Job, Frame: rep.Frame, Epoch: rep.Epoch,
			Output: ref.Hash, Size: ref.Size, Files: files, Render: render})
	})
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
