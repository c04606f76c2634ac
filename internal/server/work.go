package server

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/federation"
	"github.com/distren/distren/internal/session"
)

// The workers' protocol: claim frames, heartbeat their leases, report
// each frame's output or failure. The handlers call the farm as its
// workers see it (federation.Federation.Work): this server's own frames,
// and those it borrows from its peers. A request naming a peer's worker
// ("PEER/WORKER") is a peer's, checked to come from that peer
// (federation.Federation.Verify).

// fromPeer checks a request made for worker name: if it is a peer's
// worker, the request must come from that peer; its context is marked as
// a peer's.
func (s *Server) fromPeer(r *http.Request, worker string) (context.Context, error) {
	if err := s.fed.Verify(r.Context(), worker, r.Header.Get(api.PeerHeader)); err != nil {
		return nil, err
	}
	if r.Header.Get(api.PeerHeader) != "" {
		return federation.FromPeer(r.Context()), nil
	}
	return r.Context(), nil
}

func (s *Server) postClaim(r *http.Request) (any, error) {
	var req api.ClaimRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if err := checkWorker(req.Worker); err != nil {
		return nil, badRequest("claim: %w", err)
	}
	if req.Max < 1 || req.Max > 1024 {
		return nil, badRequest("claim: max %d out of range 1..1024", req.Max)
	}
	ctx, err := s.fromPeer(r, req.Worker)
	if err != nil {
		return nil, err
	}
	req.WaitMS = int(min(time.Duration(max(req.WaitMS, 0))*time.Millisecond, s.lim.MaxClaimWait).Milliseconds())
	return s.work.Claim(ctx, req)
}

func (s *Server) postHeartbeat(r *http.Request) (any, error) {
	var hb api.Heartbeat
	if err := decode(r, &hb); err != nil {
		return nil, err
	}
	if err := checkWorker(hb.Worker); err != nil {
		return nil, badRequest("heartbeat: %w", err)
	}
	ctx, err := s.fromPeer(r, hb.Worker)
	if err != nil {
		return nil, err
	}
	return s.work.Heartbeat(ctx, hb)
}

// postOutput receives a frame's output tarball.
func (s *Server) postOutput(r *http.Request) (any, error) {
	worker, l, err := leaseOf(r)
	if err != nil {
		return nil, err
	}
	var renderMS int64
	if v := r.URL.Query().Get("render_ms"); v != "" {
		if renderMS, err = strconv.ParseInt(v, 10, 64); err != nil || renderMS < 0 {
			return nil, badRequest("render_ms %q: expected a whole number of milliseconds, 0 or more", v)
		}
	}
	ctx, err := s.fromPeer(r, worker)
	if err != nil {
		return nil, err
	}
	if err := s.work.Complete(ctx, worker, l, time.Duration(renderMS)*time.Millisecond, r.Body, r.ContentLength); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (s *Server) postFail(r *http.Request) (any, error) {
	id, fr, err := jobFrame(r)
	if err != nil {
		return nil, err
	}
	var f api.Failure
	if err := decode(r, &f); err != nil {
		return nil, err
	}
	if err := checkWorker(f.Worker); err != nil {
		return nil, badRequest("frame %d failure: %w", fr, err)
	}
	ctx, err := s.fromPeer(r, f.Worker)
	if err != nil {
		return nil, err
	}
	l := api.LeaseRef{Server: r.URL.Query().Get("server"), Job: id, Frame: fr, Epoch: f.Epoch}
	return struct{}{}, s.work.Fail(ctx, l, f)
}

// The peers' own routes.

// getPeer answers what this server says of itself to its peers. A
// request that says it comes from a server (api.PeerHeader) is checked as
// a peer's requests are: a server that is not a peer, or another server
// of a peer's name, learns here that it is refused.
func (s *Server) getPeer(r *http.Request) (any, error) {
	if h := r.Header.Get(api.PeerHeader); h != "" && !s.fed.Self(h) {
		name, _, _ := strings.Cut(h, " ")
		if err := s.fed.Verify(r.Context(), session.PeerWorker(name, "hello"), h); err != nil {
			return nil, err
		}
	}
	return s.fed.Hello(), nil
}

func (s *Server) getPeers(*http.Request) (any, error) { return s.fed.Peers(), nil }

// postLent records a frame lent to a peer as rendered there: the lender
// fetches the output from the peer.
func (s *Server) postLent(r *http.Request) (any, error) {
	id, fr, err := jobFrame(r)
	if err != nil {
		return nil, err
	}
	var out api.PeerOutput
	if err := decode(r, &out); err != nil {
		return nil, err
	}
	if err := checkWorker(out.Worker); err != nil {
		return nil, badRequest("frame %d lent: %w", fr, err)
	}
	ctx, err := s.fromPeer(r, out.Worker)
	if err != nil {
		return nil, err
	}
	return struct{}{}, s.fed.TakeOutput(ctx, id, fr, out)
}
