package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/federation"
	"github.com/distren/distren/internal/worker"
)

// ForWorker returns the client as the server a worker renders for: the
// worker's calls over HTTP, with the statuses the worker acts on mapped to
// its sentinel errors (worker.ErrDenied, worker.ErrStale,
// worker.ErrRejected). The errors keep the server's message and remain
// *Error values for errors.As.
func (c *Client) ForWorker() worker.Server { return workerServer{c} }

type workerServer struct{ c *Client }

func (s workerServer) Claim(ctx context.Context, req api.ClaimRequest) (api.ClaimResponse, error) {
	r, err := s.c.Claim(ctx, req)
	return r, forWorker(err)
}

func (s workerServer) Heartbeat(ctx context.Context, hb api.Heartbeat) (api.HeartbeatResponse, error) {
	r, err := s.c.Heartbeat(ctx, hb)
	return r, forWorker(err)
}

func (s workerServer) Spec(ctx context.Context, server string, job int64) (api.JobSpec, error) {
	js, err := s.c.Spec(ctx, server, job)
	return js, forWorker(err)
}

func (s workerServer) Blob(ctx context.Context, hash string) (io.ReadCloser, error) {
	rc, err := s.c.Blob(ctx, hash)
	return rc, forWorker(err)
}

func (s workerServer) Complete(ctx context.Context, name string, l api.LeaseRef, render time.Duration, tarball io.Reader, size int64) error {
	return forWorker(s.c.Complete(ctx, name, l, render, tarball, size))
}

func (s workerServer) Fail(ctx context.Context, l api.LeaseRef, f api.Failure) error {
	return forWorker(s.c.Fail(ctx, l, f))
}

func (s workerServer) String() string { return s.c.Base() }

// forWorker maps an error response to the outcome the worker acts on:
// 401 and 403 refuse its credential; 409 says the lease has moved on; any
// other status below 500 refuses the request itself. Server errors (5xx)
// and failures to reach the server stay as they are: transient.
func forWorker(err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	switch {
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		return &outcome{worker.ErrDenied, err}
	case e.Status == http.StatusConflict:
		return &outcome{worker.ErrStale, err}
	case e.Status < 500:
		return &outcome{worker.ErrRejected, err}
	}
	return err
}

// outcome is an error response that also matches one of the worker's
// sentinels; its message is the server's.
type outcome struct {
	kind error
	err  error
}

func (o *outcome) Error() string   { return o.err.Error() }
func (o *outcome) Unwrap() []error { return []error{o.kind, o.err} }

// ForPeer returns the client as a peer of the server it belongs to
// (federation.Peer): the workers' protocol with the outcomes mapped as for
// a worker, and the peer's own calls. The client should carry the
// server's peer header (WithHeader(api.PeerHeader, ...)) and its token
// for that peer.
func (c *Client) ForPeer() federation.Peer { return peerServer{workerServer{c}} }

type peerServer struct{ workerServer }

func (s peerServer) Hello(ctx context.Context, identify bool) (api.PeerHello, error) {
	if !identify {
		ctx = Plain(ctx)
	}
	h, err := s.c.Hello(ctx)
	return h, forWorker(err)
}

func (s peerServer) Lent(ctx context.Context, job, frame int64, out api.PeerOutput) error {
	return forWorker(s.c.Lent(ctx, job, frame, out))
}

func (s peerServer) Events(ctx context.Context, job int64) (federation.JobEvents, error) {
	es, err := s.c.Events(ctx, job)
	if err != nil {
		return nil, forWorker(err)
	}
	return jobEvents{es}, nil
}

func (s peerServer) Frame(ctx context.Context, job, frame int64) (api.Frame, error) {
	f, err := s.c.Frame(ctx, job, frame)
	return f, forWorker(err)
}

type jobEvents struct{ *EventStream }

func (e jobEvents) Next() (api.Job, bool, error) {
	ev, err := e.EventStream.Next()
	return ev.Job, ev.Type == api.EventDeleted, err
}
