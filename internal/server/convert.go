package server

import (
	"encoding/hex"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/session"
)

// Conversions from the session's types to the wire format (internal/api),
// made here, at the edge; the local slots of internal/farm use them too, so
// that a frame's spec reads the same in process and over HTTP.

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

// The session's summaries have the API's fields, in its order, so they
// convert as they are; the compiler refuses the conversion if they part.

func wireSubmitted(s session.Submitted) api.Submitted { return api.Submitted(s) }
func wireJob(j *session.Job) api.Job                  { return api.Job(*j) }
func wireFrame(f *session.Frame) api.Frame            { return api.Frame(*f) }
func wireFile(f *session.File) api.File               { return api.File(*f) }
func wireWorker(w *session.Worker) api.Worker         { return api.Worker(*w) }

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
		out.Leases[i] = session.LeaseProgress{LeaseRef: session.LeaseRef(l.LeaseRef), Progress: l.Progress}
	}
	return out
}

// WireHeartbeat returns the session's answer to a heartbeat.
func WireHeartbeat(r session.HeartbeatResponse) api.HeartbeatResponse {
	var out api.HeartbeatResponse
	for _, l := range r.Stop {
		out.Stop = append(out.Stop, api.LeaseRef(l))
	}
	return out
}
