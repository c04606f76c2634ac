// Package work owns the workers' protocol over the farm's operations, in
// process: Local is the farm as its workers see it — claims, heartbeats,
// specs, objects, reports — calling internal/ops and the session with no
// transport, used by the local slots of `distren serve` directly and by
// the API's handlers for remote workers (internal/server), with the
// conversions between the session's types and the wire format
// (convert.go). internal/federation puts its borrowing and lending in
// front of it.
package work

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/federation"
	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/worker"
)

// Local is the farm as its workers see it: the operations the API's
// handlers call, called in process — no HTTP, no token, the same
// outcomes. A claim waits at most maxWait. Its errors match the worker's
// sentinels (worker.ErrStale, worker.ErrRejected) and still match the
// operations' and the session's own, which the API maps to statuses.
type Local struct {
	farm    *ops.Farm
	maxWait time.Duration
}

// New returns the farm's operations as its workers call them; a claim
// waits at most maxWait for frames.
func New(farm *ops.Farm, maxWait time.Duration) *Local { return &Local{farm: farm, maxWait: maxWait} }

var (
	_ worker.Server       = (*Local)(nil)
	_ worker.LocalObjects = (*Local)(nil)
)

// Farm returns the operations Local calls.
func (s *Local) Farm() *ops.Farm { return s.farm }

// Name returns the server's name.
func (s *Local) Name() string { return s.farm.Session().Name() }

// ReadySignal is the session's: closed when frames next become ready.
func (s *Local) ReadySignal() <-chan struct{} { return s.farm.Session().ReadySignal() }

// MaxWait is the longest a claim waits.
func (s *Local) MaxWait() time.Duration { return s.maxWait }

func (s *Local) Claim(ctx context.Context, req api.ClaimRequest) (api.ClaimResponse, error) {
	wait := min(time.Duration(max(req.WaitMS, 0))*time.Millisecond, s.maxWait)
	leases, err := s.farm.Session().ClaimWait(ctx, SessionClaim(req), wait)
	if err != nil {
		return api.ClaimResponse{}, outcome(err)
	}
	return api.ClaimResponse{Leases: WireLeases(leases)}, nil
}

func (s *Local) Heartbeat(ctx context.Context, hb api.Heartbeat) (api.HeartbeatResponse, error) {
	for _, l := range hb.Leases {
		if err := s.own(l.Server); err != nil {
			return api.HeartbeatResponse{}, err
		}
	}
	r, err := s.farm.Session().Heartbeat(ctx, SessionHeartbeat(hb))
	if err != nil {
		return api.HeartbeatResponse{}, outcome(err)
	}
	return WireHeartbeat(r), nil
}

// own refuses a lease or job of another server: Local holds only this
// farm's own.
func (s *Local) own(server string) error {
	if server != "" && server != s.Name() {
		return fmt.Errorf("%w: a job of server %q: this server (%s) renders none of its frames", worker.ErrRejected, server, s.Name())
	}
	return nil
}

func (s *Local) Spec(ctx context.Context, server string, job int64) (api.JobSpec, error) {
	if err := s.own(server); err != nil {
		return api.JobSpec{}, err
	}
	js, err := s.farm.Session().Spec(job)
	if err != nil {
		return api.JobSpec{}, outcome(err)
	}
	return WireSpec(js), nil
}

// Blob opens a stored object; the ops.Object it returns also tells its size.
func (s *Local) Blob(ctx context.Context, hash string) (io.ReadCloser, error) {
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
func (s *Local) OpenObject(ctx context.Context, hash string) (io.ReadCloser, int64, error) {
	o, err := s.farm.Blob(ctx, hash)
	if err != nil {
		return nil, 0, outcome(s.redact(err))
	}
	return redacting{o, s}, o.Size(), nil
}

// redacting is an object whose read errors are redacted.
type redacting struct {
	ops.Object
	s *Local
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
func (s *Local) redact(err error) error {
	return &redacted{s.farm.Redact(err.Error()), err}
}

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

func (s *Local) Complete(ctx context.Context, name string, l api.LeaseRef, render time.Duration, tarball io.Reader, size int64) error {
	if err := s.own(l.Server); err != nil {
		return err
	}
	rep := ops.Report{Worker: name, Job: l.Job, Frame: l.Frame, Epoch: l.Epoch}
	return outcome(s.farm.AcceptOutput(ctx, rep, render, tarball))
}

func (s *Local) Fail(ctx context.Context, l api.LeaseRef, f api.Failure) error {
	if err := s.own(l.Server); err != nil {
		return err
	}
	rep := ops.Report{Worker: f.Worker, Job: l.Job, Frame: l.Frame, Epoch: l.Epoch}
	if f.NotRun {
		return outcome(s.farm.Release(ctx, rep))
	}
	return outcome(s.farm.Fail(ctx, rep, f.Error, f.JobError))
}

func (s *Local) String() string { return "this server (in process)" }

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

// Keep stores an object no job of the farm references (ops.Farm.Keep).
func (s *Local) Keep(ctx context.Context, r io.Reader, want string) (string, int64, error) {
	ref, err := s.farm.Keep(ctx, r, want)
	return ref.Hash, ref.Size, outcome(err)
}

// ReadyFor reports whether frames of the farm's own are ready that the
// worker could take.
func (s *Local) ReadyFor(worker string) bool { return s.farm.Session().ReadyFor(worker) }

// RemoteWaits, RemoteSignal, RemoteDone and RemoteFailed are the
// session's: the peers' frames that frames of this farm depend on.
func (s *Local) RemoteWaits() []session.RemoteFrame { return s.farm.Session().RemoteWaits() }
func (s *Local) RemoteSignal() <-chan struct{}      { return s.farm.Session().RemoteSignal() }
func (s *Local) RemoteDone(ctx context.Context, r session.RemoteFrame, output string, size int64) error {
	return s.farm.Session().RemoteDone(ctx, r, output, size)
}
func (s *Local) RemoteFailed(ctx context.Context, r session.RemoteFrame, canceled bool, msg string) error {
	return s.farm.Session().RemoteFailed(ctx, r, canceled, msg)
}

// Has reports whether the vault holds an object.
func (s *Local) Has(ctx context.Context, hash string) (bool, error) { return s.farm.Has(ctx, hash) }

// Status is what the farm says of itself to its peers.
func (s *Local) Status() federation.Status {
	st := federation.Status{Backends: map[string][]string{}, Lent: map[string]int{}}
	for _, w := range s.farm.Session().WorkerList() {
		if peer, _, ok := session.SplitPeerWorker(w.Name); ok {
			st.Lent[peer] += w.Running
			continue
		}
		if !w.Live {
			continue
		}
		st.Workers++
		for b, v := range w.Backends {
			if !slices.Contains(st.Backends[b], v) {
				st.Backends[b] = append(st.Backends[b], v)
			}
		}
	}
	for _, j := range s.farm.Session().Jobs() {
		st.Ready += j.Counts[session.StateReady]
	}
	return st
}
