package federation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/worker"
)

// fakeHome is the farm's own operations in memory (work.Local's part): a
// queue of ready frames, each for one backend, leased to claims that have
// it; objects by name; and what the federation asked of it. Its errors
// match the worker's sentinels, as work.Local's do.
type fakeHome struct {
	t    *testing.T
	name string

	mu    sync.Mutex
	ready chan struct{} // closed and replaced when frames are offered
	queue []readyFrame
	// hold, if set, is called before a claim is served (outside the
	// lock): a test holds a claim in the middle of trying.
	hold    func(ctx context.Context, req api.ClaimRequest) error
	objects map[string][]byte
	specs   map[int64]api.JobSpec
	status  Status

	// Injected answers.
	hbStop      []api.LeaseRef // the answer of every heartbeat
	completeErr error          // returned by Complete before it reads the output

	// What the federation did.
	claims     []api.ClaimRequest
	heartbeats []api.Heartbeat
	completes  []completion
	fails      []failure
	keeps      []string

	// The peers' frames waited for, and what the federation said of them.
	waits    []session.RemoteFrame
	remoteCh chan struct{}
	ends     []remoteEnd
}

type readyFrame struct {
	lease   api.Lease
	backend string
}

type completion struct {
	worker string
	ref    api.LeaseRef
	render time.Duration
	body   string
	size   int64
}

type failure struct {
	ref api.LeaseRef
	f   api.Failure
}

func newFakeHome(t *testing.T, name string) *fakeHome {
	return &fakeHome{t: t, name: name, ready: make(chan struct{}), objects: map[string][]byte{}, specs: map[int64]api.JobSpec{},
		status: Status{Lent: map[string]int{}}}
}

var (
	_ Home = (*fakeHome)(nil)
	_ Peer = (*fakePeer)(nil)
)

// offer makes frames ready and signals it.
func (h *fakeHome) offer(frames ...readyFrame) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.queue = append(h.queue, frames...)
	close(h.ready)
	h.ready = make(chan struct{})
}

func (h *fakeHome) setHold(hold func(ctx context.Context, req api.ClaimRequest) error) {
	h.mu.Lock()
	h.hold = hold
	h.mu.Unlock()
}

// queued is how many frames are ready and not taken.
func (h *fakeHome) queued() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.queue)
}

func (h *fakeHome) Name() string           { return h.name }
func (h *fakeHome) MaxWait() time.Duration { return time.Minute }
func (h *fakeHome) String() string         { return "home (fake)" }
func (h *fakeHome) ReadySignal() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ready
}

// ReadyFor: frames of the farm's own are ready (any worker may take them).
func (h *fakeHome) ReadyFor(string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.queue) > 0
}

func (h *fakeHome) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status
}

func (h *fakeHome) set(f func(h *fakeHome)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h)
}

func (h *fakeHome) object(hash string) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.objects[hash]
	return b, ok
}

type fakeHomeCalls struct {
	claims     []api.ClaimRequest
	heartbeats []api.Heartbeat
	completes  []completion
	fails      []failure
	keeps      []string
}

func (h *fakeHome) snapshot() fakeHomeCalls {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fakeHomeCalls{slices.Clone(h.claims), slices.Clone(h.heartbeats), slices.Clone(h.completes), slices.Clone(h.fails), slices.Clone(h.keeps)}
}

// Claim leases, without waiting, up to req.Max ready frames whose backend
// the claim has. The federation waits itself when it has peers: a claim
// that asks Home to wait would hold an own worker from the peers' frames.
func (h *fakeHome) Claim(ctx context.Context, req api.ClaimRequest) (api.ClaimResponse, error) {
	if req.WaitMS != 0 {
		h.t.Errorf("claim of %s asks the home to wait %d ms: the federation waits itself", req.Worker, req.WaitMS)
	}
	h.mu.Lock()
	hold := h.hold
	h.mu.Unlock()
	if hold != nil {
		if err := hold(ctx, req); err != nil {
			return api.ClaimResponse{}, err
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.claims = append(h.claims, req)
	var r api.ClaimResponse
	var rest []readyFrame
	for _, fr := range h.queue {
		if len(r.Leases) < req.Max && req.Backends[fr.backend] != "" {
			r.Leases = append(r.Leases, fr.lease)
		} else {
			rest = append(rest, fr)
		}
	}
	h.queue = rest
	return r, nil
}

func (h *fakeHome) Heartbeat(ctx context.Context, hb api.Heartbeat) (api.HeartbeatResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.heartbeats = append(h.heartbeats, hb)
	return api.HeartbeatResponse{Stop: slices.Clone(h.hbStop)}, nil
}

func (h *fakeHome) Spec(ctx context.Context, server string, job int64) (api.JobSpec, error) {
	if server != "" {
		h.t.Errorf("home asked for the spec of job %d of server %q", job, server)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	js, ok := h.specs[job]
	if !ok {
		return api.JobSpec{}, fmt.Errorf("%w: no job %d", worker.ErrRejected, job)
	}
	return js, nil
}

func (h *fakeHome) Blob(ctx context.Context, hash string) (io.ReadCloser, error) {
	b, ok := h.object(hash)
	if !ok {
		return nil, fmt.Errorf("%w: no object %s", worker.ErrRejected, hash)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (h *fakeHome) OpenObject(ctx context.Context, hash string) (io.ReadCloser, int64, error) {
	b, ok := h.object(hash)
	if !ok {
		return nil, 0, fmt.Errorf("%w: no object %s", worker.ErrRejected, hash)
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

// Complete answers completeErr without reading the output, as the farm
// refuses a stale lease before it reads a byte; otherwise it reads the
// output to its end.
func (h *fakeHome) Complete(ctx context.Context, name string, l api.LeaseRef, render time.Duration, tarball io.Reader, size int64) error {
	h.mu.Lock()
	err := h.completeErr
	h.mu.Unlock()
	if err != nil {
		return err
	}
	b, err := io.ReadAll(tarball)
	if err != nil {
		return fmt.Errorf("reading the output of frame %d: %w", l.Frame, err)
	}
	h.set(func(h *fakeHome) {
		h.completes = append(h.completes, completion{worker: name, ref: l, render: render, body: string(b), size: size})
	})
	return nil
}

func (h *fakeHome) Fail(ctx context.Context, l api.LeaseRef, f api.Failure) error {
	h.set(func(h *fakeHome) { h.fails = append(h.fails, failure{l, f}) })
	return nil
}

// Keep stores an object under want, or under its SHA-256 if want is empty.
func (h *fakeHome) Keep(ctx context.Context, r io.Reader, want string) (string, int64, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", 0, err
	}
	name := want
	if name == "" {
		name = hashOf(b)
	}
	h.set(func(h *fakeHome) {
		h.objects[name] = b
		h.keeps = append(h.keeps, name)
	})
	return name, int64(len(b)), nil
}

func (h *fakeHome) Has(ctx context.Context, hash string) (bool, error) {
	_, ok := h.object(hash)
	return ok, nil
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// fakePeer is a peer server in memory (client.ForPeer's part): scripted
// claim answers, objects, specs, and what the federation asked of it.
type fakePeer struct {
	t    *testing.T
	name string

	mu         sync.Mutex
	hello      api.PeerHello
	helloErr   error
	answers    []claimAnswer // the answers of the next claims, in order
	hbStop     []api.LeaseRef
	hbErr      error
	failErr    error
	lentErr    error
	blobErr    error
	specs      map[int64]api.JobSpec
	blobs      map[string][]byte
	blobGate   chan struct{}          // if set, Blob waits for it to be closed
	frames     map[[2]int64]api.Frame // job, frame → its state
	eventsErr  error
	eventCalls []int64 // the job of each Events call
	streams    []*fakeEvents
	frameGets  int

	// What the federation did.
	hellos     []bool // identify, of each Hello
	claims     []api.ClaimRequest
	heartbeats []api.Heartbeat
	fails      []failure
	lents      []lentCall
	specGets   []int64
	blobGets   map[string]int
}

// claimAnswer is a scripted answer of a claim. One with release waits for
// it and not for the claim's context: the answer of a long poll can be on
// its way when the claimant stops waiting for it.
type claimAnswer struct {
	release <-chan struct{}
	resp    api.ClaimResponse
	err     error
}

type lentCall struct {
	job, frame int64
	out        api.PeerOutput
}

func newFakePeer(t *testing.T, name string) *fakePeer {
	return &fakePeer{t: t, name: name, hello: api.PeerHello{Name: name, Instance: "inst-" + name},
		specs: map[int64]api.JobSpec{}, blobs: map[string][]byte{}, blobGets: map[string]int{}}
}

func (p *fakePeer) set(f func(p *fakePeer)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *fakePeer) script(a ...claimAnswer) {
	p.set(func(p *fakePeer) { p.answers = append(p.answers, a...) })
}

type fakePeerCalls struct {
	hellos     []bool
	claims     []api.ClaimRequest
	heartbeats []api.Heartbeat
	fails      []failure
	lents      []lentCall
	specGets   []int64
	blobGets   map[string]int
}

func (p *fakePeer) snapshot() fakePeerCalls {
	p.mu.Lock()
	defer p.mu.Unlock()
	gets := map[string]int{}
	for k, v := range p.blobGets {
		gets[k] = v
	}
	return fakePeerCalls{slices.Clone(p.hellos), slices.Clone(p.claims), slices.Clone(p.heartbeats), slices.Clone(p.fails),
		slices.Clone(p.lents), slices.Clone(p.specGets), gets}
}

func (p *fakePeer) String() string { return "peer " + p.name + " (fake)" }

func (p *fakePeer) Hello(ctx context.Context, identify bool) (api.PeerHello, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hellos = append(p.hellos, identify)
	if p.helloErr != nil {
		return api.PeerHello{}, p.helloErr
	}
	return p.hello, nil
}

// Claim answers with the next scripted answer; with none, it waits for
// the claim's context to end, as a long poll for a peer with nothing
// ready does.
func (p *fakePeer) Claim(ctx context.Context, req api.ClaimRequest) (api.ClaimResponse, error) {
	p.mu.Lock()
	p.claims = append(p.claims, req)
	var a claimAnswer
	scripted := len(p.answers) > 0
	if scripted {
		a = p.answers[0]
		p.answers = p.answers[1:]
	}
	p.mu.Unlock()
	if !scripted {
		<-ctx.Done()
		return api.ClaimResponse{}, ctx.Err()
	}
	if a.release != nil {
		<-a.release
	}
	// A copy: the federation marks the leases it borrows.
	return api.ClaimResponse{Leases: slices.Clone(a.resp.Leases)}, a.err
}

func (p *fakePeer) Heartbeat(ctx context.Context, hb api.Heartbeat) (api.HeartbeatResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.heartbeats = append(p.heartbeats, hb)
	if p.hbErr != nil {
		return api.HeartbeatResponse{}, p.hbErr
	}
	return api.HeartbeatResponse{Stop: slices.Clone(p.hbStop)}, nil
}

func (p *fakePeer) Spec(ctx context.Context, server string, job int64) (api.JobSpec, error) {
	if server != "" {
		p.t.Errorf("peer %s asked for the spec of job %d of server %q: a peer serves its own jobs", p.name, job, server)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.specGets = append(p.specGets, job)
	js, ok := p.specs[job]
	if !ok {
		return api.JobSpec{}, fmt.Errorf("%w: no job %d", worker.ErrRejected, job)
	}
	return js, nil
}

func (p *fakePeer) Blob(ctx context.Context, hash string) (io.ReadCloser, error) {
	p.mu.Lock()
	p.blobGets[hash]++
	gate, err := p.blobGate, p.blobErr
	b, ok := p.blobs[hash]
	p.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("%w: no object %s", worker.ErrRejected, hash)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (p *fakePeer) Complete(ctx context.Context, name string, l api.LeaseRef, render time.Duration, tarball io.Reader, size int64) error {
	p.t.Errorf("peer %s: Complete of frame %d/%d by %s: a borrowed frame's output is reported with Lent", p.name, l.Job, l.Frame, name)
	return nil
}

func (p *fakePeer) Fail(ctx context.Context, l api.LeaseRef, f api.Failure) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fails = append(p.fails, failure{l, f})
	return p.failErr
}

func (p *fakePeer) Lent(ctx context.Context, job, frame int64, out api.PeerOutput) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lents = append(p.lents, lentCall{job, frame, out})
	return p.lentErr
}

// newFed returns the federation of home with peers, quiet.
func newFed(t *testing.T, home Home, peers ...*fakePeer) *Federation {
	t.Helper()
	cfg := Config{Home: home, Instance: "inst-" + home.Name(), Version: "test", Log: slog.New(slog.DiscardHandler)}
	for _, p := range peers {
		cfg.Peers = append(cfg.Peers, PeerConfig{Name: p.name, URL: "https://" + p.name + ".example", Peer: p})
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// contactAll contacts every peer once, as Run does first.
func contactAll(f *Federation) {
	for _, p := range f.order {
		f.contact(context.Background(), p, true)
	}
}

// peerInfo returns the listing of the named peer.
func peerInfo(t *testing.T, f *Federation, name string) api.Peer {
	t.Helper()
	for _, p := range f.Peers() {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no peer %s in %+v", name, f.Peers())
	return api.Peer{}
}

type claimResult struct {
	r   api.ClaimResponse
	err error
}

// claimAsync starts a claim; its answer arrives on the channel returned.
func claimAsync(ctx context.Context, s worker.Server, req api.ClaimRequest) <-chan claimResult {
	c := make(chan claimResult, 1)
	go func() {
		r, err := s.Claim(ctx, req)
		c <- claimResult{r, err}
	}()
	return c
}

// answered returns a claim's answer if it has one.
func answered(c <-chan claimResult) (claimResult, bool) {
	select {
	case r := <-c:
		return r, true
	default:
		return claimResult{}, false
	}
}

func frameFor(backend string, job, frame int64) readyFrame {
	return readyFrame{lease: api.Lease{Job: job, Frame: frame, Epoch: 1, TTLMS: 30_000}, backend: backend}
}

// The peers' frames that frames of the fake farm wait for.

type remoteEnd struct {
	frame    session.RemoteFrame
	output   string // RemoteDone's
	failed   bool
	canceled bool
	msg      string
}

func (h *fakeHome) RemoteWaits() []session.RemoteFrame {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.waits)
}

func (h *fakeHome) RemoteSignal() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.remoteCh == nil {
		h.remoteCh = make(chan struct{})
	}
	return h.remoteCh
}

// wait makes frames of the farm wait for r, and signals it.
func (h *fakeHome) wait(r ...session.RemoteFrame) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.waits = append(h.waits, r...)
	if h.remoteCh != nil {
		close(h.remoteCh)
	}
	h.remoteCh = make(chan struct{})
}

func (h *fakeHome) end(e remoteEnd) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.waits = slices.DeleteFunc(h.waits, func(w session.RemoteFrame) bool { return w == e.frame })
	h.ends = append(h.ends, e)
}

func (h *fakeHome) RemoteDone(ctx context.Context, r session.RemoteFrame, output string, size int64) error {
	h.end(remoteEnd{frame: r, output: output})
	return nil
}

func (h *fakeHome) RemoteFailed(ctx context.Context, r session.RemoteFrame, canceled bool, msg string) error {
	h.end(remoteEnd{frame: r, failed: true, canceled: canceled, msg: msg})
	return nil
}

func (h *fakeHome) remoteEnds() []remoteEnd {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ends)
}

// fakeEvents is an event stream the test feeds. Like the client's, it
// ends with the context it was opened with.
type fakeEvents struct {
	ctx    context.Context
	job    int64
	ch     chan fakeEvent
	closed chan struct{}
	once   sync.Once
}

type fakeEvent struct {
	job     api.Job
	deleted bool
}

func (e *fakeEvents) Next() (api.Job, bool, error) {
	select {
	case ev, ok := <-e.ch:
		if !ok {
			return api.Job{}, false, io.EOF
		}
		return ev.job, ev.deleted, nil
	case <-e.closed:
		return api.Job{}, false, io.EOF
	case <-e.ctx.Done():
		return api.Job{}, false, e.ctx.Err()
	}
}

func (e *fakeEvents) Close() error {
	e.once.Do(func() { close(e.closed) })
	return nil
}

func (e *fakeEvents) isClosed() bool {
	select {
	case <-e.closed:
		return true
	default:
		return false
	}
}

func (p *fakePeer) Events(ctx context.Context, job int64) (JobEvents, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eventCalls = append(p.eventCalls, job)
	if p.eventsErr != nil {
		return nil, p.eventsErr
	}
	e := &fakeEvents{ctx: ctx, job: job, ch: make(chan fakeEvent, 16), closed: make(chan struct{})}
	p.streams = append(p.streams, e)
	return e, nil
}

// push sends a job summary on every open stream of that job.
func (p *fakePeer) push(j api.Job) { p.send(fakeEvent{job: j}) }

// pushDeleted sends the deletion of a job on its open streams.
func (p *fakePeer) pushDeleted(id int64) { p.send(fakeEvent{job: api.Job{ID: id}, deleted: true}) }

func (p *fakePeer) send(ev fakeEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.streams {
		if e.job == ev.job.ID && !e.isClosed() {
			e.ch <- ev
		}
	}
}

// drop ends the open streams of a job from the peer's side, as a
// connection lost does.
func (p *fakePeer) drop(job int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.streams {
		if e.job == job && !e.isClosed() {
			close(e.ch)
			e.Close()
		}
	}
}

// openStreams lists the jobs of the streams the federation holds open.
func (p *fakePeer) openStreams() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int64
	for _, e := range p.streams {
		if !e.isClosed() {
			out = append(out, e.job)
		}
	}
	slices.Sort(out)
	return out
}

// setFrame sets the state of a frame of the peer's.
func (p *fakePeer) setFrame(job int64, f api.Frame) {
	p.set(func(p *fakePeer) {
		if p.frames == nil {
			p.frames = map[[2]int64]api.Frame{}
		}
		p.frames[[2]int64{job, f.ID}] = f
	})
}

func (p *fakePeer) Frame(ctx context.Context, job, frame int64) (api.Frame, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frameGets++
	f, ok := p.frames[[2]int64{job, frame}]
	if !ok {
		return api.Frame{}, fmt.Errorf("%w: job %d has no frame %d", worker.ErrRejected, job, frame)
	}
	return f, nil
}
