package server

import (
	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/session"
)

// Conversions from the session's types to the wire format (internal/api),
// made here, at the edge; the local slots of internal/farm use them too, so
// that a frame's spec reads the same in process and over HTTP.

// The session's summaries have the API's fields, in its order, so they
// convert as they are; the compiler refuses the conversion if they part.

func wireSubmitted(s session.Submitted) api.Submitted { return api.Submitted(s) }
func wireJob(j *session.Job) api.Job                  { return api.Job(*j) }
func wireFrame(f *session.Frame) api.Frame            { return api.Frame(*f) }
func wireFile(f *session.File) api.File               { return api.File(*f) }
func wireWorker(w *session.Worker) api.Worker         { return api.Worker(*w) }
