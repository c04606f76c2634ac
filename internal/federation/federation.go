// Package federation owns a server's peers: the servers it lends frames to
// and borrows frames from (docs/federation.md).
//
// A server's own workers — its local slots and remote workers — reach the
// farm through Federation.Work, which puts borrowing in front of the farm's
// own operations (Home): a claim takes the server's own ready frames
// first, and only when there are none it also asks each reachable peer, as
// a worker of this server would ask it (a long-poll claim under the name
// "SERVER/WORKER"); the first peer to answer with frames wins, and frames
// that arrive when nobody wants them any more are given back unattempted.
// Everything about a borrowed frame then goes to its lender: its spec,
// the objects this server lacks (fetched once into its vault, so a second
// frame of the same job moves no input byte), the heartbeats, and the
// result: the output is kept in this server's vault and the lender is told
// (PeerOutput), which pulls it from here.
//
// The lending side is the same calls arriving from a peer: a claim from a
// peer's worker is served from this server's own frames only, and only
// once every own worker waiting for frames has had its turn at them
// (lend.go); frames lent are never lent on. Peers are checked at every
// contact (contact.go): a peer that answers under another name, or as
// this server itself, is refused, as is a request that names a peer from
// an instance other than the one that peer's URL answers as.
//
// The package knows its peers only as Peer values (the HTTP
// implementation is client.ForPeer) and the farm only as a Home: it
// imports no transport.
package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/durl"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/worker"
)

// Home is the farm's own operations as its workers call them, in process
// (work.Local implements it).
type Home interface {
	worker.Server
	worker.LocalObjects
	Name() string
	// ReadySignal is closed when frames next become ready.
	ReadySignal() <-chan struct{}
	// MaxWait is the longest a claim may wait.
	MaxWait() time.Duration
	// Keep stores an object no job of the farm references (ops.Farm.Keep)
	// and returns its name and size; Has says whether the farm holds one.
	Keep(ctx context.Context, r io.Reader, want string) (string, int64, error)
	Has(ctx context.Context, hash string) (bool, error)
	// ReadyFor reports whether frames of the farm's own are ready that the
	// worker could take.
	ReadyFor(worker string) bool
	// The peers' frames that frames of the farm's jobs depend on
	// (session.Session's methods of the same names, watch.go).
	RemoteWaits() []session.RemoteFrame
	RemoteSignal() <-chan struct{}
	RemoteDone(ctx context.Context, r session.RemoteFrame, output string, size int64) error
	RemoteFailed(ctx context.Context, r session.RemoteFrame, canceled bool, msg string) error
	// Status is what the farm says of itself to its peers: its live
	// workers, their backends, its ready frames, and how many of its
	// frames each peer's workers hold.
	Status() Status
}

// Status is what Home reports of the farm.
type Status struct {
	Workers  int
	Backends map[string][]string
	Ready    int
	Lent     map[string]int // peer → frames of this farm its workers hold
}

// Peer is a peer server as this server reaches it. Its worker.Server
// methods are the workers' protocol, called with this server's workers'
// names prefixed by this server's ("SERVER/WORKER"); its errors match the
// worker's sentinels as client.ForWorker's do.
type Peer interface {
	worker.Server
	// Hello asks the peer what it says of itself (GET /v1/peer); with
	// identify, saying who asks, so that the peer may refuse this server.
	// (A server checking a request of the peer asks without: the peer
	// would check that in turn, and so on.)
	Hello(ctx context.Context, identify bool) (api.PeerHello, error)
	// Lent tells the lender that a frame it lent is rendered and where
	// its output is (POST /v1/jobs/{job}/frames/{frame}/lent).
	Lent(ctx context.Context, job, frame int64, out api.PeerOutput) error
	// Events opens the peer's event stream for one of its jobs; Frame
	// asks for one of its frames.
	Events(ctx context.Context, job int64) (JobEvents, error)
	Frame(ctx context.Context, job, frame int64) (api.Frame, error)
}

// PeerConfig names a peer.
type PeerConfig struct {
	Name string
	URL  string
	Peer Peer
}

// Config configures a Federation.
type Config struct {
	Home  Home
	Peers []PeerConfig
	// Instance identifies this process to its peers (a random id if
	// empty); Version is told them too.
	Instance, Version string
	// Contact is how often each peer is asked how it is (default 5 s).
	Contact time.Duration
	Log     *slog.Logger
}

// ErrPeer marks a failure of a peer — unreachable, or refusing this
// server — that this server reports to its own worker as its own
// failure, never as the worker's: the worker tries again later.
var ErrPeer = errors.New("peer failed")

// ErrNotPeer refuses a request that comes from a server that is not this
// server's peer, or not the one its name says (a duplicate name).
var ErrNotPeer = errors.New("not a peer of this server")

// ErrLoop refuses a claim that would lend on frames lent.
var ErrLoop = errors.New("lending loop")

// Federation is a server's peers and its borrowing and lending.
type Federation struct {
	home    Home
	name    string
	inst    string
	version string
	every   time.Duration
	log     *slog.Logger
	peers   map[string]*peer
	order   []*peer // as configured

	mu       sync.Mutex
	upCh     chan struct{}        // closed and replaced when a peer comes up
	waiters  map[*waiter]struct{} // own workers' claims waiting for frames
	changed  chan struct{}        // closed and replaced when a waiter tries or leaves
	borrowed map[borrowKey]*loan  // frames of peers this server's workers hold
	origins  map[string]string    // object → the peer that has it (specs and leases handed out)
	fetching map[string]chan struct{}
}

// New returns the federation of cfg's peers. Two peers of the same name,
// a peer named as this server, or a name that is not a server name are
// refused.
func New(cfg Config) (*Federation, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Contact <= 0 {
		cfg.Contact = 5 * time.Second
	}
	if cfg.Instance == "" {
		cfg.Instance = NewInstance()
	}
	f := &Federation{home: cfg.Home, name: cfg.Home.Name(), inst: cfg.Instance, version: cfg.Version, every: cfg.Contact,
		log: cfg.Log, peers: map[string]*peer{}, waiters: map[*waiter]struct{}{}, changed: make(chan struct{}), upCh: make(chan struct{}),
		borrowed: map[borrowKey]*loan{}, origins: map[string]string{}, fetching: map[string]chan struct{}{}}
	for _, pc := range cfg.Peers {
		switch {
		case !durl.ValidServer(pc.Name):
			return nil, fmt.Errorf("peer %q: not a server name ([a-z0-9][a-z0-9-]*, at most 63 characters)", pc.Name)
		case pc.Name == f.name:
			return nil, fmt.Errorf("peer %q: that is this server's own name; a server is not its own peer", pc.Name)
		case f.peers[pc.Name] != nil:
			return nil, fmt.Errorf("peer %q given twice (%s and %s): peer names are unique", pc.Name, f.peers[pc.Name].url, pc.URL)
		}
		p := &peer{name: pc.Name, url: pc.URL, c: pc.Peer, state: api.PeerUnknown}
		f.peers[pc.Name] = p
		f.order = append(f.order, p)
	}
	return f, nil
}

// Name is this server's name; Instance its instance.
func (f *Federation) Name() string     { return f.name }
func (f *Federation) Instance() string { return f.inst }

// Header is the value of api.PeerHeader on this server's requests to its
// peers.
func (f *Federation) Header() string { return f.name + " " + f.inst }

// Hello is what this server says of itself to its peers.
func (f *Federation) Hello() api.PeerHello {
	st := f.home.Status()
	f.mu.Lock()
	idle := 0
	for w := range f.waiters {
		idle += w.max
	}
	f.mu.Unlock()
	return api.PeerHello{Name: f.name, Instance: f.inst, Version: f.version, Idle: idle, Workers: st.Workers,
		Backends: st.Backends, Ready: st.Ready}
}

// Peers lists the peers as configured, with what is known of each.
func (f *Federation) Peers() []api.Peer {
	st := f.home.Status()
	now := time.Now()
	f.mu.Lock()
	held := map[string]int{}
	for k, l := range f.borrowed {
		if now.Sub(l.seen) <= l.ttl {
			held[k.peer]++
		}
	}
	f.mu.Unlock()
	out := make([]api.Peer, 0, len(f.order))
	for _, p := range f.order {
		out = append(out, p.info(st.Lent[p.name], held[p.name]))
	}
	return out
}

// Work is the farm as this server's own workers see it: its own frames
// first, then frames borrowed from peers.
func (f *Federation) Work() worker.Server { return front{f} }

// waiter is an own worker's claim waiting for frames.
type waiter struct {
	max   int
	tried <-chan struct{} // the ready signal current when it last found nothing
}

// upSignal returns a channel closed when a peer next comes up.
func (f *Federation) upSignal() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.upCh
}

func (f *Federation) addWaiter(max int) *waiter {
	w := &waiter{max: max}
	f.mu.Lock()
	f.waiters[w] = struct{}{}
	f.mu.Unlock()
	return w
}

// update records a change of waiters and wakes the lending claims.
func (f *Federation) update(change func()) {
	f.mu.Lock()
	change()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

func (f *Federation) removeWaiter(w *waiter) { f.update(func() { delete(f.waiters, w) }) }

func (f *Federation) tried(w *waiter, sig <-chan struct{}) { f.update(func() { w.tried = sig }) }

// settled reports whether every own worker waiting for frames has tried to
// claim since frames last became ready (sig is the current ready signal),
// and returns the channel that says when that changes.
func (f *Federation) settled(sig <-chan struct{}) (bool, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.waiters {
		if w.tried != sig {
			return false, f.changed
		}
	}
	return true, f.changed
}

// borrowKey names a borrowed lease.
type borrowKey struct {
	peer       string
	job, frame int64
	epoch      uint64
}

// loan is a borrowed lease: which of this server's workers holds it.
type loan struct {
	worker string
	ttl    time.Duration
	seen   time.Time
}

func (f *Federation) lend(k borrowKey, l loan) {
	f.mu.Lock()
	f.borrowed[k] = &l
	f.mu.Unlock()
}

func (f *Federation) unlend(k borrowKey) {
	f.mu.Lock()
	delete(f.borrowed, k)
	f.mu.Unlock()
}

// origin records that a peer holds an object this server's workers may
// ask for: a chunk of a lent job's inputs, a dependency's output.
func (f *Federation) origin(hash, peer string) {
	f.mu.Lock()
	if len(f.origins) >= maxOrigins {
		clear(f.origins) // those in use are recorded again with their next spec or lease
	}
	f.origins[hash] = peer
	f.mu.Unlock()
}

const maxOrigins = 1 << 20

// peerOf returns the configured peer of that name.
func (f *Federation) peerOf(name string) (*peer, error) {
	p := f.peers[name]
	if p == nil {
		return nil, fmt.Errorf("%w: server %q is not a peer of server %s (serve --peer %s=URL names one)", ErrNotPeer, name, f.name, name)
	}
	return p, nil
}

// lender returns the peer a worker's request names as the server of its
// lease or job. A name that is not a peer's refuses the request, not the
// worker (it may hold a lease of a peer this server no longer has).
func (f *Federation) lender(name string) (*peer, error) {
	p := f.peers[name]
	if p == nil {
		return nil, fmt.Errorf("%w: server %q is not a peer of server %s: its frames are not rendered here", worker.ErrRejected, name, f.name)
	}
	return p, nil
}

// peerError marks a peer's failure as this server's, not its worker's: a
// refusal of this server's credential must not stop the worker, and a
// peer that is unreachable is worth trying again. A stale lease or a
// rejected request keeps its meaning.
func peerError(p *peer, err error) error {
	if err == nil || errors.Is(err, worker.ErrStale) || errors.Is(err, worker.ErrRejected) {
		return err
	}
	return fmt.Errorf("%w: peer %s: %s", ErrPeer, p.name, err)
}

// Verify checks a request that a peer's worker makes: the peer must be one
// of this server's, and the request must come from the instance that
// answers at the peer's URL (header is api.PeerHeader's value) — a second
// server that calls itself by the same name is refused. Worker names of a
// peer's workers hold one slash; more would lend on frames lent.
func (f *Federation) Verify(ctx context.Context, workerName, header string) error {
	name, rest, ok := session.SplitPeerWorker(workerName)
	if !ok {
		return nil
	}
	if name == f.name {
		return fmt.Errorf("%w: worker %q is a worker of this server (%s) itself: a server does not borrow from itself", ErrLoop, workerName, f.name)
	}
	if strings.Contains(rest, "/") {
		return fmt.Errorf("%w: worker %q claims for a worker of a server that borrows from %s: frames lent are not lent on", ErrLoop, workerName, name)
	}
	p, err := f.peerOf(name)
	if err != nil {
		return err
	}
	from, inst, _ := strings.Cut(header, " ")
	if from != name || inst == "" {
		return fmt.Errorf("%w: a request for worker %q must carry %s: %s INSTANCE (it carries %q)", ErrNotPeer, workerName, api.PeerHeader, name, header)
	}
	if p.known(inst) {
		f.recontact(p)
		return nil
	}
	// The peer may have restarted since the last contact: ask it who it
	// is, without saying who asks (it would check that in turn). What it
	// answers changes nothing of its state here but the instance known.
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	h, err := p.c.Hello(hctx, false)
	if err != nil {
		return fmt.Errorf("%w: cannot reach server %s at %s to check that this request comes from it: %v", ErrPeer, name, p.url, err)
	}
	if h.Instance != inst {
		return fmt.Errorf("%w: a server calls itself %s, but the server %s at %s is another (instance %s, this request's %s): two servers share the name %s",
			ErrNotPeer, name, name, p.url, h.Instance, inst, name)
	}
	p.verify(inst)
	f.recontact(p)
	return nil
}

// recontact contacts a peer that is not known to be up, now, in the
// background, once at a time: it has just been heard from, so it may be
// up since the last contact.
func (f *Federation) recontact(p *peer) {
	if p.up() || !p.contacting.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer p.contacting.Store(false)
		f.contact(context.Background(), p, true)
	}()
}

// Self reports whether a request's api.PeerHeader is this process's own:
// a server that was given its own URL as a peer's.
func (f *Federation) Self(header string) bool { return header == f.Header() }

// Run contacts every peer every Contact interval, and follows the peers'
// jobs that frames here depend on, until ctx ends.
func (f *Federation) Run(ctx context.Context) error {
	if len(f.order) == 0 {
		<-ctx.Done()
		return nil
	}
	go f.watchRemotes(ctx)
	t := time.NewTicker(f.every)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for _, p := range f.order {
			wg.Add(1)
			go func() { defer wg.Done(); f.contact(ctx, p, true) }()
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// counter is a count shown in a peer's listing.
type counter = atomic.Int64
