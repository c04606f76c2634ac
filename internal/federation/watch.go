package federation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/worker"
)

// Frames that depend on frames of peers. For each job of a peer that
// frames here wait for, one goroutine follows the peer's event stream for
// that job (GET /v1/events?job=N there): at every event that changes how
// many of its frames have ended — and at the first, which is the job's
// state when the stream opens — it asks the peer for the frames waited
// for; a frame done has its output fetched into this server's vault and
// the session told (Home.RemoteDone), a frame failed or canceled there
// fails the frames here that depend on it (Home.RemoteFailed). Nothing is
// polled: a peer that cannot be reached is tried again, with a backoff,
// and the stream's first event says what happened meanwhile.

// JobEvents is a peer's event stream for one job.
type JobEvents interface {
	// Next blocks until the next event: the job's summary, or deleted.
	Next() (job api.Job, deleted bool, err error)
	Close() error
}

type remoteJob struct {
	server string
	job    int64
}

// watchRemotes follows the peers' jobs that frames here wait for, until
// ctx ends.
func (f *Federation) watchRemotes(ctx context.Context) {
	watching := map[remoteJob]bool{}
	ended := make(chan remoteJob)
	for {
		sig := f.home.RemoteSignal()
		for _, r := range f.home.RemoteWaits() {
			k := remoteJob{r.Server, r.Job}
			if !watching[k] && f.peers[k.server] != nil {
				watching[k] = true
				go func() {
					f.watchJob(ctx, f.peers[k.server], k.job)
					select {
					case ended <- k:
					case <-ctx.Done():
					}
				}()
			}
		}
		select {
		case <-sig:
		case k := <-ended:
			delete(watching, k) // asked again: frames may have come to wait for it since
		case <-ctx.Done():
			return
		}
	}
}

// waitsOf returns the frames of the peer's job that frames here wait for.
func (f *Federation) waitsOf(server string, job int64) []session.RemoteFrame {
	var out []session.RemoteFrame
	for _, r := range f.home.RemoteWaits() {
		if r.Server == server && r.Job == job {
			out = append(out, r)
		}
	}
	return out
}

// watchJob follows one job of a peer until no frame here waits for any of
// its frames.
func (f *Federation) watchJob(ctx context.Context, p *peer, job int64) {
	backoff := time.Second
	for ctx.Err() == nil {
		if len(f.waitsOf(p.name, job)) == 0 {
			return
		}
		if ev, err := p.c.Events(ctx, job); err != nil {
			if ctx.Err() == nil {
				f.log.Warn("following a peer's job that frames here depend on", "peer", p.name, "job", job, "err", err, "retry_in", backoff)
			}
		} else {
			backoff = time.Second
			if f.follow(ctx, p, job, ev) {
				return
			}
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

type jobEvent struct {
	job     api.Job
	deleted bool
	err     error
}

// follow reads one event stream of the peer's job, settling its frames at
// the first event and at every event that changes how many of them have
// ended; a frame that could not be settled (its output could not be
// fetched, say) is tried again after a while, events or not. It reports
// whether nothing is waited for any more; false when the stream ended.
func (f *Federation) follow(ctx context.Context, p *peer, job int64, ev JobEvents) bool {
	events, done := make(chan jobEvent), make(chan struct{})
	defer func() {
		close(done) // the reader stops, once the stream's Close ends its Next
		ev.Close()
	}()
	go func() {
		for {
			j, deleted, err := ev.Next()
			select {
			case events <- jobEvent{j, deleted, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	ended := -1
	var again <-chan time.Time
	retry := time.Second
	for {
		select {
		case e := <-events:
			if e.err != nil {
				if ctx.Err() == nil {
					f.log.Warn("event stream of a peer's job", "peer", p.name, "job", job, "err", e.err)
				}
				return false
			}
			n := e.job.Counts[api.StateDone] + e.job.Counts[api.StateFailed] + e.job.Counts[api.StateCanceled]
			if e.deleted {
				n = -2
			}
			if n == ended {
				continue
			}
			ended = n
		case <-again:
			again = nil
			retry = min(2*retry, 30*time.Second)
		case <-ctx.Done():
			return true
		}
		left, troubled := f.settle(ctx, p, job)
		if left == 0 {
			return true
		}
		if troubled && again == nil {
			again = time.After(retry)
		}
	}
}

// settle asks the peer for the frames of its job that frames here wait
// for and tells the session those that ended; it returns how many are
// still waited for, and whether any of those could not be settled for a
// failure (of the peer, or of this server) rather than because it has not
// ended.
func (f *Federation) settle(ctx context.Context, p *peer, job int64) (left int, troubled bool) {
	waits := f.waitsOf(p.name, job)
	for _, r := range waits {
		fr, err := p.c.Frame(ctx, r.Job, r.Frame)
		switch {
		case errors.Is(err, worker.ErrRejected):
			err = f.home.RemoteFailed(ctx, r, false, fmt.Sprintf("%s cannot be had: %v", r, err))
		case err != nil:
			f.log.Warn("asking a peer for a frame that frames here depend on", "frame", r.String(), "err", err)
			left, troubled = left+1, true
			continue
		case fr.State == api.StateDone:
			if err = f.fetchFrom(ctx, p, fr.Output); err == nil {
				err = f.home.RemoteDone(ctx, r, fr.Output, fr.Size)
			}
		case fr.State == api.StateFailed:
			err = f.home.RemoteFailed(ctx, r, false, fr.Error)
		case fr.State == api.StateCanceled:
			err = f.home.RemoteFailed(ctx, r, true, fr.Error)
		default:
			left++
			continue
		}
		if err != nil {
			f.log.Warn("a peer's frame that frames here depend on", "frame", r.String(), "err", err)
			left, troubled = left+1, true
		}
	}
	return left, troubled
}
