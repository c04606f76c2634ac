package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// stallLimit is how long a transfer with the server may make no progress
// (no byte of an upload taken by the connection, no byte of an answer or a
// download received) before the worker gives up on it and tries again on a
// new connection. A connection whose peer vanished without closing it (a
// half-open connection, a proxy that holds it open) would otherwise hold a
// request until the kernel gives up on it, many minutes later, and an
// upload's frame meanwhile, since its lease is renewed while it is sent.
// Bytes buffered by the kernel count as sent, so on a slow link the end of
// an upload shows no progress for a while: the limit is generous.
const stallLimit = time.Minute

// errStalled is the cause of a transfer canceled by its watchdog.
var errStalled = errors.New("transfer stalled")

// watchdog cancels a transfer's context when it has made no progress for
// its limit.
type watchdog struct {
	ctx   context.Context
	timer *time.Timer
	limit time.Duration
}

// watch returns a context for a transfer that is canceled, with errStalled
// as its cause, once the transfer has made no progress for limit; stop
// releases it when the transfer is over.
func watch(ctx context.Context, limit time.Duration) (d *watchdog, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	d = &watchdog{ctx: ctx, limit: limit}
	d.timer = time.AfterFunc(limit, func() { cancel(fmt.Errorf("no progress for %s: %w", limit, errStalled)) })
	return d, func() { d.timer.Stop(); cancel(nil) }
}

// Context is the transfer's context.
func (d *watchdog) Context() context.Context { return d.ctx }

// reader passes r on, each read that moves bytes counting as progress.
func (d *watchdog) reader(r io.Reader) io.Reader { return progressReader{r, d} }

// explain names the stall as the reason of an error that it caused.
func (d *watchdog) explain(err error) error {
	if err != nil && errors.Is(context.Cause(d.ctx), errStalled) {
		return fmt.Errorf("%w (%w)", err, context.Cause(d.ctx))
	}
	return err
}

type progressReader struct {
	r io.Reader
	d *watchdog
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.d.timer.Reset(p.d.limit)
	}
	return n, err
}
