package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/worker"
)

// The lending side: what a peer's workers ask of this server.

// lendClaim serves a claim of a peer's worker: this server's own frames
// only (a lent frame is never lent on), and only once every own worker
// waiting for frames has tried since frames last became ready, so that
// this server's own workers go first. A claim whose requester has gone
// by the time it is granted gives its frames back.
func (f *Federation) lendClaim(ctx context.Context, req api.ClaimRequest) (api.ClaimResponse, error) {
	name, _, _ := session.SplitPeerWorker(req.Worker)
	if _, err := f.peerOf(name); err != nil {
		return api.ClaimResponse{}, err
	}
	timer := time.NewTimer(min(time.Duration(max(req.WaitMS, 0))*time.Millisecond, f.home.MaxWait()))
	defer timer.Stop()
	now := req
	now.WaitMS = 0
	for {
		sig := f.home.ReadySignal()
		ok, changed := f.settled(sig)
		if ok {
			r, err := f.home.Claim(ctx, now)
			if err != nil || len(r.Leases) > 0 {
				if err == nil && ctx.Err() != nil {
					f.giveBack(context.WithoutCancel(ctx), f.home, req.Worker, r.Leases)
					return api.ClaimResponse{}, ctx.Err()
				}
				return r, err
			}
		}
		select {
		case <-sig:
		case <-changed:
		case <-timer.C:
			return api.ClaimResponse{}, nil
		case <-ctx.Done():
			return api.ClaimResponse{}, ctx.Err()
		}
	}
}

// giveBack returns leases unattempted to the server that granted them.
func (f *Federation) giveBack(ctx context.Context, to worker.Server, workerName string, leases []api.Lease) {
	for _, l := range leases {
		ref := l.Ref()
		ref.Server = ""
		if err := to.Fail(ctx, ref, api.Failure{Worker: workerName, Epoch: l.Epoch, NotRun: true}); err != nil {
			f.log.Warn("giving back a frame claimed for nobody", "server", to.String(), "job", l.Job, "frame", l.Frame, "err", err)
		}
	}
}

// TakeOutput records a frame lent to a peer as done: it checks the lease,
// fetches the output the peer reports from that peer, and stores and
// records it as a worker's report. A lease that moved on is refused
// (worker.ErrStale) before a byte is fetched.
func (f *Federation) TakeOutput(ctx context.Context, job, frame int64, out api.PeerOutput) error {
	name, _, ok := session.SplitPeerWorker(out.Worker)
	if !ok {
		return fmt.Errorf("%w: worker %q is not a peer's worker (PEER/WORKER)", worker.ErrRejected, out.Worker)
	}
	p, err := f.peerOf(name)
	if err != nil {
		return err
	}
	body := &lazyBlob{open: func() (io.ReadCloser, error) { return p.c.Blob(ctx, out.Output) }}
	defer body.Close()
	ref := api.LeaseRef{Job: job, Frame: frame, Epoch: out.Epoch}
	err = f.home.Complete(ctx, out.Worker, ref, time.Duration(out.RenderMS)*time.Millisecond, body, out.Size)
	if body.err != nil && err != nil && !errors.Is(err, worker.ErrStale) {
		return peerError(p, fmt.Errorf("fetching the output of frame %d from %s: %w", frame, p.name, body.err))
	}
	if err == nil {
		p.lentDone.Add(1)
	}
	return err
}

// lazyBlob opens an object on its first read: nothing is fetched for a
// report refused before it is read.
type lazyBlob struct {
	open func() (io.ReadCloser, error)
	once sync.Once
	rc   io.ReadCloser
	err  error
}

func (b *lazyBlob) Read(p []byte) (int, error) {
	b.once.Do(func() { b.rc, b.err = b.open() })
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (b *lazyBlob) Close() error {
	if b.rc != nil {
		return b.rc.Close()
	}
	return nil
}
