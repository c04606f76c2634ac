package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/jobpkg"
)

// sendDone uploads a frame's files and reports it complete, in the background.
func (w *Worker) sendDone(ctx context.Context, t *task, l api.Lease, files []string, took time.Duration) {
	log := w.cfg.Log.With("job", l.Job, "frame", l.Frame)
	t.pending.Add(1)
	w.reports.Go(func() {
		defer t.pending.Done()
		defer w.markSent(t, l.Frame)
		rctx, abort := context.WithCancelCause(ctx)
		defer abort(nil)
		w.mu.Lock()
		t.aborts[l.Frame] = abort
		w.mu.Unlock()
		rejected := w.report(rctx, log, func(c context.Context) error {
			dog, stop := watch(c, stallLimit)
			defer stop()
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(jobpkg.WriteFiles(pw, t.dir, files)) }()
			err := w.cfg.Server.Complete(dog.Context(), w.cfg.Name, ref(l), took, dog.Reader(pr), -1)
			pr.CloseWithError(errors.New("upload ended"))
			return explain(dog, err)
		})
		if rejected == nil {
			return
		}
		// An output the server will not take (too large, unsafe names) is
		// this attempt failing: reported, so the frame is retried or fails
		// rather than being leased again and again when its lease expires.
		f := api.Failure{Worker: w.cfg.Name, Epoch: l.Epoch, Error: fmt.Sprintf("the server refused the output: %v", rejected)}
		w.report(ctx, log, func(c context.Context) error {
			dog, stop := watch(c, stallLimit)
			defer stop()
			return explain(dog, w.cfg.Server.Fail(dog.Context(), ref(l), f))
		})
	})
}

// sendFail reports a frame's failed attempt (or, with f.NotRun, a frame
// given back unattempted), in the background.
func (w *Worker) sendFail(ctx context.Context, t *task, l api.Lease, f api.Failure) {
	log := w.cfg.Log.With("job", l.Job, "frame", l.Frame)
	if f.NotRun {
		log.Info("frame given back", "reason", f.Error)
	} else {
		log.Warn("frame failed", "err", f.Error)
	}
	f.Worker, f.Epoch = w.cfg.Name, l.Epoch
	t.pending.Add(1)
	w.reports.Go(func() {
		defer t.pending.Done()
		defer w.markSent(t, l.Frame)
		w.report(ctx, log, func(c context.Context) error {
			dog, stop := watch(c, stallLimit)
			defer stop()
			return explain(dog, w.cfg.Server.Fail(dog.Context(), ref(l), f))
		})
	})
}

// markSent records that a frame's report is over: its heartbeats stop.
func (w *Worker) markSent(t *task, frame int64) {
	w.mu.Lock()
	t.sent[frame] = true
	delete(t.aborts, frame)
	w.mu.Unlock()
}

// frameList writes frames compactly: "7" or "7-10".
func frameList(fs []int64) string {
	if len(fs) == 1 {
		return fmt.Sprint(fs[0])
	}
	return fmt.Sprintf("%d-%d", fs[0], fs[len(fs)-1])
}

// report sends a result, retrying while the server is unreachable; a refused
// lease (ErrStale) or a rejected report ends it. It returns the rejection
// (ErrRejected, or ErrDenied), if that is how it ended.
func (w *Worker) report(ctx context.Context, log *slog.Logger, send func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := send(ctx)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrStale):
			log.Info("result refused: lease no longer held", "err", err)
			return nil
		case errors.Is(context.Cause(ctx), errLeaseLost):
			log.Info("result refused: lease no longer held", "err", "the server answered a heartbeat that it no longer holds the lease; the upload is abandoned")
			return nil
		case errors.Is(err, ErrRejected) || errors.Is(err, ErrDenied):
			log.Error("result rejected", "err", err)
			return err
		case ctx.Err() != nil || attempt >= 20:
			log.Error("result not delivered", "err", err)
			return nil
		}
		log.Warn("reporting failed, retrying", "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// checkOutputs keeps the reported files that match the output globs; they
// must be regular files inside dir.
func checkOutputs(dir string, files, globs []string) ([]string, error) {
	var out []string
	for _, f := range files {
		f = filepath.ToSlash(filepath.Clean(f))
		if !filepath.IsLocal(f) {
			return nil, fmt.Errorf("output %s is outside the scratch directory", f)
		}
		if !matchAny(globs, f) {
			continue
		}
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", f, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("output %s is not a regular file (%s)", f, fi.Mode().Type())
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no output matches %s (the renderer wrote %s)", strings.Join(globs, " "), strings.Join(files, ", "))
	}
	return out, nil
}

func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// collect returns the files under dir matching the globs that the render
// produced or changed, sorted. Symbolic links and special files are refused.
func collect(dir string, globs []string, before map[string]fileStamp) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if !matchAny(globs, rel) {
			return nil
		}
		if !de.Type().IsRegular() {
			return fmt.Errorf("output %s is not a regular file (%s)", rel, de.Type())
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		if b, ok := before[rel]; ok && b.size == info.Size() && b.mtime.Equal(info.ModTime()) {
			return nil // an input or a dependency's output, untouched
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no output matches %s", strings.Join(globs, " "))
	}
	return out, nil
}
