package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/ops"
)

// The workers' protocol: claim frames, heartbeat their leases, report
// each frame's output or failure.

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
	wait := min(time.Duration(max(req.WaitMS, 0))*time.Millisecond, s.lim.MaxClaimWait)
	leases, err := s.sess.ClaimWait(r.Context(), SessionClaim(req), wait)
	if err != nil {
		return nil, err
	}
	return api.ClaimResponse{Leases: WireLeases(leases)}, nil
}

func (s *Server) postHeartbeat(r *http.Request) (any, error) {
	var hb api.Heartbeat
	if err := decode(r, &hb); err != nil {
		return nil, err
	}
	if err := checkWorker(hb.Worker); err != nil {
		return nil, badRequest("heartbeat: %w", err)
	}
	resp, err := s.sess.Heartbeat(r.Context(), SessionHeartbeat(hb))
	if err != nil {
		return nil, err
	}
	return WireHeartbeat(resp), nil
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
	rep := ops.Report{Worker: worker, Job: l.Job, Frame: l.Frame, Epoch: l.Epoch}
	if err := s.farm.AcceptOutput(r.Context(), rep, time.Duration(renderMS)*time.Millisecond, r.Body); err != nil {
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
	rep := ops.Report{Worker: f.Worker, Job: id, Frame: fr, Epoch: f.Epoch}
	if f.NotRun {
		return struct{}{}, s.farm.Release(r.Context(), rep)
	}
	return struct{}{}, s.farm.Fail(r.Context(), rep, f.Error, f.JobError)
}
