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
