package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/federation"
	"github.com/distren/distren/internal/jobpkg"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/store"
	"github.com/distren/distren/internal/vault"
	"github.com/distren/distren/internal/worker"
)

// Answers: errors mapped to statuses in one place, JSON and streamed bodies.

// httpError carries a status chosen by a handler.
type httpError struct {
	status int
	err    error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Errorf(format, args...)}
}

// opsStatus is the status of each kind of the operations' errors.
var opsStatus = map[ops.Kind]int{
	ops.Invalid:  http.StatusBadRequest,
	ops.TooLarge: http.StatusRequestEntityTooLarge,
	ops.Conflict: http.StatusConflict,
	ops.NotFound: http.StatusNotFound,
}

// status maps an error to an HTTP status code.
func status(err error) int {
	var he *httpError
	var oe *ops.Error
	var ml manifest.ErrorList
	var me *manifest.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		return he.status
	case errors.As(err, &oe) && oe.Kind != ops.Failed:
		return opsStatus[oe.Kind]
	case errors.As(err, &mbe), errors.Is(err, jobpkg.ErrTooLarge), errors.Is(err, jobpkg.ErrTooMany),
		errors.Is(err, session.ErrTooManyFrames):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, session.ErrNotFound), errors.Is(err, vault.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, session.ErrStaleLease), errors.Is(err, worker.ErrStale):
		return http.StatusConflict
	case errors.Is(err, federation.ErrNotPeer), errors.Is(err, worker.ErrDenied):
		return http.StatusForbidden
	case errors.Is(err, federation.ErrLoop), errors.Is(err, worker.ErrRejected):
		return http.StatusBadRequest
	case errors.Is(err, federation.ErrPeer):
		return http.StatusBadGateway
	case errors.Is(err, session.ErrInvalid), errors.As(err, &ml), errors.As(err, &me), errors.Is(err, jobpkg.ErrUnsafe):
		return http.StatusBadRequest
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, store.ErrFull):
		return http.StatusInsufficientStorage
	case errors.Is(err, session.ErrNotSaved), errors.Is(err, session.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// writeError answers err as JSON with its status. The server's log gets the
// whole message of a 5xx; the client a message without the server's own
// directories (ops.Farm.Redact).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := status(err)
	if r.Context().Err() != nil && errors.Is(err, r.Context().Err()) {
		return // the client went away (or the server is stopping): nobody to answer
	}
	if code >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(api.Error{Error: s.farm.Redact(err.Error())})
}

// json wraps a handler that returns (value, error).
func (s *Server) json(f func(*http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := f(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	})
}

// stream wraps a handler that writes a body itself; it may return an error
// only before writing anything.
func (s *Server) stream(f func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// abort ends a streamed response that cannot be completed. Before anything
// was sent it returns err, for an error answer; after, the connection is
// cut, so the client sees a truncated tar, never a complete-looking one.
func (s *Server) abort(w http.ResponseWriter, r *http.Request, sent bool, err error) error {
	if !sent {
		w.Header().Del("X-Distren-Frames")
		return err
	}
	s.log.Error("aborting stream", "path", r.URL.Path, "err", err)
	panic(http.ErrAbortHandler)
}

// sentWriter records whether anything was written to the response.
type sentWriter struct {
	w    io.Writer
	sent bool
}

func (s *sentWriter) Write(p []byte) (int, error) {
	s.sent = s.sent || len(p) > 0
	return s.w.Write(p)
}
