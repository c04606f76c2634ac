package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/distren/distren/internal/storage"
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

// watch returns the watchdog of a transfer (storage.Watchdog: progress is
// bytes moved through its Reader) and the function that releases it.
func watch(ctx context.Context, limit time.Duration) (*storage.Watchdog, context.CancelFunc) {
	return storage.Watch(ctx, limit, errStalled)
}

// explain names the stall as the reason of an error that it caused.
func explain(d *storage.Watchdog, err error) error {
	if err != nil && d.Stalled() {
		return fmt.Errorf("%w (no progress for %s: %w)", err, d.Limit(), errStalled)
	}
	return err
}
