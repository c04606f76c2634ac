package work

import (
	"encoding/hex"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/session"
)

// Conversions between the session's types and the workers' protocol in
// the wire format (internal/api), for the API's handlers and the local
// slots alike, so that a frame's lease and spec read the same in process
// and over HTTP.

// WireSpec returns a job's spec as GET /v1/jobs/{job}/spec answers it.
func WireSpec(js session.JobSpec) api.JobSpec {
	out := api.JobSpec{ID: js.ID, Manifest: string(js.Manifest), Inputs: make([]api.InputFile, len(js.Inputs))}
	for i, f := range js.Inputs {
		in := api.InputFile{Path: f.Path, Mode: f.Mode, Size: f.Size, Chunks: make([]api.ChunkRef, len(f.Chunks))}
		for k, c := range f.Chunks {
			in.Chunks[k] = api.ChunkRef{Hash: hex.EncodeToString(c.Hash[:]), Size: c.Size}
		}
		out.Inputs[i] = in
	}
	return out
}

// WireLeases returns leases as a claim answers them.
func WireLeases(ls []session.Lease) []api.Lease {
	out := make([]api.Lease, len(ls))
	for i, l := range ls {
		out[i] = api.Lease{Job: l.Job, Frame: l.Frame, Epoch: l.Epoch, TTLMS: l.TTL.Milliseconds(), Chunk: l.Chunk}
		if len(l.Deps) > 0 {
			out[i].Deps = make([]api.DepOutput, len(l.Deps))
			for k, d := range l.Deps {
				out[i].Deps[k] = api.DepOutput(d)
			}
		}
	}
	return out
}

// SessionClaim returns a claim as the session takes it.
func SessionClaim(req api.ClaimRequest) session.ClaimRequest {
	return session.ClaimRequest{Worker: req.Worker, Max: req.Max, Backends: req.Backends}
}

// SessionHeartbeat returns a heartbeat as the session takes it.
func SessionHeartbeat(hb api.Heartbeat) session.Heartbeat {
	out := session.Heartbeat{Worker: hb.Worker, Leases: make([]session.LeaseProgress, len(hb.Leases))}
	for i, l := range hb.Leases {
		out.Leases[i] = session.LeaseProgress{LeaseRef: session.LeaseRef{Job: l.Job, Frame: l.Frame, Epoch: l.Epoch}, Progress: l.Progress}
	}
	return out
}

// WireHeartbeat returns the session's answer to a heartbeat.
func WireHeartbeat(r session.HeartbeatResponse) api.HeartbeatResponse {
	var out api.HeartbeatResponse
	for _, l := range r.Stop {
		out.Stop = append(out.Stop, api.LeaseRef{Job: l.Job, Frame: l.Frame, Epoch: l.Epoch})
	}
	return out
}
