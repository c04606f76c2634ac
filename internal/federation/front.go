package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/worker"
)

// front is the farm as this server's workers see it (Federation.Work);
// a request naming a peer's worker ("PEER/WORKER") is the lending side's.
type front struct{ f *Federation }

var (
	_ worker.Server       = front{}
	_ worker.LocalObjects = front{}
)

func (fr front) String() string { return fr.f.home.String() }

// Claim takes this server's own frames first; while there are none, it
// also asks every peer that is up, and returns the first frames any of
// them lends. Frames that arrive once the claim has what it returns are
// given back unattempted.
func (fr front) Claim(ctx context.Context, req api.ClaimRequest) (api.ClaimResponse, error) {
	f := fr.f
	if _, _, ok := session.SplitPeerWorker(req.Worker); ok {
		return f.lendClaim(ctx, req)
	}
	if len(f.order) == 0 {
		return f.home.Claim(ctx, req)
	}
	wait := min(time.Duration(max(req.WaitMS, 0))*time.Millisecond, f.home.MaxWait())
	deadline := time.Now().Add(wait)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	w := f.addWaiter(req.Max)
	defer f.removeWaiter(w)
	now := req
	now.WaitMS = 0
	var b *borrowing
	defer func() {
		if b != nil {
			b.stop()
		}
	}()
	// Peers are asked again, while the claim waits, when one comes up or
	// a while after every peer answered nothing (or could not be asked).
	var again <-chan time.Time
	up := f.upSignal()
	for {
		sig := f.home.ReadySignal()
		r, err := f.home.Claim(ctx, now)
		if err != nil || len(r.Leases) > 0 {
			return r, err
		}
		f.tried(w, sig)
		if b == nil && again == nil && time.Until(deadline) > 0 {
			up = f.upSignal()
			b = f.borrow(ctx, req, time.Until(deadline))
		}
		var got <-chan api.ClaimResponse
		var over <-chan struct{}
		if b != nil {
			got, over = b.first, b.over
		}
		select {
		case <-sig:
		case r := <-got:
			return r, nil
		case <-over:
			select {
			case r := <-got: // answered with frames as the last request ended
				return r, nil
			default:
			}
			b.stop()
			b, again = nil, time.After(min(borrowAgain, max(time.Until(deadline), 0)))
		case <-again:
			again = nil
		case <-up:
			again, up = nil, nil
		case <-timer.C:
			return api.ClaimResponse{}, nil
		case <-ctx.Done():
			return api.ClaimResponse{}, ctx.Err()
		}
	}
}

// borrowAgain is how long a claim that every peer answered with nothing
// waits before it asks them again (sooner if one comes up).
const borrowAgain = time.Second

// borrowing is a claim's requests to the peers.
type borrowing struct {
	cancel context.CancelFunc
	first  chan api.ClaimResponse // the first frames lent
	over   chan struct{}          // every request has ended
	ended  chan struct{}          // the claim has returned, or asks anew
}

// stop ends the requests still waiting; frames that arrive later are
// given back.
func (b *borrowing) stop() {
	close(b.ended)
	b.cancel()
}

// borrow asks every peer that is up for frames for the worker of req,
// waiting up to wait. The first non-empty answer goes to b.first; later
// ones, and the first if nobody takes it, are given back.
func (f *Federation) borrow(ctx context.Context, req api.ClaimRequest, wait time.Duration) *borrowing {
	ctx, cancel := context.WithCancel(ctx)
	b := &borrowing{cancel: cancel, first: make(chan api.ClaimResponse, 1), over: make(chan struct{}), ended: make(chan struct{})}
	n := 0
	answers := make(chan struct{}, len(f.order))
	for _, p := range f.order {
		if !p.up() {
			continue
		}
		n++
		go func() {
			defer func() { answers <- struct{}{} }()
			as := session.PeerWorker(f.name, req.Worker)
			r, err := p.c.Claim(ctx, api.ClaimRequest{Worker: as, Max: req.Max, WaitMS: int(wait.Milliseconds()), Backends: req.Backends})
			if err != nil {
				if errors.Is(err, worker.ErrDenied) {
					p.refused(fmt.Sprintf("refuses to lend to this server: %v", err))
				}
				if ctx.Err() == nil {
					f.log.Debug("borrowing from a peer", "peer", p.name, "err", err)
				}
				return
			}
			if len(r.Leases) == 0 {
				return
			}
			// Recorded before the worker has them: its first report or
			// fetch may follow at once.
			now := time.Now()
			for i, l := range r.Leases {
				r.Leases[i].Server = p.name
				f.lend(borrowKey{p.name, l.Job, l.Frame, l.Epoch}, loan{worker: req.Worker, ttl: time.Duration(l.TTLMS) * time.Millisecond, seen: now})
				for _, d := range l.Deps {
					f.origin(d.Output, p.name)
				}
			}
			select {
			case b.first <- r:
				return
			default: // another peer was first
			}
			for _, l := range r.Leases {
				f.unlend(borrowKey{p.name, l.Job, l.Frame, l.Epoch})
			}
			f.giveBack(context.WithoutCancel(ctx), p.c, as, r.Leases)
		}()
	}
	go func() {
		for range n {
			<-answers
		}
		close(b.over)
		<-b.ended
		// Frames lent for a claim that returned something else, or
		// nothing, are given back.
		select {
		case r := <-b.first:
			p := f.peers[r.Leases[0].Server]
			for _, l := range r.Leases {
				f.unlend(borrowKey{p.name, l.Job, l.Frame, l.Epoch})
			}
			f.giveBack(context.WithoutCancel(ctx), p.c, session.PeerWorker(f.name, req.Worker), r.Leases)
		default:
		}
	}()
	return b
}

// Heartbeat extends the leases of this server's own frames here and those
// of borrowed frames at their lenders. A lender that cannot be reached
// stops nothing: its leases run out there, or it answers next time.
func (fr front) Heartbeat(ctx context.Context, hb api.Heartbeat) (api.HeartbeatResponse, error) {
	f := fr.f
	if _, _, ok := session.SplitPeerWorker(hb.Worker); ok || len(f.order) == 0 {
		return f.home.Heartbeat(ctx, hb)
	}
	own := api.Heartbeat{Worker: hb.Worker}
	lent := map[string][]api.LeaseProgress{}
	waiting := false
	for _, l := range hb.Leases {
		if l.Server == "" || l.Server == f.name {
			own.Leases = append(own.Leases, l)
			continue
		}
		lent[l.Server] = append(lent[l.Server], l)
		waiting = waiting || l.Waiting
	}
	// Always here, also with no lease of its own: the worker is live.
	resp, err := f.home.Heartbeat(ctx, own)
	if err != nil {
		return api.HeartbeatResponse{}, err
	}
	// Borrowed frames not begun go back to their lenders when frames of
	// this server's own wait for the worker: they come first.
	if waiting && f.home.ReadyFor(hb.Worker) {
		for name, ls := range lent {
			keep := ls[:0]
			var back []api.Lease
			for _, l := range ls {
				if !l.Waiting {
					keep = append(keep, l)
					continue
				}
				ref := l.LeaseRef
				ref.Server = name
				resp.Stop = append(resp.Stop, ref)
				f.unlend(borrowKey{name, l.Job, l.Frame, l.Epoch})
				back = append(back, api.Lease{Job: l.Job, Frame: l.Frame, Epoch: l.Epoch})
			}
			lent[name] = keep
			if p := f.peers[name]; p != nil && len(back) > 0 {
				f.giveBack(ctx, p.c, session.PeerWorker(f.name, hb.Worker), back)
				p.givenBack.Add(int64(len(back)))
			}
		}
	}
	// The lenders at once, each given a few seconds: one that hangs must
	// not hold back the answer about the others, or about the server's
	// own leases.
	type answer struct {
		name string
		ls   []api.LeaseProgress
		r    api.HeartbeatResponse
		err  error
	}
	answers := make(chan answer, len(lent))
	for name, ls := range lent {
		p := f.peers[name]
		if p == nil {
			for _, l := range ls {
				resp.Stop = append(resp.Stop, l.LeaseRef)
			}
			continue
		}
		go func() {
			out := api.Heartbeat{Worker: session.PeerWorker(f.name, hb.Worker), Leases: make([]api.LeaseProgress, len(ls))}
			for i, l := range ls {
				out.Leases[i] = l
				out.Leases[i].Server = ""
			}
			pctx, cancel := context.WithTimeout(ctx, peerHeartbeat)
			defer cancel()
			r, err := p.c.Heartbeat(pctx, out)
			answers <- answer{name, ls, r, err}
		}()
	}
	now := time.Now()
	for range len(lent) - countMissing(f, lent) {
		a := <-answers
		if a.err != nil {
			f.log.Warn("heartbeat of borrowed frames", "peer", a.name, "frames", len(a.ls), "err", a.err)
			continue
		}
		stop := map[api.LeaseRef]bool{}
		for _, s := range a.r.Stop {
			s.Server = a.name
			stop[s] = true
			resp.Stop = append(resp.Stop, s)
			f.unlend(borrowKey{a.name, s.Job, s.Frame, s.Epoch})
		}
		f.mu.Lock()
		for _, l := range a.ls {
			ref := l.LeaseRef
			ref.Server = a.name
			if k := (borrowKey{a.name, l.Job, l.Frame, l.Epoch}); !stop[ref] && f.borrowed[k] != nil {
				f.borrowed[k].seen = now
			}
		}
		f.mu.Unlock()
	}
	return resp, nil
}

// peerHeartbeat bounds a heartbeat passed on to a lender.
const peerHeartbeat = 5 * time.Second

// countMissing counts the lenders named in lent that are not peers.
func countMissing(f *Federation, lent map[string][]api.LeaseProgress) int {
	n := 0
	for name := range lent {
		if f.peers[name] == nil {
			n++
		}
	}
	return n
}

// Spec returns a job's spec from the server whose job it is, and notes
// where its inputs are.
func (fr front) Spec(ctx context.Context, server string, job int64) (api.JobSpec, error) {
	f := fr.f
	if server == "" || server == f.name {
		return f.home.Spec(ctx, "", job)
	}
	p, err := f.lender(server)
	if err != nil {
		return api.JobSpec{}, err
	}
	js, err := p.c.Spec(ctx, "", job)
	if err != nil {
		return api.JobSpec{}, peerError(p, err)
	}
	for _, in := range js.Inputs {
		for _, c := range in.Parts() {
			f.origin(c.Hash, p.name)
		}
	}
	return js, nil
}

// Blob opens an object, fetching it first from the peer that has it if
// this server lacks it and one of its workers was handed it (a lent job's
// input, a dependency's output). A peer's own requests are served from
// this server's vault alone.
func (fr front) Blob(ctx context.Context, hash string) (io.ReadCloser, error) {
	if err := fr.f.fetch(ctx, hash); err != nil {
		return nil, err
	}
	return fr.f.home.Blob(ctx, hash)
}

// OpenObject is Blob for the local slots.
func (fr front) OpenObject(ctx context.Context, hash string) (io.ReadCloser, int64, error) {
	if err := fr.f.fetch(ctx, hash); err != nil {
		return nil, 0, err
	}
	return fr.f.home.OpenObject(ctx, hash)
}

type fromPeerKey struct{}

// FromPeer marks ctx as a request of a peer: objects it asks for are not
// fetched from other peers.
func FromPeer(ctx context.Context) context.Context {
	return context.WithValue(ctx, fromPeerKey{}, true)
}

// fetch makes sure the vault holds an object a peer has, once.
func (f *Federation) fetch(ctx context.Context, hash string) error {
	if len(f.order) == 0 || ctx.Value(fromPeerKey{}) != nil {
		return nil
	}
	f.mu.Lock()
	name := f.origins[hash]
	f.mu.Unlock()
	if name == "" {
		return nil
	}
	for {
		if ok, err := f.home.Has(ctx, hash); err != nil || ok {
			return err
		}
		f.mu.Lock()
		wait, busy := f.fetching[hash]
		if !busy {
			wait = make(chan struct{})
			f.fetching[hash] = wait
		}
		f.mu.Unlock()
		if busy {
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		err := f.fetchFrom(ctx, f.peers[name], hash)
		f.mu.Lock()
		delete(f.fetching, hash)
		close(wait)
		f.mu.Unlock()
		return err
	}
}

func (f *Federation) fetchFrom(ctx context.Context, p *peer, hash string) error {
	rc, err := p.c.Blob(ctx, hash)
	if err != nil {
		return peerError(p, fmt.Errorf("object %s: %w", hash, err))
	}
	defer rc.Close()
	if _, _, err := f.home.Keep(ctx, rc, hash); err != nil {
		return fmt.Errorf("object %s from peer %s: %w", hash, p.name, err)
	}
	return nil
}

// Complete reports a frame's output to the server whose frame it is: a
// borrowed frame's output is kept here and the lender told, which fetches
// it from here (TakeOutput).
func (fr front) Complete(ctx context.Context, name string, l api.LeaseRef, render time.Duration, tarball io.Reader, size int64) error {
	f := fr.f
	if l.Server == "" || l.Server == f.name {
		return f.home.Complete(ctx, name, l, render, tarball, size)
	}
	p, err := f.lender(l.Server)
	if err != nil {
		return err
	}
	hash, n, err := f.home.Keep(ctx, tarball, "")
	if err != nil {
		return err
	}
	err = p.c.Lent(ctx, l.Job, l.Frame, api.PeerOutput{Worker: session.PeerWorker(f.name, name), Epoch: l.Epoch,
		Output: hash, Size: n, RenderMS: render.Milliseconds()})
	if err == nil || errors.Is(err, worker.ErrStale) || errors.Is(err, worker.ErrRejected) {
		f.unlend(borrowKey{p.name, l.Job, l.Frame, l.Epoch})
	}
	if err == nil {
		p.borrowedDone.Add(1)
	}
	return peerError(p, err)
}

// Fail reports a failed attempt to the server whose frame it is.
func (fr front) Fail(ctx context.Context, l api.LeaseRef, fl api.Failure) error {
	f := fr.f
	if l.Server == "" || l.Server == f.name {
		return f.home.Fail(ctx, l, fl)
	}
	p, err := f.lender(l.Server)
	if err != nil {
		return err
	}
	ref := l
	ref.Server = ""
	fl.Worker = session.PeerWorker(f.name, fl.Worker)
	err = p.c.Fail(ctx, ref, fl)
	if err == nil || errors.Is(err, worker.ErrStale) || errors.Is(err, worker.ErrRejected) {
		f.unlend(borrowKey{p.name, l.Job, l.Frame, l.Epoch})
	}
	return peerError(p, err)
}
