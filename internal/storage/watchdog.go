package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// Watchdog cancels a context when what it watches — an operation on a
// module, a transfer over the network — has made no progress for its
// limit, so that a stalled disk or a half-open connection fails instead of
// hanging. Progress is a call to Kick, or bytes moved through Reader.
type Watchdog struct {
	ctx   context.Context
	timer *time.Timer
	limit time.Duration
	cause error
}

// Watch returns a watchdog over a context derived from ctx, canceled with
// cause once nothing has moved for limit, and the function that releases it
// when the work is over.
func Watch(ctx context.Context, limit time.Duration, cause error) (*Watchdog, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	d := &Watchdog{ctx: ctx, limit: limit, cause: cause}
	d.timer = time.AfterFunc(limit, func() { cancel(cause) })
	return d, func() { d.timer.Stop(); cancel(nil) }
}

// Context is the watched work's context.
func (d *Watchdog) Context() context.Context { return d.ctx }

// Limit is how long the work may make no progress.
func (d *Watchdog) Limit() time.Duration { return d.limit }

// Kick records progress.
func (d *Watchdog) Kick() { d.timer.Reset(d.limit) }

// Stalled reports whether the watchdog canceled the work.
func (d *Watchdog) Stalled() bool { return errors.Is(context.Cause(d.ctx), d.cause) }

// Reader passes r on; each read that moves bytes is progress.
func (d *Watchdog) Reader(r io.Reader) io.Reader { return kicking{r, d} }

type kicking struct {
	r io.Reader
	d *Watchdog
}

func (k kicking) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if n > 0 {
		k.d.Kick()
	}
	return n, err
}
