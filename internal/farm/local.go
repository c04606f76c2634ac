package farm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/server"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/worker"
)

// slots is the server as its local worker slots see it: the operations
// the API's handlers call, called in process — no HTTP, no token, the
// same outcomes. A claim waits at most as long as the API lets one wait.
type slots struct {
	farm    *ops.Farm
	maxWait time.Duration
}

var (
	_ worker.Server       = slots{}
	_ worker.LocalObjects = slots{}
)

func (s slots) Claim(ctx context.Context, req api.ClaimRequest) (api.ClaimResponse, error) {
	wait := min(time.Duration(max(req.WaitMS, 0))*time.Millisecond, s.maxWait)
	leases, err := s.farm.Session().ClaimWait(ctx, server.SessionClaim(req), wait)
	if err != nil {
		return api.ClaimResponse{}, outcome(err)
	}
	return api.ClaimResponse{Leases: server.WireLeases(leases)}, nil
}

func (s slots) Heartbeat(ctx context.Context, hb api.Heartbeat) (api.HeartbeatResponse, error) {
	r, err := s.farm.Session().Heartbeat(ctx, server.SessionHeartbeat(hb))
	if err != nil {
		return api.HeartbeatResponse{}, outcome(err)
	}
	return server.WireHeartbeat(r), nil
}

func (s slots) Spec(ctx context.Context, job int64) (api.JobSpec, error) {
	js, err := s.farm.Session().Spec(job)
	if err != nil {
		return api.JobSpec{}, outcome(err)
	}
	return server.WireSpec(js), nil
}

func (s slots) Blob(ctx context.Context, hash string) (io.ReadCloser, error) {
	o, err := s.farm.Blob(ctx, hash)
	if err != nil {
		return nil, outcome(err)
	}
	return o, nil
}

// OpenObject opens an object where the vault holds it: the slots copy it
// into their scratch directories from there and keep no cache of their
// own. The vault verifies every piece it hands over. Its errors, which the
// slots report as a frame's failure, name none of the server's
// directories, as the API's answers do not.
func (s slots) OpenObject(ctx context.Context, hash string) (io.ReadCloser, int64, error) {
	o, err := s.farm.Blob(ctx, hash)
	if err != nil {
		return nil, 0, outcome(s.redact(err))
	}
	return redacting{o, s}, o.Size(), nil
}

// redacting is an object whose read errors are redacted.
type redacting struct {
	ops.Object
	s slots
}

func (r redacting) Read(p []byte) (int, error) {
	n, err := r.Object.Read(p)
	if err != nil && err != io.EOF {
		err = r.s.redact(err)
	}
	return n, err
}

// redact returns err with the server's directories removed from its
// message; it still matches what err matches.
func (s slots) redact(err error) error {
	return &redacted{s.farm.Redact(err.Error()), err}
}

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

func (s slots) Complete(ctx context.Context, name string, l api.LeaseRef, render time.Duration, tarball io.Reader, size int64) error {
	rep := ops.Report{Worker: name, Job: l.Job, Frame: l.Frame, Epoch: l.Epoch}
	return outcome(s.farm.AcceptOutput(ctx, rep, render, tarball))
}

func (s slots) Fail(ctx context.Context, l api.LeaseRef, f api.Failure) error {
	rep := ops.Report{Worker: f.Worker, Job: l.Job, Frame: l.Frame, Epoch: l.Epoch}
	if f.NotRun {
		return outcome(s.farm.Release(ctx, rep))
	}
	return outcome(s.farm.Fail(ctx, rep, f.Error, f.JobError))
}

func (s slots) String() string { return "this server (in process)" }

// outcome maps an operation's error to what the worker acts on, as the
// API's statuses do for a remote worker: a lease that moved on is stale;
// a request the farm refuses (its content, a limit, no such job or object)
// is rejected; the farm failing (its disk, its store, stopping) is
// transient. Nothing in process is denied: the slots hold no credential.
func outcome(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, session.ErrStaleLease):
		return fmt.Errorf("%w: %w", worker.ErrStale, err)
	case ops.KindOf(err) != ops.Failed, errors.Is(err, session.ErrNotFound), errors.Is(err, session.ErrInvalid),
		errors.Is(err, session.ErrTooManyFrames):
		return fmt.Errorf("%w: %w", worker.ErrRejected, err)
	}
	return err
}
