package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"syscall"
	"time"
)

// DefaultStallTimeout is how long an operation may make no progress before
// the watchdog aborts it.
const DefaultStallTimeout = 300 * time.Second

// ResilientOptions configure Resilient.
type ResilientOptions struct {
	// StallTimeout aborts an operation that moves no byte for this long
	// (default DefaultStallTimeout).
	StallTimeout time.Duration
	// Attempts is how many times an operation is tried (default 5).
	Attempts int
	// Backoff is the wait before the first retry; it doubles, with jitter,
	// up to MaxBackoff (defaults 200ms and 30s).
	Backoff, MaxBackoff time.Duration
}

// Resilient wraps a module with a watchdog and retries:
//
//   - an operation that makes no progress (no byte read or written, no
//     answer) for StallTimeout is aborted — its context is canceled — and
//     fails with ErrStalled;
//   - a failed operation is retried with exponential backoff, unless its
//     error is permanent: ErrNotFound, ErrInvalidName, ErrCorrupt, a full
//     disk (ENOSPC, EDQUOT), a read-only file system or a refused
//     permission, or the caller's context ending. A Put is retried only if
//     its reader can seek back to where it started.
//
// Errors name the object and, after retries, how many attempts were made.
func Resilient(m Module, opt ResilientOptions) Module {
	if opt.StallTimeout <= 0 {
		opt.StallTimeout = DefaultStallTimeout
	}
	if opt.Attempts <= 0 {
		opt.Attempts = 5
	}
	if opt.Backoff <= 0 {
		opt.Backoff = 200 * time.Millisecond
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 30 * time.Second
	}
	return &resilient{m: m, opt: opt}
}

type resilient struct {
	m   Module
	opt ResilientOptions
}

func (r *resilient) String() string { return r.m.String() }

// Permanent reports whether retrying err cannot help.
func Permanent(err error) bool {
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalidName), errors.Is(err, ErrCorrupt),
		errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EROFS),
		errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return true
	}
	return false
}

// do runs op with a watchdog, retrying as the options say. The watchdog
// stops when op returns, unless op called keep, which hands over its stop
// function (Get does, for the reader it returns).
func (r *resilient) do(ctx context.Context, what, name string, retry func() bool,
	op func(ctx context.Context, w *Watchdog, keep func() context.CancelFunc) error) error {
	backoff := r.opt.Backoff
	var err error
	attempt := 1
	for ; ; attempt++ {
		w, stop := Watch(ctx, r.opt.StallTimeout, ErrStalled)
		kept := false
		err = op(w.Context(), w, func() context.CancelFunc { kept = true; return stop })
		if !kept || err != nil {
			stop()
		}
		if err != nil && w.Stalled() {
			err = fmt.Errorf("%w after %s without progress: %w", ErrStalled, r.opt.StallTimeout, err)
		}
		if err == nil || Permanent(err) || ctx.Err() != nil || attempt >= r.opt.Attempts || !retry() {
			break
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return wrap(what, r.m, name, fmt.Errorf("%w (after %d attempts; last error: %w)", ctx.Err(), attempt, err))
		}
		backoff = min(backoff*2, r.opt.MaxBackoff)
	}
	if err != nil && attempt > 1 {
		err = fmt.Errorf("%w (after %d attempts)", err, attempt)
	}
	return wrap(what, r.m, name, err)
}

func always() bool { return true }

func (r *resilient) Put(ctx context.Context, name string, src io.Reader, size int64) error {
	seeker, _ := src.(io.Seeker)
	var start int64
	if seeker != nil {
		var err error
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			seeker = nil
		}
	}
	first := true
	return r.do(ctx, "put", name, func() bool { return seeker != nil }, func(ctx context.Context, w *Watchdog, _ func() context.CancelFunc) error {
		if !first {
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				return err
			}
		}
		first = false
		return r.m.Put(ctx, name, w.Reader(src), size)
	})
}

func (r *resilient) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	return r.get(ctx, name, func(ctx context.Context) (io.ReadCloser, error) { return r.m.Get(ctx, name) })
}

func (r *resilient) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	return r.get(ctx, name, func(ctx context.Context) (io.ReadCloser, error) { return r.m.GetRange(ctx, name, off, length) })
}

// get opens object name with open, retried as every operation is.
func (r *resilient) get(ctx context.Context, name string, open func(context.Context) (io.ReadCloser, error)) (io.ReadCloser, error) {
	var out io.ReadCloser
	err := r.do(ctx, "get", name, always, func(ctx context.Context, w *Watchdog, keep func() context.CancelFunc) error {
		rc, err := open(ctx)
		if err == nil {
			// Reading is watched too: a stall mid-stream fails the read
			// (the caller may Get again).
			out = &watchedReader{rc: rc, w: w, stop: keep(), r: r, name: name}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

type watchedReader struct {
	rc   io.ReadCloser
	w    *Watchdog
	stop context.CancelFunc
	r    *resilient
	name string
}

func (wr *watchedReader) Read(p []byte) (int, error) {
	n, err := wr.rc.Read(p)
	if n > 0 {
		wr.w.Kick()
	}
	if err != nil && err != io.EOF && wr.w.Stalled() {
		err = wrap("get", wr.r.m, wr.name, fmt.Errorf("%w after %s without progress: %w", ErrStalled, wr.r.opt.StallTimeout, err))
	}
	return n, err
}

func (wr *watchedReader) Close() error {
	wr.stop()
	return wr.rc.Close()
}

func (r *resilient) Stat(ctx context.Context, name string) (Info, error) {
	var info Info
	err := r.do(ctx, "stat", name, always, func(ctx context.Context, _ *Watchdog, _ func() context.CancelFunc) error {
		var err error
		info, err = r.m.Stat(ctx, name)
		return err
	})
	return info, err
}

func (r *resilient) List(ctx context.Context, prefix string, fn func(Info) error) error {
	// Not retried: fn has seen part of the listing. Watched: each object
	// listed is progress.
	w, stop := Watch(ctx, r.opt.StallTimeout, ErrStalled)
	defer stop()
	err := r.m.List(w.Context(), prefix, func(i Info) error { w.Kick(); return fn(i) })
	if err != nil && w.Stalled() {
		err = fmt.Errorf("%w after %s without progress: listing %q on %s: %w", ErrStalled, r.opt.StallTimeout, prefix, r.m, err)
	}
	return err
}

func (r *resilient) Delete(ctx context.Context, name string) error {
	return r.do(ctx, "delete", name, always, func(ctx context.Context, _ *Watchdog, _ func() context.CancelFunc) error {
		return r.m.Delete(ctx, name)
	})
}
