package worker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/backend"
	"github.com/distren/distren/internal/jobpkg"
	"github.com/distren/distren/internal/manifest"
)

// fakeServer is a Server in memory, for unit tests of the worker: it leases
// the frames offered to it, serves specs and objects, records what the
// worker sends, and answers with the errors a test injects. Run the worker
// against it inside a synctest bubble: a claim with nothing to lease waits
// (on the bubble's clock) as a real server's long poll does.
type fakeServer struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced when frames are offered
	queue   []api.Lease
	specs   map[int64]api.JobSpec
	blobs   map[string][]byte
	gone    map[api.LeaseRef]bool // leases no longer held: heartbeats stop them, results are stale

	// Injected answers.
	claimErrs    []error                  // answers of the next claims, in order; nil claims normally
	results      map[api.LeaseRef][]error // answers of the next Complete calls for a lease, in order
	heartbeatErr error                    // the answer of every heartbeat, if set

	// What the worker did.
	claims     []claimCall
	heartbeats []api.Heartbeat
	specGets   map[int64]int
	blobGets   map[string]int
	completes  []completion // every Complete call, refused or not
	fails      []failure
}

type claimCall struct {
	at  time.Time
	req api.ClaimRequest
}

type completion struct {
	at     time.Time
	worker string
	ref    api.LeaseRef
	files  map[string]string // the tarball's files, if it was taken
	err    error             // the answer
}

type failure struct {
	ref api.LeaseRef
	f   api.Failure
}

func newFakeServer() *fakeServer {
	return &fakeServer{changed: make(chan struct{}), specs: map[int64]api.JobSpec{}, blobs: map[string][]byte{},
		gone: map[api.LeaseRef]bool{}, results: map[api.LeaseRef][]error{}, specGets: map[int64]int{}, blobGets: map[string]int{}}
}

// refused is an answer of the server: a sentinel with the server's words.
func refused(kind error, msg string) error { return fmt.Errorf("%w: %s", kind, msg) }

// errTransient is a failure to reach the server.
var errTransient = errors.New("connection refused")

func (s *fakeServer) String() string { return "fake server" }

// putBlob stores an object under its hash.
func (s *fakeServer) putBlob(b []byte) api.ChunkRef {
	sum := sha256.Sum256(b)
	h := hex.EncodeToString(sum[:])
	s.mu.Lock()
	s.blobs[h] = b
	s.mu.Unlock()
	return api.ChunkRef{Hash: h, Size: int64(len(b))}
}

// inputFile is a file of a job's package.
type inputFile struct {
	path, data string
	mode       uint32
}

// addJob stores a job: its manifest, and its input files cut into objects
// of at most chunk bytes.
func (s *fakeServer) addJob(id int64, manifest string, chunk int, files ...inputFile) {
	js := api.JobSpec{ID: id, Manifest: manifest}
	for _, f := range files {
		in := api.InputFile{Path: f.path, Mode: f.mode, Size: int64(len(f.data))}
		for d := f.data; len(d) > 0; {
			n := min(chunk, len(d))
			in.Chunks = append(in.Chunks, s.putBlob([]byte(d[:n])))
			d = d[n:]
		}
		js.Inputs = append(js.Inputs, in)
	}
	s.mu.Lock()
	s.specs[id] = js
	s.mu.Unlock()
}

// addOutput stores a frame's output tarball holding files, as a dependency.
func (s *fakeServer) addOutput(job, frame int64, files map[string]string) api.DepOutput {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg})
		tw.Write([]byte(files[n]))
	}
	tw.Close()
	ref := s.putBlob(b.Bytes())
	return api.DepOutput{Job: job, Frame: frame, Output: ref.Hash, Size: ref.Size}
}

// offer queues leases for the next claims; those of a chunk must be
// offered together.
func (s *fakeServer) offer(ls ...api.Lease) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range ls {
		if l.TTLMS == 0 {
			l.TTLMS = 30_000
		}
		s.queue = append(s.queue, l)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// expire makes the server forget a lease, as when it expires, its job is
// canceled or it is leased again elsewhere.
func (s *fakeServer) expire(r api.LeaseRef) {
	s.mu.Lock()
	s.gone[r] = true
	s.mu.Unlock()
}

func (s *fakeServer) Claim(ctx context.Context, req api.ClaimRequest) (api.ClaimResponse, error) {
	s.mu.Lock()
	s.claims = append(s.claims, claimCall{at: time.Now(), req: req})
	if len(s.claimErrs) > 0 {
		err := s.claimErrs[0]
		s.claimErrs = s.claimErrs[1:]
		if err != nil {
			s.mu.Unlock()
			return api.ClaimResponse{}, err
		}
	}
	s.mu.Unlock()
	wait := time.After(time.Duration(req.WaitMS) * time.Millisecond)
	for {
		s.mu.Lock()
		if n := s.tasks(req.Max); n > 0 {
			ls := slices.Clone(s.queue[:n])
			s.queue = s.queue[n:]
			s.mu.Unlock()
			return api.ClaimResponse{Leases: ls}, nil
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-wait:
			return api.ClaimResponse{}, nil
		case <-ctx.Done():
			return api.ClaimResponse{}, ctx.Err()
		}
	}
}

// tasks returns how many queued leases make up to limit tasks: a chunk's
// leases (same Chunk) are one task, and are leased together.
func (s *fakeServer) tasks(limit int) int {
	n := 0
	for range limit {
		if n == len(s.queue) {
			break
		}
		c := s.queue[n].Chunk
		n++
		for c != 0 && n < len(s.queue) && s.queue[n].Chunk == c {
			n++
		}
	}
	return n
}

func (s *fakeServer) Heartbeat(ctx context.Context, hb api.Heartbeat) (api.HeartbeatResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.heartbeats = append(s.heartbeats, hb)
	if s.heartbeatErr != nil {
		return api.HeartbeatResponse{}, s.heartbeatErr
	}
	var r api.HeartbeatResponse
	for _, l := range hb.Leases {
		if s.gone[l.LeaseRef] {
			r.Stop = append(r.Stop, l.LeaseRef)
		}
	}
	return r, nil
}

func (s *fakeServer) Spec(ctx context.Context, server string, job int64) (api.JobSpec, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.specGets[job]++
	js, ok := s.specs[job]
	if !ok {
		return api.JobSpec{}, refused(ErrRejected, fmt.Sprintf("no job %d", job))
	}
	return js, nil
}

func (s *fakeServer) Blob(ctx context.Context, hash string) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobGets[hash]++
	b, ok := s.blobs[hash]
	if !ok {
		return nil, refused(ErrRejected, "no object "+hash)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (s *fakeServer) Complete(ctx context.Context, worker string, l api.LeaseRef, render time.Duration, tarball io.Reader, size int64) error {
	c := completion{at: time.Now(), worker: worker, ref: l}
	s.mu.Lock()
	switch {
	case s.gone[l]:
		c.err = refused(ErrStale, "frame leased again")
	case len(s.results[l]) > 0:
		c.err = s.results[l][0]
		s.results[l] = s.results[l][1:]
	}
	s.mu.Unlock()
	if c.err == nil {
		c.files = map[string]string{}
		c.err = jobpkg.Scan(tarball, jobpkg.Limits{}, func(f jobpkg.File, r io.Reader) error {
			b, err := io.ReadAll(r)
			c.files[f.Path] = string(b)
			return err
		})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.err == nil {
		s.gone[l] = true // reported: no longer running
	}
	s.completes = append(s.completes, c)
	return c.err
}

func (s *fakeServer) Fail(ctx context.Context, l api.LeaseRef, f api.Failure) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone[l] {
		return refused(ErrStale, "frame leased again")
	}
	s.gone[l] = true
	s.fails = append(s.fails, failure{l, f})
	return nil
}

// completed returns the successful completions of a lease.
func (s *fakeServer) completed(r api.LeaseRef) []completion {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []completion
	for _, c := range s.completes {
		if c.ref == r && c.err == nil {
			out = append(out, c)
		}
	}
	return out
}

// attempts returns every Complete call for a lease.
func (s *fakeServer) attempts(r api.LeaseRef) []completion {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []completion
	for _, c := range s.completes {
		if c.ref == r {
			out = append(out, c)
		}
	}
	return out
}

// failed returns the failures reported for a lease.
func (s *fakeServer) failed(r api.LeaseRef) []api.Failure {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []api.Failure
	for _, f := range s.fails {
		if f.ref == r {
			out = append(out, f.f)
		}
	}
	return out
}

// funcBackend is a backend whose Render is a function of the test's.
type funcBackend struct {
	name   string
	render func(ctx context.Context, t *backend.Task) error
}

func (b funcBackend) Name() string                { return b.name }
func (funcBackend) Check(*manifest.Backend) error { return nil }
func (funcBackend) Fingerprint(context.Context) (backend.Fingerprint, error) {
	return backend.Fingerprint{Version: "test"}, nil
}
func (funcBackend) Chunks() bool                                        { return false }
func (b funcBackend) Render(ctx context.Context, t *backend.Task) error { return b.render(ctx, t) }

// syncBuffer is a log destination that may be read while the worker writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// running is a worker running against a fakeServer.
type running struct {
	w      *Worker
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error // Run's result
}

// startWorker runs a worker of one slot, claiming nothing ahead, with the
// built-in backend and extra ones, against s. Call it inside a synctest
// bubble, and end the worker with stop.
func startWorker(t *testing.T, s Server, extra ...backend.Backend) *running {
	t.Helper()
	reg := backend.Registry{"builtin": backend.Builtin{}}
	for _, b := range extra {
		reg[b.Name()] = b
	}
	logs := &syncBuffer{}
	w, err := New(Config{Server: s, Name: "w1", Slots: 1, Prefetch: -1, Dir: t.TempDir(), Backends: reg,
		Log: slog.New(slog.NewTextHandler(logs, nil)), ClaimWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	return r
}

// stop ends the worker and returns what Run returned.
func (r *running) stop() error {
	r.cancel()
	err := <-r.done
	r.w.Close()
	return err
}

// exited reports whether Run has returned, and with what.
func (r *running) exited() (bool, error) {
	select {
	case err := <-r.done:
		r.done <- err
		return true, err
	default:
		return false, nil
	}
}

func lease(job, frame int64, epoch uint64, deps ...api.DepOutput) api.Lease {
	return api.Lease{Job: job, Frame: frame, Epoch: epoch, Deps: deps}
}

// job is a manifest of frames 1..n rendered with the named backend.
func job(backendElem string, n int, outputs string) string {
	var fr strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&fr, `<frame id="%d"/>`, i)
	}
	return `<distrenjob version="1"><name>t</name>` + backendElem + `<frames>` + fr.String() +
		`</frames><outputs><output>` + outputs + `</output></outputs></distrenjob>`
}
