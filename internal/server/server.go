// Package server owns distren's HTTP API: the /v1/ handlers that clients,
// workers and tests call. Handlers are thin: they decode a request, call the
// session or the vault, and encode the answer; one wrapper maps errors to
// status codes. docs/api.md documents every endpoint.
package server

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/auth"
	"github.com/distren/distren/internal/backend"
	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/jobpkg"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/store"
	"github.com/distren/distren/internal/vault"
)

// Limits bound what a request may make the server do.
type Limits struct {
	MaxPackageBytes  int64 // uploaded package, uncompressed (default 8 GiB)
	MaxPackageFiles  int   // files in a package (default 100,000)
	MaxManifestBytes int64 // distrenjob.xml (default 16 MiB)
	MaxFrames        int64 // frames per job (default 1,000,000)
	MaxFramesHeld    int64 // frames of all the jobs held (default DefaultMaxFramesHeld)
	MaxOutputBytes   int64 // one frame's output tarball (default 4 GiB)
	MaxClaimWait     time.Duration
	// UploadIdle ends a request whose body makes no progress for this long
	// (default 2 min), so a stalled upload does not hold what its handler
	// holds — a temporary file, a copy of the upload — forever.
	UploadIdle time.Duration
}

func (l *Limits) defaults() {
	if l.MaxPackageBytes <= 0 {
		l.MaxPackageBytes = 8 << 30
	}
	if l.MaxPackageFiles <= 0 {
		l.MaxPackageFiles = 100_000
	}
	if l.MaxManifestBytes <= 0 {
		l.MaxManifestBytes = manifest.DefaultMaxBytes
	}
	if l.MaxFrames <= 0 {
		l.MaxFrames = manifest.DefaultMaxFrames
	}
	if l.MaxFramesHeld <= 0 {
		l.MaxFramesHeld = DefaultMaxFramesHeld
	}
	if l.MaxOutputBytes <= 0 {
		l.MaxOutputBytes = 4 << 30
	}
	if l.MaxClaimWait <= 0 {
		l.MaxClaimWait = time.Minute
	}
	if l.UploadIdle <= 0 {
		l.UploadIdle = 2 * time.Minute
	}
}

// Server serves the API.
type Server struct {
	sess     *session.Session
	vault    *vault.Vault
	backends backend.Registry
	tmp      string
	lim      Limits
	url      string
	log      *slog.Logger
	mux      *http.ServeMux
	chunker  *cdc.Chunker
	gc       GC
	gcMu     sync.RWMutex   // collection (write) against recording what uploads stored (read): gc.go
	gcRuns   atomic.Uint64  // collections started and ended: odd while one runs (gc.go)
	auth     *auth.Guard    // nil: no authentication
	routes   []string       // the patterns registered, for the role table's test (auth.go)
	uploads  *regexp.Regexp // matches an unpacked upload's directory in messages (redact)
	private  [][2]string    // the server's directories in messages, and what redact writes instead
}

// Config assembles a server.
type Config struct {
	Session  *session.Session
	Vault    *vault.Vault
	Backends backend.Registry
	TmpDir   string // uploads are unpacked here; must exist
	GC       GC
	Limits   Limits
	URL      string // how clients reach this server, for GET /v1/server
	Log      *slog.Logger
	// DataDir is the server's data directory, which error messages name
	// DATA (redact); default: the directory of TmpDir, if the vault's
	// directory is in it too.
	DataDir string
	// Auth, if set, checks every request's token against the route table
	// (auth.go); nil: no authentication.
	Auth *auth.Guard
}

// New returns the API handler.
func New(cfg Config) *Server {
	cfg.Limits.defaults()
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Server{sess: cfg.Session, vault: cfg.Vault, backends: cfg.Backends, tmp: cfg.TmpDir, lim: cfg.Limits,
		url: cfg.URL, log: cfg.Log, mux: http.NewServeMux(), auth: cfg.Auth}
	s.chunker, _ = cdc.New(cdc.Options{}) // the defaults are valid
	s.privateDirs(cfg.DataDir)
	s.gc = cfg.GC
	if s.gc.Grace <= 0 {
		s.gc.Grace = time.Hour
	}
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
	s.handle("GET /v1/workers", s.stream(s.getWorkers))
	h("POST /v1/claim", s.postClaim)
	h("POST /v1/heartbeat", s.postHeartbeat)
	h("POST /v1/jobs/{job}/frames/{frame}/output", s.postOutput)
	h("POST /v1/jobs/{job}/frames/{frame}/fail", s.postFail)
	s.handle("GET /v1/jobs/{job}/result", s.stream(s.getResult))
	s.handle("GET /v1/jobs/{job}/frames/{frame}/output", s.stream(s.getFrameOutput))
	s.handle("GET /v1/jobs/{job}/files/{n}", s.stream(s.getFile))
	s.handle("GET /v1/blobs/{hash}", s.stream(s.getBlob))
	s.handle("/", http.HandlerFunc(s.noRoute))
	return s
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
	if r = s.authorize(w, r); r != nil {
		s.mux.ServeHTTP(w, r)
	}
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

// status maps an error to an HTTP status code.
func status(err error) int {
	var he *httpError
	var ml manifest.ErrorList
	var me *manifest.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		return he.status
	case errors.As(err, &mbe), errors.Is(err, jobpkg.ErrTooLarge), errors.Is(err, jobpkg.ErrTooMany),
		errors.Is(err, session.ErrTooManyFrames):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, session.ErrNotFound), errors.Is(err, vault.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, session.ErrStaleLease):
		return http.StatusConflict
	case errors.Is(err, session.ErrInvalid), errors.As(err, &ml), errors.As(err, &me), errors.Is(err, jobpkg.ErrUnsafe):
		return http.StatusBadRequest
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, store.ErrFull):
		return http.StatusInsufficientStorage
	case errors.Is(err, session.ErrNotSaved), errors.Is(err, session.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// tarballError gives an error from reading an uploaded tarball its status.
// Errors with a status of their own (413, 400 for unsafe entries) keep it;
// of the rest, only the server's file system failing is a 500: a truncated
// or malformed stream, or entries whose paths collide ("a" as a file and
// as the directory of "a/b"), are the client's fault.
func tarballError(err error) error {
	if status(err) != http.StatusInternalServerError || localFailure(err) {
		return err
	}
	return &httpError{http.StatusBadRequest, err}
}

// localFailure reports whether err is the server's file system failing
// (a full disk, an I/O error, a permission), not what a tarball asked of it.
func localFailure(err error) bool {
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return false // the stream: its format, its compression, its end
	}
	for _, e := range []error{fs.ErrExist, syscall.ENOTDIR, syscall.EISDIR, syscall.ENAMETOOLONG} {
		if errors.Is(pe.Err, e) {
			return false // paths of the tarball that collide or are too long
		}
	}
	return true
}

// writeError answers err as JSON with its status. The server's log gets the
// whole message of a 5xx; the client a message without the server's own
// directories (redact).
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
	json.NewEncoder(w).Encode(api.Error{Error: s.redact(err.Error())})
}

// redact removes the server's directories from a message for a client: a
// path in an unpacked upload becomes the path in the package, the data
// directory becomes DATA, and the upload and vault directories, if outside
// it, TMP and VAULT. Messages are built from package paths, but an error of
// the server's file system (or of a storage module describing itself) may
// name where it keeps them, which is none of a client's business.
func (s *Server) redact(msg string) string {
	if s.uploads != nil {
		msg = s.uploads.ReplaceAllString(msg, "")
	}
	for _, p := range s.private {
		msg = strings.ReplaceAll(msg, p[0], p[1])
	}
	return msg
}

// privateDirs sets what redact replaces: the data directory (data, or the
// one of the upload and vault directories), and the upload and vault
// directories.
func (s *Server) privateDirs(data string) {
	tmp := filepath.Clean(s.tmp)
	vdir := ""
	if s.vault != nil {
		vdir = filepath.Clean(s.vault.Dir())
	}
	if len(tmp) > 1 {
		s.uploads = regexp.MustCompile(regexp.QuoteMeta(tmp) + `/upload-[^/\s"':]*/`)
	}
	if data == "" && vdir != "" && filepath.Dir(vdir) == filepath.Dir(tmp) {
		data = filepath.Dir(tmp)
	}
	if data = filepath.Clean(data); len(data) > 1 {
		s.private = append(s.private, [2]string{data, "DATA"})
	}
	for _, p := range [][2]string{{tmp, "TMP"}, {vdir, "VAULT"}} {
		if len(p[0]) > 1 && !strings.HasPrefix(p[0], data+"/") {
			s.private = append(s.private, p)
		}
	}
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

func pathInt(r *http.Request, name string, min int64) (int64, error) {
	v := r.PathValue(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < min {
		return 0, badRequest("%s %q: expected a whole number %d..%d", name, v, min, int64(math.MaxInt64))
	}
	return n, nil
}

func frameSet(r *http.Request) ([]manifest.Range, error) {
	v := r.URL.Query().Get("frames")
	if v == "" {
		return nil, nil
	}
	rs, err := manifest.ParseFrameSet(v)
	if err != nil {
		return nil, badRequest("frames %q: %w", v, err)
	}
	return rs, nil
}

// maxJSONBody bounds a JSON request body.
const maxJSONBody = 1 << 20

// decode reads a JSON request body of at most maxJSONBody bytes into v.
func decode(r *http.Request, v any) error {
	return decodeLimit(r, v, maxJSONBody)
}

// decodeLimit reads a JSON request body of at most limit bytes into v: one
// JSON value, only the fields v has, nothing after it. A body over the
// limit is a 413; any other problem a 400.
func decodeLimit(r *http.Request, v any, limit int64) error {
	d := json.NewDecoder(http.MaxBytesReader(nil, r.Body, limit))
	d.DisallowUnknownFields()
	err := d.Decode(v)
	if err == nil {
		// A second value, or anything but white space, after the first.
		if _, next := d.Token(); next != io.EOF {
			err = errors.New("unexpected data after the JSON value")
			if next != nil && !errors.As(next, new(*json.SyntaxError)) {
				err = next
			}
		}
	}
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &mbe):
		return &httpError{http.StatusRequestEntityTooLarge,
			fmt.Errorf("%s %s: request body larger than the limit of %d bytes", r.Method, r.URL.Path, limit)}
	case errors.Is(err, io.EOF):
		return badRequest("%s %s: request body: empty (expected a JSON object)", r.Method, r.URL.Path)
	}
	return badRequest("%s %s: request body: %w", r.Method, r.URL.Path, err)
}

// checkWorker checks a worker's name as claims, heartbeats and reports give it.
func checkWorker(name string) error {
	switch {
	case name == "":
		return errors.New("worker is missing")
	case len(name) > maxWorkerName:
		return fmt.Errorf("worker name of %d bytes is longer than %d", len(name), maxWorkerName)
	case strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f || r == utf8.RuneError }):
		return fmt.Errorf("worker %q: control characters or invalid UTF-8 in the name", name)
	}
	return nil
}

// maxWorkerName bounds a worker's name.
const maxWorkerName = 256

func (s *Server) getServer(*http.Request) (any, error) {
	return api.Server{Name: s.sess.Name(), URL: s.url, Version: Version, Workers: s.sess.Workers()}, nil
}

// Version is distren's version, reported by GET /v1/server.
var Version = "0.1.0-dev"

// postJob receives a package upload: the tar stream is unpacked as it
// arrives, checked, its files stored in the vault, and the job recorded.
// Only recording the job excludes a collection (gc.go).
func (s *Server) postJob(r *http.Request) (any, error) {
	since := s.collections()
	var (
		inputs   []api.InputFile
		raw      []byte
		have     = map[string]bool{} // the package's files, by path
		dir      string              // the unpacked tarball, stored once the manifest is accepted
		unpacked []jobpkg.File       // its files
	)
	if r.Header.Get("Content-Type") == api.TreeContentType {
		b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, cdc.MaxTreeEncoded))
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &httpError{http.StatusRequestEntityTooLarge,
				fmt.Errorf("package tree: larger than the limit of %d bytes", int64(cdc.MaxTreeEncoded))}
		}
		if err != nil {
			return nil, badRequest("package tree: %v", err)
		}
		t, err := cdc.DecodeTree(b)
		if err != nil {
			return nil, badRequest("package tree: %v", err)
		}
		if inputs, raw, err = s.treeInputs(t); err != nil {
			return nil, err
		}
		for _, f := range inputs {
			have[f.Path] = true
		}
	} else {
		// The tar stream may be larger than its content by its headers and
		// padding: up to a few blocks per file, and the end-of-archive marker.
		limit := s.lim.MaxPackageBytes + 1<<20 + 2048*int64(s.lim.MaxPackageFiles)
		if limit < s.lim.MaxPackageBytes {
			limit = math.MaxInt64 // a limit so large that the sum overflows
		}
		if r.ContentLength > limit {
			return nil, &httpError{http.StatusRequestEntityTooLarge,
				fmt.Errorf("package: a request body of %d bytes is over the limit of %d (--max-package-bytes %d, with room for tar headers)",
					r.ContentLength, limit, s.lim.MaxPackageBytes)}
		}
		body := http.MaxBytesReader(nil, r.Body, limit)
		var err error
		if dir, err = os.MkdirTemp(s.tmp, "upload-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		files, err := jobpkg.Extract(bufio.NewReaderSize(body, 256<<10), dir,
			jobpkg.Limits{MaxBytes: s.lim.MaxPackageBytes, MaxEntries: s.lim.MaxPackageFiles})
		if err != nil {
			return nil, tarballError(fmt.Errorf("package: %w", err))
		}
		if len(files) == 0 {
			return nil, badRequest("package: the tarball holds no file; a package needs %s at its root", manifest.FileName)
		}
		if raw, err = readLimited(dir, manifest.FileName, s.lim.MaxManifestBytes); err != nil {
			return nil, err
		}
		for _, f := range files {
			have[f.Path] = true
		}
		unpacked = files
	}
	m, err := manifest.Parse(bytesReader(raw), manifest.FileName, manifest.Options{
		MaxBytes: s.lim.MaxManifestBytes, MaxFrames: s.lim.MaxFrames, Backends: s.backends.Known})
	if errors.Is(err, manifest.ErrLimit) {
		return nil, &httpError{http.StatusRequestEntityTooLarge, err} // frames or dependencies over the limit
	}
	if err != nil {
		return nil, err
	}
	// The backends' elements, and every file the manifest names.
	if err := s.backends.CheckPackage(m, func(p string) bool { return have[p] }); err != nil {
		return nil, err
	}
	if dir != "" {
		// Only an accepted package's files reach the vault.
		if inputs, err = s.ingest(dir, unpacked); err != nil {
			return nil, err
		}
	}
	// If a collection ran since the chunks were found or stored, those it
	// removed are stored again from the unpacked package; a tree's must
	// be uploaded again.
	again := func() error {
		switch {
		case s.allStored(inputs):
			return nil
		case dir != "":
			var err error
			inputs, err = s.ingest(dir, unpacked)
			return err
		}
		return &httpError{http.StatusConflict, errors.New("package: some of its chunks were removed by a garbage collection while it was submitted; submit it again (the chunks missing are sent again)")}
	}
	var sub api.Submitted
	err = s.record(since, again, func() error {
		var err error
		sub, err = s.sess.Submit(r.Context(), session.Submission{Manifest: m, Raw: raw, Inputs: inputs,
			MaxFramesHeld: s.lim.MaxFramesHeld})
		return err
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("job submitted", "job", sub.URL, "name", sub.Name, "frames", sub.Frames, "files", len(inputs))
	return sub, nil
}

// readLimited reads the file name of directory dir, of at most limit bytes.
func readLimited(dir, name string, limit int64) ([]byte, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("package: %w", err)
	}
	defer root.Close()
	f, err := root.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, badRequest("package: no %s at the package's root", manifest.FileName)
	}
	if err != nil {
		return nil, fmt.Errorf("package: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		return nil, badRequest("package: %s is a directory, not a file", manifest.FileName)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, &httpError{http.StatusRequestEntityTooLarge,
			fmt.Errorf("%s: larger than the limit of %d bytes", manifest.FileName, limit)}
	}
	return b, nil
}

func (s *Server) getJob(r *http.Request) (any, error) {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return nil, err
	}
	return s.sess.Job(id)
}

func (s *Server) getFrame(r *http.Request) (any, error) {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return nil, err
	}
	fr, err := pathInt(r, "frame", 0)
	if err != nil {
		return nil, err
	}
	return s.sess.Frame(id, fr)
}

func (s *Server) getSpec(r *http.Request) (any, error) {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return nil, err
	}
	return s.sess.Spec(id)
}

func (s *Server) postCancel(r *http.Request) (any, error) {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return nil, err
	}
	n, err := s.sess.Cancel(r.Context(), id)
	return api.Changed{Frames: n}, err
}

func (s *Server) postRetry(r *http.Request) (any, error) {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return nil, err
	}
	var req api.Retry
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	var rs []manifest.Range
	if req.Frames != "" {
		if rs, err = manifest.ParseFrameSet(req.Frames); err != nil {
			return nil, badRequest("frames %q: %w", req.Frames, err)
		}
	}
	n, err := s.sess.Retry(r.Context(), id, rs)
	return api.Changed{Frames: n}, err
}

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
	leases, err := s.sess.ClaimWait(r.Context(), req, wait)
	if err != nil {
		return nil, err
	}
	if leases == nil {
		leases = []api.Lease{}
	}
	return api.ClaimResponse{Leases: leases}, nil
}

func (s *Server) postHeartbeat(r *http.Request) (any, error) {
	var hb api.Heartbeat
	if err := decode(r, &hb); err != nil {
		return nil, err
	}
	if err := checkWorker(hb.Worker); err != nil {
		return nil, badRequest("heartbeat: %w", err)
	}
	return s.sess.Heartbeat(r.Context(), hb)
}

func leaseOf(r *http.Request) (worker string, l api.LeaseRef, err error) {
	if l.Job, err = pathInt(r, "job", 1); err != nil {
		return
	}
	if l.Frame, err = pathInt(r, "frame", 0); err != nil {
		return
	}
	q := r.URL.Query()
	if l.Epoch, err = strconv.ParseUint(q.Get("epoch"), 10, 64); err != nil {
		return "", l, badRequest("epoch %q: expected a number", q.Get("epoch"))
	}
	worker = q.Get("worker")
	if werr := checkWorker(worker); werr != nil {
		return "", l, badRequest("%w", werr)
	}
	return worker, l, nil
}

// postOutput receives a frame's output tarball, checks and stores it, and
// completes the frame.
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
	if err := s.sess.CheckLease(worker, l.Job, l.Frame, l.Epoch); err != nil {
		return nil, err
	}
	body := http.MaxBytesReader(nil, r.Body, s.lim.MaxOutputBytes)
	// The tarball is stored as it arrives, with no lock, while a second
	// reader checks and indexes it, and a copy is kept in case a
	// collection runs before the frame is recorded done (gc.go).
	since := s.collections()
	sp := &spool{dir: s.tmp}
	defer sp.remove()
	pr, pw := io.Pipe()
	var files []session.OutFile
	scanned := make(chan error, 1)
	go func() {
		err := jobpkg.Scan(pr, jobpkg.Limits{MaxBytes: s.lim.MaxOutputBytes}, func(f jobpkg.File, _ io.Reader) error {
			files = append(files, session.OutFile{Path: f.Path, Size: f.Size})
			return nil
		})
		io.Copy(io.Discard, pr)
		scanned <- err
	}()
	ref, err := s.vault.Put(io.TeeReader(io.TeeReader(body, sp), pw), "")
	pw.CloseWithError(err)
	serr := <-scanned
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &httpError{http.StatusRequestEntityTooLarge, fmt.Errorf("frame %d output: larger than the server's limit of %d bytes (serve --max-output-bytes)", l.Frame, mbe.Limit)}
		}
		return nil, fmt.Errorf("frame %d output: %w", l.Frame, err)
	}
	if serr != nil {
		return nil, tarballError(fmt.Errorf("frame %d output: %w", l.Frame, serr))
	}
	if len(files) == 0 {
		return nil, badRequest("frame %d output: the tarball holds no file", l.Frame)
	}
	again := func() error {
		r, err := sp.reader()
		if err == nil {
			_, err = s.vault.Put(r, ref.Hash)
		}
		if err != nil {
			return fmt.Errorf("frame %d output: %w", l.Frame, err)
		}
		return nil
	}
	err = s.record(since, again, func() error {
		return s.sess.Complete(r.Context(), session.Completion{Worker: worker, Job: l.Job, Frame: l.Frame, Epoch: l.Epoch,
			Output: ref.Hash, Size: ref.Size, Files: files, Render: time.Duration(renderMS) * time.Millisecond})
	})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (s *Server) postFail(r *http.Request) (any, error) {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return nil, err
	}
	fr, err := pathInt(r, "frame", 0)
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
	if len(f.Error) > 64<<10 {
		f.Error = f.Error[len(f.Error)-64<<10:]
	}
	f.Error = s.redact(f.Error) // the local slots render in DATA/worker: the status shows no server path
	if f.NotRun {
		return struct{}{}, s.sess.Release(r.Context(), f.Worker, id, fr, f.Epoch)
	}
	return struct{}{}, s.sess.Fail(r.Context(), f.Worker, id, fr, f.Epoch, f.Error, f.JobError)
}

// getResult streams the result bundle: the done frames' outputs, in frame
// order, as one tar, without building it anywhere. A file another frame
// wrote first under the same path is renamed (internal/session collide.go),
// so that the bundle never holds a path twice.
func (s *Server) getResult(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return err
	}
	rs, err := frameSet(r)
	if err != nil {
		return err
	}
	outs, err := s.sess.Outputs(id, rs)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("X-Distren-Frames", strconv.Itoa(len(outs)))
	sw := &sentWriter{w: w}
	bw := bufio.NewWriterSize(sw, 256<<10)
	tw := tar.NewWriter(bw)
	for _, o := range outs {
		f, err := s.vault.Open(o.Hash)
		if err != nil {
			return s.abort(w, r, sw.sent, fmt.Errorf("frame %d output: %w", o.Frame, err))
		}
		vr := f.Verified()
		// Each file under its name in the bundle: its path, but for
		// those renamed because another frame wrote that path first.
		rename := func(p string) string { return s.sess.BundleName(id, o.Frame, p) }
		err = jobpkg.CopyEntries(tw, bufio.NewReaderSize(vr, 64<<10), jobpkg.Limits{MaxBytes: s.lim.MaxOutputBytes}, rename)
		if err == nil {
			_, err = io.Copy(io.Discard, vr) // the tar's padding: the check comes with the last byte
		}
		f.Close()
		if err != nil {
			return s.abort(w, r, sw.sent, fmt.Errorf("frame %d output: %w", o.Frame, err))
		}
	}
	if err := tw.Close(); err != nil {
		return nil // the client went away
	}
	bw.Flush()
	return nil
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

func (s *Server) serveObject(w http.ResponseWriter, r *http.Request, hash, ctype string) error {
	f, err := s.vault.Open(hash)
	if err != nil {
		return err
	}
	defer f.Close()
	w.Header().Set("Content-Type", ctype)
	http.ServeContent(w, r, "", time.Time{}, f)
	return nil
}

func (s *Server) getFrameOutput(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return err
	}
	fr, err := pathInt(r, "frame", 0)
	if err != nil {
		return err
	}
	f, err := s.sess.Frame(id, fr)
	if err != nil {
		return err
	}
	if f.State != api.StateDone {
		return &httpError{http.StatusNotFound, fmt.Errorf("frame %s is %s: it has no output yet", f.URL, f.State)}
	}
	return s.serveObject(w, r, f.Output, "application/x-tar")
}

func (s *Server) getFile(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "job", 1)
	if err != nil {
		return err
	}
	n, err := pathInt(r, "n", 1)
	if err != nil {
		return err
	}
	loc, err := s.sess.File(id, n)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", path.Base(loc.Path)))
	if !loc.InTar {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(loc.Size, 10))
		sw := &sentWriter{w: w}
		if err := s.copyParts(sw, loc.Parts); err != nil {
			// Before a byte is sent, an error answer (without the
			// file's headers); after, a cut connection.
			w.Header().Del("Content-Length")
			w.Header().Del("Content-Disposition")
			return s.abort(w, r, sw.sent, fmt.Errorf("file %d (%s): %w", n, jobpkg.Shorten(loc.Path), err))
		}
		return nil
	}
	f, err := s.vault.Open(loc.Hash)
	if err != nil {
		return err
	}
	defer f.Close()
	found := errors.New("found")
	err = jobpkg.Scan(bufio.NewReader(f), jobpkg.Limits{MaxBytes: s.lim.MaxOutputBytes}, func(e jobpkg.File, c io.Reader) error {
		if e.Path != loc.Path {
			return nil
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(e.Size, 10))
		io.Copy(w, c)
		return found
	})
	if errors.Is(err, found) {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("file %d (%s) is missing from its frame output", n, loc.Path)
	}
	return err
}

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request) error {
	h := r.PathValue("hash")
	if !cdc.ValidHash(h) {
		return badRequest("blob %q: not a SHA-256 in hex (64 lowercase hex digits)", h)
	}
	return s.serveObject(w, r, h, "application/octet-stream")
}

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

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
