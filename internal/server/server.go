// Package server owns distren's HTTP API: the /v1/ handlers that clients,
// workers and tests call. Handlers are thin: they decode a request, call the
// farm's operations (internal/ops) or the session, and encode the answer;
// one function maps errors to status codes (answer.go). Files by resource:
// jobs.go, work.go (the workers' protocol), results.go, chunks.go, gc.go,
// listing.go; auth.go checks every request's token. docs/api.md documents
// every endpoint.
package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/auth"
	"github.com/distren/distren/internal/federation"
	"github.com/distren/distren/internal/metrics"
	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/work"
	"github.com/distren/distren/internal/worker"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Limits bound what the API lets one request do, beyond the farm's own
// (ops.Limits).
type Limits struct {
	MaxClaimWait time.Duration // longest a claim waits for frames (default 1 min)
	// UploadIdle ends a request whose body makes no progress for this long
	// (default 2 min), so a stalled upload does not hold what its handler
	// holds — a temporary file, a copy of the upload — forever.
	UploadIdle time.Duration
	// EventKeepAlive is how often an idle event stream sends a comment
	// (default 15 s).
	EventKeepAlive time.Duration
}

func (l *Limits) defaults() {
	if l.MaxClaimWait <= 0 {
		l.MaxClaimWait = time.Minute
	}
	if l.UploadIdle <= 0 {
		l.UploadIdle = 2 * time.Minute
	}
	if l.EventKeepAlive <= 0 {
		l.EventKeepAlive = 15 * time.Second
	}
}

// Server serves the API.
type Server struct {
	farm    *ops.Farm
	fed     *federation.Federation
	work    worker.Server // the farm as workers see it: fed.Work()
	sess    *session.Session
	lim     Limits
	url     string
	log     *slog.Logger
	mux     *http.ServeMux
	auth    *auth.Guard      // nil: no authentication
	metrics *metrics.Metrics // nil: none
	routes  []string         // the patterns registered, for the role table's test (auth.go)
}

// Config assembles a server.
type Config struct {
	Farm   *ops.Farm // the operations the API calls
	Limits Limits
	URL    string // how clients reach this server, for GET /v1/server
	Log    *slog.Logger
	// Auth, if set, checks every request's token against the route table
	// (auth.go); nil: no authentication.
	Auth *auth.Guard
	// Federation, if set, is the server's peers (internal/federation); nil:
	// none, Farm's operations alone.
	Federation *federation.Federation
	// Metrics, if set, counts every request and is served at GET
	// /metrics; nil: neither.
	Metrics *metrics.Metrics
}

// New returns the API handler.
func New(cfg Config) *Server {
	cfg.Limits.defaults()
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Federation == nil {
		fed, err := federation.New(federation.Config{Home: work.New(cfg.Farm, cfg.Limits.MaxClaimWait), Log: cfg.Log})
		if err != nil {
			panic(err) // no peers: nothing to refuse
		}
		cfg.Federation = fed
	}
	s := &Server{farm: cfg.Farm, fed: cfg.Federation, work: cfg.Federation.Work(), sess: cfg.Farm.Session(), lim: cfg.Limits,
		url: cfg.URL, log: cfg.Log, mux: http.NewServeMux(), auth: cfg.Auth, metrics: cfg.Metrics}
	h := func(pattern string, f func(*http.Request) (any, error)) { s.handle(pattern, s.json(f)) }
	h("GET /v1/server", s.getServer)
	h("GET /v1/whoami", s.getWhoami)
	h("POST /v1/jobs", s.postJob)
	h("DELETE /v1/jobs/{job}", s.deleteJob)
	h("POST /v1/gc", s.postGC)
	h("POST /v1/chunks/missing", s.postMissing)
	h("PUT /v1/chunks/{hash}", s.putChunk)
	s.handle("GET /v1/jobs", s.stream(s.getJobs)) // listings stream or page: listing.go
	h("GET /v1/jobs/{job}", s.getJob)
	s.handle("GET /v1/jobs/{job}/frames", s.stream(s.getFrames))
	h("GET /v1/jobs/{job}/frames/{frame}", s.getFrame)
	s.handle("GET /v1/jobs/{job}/files", s.stream(s.getFiles))
	h("GET /v1/jobs/{job}/spec", s.getSpec)
	h("POST /v1/jobs/{job}/cancel", s.postCancel)
	h("POST /v1/jobs/{job}/retry", s.postRetry)
	h("POST /v1/jobs/{job}/pause", s.postPause)
	h("POST /v1/jobs/{job}/resume", s.postResume)
	h("POST /v1/jobs/{job}/priority", s.postPriority)
	s.handle("GET /v1/workers", s.stream(s.getWorkers))
	h("POST /v1/claim", s.postClaim)
	h("POST /v1/heartbeat", s.postHeartbeat)
	h("POST /v1/jobs/{job}/frames/{frame}/output", s.postOutput)
	h("POST /v1/jobs/{job}/frames/{frame}/fail", s.postFail)
	s.handle("GET /v1/jobs/{job}/result", s.stream(s.getResult))
	s.handle("GET /v1/jobs/{job}/frames/{frame}/output", s.stream(s.getFrameOutput))
	s.handle("GET /v1/jobs/{job}/files/{n}", s.stream(s.getFile))
	s.handle("GET /v1/blobs/{hash}", s.stream(s.getBlob))
	s.handle("GET /v1/events", s.stream(s.getEvents))
	h("GET /v1/peer", s.getPeer)
	h("GET /v1/peers", s.getPeers)
	h("POST /v1/jobs/{job}/frames/{frame}/lent", s.postLent)
	s.handle("GET /metrics", s.stream(s.getMetrics))
	s.handle("/", http.HandlerFunc(s.noRoute))
	return s
}

// getMetrics serves the metrics in Prometheus's text format
// (docs/metrics.md).
func (s *Server) getMetrics(w http.ResponseWriter, r *http.Request) error {
	if s.metrics == nil {
		return &httpError{http.StatusNotFound, fmt.Errorf("GET /metrics: this server keeps no metrics")}
	}
	promhttp.HandlerFor(s.metrics.Registry(), promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}).ServeHTTP(w, r)
	return nil
}

// noRoute answers the requests no route matches, with a JSON error like
// every other (net/http's own 404 and 405 are plain text): 405 naming the
// methods the path has, or 404.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete} {
		other := *r
		other.Method = m
		if _, pattern := s.mux.Handler(&other); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		s.writeError(w, r, &httpError{http.StatusNotFound, fmt.Errorf("%s %s: no such endpoint", r.Method, r.URL.Path)})
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	s.writeError(w, r, &httpError{http.StatusMethodNotAllowed,
		fmt.Errorf("%s %s: method not allowed (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", "))})
}

// ServeHTTP implements http.Handler: a request the token it carries allows
// (auth.go) goes to its route.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil && r.Body != http.NoBody {
		// On a copy: net/http decides from the original's body type
		// whether to drain what a handler did not read.
		r = r.WithContext(r.Context())
		r.Body = &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: s.lim.UploadIdle}
	}
	if s.metrics == nil {
		if r = s.authorize(w, r); r != nil {
			s.mux.ServeHTTP(w, r)
		}
		return
	}
	t0 := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	if r = s.authorize(sw, r); r != nil {
		s.mux.ServeHTTP(sw, r)
	}
	route := "refused" // by authorize, before any route
	if r != nil {
		route = r.Pattern // set by the mux on the request it served
	}
	s.metrics.Request(route, sw.status(), time.Since(t0))
}

// statusWriter remembers the status of a response, for the metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (flushes,
// deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// idleBody bounds how long a request body may make no progress: each read
// moves the connection's read deadline UploadIdle ahead, and the end of the
// body clears it (net/http then watches the connection for the client going
// away, with no deadline, while the handler works).
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.rc.SetReadDeadline(time.Now().Add(b.idle)) // not supported by test recorders: then unbounded
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (s *Server) getServer(*http.Request) (any, error) {
	return api.Server{Name: s.sess.Name(), URL: s.url, Version: Version, Workers: s.sess.Workers()}, nil
}

// Version is distren's version, reported by GET /v1/server.
var Version = "0.1.0-dev"

// Serve runs srv until ctx ends, then shuts it down gracefully.
func Serve(ctx context.Context, srv *http.Server, serve func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return nil
	}
}
