package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/auth"
	"github.com/distren/distren/internal/session"
)

// access is who may call a route.
type access struct {
	roles auth.Roles // the roles allowed besides admin, which may call every route
	// worker, if set, finds the worker name the request acts as: it is
	// bound to the request's token (auth.Guard.BindWorker).
	worker func(*http.Request) (string, error)
}

const (
	reader  = auth.Client | auth.Read // the GETs of clients and read-only tokens
	anyRole = auth.Client | auth.Worker | auth.Read | auth.Peer
	working = auth.Worker | auth.Peer // the workers' protocol: workers, and peers for their workers
)

// routeAccess maps every pattern registered in New to who may call it. A
// route missing here is refused to every token but admin's; a test checks
// that none is missing. docs/security.md shows it as a table.
var routeAccess = map[string]access{
	"GET /v1/server": {roles: auth.Public}, // health check: name, URL, version, worker count
	"GET /v1/whoami": {roles: anyRole},
	"/":              {roles: anyRole}, // 404 and 405 answers

	"POST /v1/jobs":                {roles: auth.Client},
	"POST /v1/chunks/missing":      {roles: auth.Client},
	"PUT /v1/chunks/{hash}":        {roles: auth.Client},
	"POST /v1/jobs/{job}/cancel":   {roles: auth.Client},
	"POST /v1/jobs/{job}/retry":    {roles: auth.Client},
	"POST /v1/jobs/{job}/pause":    {roles: auth.Client},
	"POST /v1/jobs/{job}/resume":   {roles: auth.Client},
	"POST /v1/jobs/{job}/priority": {roles: auth.Client},
	"DELETE /v1/jobs/{job}":        {roles: auth.Client},
	"POST /v1/gc":                  {roles: 0}, // admin only

	"GET /v1/jobs":              {roles: reader},
	"GET /v1/jobs/{job}":        {roles: reader},
	"GET /v1/jobs/{job}/result": {roles: reader},
	"GET /v1/workers":           {roles: reader},

	// What a worker reads to render: the spec, input chunks and the
	// outputs of the frames a frame depends on.
	// (and a peer, for the frames it borrows, and the outputs of frames it
	// lent).
	"GET /v1/jobs/{job}/spec":                  {roles: reader | working},
	"GET /v1/blobs/{hash}":                     {roles: reader | working},
	"GET /v1/jobs/{job}/frames":                {roles: reader | working},
	"GET /v1/jobs/{job}/frames/{frame}":        {roles: reader | working},
	"GET /v1/jobs/{job}/frames/{frame}/output": {roles: reader | working},
	"GET /v1/jobs/{job}/files":                 {roles: reader | working},
	"GET /v1/jobs/{job}/files/{n}":             {roles: reader | working},

	"POST /v1/claim":                            {roles: working, worker: workerInBody},
	"POST /v1/heartbeat":                        {roles: working, worker: workerInBody},
	"POST /v1/jobs/{job}/frames/{frame}/output": {roles: auth.Worker, worker: workerInQuery},
	"POST /v1/jobs/{job}/frames/{frame}/fail":   {roles: working, worker: workerInBody},

	// Monitoring (docs/metrics.md).
	"GET /metrics": {roles: reader},

	// The change feed: clients, and peers whose frames depend on frames here.
	"GET /v1/events": {roles: reader | working},

	// Federation (docs/federation.md).
	"GET /v1/peer":  {roles: reader | working},
	"GET /v1/peers": {roles: reader},
	"POST /v1/jobs/{job}/frames/{frame}/lent": {roles: auth.Peer, worker: workerInBody},
}

// handle registers a route, remembering its pattern for the role table's test.
func (s *Server) handle(pattern string, h http.Handler) {
	s.routes = append(s.routes, pattern)
	s.mux.Handle(pattern, h)
}

// authorize checks the request's token against the route table. It answers
// a request that may not go on itself (401, 403) and returns nil; otherwise
// it returns the request to serve, carrying the token's identity.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) *http.Request {
	if s.auth == nil || !s.auth.Enabled(r.Context()) {
		return r
	}
	_, pattern := s.mux.Handler(r)
	a, listed := routeAccess[pattern]
	if !listed {
		s.log.Error("route missing from the role table: only admin may call it", "pattern", pattern)
	}
	if a.roles&auth.Public != 0 {
		return r
	}
	id, err := s.auth.Check(r.Context(), bearer(r))
	if err != nil {
		if errors.Is(err, auth.ErrNoToken) || errors.Is(err, auth.ErrInvalid) || errors.Is(err, auth.ErrRevoked) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="distren"`)
			err = &httpError{http.StatusUnauthorized, err}
		}
		s.writeError(w, r, err)
		return nil
	}
	if !a.roles.Allows(id.Role) {
		s.writeError(w, r, &httpError{http.StatusForbidden,
			fmt.Errorf("token %q has role %s; this request needs role %s", id.Name, id.Role, a.roles)})
		return nil
	}
	if a.worker != nil {
		name, err := a.worker(r)
		if err == nil {
			err = bindWorker(r.Context(), s.auth, name, id)
		}
		if errors.Is(err, auth.ErrWorkerTaken) {
			err = &httpError{http.StatusForbidden, err}
		}
		if err != nil {
			s.writeError(w, r, err)
			return nil
		}
	}
	return r.WithContext(auth.NewContext(r.Context(), id))
}

// bindWorker checks the worker name a request acts as against its token.
// A peer's token acts as that server's workers only ("NAME/WORKER", NAME
// the token's name); a worker's token never as a peer's worker, and each
// worker name belongs to the first worker token that uses it
// (auth.Guard.BindWorker).
func bindWorker(ctx context.Context, g *auth.Guard, name string, id auth.Identity) error {
	peer, _, isPeer := session.SplitPeerWorker(name)
	switch {
	case id.Role == auth.RolePeer && (!isPeer || peer != id.Name):
		return &httpError{http.StatusForbidden, fmt.Errorf("worker %q: the token of peer %s acts as its workers only (%s/WORKER)", name, id.Name, id.Name)}
	case id.Role == auth.RolePeer:
		return nil
	case isPeer:
		return &httpError{http.StatusForbidden, fmt.Errorf("worker %q: a name of a peer's worker; token %q (role %s) may not act as a peer (role peer, named %s, may)", name, id.Name, id.Role, peer)}
	}
	return g.BindWorker(ctx, name, id)
}

// bearer returns the token of the request's Authorization header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return h // no token (""), or another scheme: refused as invalid
}

// workerInBody reads the worker name of a JSON body as the handler will
// (the first JSON value of at most 1 MiB, "worker" matched as encoding/json
// does), and puts the bytes read back in front of the rest of the body. A
// body that does not decode is refused here: its name would be unknown.
func workerInBody(r *http.Request) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		return "", badRequest("%s %s: request body: %w", r.Method, r.URL.Path, err)
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), r.Body), r.Body}
	var v struct {
		Worker string `json:"worker"`
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&v); err != nil {
		return "", badRequest("%s %s: request body: %w", r.Method, r.URL.Path, err)
	}
	return v.Worker, nil
}

// workerInQuery returns the worker a frame output upload names, as leaseOf does.
func workerInQuery(r *http.Request) (string, error) {
	return r.URL.Query().Get("worker"), nil
}

// getWhoami answers whether the server requires tokens, and whose the
// request's is.
func (s *Server) getWhoami(r *http.Request) (any, error) {
	id, ok := auth.FromContext(r.Context())
	if !ok {
		return api.Identity{}, nil
	}
	return api.Identity{Auth: true, ID: id.ID, Name: id.Name, Role: string(id.Role)}, nil
}
