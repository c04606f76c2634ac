// Package worker owns the execution of frames: a worker fingerprints its
// backends, claims tasks — a frame, or a chunk of consecutive frames — from a
// server (long-polling), prepares each in a scratch directory of its own
// (the job's inputs, cloned or copied from its own cache of plain object
// files, and the outputs of the frames it depends on), runs the backend with
// the job's timeout, packs each frame's files into its output tarball and
// uploads it as soon as the frame is done, and removes the scratch
// directory. While slots render, the next claimed tasks' inputs are already
// being fetched.
package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/backend"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/dirlock"
	"github.com/distren/distren/internal/jobpkg"
	"github.com/distren/distren/internal/manifest"
)

// Config configures a worker.
type Config struct {
	Client *client.Client
	Name   string // unique worker name; default host-pid-random
	Slots  int    // frames rendered at once (default 1)
	// Prefetch is how many frames are claimed ahead of free slots, so that
	// their inputs arrive while the slots render: a fixed number if
	// positive, none if negative, and if 0 it adapts — Slots ahead for
	// frames that take a while, up to 8×Slots for frames that take
	// milliseconds, where the round trips would otherwise idle the slots.
	Prefetch int
	Dir      string // cache/ and scratch/ live here; New makes it absolute
	// CacheBytes bounds the object cache (default DefaultCacheBytes): the
	// least recently used objects not needed by a task in hand are evicted.
	CacheBytes int64
	Backends   backend.Registry
	Log        *slog.Logger
	// ClaimWait is how long a claim waits on the server for work (default 30s).
	ClaimWait time.Duration
}

// Worker renders frames for one server.
type Worker struct {
	cfg     Config
	cache   *store
	unlock  func()
	reports sync.WaitGroup // results being reported
	scr     string

	mu     sync.Mutex
	held   map[api.LeaseRef]*task
	specs  map[int64]*jobSpec
	fetch  map[string]chan struct{} // objects being downloaded
	tokens chan struct{}
	freed  chan struct{} // a token was returned

	backends map[string]string // fingerprint: backend → version
	idx      *cacheIndex

	minAhead, maxAhead int          // bounds of the tasks claimed ahead of the slots
	frameNS            atomic.Int64 // moving average of render times, 0 before the first
}

type jobSpec struct {
	ready chan struct{}
	m     *manifest.Manifest
	in    []api.InputFile
	err   error
}

// task is what one slot renders at once: a frame, or a chunk of
// consecutive frames of one job (leases sharing a Chunk).
type task struct {
	leases   []api.Lease
	spec     *jobSpec
	dir      string // scratch directory
	home     string // the renderer's HOME, beside dir
	depFiles []string
	before   map[string]fileStamp // files placed before rendering
	ctx      context.Context
	cancel   context.CancelFunc
	err      error    // preparation failure
	pinned   []string // cached objects the task needs

	// Guarded by Worker.mu:
	progress map[int64]float64                 // frame → fraction done
	done     map[int64]bool                    // frames whose result is sent or being sent
	sent     map[int64]bool                    // frames whose result has been sent (or given up)
	aborts   map[int64]context.CancelCauseFunc // frames whose result is being sent: ends the upload
	pending  sync.WaitGroup                    // results being sent
}

func (t *task) job() int64 { return t.leases[0].Job }

func (t *task) frames() []int64 {
	out := make([]int64, len(t.leases))
	for i, l := range t.leases {
		out[i] = l.Frame
	}
	return out
}

func (t *task) lease(frame int64) (api.Lease, bool) {
	for _, l := range t.leases {
		if l.Frame == frame {
			return l, true
		}
	}
	return api.Lease{}, false
}

type fileStamp struct {
	size  int64
	mtime time.Time
}

// New prepares a worker: its cache and an empty scratch directory.
func New(cfg Config) (*Worker, error) {
	if cfg.Slots <= 0 {
		cfg.Slots = 1
	}
	minAhead, maxAhead := cfg.Prefetch, cfg.Prefetch
	switch {
	case cfg.Prefetch < 0:
		minAhead, maxAhead = 0, 0
	case cfg.Prefetch == 0:
		minAhead, maxAhead = cfg.Slots, max(cfg.Slots, min(8*cfg.Slots, 256))
	}
	if cfg.ClaimWait <= 0 {
		cfg.ClaimWait = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Backends == nil {
		cfg.Backends = backend.Default()
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName()
	}
	// Renderers run in scratch directories beneath Dir and are given paths
	// in it (HOME, the scene, the output); relative, they would be taken
	// from the renderer's own working directory.
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("worker directory %q: %w", cfg.Dir, err)
	}
	cfg.Dir = dir
	unlock, err := dirlock.Lock(cfg.Dir, "worker directory")
	if err != nil {
		return nil, fmt.Errorf("%w; give each worker process its own --dir", err)
	}
	fail := func(err error) (*Worker, error) { unlock(); return nil, err }
	cache, err := openStore(filepath.Join(cfg.Dir, "cache"))
	if err != nil {
		return fail(err)
	}
	scr := filepath.Join(cfg.Dir, "scratch")
	if err := os.RemoveAll(scr); err != nil { // leftovers of an earlier run
		return fail(fmt.Errorf("worker scratch: %w", err))
	}
	if err := os.MkdirAll(scr, 0o755); err != nil {
		return fail(fmt.Errorf("worker scratch: %w", err))
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	idx := newCacheIndex(cfg.CacheBytes)
	if err := idx.load(filepath.Join(cfg.Dir, "cache", "objects")); err != nil {
		return fail(fmt.Errorf("worker cache: %w", err))
	}
	return &Worker{cfg: cfg, cache: cache, scr: scr, unlock: unlock, idx: idx, held: map[api.LeaseRef]*task{}, specs: map[int64]*jobSpec{},
		fetch: map[string]chan struct{}{}, tokens: make(chan struct{}, cfg.Slots+maxAhead), freed: make(chan struct{}, 1),
		minAhead: minAhead, maxAhead: maxAhead}, nil
}

// Close releases the worker's directory. Call it after Run returns.
func (w *Worker) Close() {
	w.cache.Close()
	w.unlock()
}

// DefaultName returns host-pid-random.
func DefaultName() string {
	h, _ := os.Hostname()
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", h, os.Getpid(), hex.EncodeToString(b[:]))
}

// Name returns the worker's name.
func (w *Worker) Name() string { return w.cfg.Name }

// Dir returns the worker's directory, absolute.
func (w *Worker) Dir() string { return w.cfg.Dir }

// Run works until ctx ends, or until the server refuses the worker's token
// (revoked, or a role that may not claim), which it returns. Frames being
// rendered then are abandoned: their leases expire on the server and they
// are rendered again elsewhere.
func (w *Worker) Run(ctx context.Context) error {
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	w.fingerprint(ctx)
	claimed := make(chan *task, cap(w.tokens))
	prepared := make(chan *task, w.maxAhead)
	var wg sync.WaitGroup
	wg.Go(func() { w.heartbeats(ctx) })
	for range w.cfg.Slots {
		wg.Go(func() { // preparers: fetch inputs ahead of the slots
			for {
				select {
				case t := <-claimed:
					w.prepare(ctx, t)
					select {
					case prepared <- t:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		})
		wg.Go(func() { // slots
			for {
				select {
				case t := <-prepared:
					w.run(ctx, t)
				case <-ctx.Done():
					return
				}
			}
		})
	}
	err := w.claimLoop(ctx, claimed)
	stop(err)
	wg.Wait()
	w.reports.Wait()
	return err
}

func (w *Worker) claimLoop(ctx context.Context, claimed chan<- *task) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		// One token per frame held, from claim to report; only this loop
		// takes tokens, so len(w.tokens) can only fall behind its back.
		window := w.window()
		for len(w.tokens) >= window {
			select {
			case <-w.freed:
			case <-ctx.Done():
				return nil
			}
			window = w.window()
		}
		n := 0
		for len(w.tokens) < window {
			w.tokens <- struct{}{}
			n++
		}
		// The server answers within the wait; a claim unanswered well past
		// it is lost on a dead connection.
		cctx, cancel := context.WithTimeout(ctx, w.cfg.ClaimWait+stallLimit)
		resp, err := w.cfg.Client.Claim(cctx, api.ClaimRequest{Worker: w.cfg.Name, Max: n,
			WaitMS: int(w.cfg.ClaimWait.Milliseconds()), Backends: w.backends})
		cancel()
		tasks := group(resp.Leases)
		for range n - len(tasks) {
			<-w.tokens
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if client.IsStatus(err, http.StatusUnauthorized) || client.IsStatus(err, http.StatusForbidden) {
				return fmt.Errorf("worker %s: the server refused its token: %w", w.cfg.Name, err)
			}
			w.cfg.Log.Warn("claim failed", "server", w.cfg.Client.Base(), "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		for _, ls := range tasks {
			tctx, cancel := context.WithCancel(ctx)
			t := &task{leases: ls, ctx: tctx, cancel: cancel, progress: map[int64]float64{}, done: map[int64]bool{}, sent: map[int64]bool{},
				aborts: map[int64]context.CancelCauseFunc{}}
			w.mu.Lock()
			for _, l := range ls {
				w.held[ref(l)] = t
			}
			w.mu.Unlock()
			claimed <- t // capacity covers every token
		}
	}
	return nil
}

// group splits leases into tasks: a chunk's leases (same Chunk, which the
// server sends together) make one task, any other lease a task of its own.
func group(ls []api.Lease) [][]api.Lease {
	var out [][]api.Lease
	for i := 0; i < len(ls); {
		j := i + 1
		for ls[i].Chunk != 0 && j < len(ls) && ls[j].Chunk == ls[i].Chunk {
			j++
		}
		out = append(out, ls[i:j])
		i = j
	}
	return out
}

// fingerprint finds which backends this machine has, concurrently: the
// claims tell the server, which sends only frames the worker can render.
func (w *Worker) fingerprint(ctx context.Context) {
	if w.backends != nil {
		return
	}
	have, missing := w.cfg.Backends.Fingerprints(ctx)
	w.backends = map[string]string{}
	for name, fp := range have {
		w.backends[name] = fp.Version
	}
	var names []string
	for name, fp := range have {
		names = append(names, name+" "+fp.Version)
	}
	slices.Sort(names)
	w.cfg.Log.Info("backends", "worker", w.cfg.Name, "have", strings.Join(names, ", "))
	for name, err := range missing {
		w.cfg.Log.Info("backend unavailable", "worker", w.cfg.Name, "backend", name, "reason", err)
	}
}

func ref(l api.Lease) api.LeaseRef { return api.LeaseRef{Job: l.Job, Frame: l.Frame, Epoch: l.Epoch} }

// release forgets a task and frees its token and scratch directory.
func (w *Worker) release(t *task) {
	t.cancel()
	w.mu.Lock()
	for _, l := range t.leases {
		delete(w.held, ref(l))
	}
	w.mu.Unlock()
	if t.dir != "" {
		os.RemoveAll(t.dir)
		os.RemoveAll(t.home)
	}
	w.idx.unpin(t.pinned)
	<-w.tokens
	select {
	case w.freed <- struct{}{}:
	default:
	}
}

// window is how many frames the worker holds at most: its slots, and the
// frames claimed ahead of them — enough to keep about aheadTarget of work
// waiting when frames are short, within [minAhead, maxAhead].
func (w *Worker) window() int {
	ahead := w.minAhead
	if avg := time.Duration(w.frameNS.Load()); avg > 0 && w.maxAhead > w.minAhead {
		want := int(int64(w.cfg.Slots) * int64(aheadTarget) / int64(avg))
		ahead = min(max(want, w.minAhead), w.maxAhead)
	}
	return w.cfg.Slots + ahead
}

// aheadTarget is the work a worker keeps in hand beyond its slots when
// frames are short: a few round trips to the server.
const aheadTarget = 50 * time.Millisecond

// observe folds a render time into the moving average (weight 1/8).
func (w *Worker) observe(d time.Duration) {
	d = max(d, time.Microsecond)
	for {
		old := w.frameNS.Load()
		nu := int64(d)
		if old > 0 {
			nu = old + (int64(d)-old)/8
		}
		if w.frameNS.CompareAndSwap(old, nu) {
			return
		}
	}
}

func (w *Worker) heartbeats(ctx context.Context) {
	period := 100 * time.Millisecond // until a lease tells its length: heartbeats with no lease send nothing
	for {
		select {
		case <-time.After(period):
		case <-ctx.Done():
			return
		}
		hb, ttl := w.heartbeat()
		if len(hb.Leases) == 0 {
			continue
		}
		period = min(max(ttl/3, 50*time.Millisecond), 5*time.Second)
		// A heartbeat that has not arrived within a lease is of no use; one
		// stuck on a dead connection must not hold back the next.
		hctx, cancel := context.WithTimeout(ctx, ttl)
		resp, err := w.cfg.Client.Heartbeat(hctx, hb)
		cancel()
		if err != nil {
			w.cfg.Log.Warn("heartbeat failed", "err", err)
			continue
		}
		w.stop(resp.Stop)
	}
}

// errLeaseLost ends the upload of a result whose lease the server no
// longer holds: it would be refused when it arrived.
var errLeaseLost = errors.New("lease no longer held")

// stop abandons the leases a heartbeat's answer lists: a frame still
// rendering is stopped, a result still uploading is not sent on.
func (w *Worker) stop(refs []api.LeaseRef) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range refs {
		t := w.held[r]
		switch {
		case t == nil || t.sent[r.Frame]:
		case !t.done[r.Frame]:
			w.cfg.Log.Info("abandoning frame", "job", r.Job, "frame", r.Frame, "reason", "lease no longer held")
			t.cancel()
		case t.aborts[r.Frame] != nil:
			t.aborts[r.Frame](errLeaseLost)
		}
	}
}

// heartbeat returns the leases to renew, and the lease length (default 30s).
// A frame whose result is being sent is still running on the server until
// the upload is in: its lease is renewed meanwhile, so that an upload may
// take longer than a lease.
func (w *Worker) heartbeat() (api.Heartbeat, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	hb := api.Heartbeat{Worker: w.cfg.Name}
	ttl := 30 * time.Second
	for r, t := range w.held {
		if t.sent[r.Frame] {
			continue // reported: the server no longer holds it as running
		}
		hb.Leases = append(hb.Leases, api.LeaseProgress{LeaseRef: r, Progress: t.progress[r.Frame]})
		if l := time.Duration(t.leases[0].TTLMS) * time.Millisecond; l > 0 {
			ttl = l
		}
	}
	return hb, ttl
}

// spec returns the job's spec, fetching and parsing it once per job.
func (w *Worker) spec(ctx context.Context, job int64) *jobSpec {
	w.mu.Lock()
	s := w.specs[job]
	if s == nil {
		s = &jobSpec{ready: make(chan struct{})}
		if len(w.specs) > 256 {
			clear(w.specs)
		}
		w.specs[job] = s
		w.mu.Unlock()
		js, err := w.cfg.Client.Spec(ctx, job)
		if err == nil {
			s.in = js.Inputs
			s.m, err = manifest.Parse(strings.NewReader(js.Manifest), fmt.Sprintf("job %d: %s", job, manifest.FileName),
				manifest.Options{MaxBytes: int64(len(js.Manifest)) + 1, MaxFrames: 1 << 30})
		}
		s.err = err
		if err != nil {
			w.mu.Lock()
			delete(w.specs, job) // fetch again next time
			w.mu.Unlock()
		}
		close(s.ready)
		return s
	}
	w.mu.Unlock()
	select {
	case <-s.ready:
	case <-ctx.Done():
		return &jobSpec{err: ctx.Err()}
	}
	return s
}

// object makes sure the cache holds an object, downloading it once.
func (w *Worker) object(ctx context.Context, hash string) error {
	_, err := w.fetchObject(ctx, hash)
	return err
}

// fetchObject is object, also returning the bytes it downloaded (0 when the
// cache held the object or another task fetched it).
func (w *Worker) fetchObject(ctx context.Context, hash string) (int64, error) {
	for {
		if w.cache.Has(hash) {
			return 0, nil
		}
		w.mu.Lock()
		ch, busy := w.fetch[hash]
		if !busy {
			ch = make(chan struct{})
			w.fetch[hash] = ch
		}
		w.mu.Unlock()
		if busy {
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		n, err := w.download(ctx, hash)
		w.mu.Lock()
		delete(w.fetch, hash)
		close(ch)
		w.mu.Unlock()
		return n, err
	}
}

func (w *Worker) download(ctx context.Context, hash string) (int64, error) {
	dog, stop := watch(ctx, stallLimit)
	defer stop()
	rc, err := w.cfg.Client.Blob(dog.Context(), hash)
	if err != nil {
		return 0, fmt.Errorf("fetching object %s: %w", hash, explain(dog, err))
	}
	defer rc.Close()
	n, err := w.cache.Put(dog.Reader(rc), hash)
	if err != nil {
		return 0, fmt.Errorf("fetching object %s: %w", hash, explain(dog, err))
	}
	return n, nil
}

// prepare fills the task's scratch directory.
func (w *Worker) prepare(ctx context.Context, t *task) {
	first := t.leases[0]
	t.spec = w.spec(t.ctx, first.Job)
	if t.err = t.spec.err; t.err != nil {
		t.err = fmt.Errorf("job %d spec: %w", first.Job, t.err)
		return
	}
	if t.err = w.scratch(t); t.err != nil {
		return
	}
	root, err := os.OpenRoot(t.dir)
	if err != nil {
		t.err = err
		return
	}
	defer root.Close()
	t.before = map[string]fileStamp{}
	var fetched, inputBytes int64
	for _, in := range t.spec.in {
		parts := in.Parts()
		for _, p := range parts {
			w.pin(t, p.Hash, p.Size)
			n, err := w.fetchObject(t.ctx, p.Hash)
			if err != nil {
				t.err = fmt.Errorf("input %s: %w", in.Path, err)
				return
			}
			fetched += n
		}
		inputBytes += in.Size
		dst := filepath.Join(t.dir, filepath.FromSlash(in.Path))
		if dir := path.Dir(in.Path); dir != "." {
			if t.err = root.MkdirAll(dir, 0o755); t.err != nil {
				return
			}
		}
		if t.err = w.materialize(parts, dst, fs.FileMode(in.Mode)&0o755|0o600); t.err != nil {
			t.err = fmt.Errorf("input %s: %w", in.Path, t.err)
			return
		}
	}
	if fetched > 0 { // what the cache did not hold
		if n := w.idx.evict(w.cache.Remove); n > 0 {
			w.cfg.Log.Info("cache trimmed", "evicted", n, "bytes", w.idx.usedBytes(), "limit", w.cfg.CacheBytes)
		}
		w.cfg.Log.Info("inputs downloaded", "job", first.Job, "frames", frameList(t.frames()), "bytes", inputBytes, "downloaded", fetched)
	}
	var deps []api.DepOutput
	for _, l := range t.leases { // a chunk's frames may share dependencies
		for _, d := range l.Deps {
			if !slices.Contains(deps, d) {
				deps = append(deps, d)
			}
		}
	}
	for _, d := range deps {
		w.pin(t, d.Output, d.Size)
		if t.err = w.object(t.ctx, d.Output); t.err != nil {
			t.err = fmt.Errorf("output of frame %d of job %d: %w", d.Frame, d.Job, t.err)
			return
		}
		if t.err = w.unpack(root, d, t); t.err != nil {
			t.err = fmt.Errorf("output of frame %d of job %d: %w", d.Frame, d.Job, t.err)
			return
		}
	}
	t.err = filepath.WalkDir(t.dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(t.dir, p)
		t.before[filepath.ToSlash(rel)] = fileStamp{info.Size(), info.ModTime()}
		return nil
	})
}

// scratch makes the task's scratch directory and, beside it, the
// renderer's private home: absolute paths, since the worker's directory is.
func (w *Worker) scratch(t *task) error {
	first := t.leases[0]
	t.dir = filepath.Join(w.scr, fmt.Sprintf("%d-%d-%d", first.Job, first.Frame, first.Epoch))
	t.home = t.dir + ".home"
	if err := os.Mkdir(t.dir, 0o755); err != nil {
		return err
	}
	return os.Mkdir(t.home, 0o700)
}

// pin marks a cached object as needed by t (and used now) until t is
// released, so that eviction leaves it alone. It is pinned before it is
// fetched: an object found in the cache cannot be evicted before it is used.
func (w *Worker) pin(t *task, hash string, size int64) {
	w.idx.use(hash, size)
	t.pinned = append(t.pinned, hash)
}

// materialize writes the concatenation of cached objects to dst, a file of
// its own: cloned where the file system has reflinks, copied in the kernel
// otherwise, never hard-linked, since renderers may write to their inputs
// (see store.materialize).
func (w *Worker) materialize(parts []api.ChunkRef, dst string, perm fs.FileMode) error {
	return w.cache.materialize(parts, dst, perm)
}

// unpack writes a dependency's output files into the scratch directory. The
// files are extracted from the cached tarball, so they share nothing with
// the cache.
func (w *Worker) unpack(root *os.Root, d api.DepOutput, t *task) error {
	p, err := w.cache.Path(d.Output)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	err = jobpkg.Scan(f, jobpkg.Limits{}, func(e jobpkg.File, c io.Reader) error {
		if dir := path.Dir(e.Path); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		out, err := root.OpenFile(e.Path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, e.Mode|0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, c)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err == nil && !slices.Contains(t.depFiles, e.Path) {
			t.depFiles = append(t.depFiles, e.Path)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("unpacking cached object %s: %w", d.Output, err)
	}
	return nil
}

// run renders a prepared task and reports the outcome of each of its frames.
//
// Results are sent in the background while the slot takes its next task:
// a report waits for the server to make the output durable, and a slot
// should be rendering meanwhile. In a chunk, each frame's result is sent as
// soon as the backend reports the frame done. The task's token (and so the
// claim window) is held until every report is done.
func (w *Worker) run(ctx context.Context, t *task) {
	log := w.cfg.Log.With("job", t.job(), "frames", frameList(t.frames()))
	err := t.err
	var took time.Duration
	var rest []string // files of a single frame whose backend did not report it
	if err == nil {
		rest, took, err = w.render(t)
		w.observe(took / time.Duration(len(t.leases)))
	}
	if t.ctx.Err() != nil && ctx.Err() == nil && err != nil && errors.Is(err, context.Canceled) {
		log.Info("task abandoned")
		t.pending.Wait()
		w.release(t)
		return
	}
	if ctx.Err() != nil {
		t.pending.Wait()
		w.release(t) // shutting down: the leases expire and the frames are rendered again
		return
	}
	jobErr := backend.IsJobError(err)
	var failed int64 = -1 // the frame of a chunk whose failure stopped it
	for _, l := range t.leases {
		w.mu.Lock()
		done := t.done[l.Frame]
		t.done[l.Frame] = true
		w.mu.Unlock()
		switch {
		case done:
		case err == nil && rest != nil:
			w.sendDone(ctx, t, l, rest, took)
		case err == nil:
			w.sendFail(ctx, t, l, api.Failure{Error: fmt.Sprintf("the renderer finished without reporting frame %d done", l.Frame)})
		case failed >= 0:
			// A chunk renders in order: the frames after the one that
			// failed were never attempted and go back to the queue.
			w.sendFail(ctx, t, l, api.Failure{NotRun: true, Error: fmt.Sprintf("not rendered: frame %d of its chunk failed first", failed)})
		default:
			if len(t.leases) > 1 {
				failed = l.Frame
			}
			w.sendFail(ctx, t, l, api.Failure{Error: err.Error(), JobError: jobErr})
		}
	}
	w.reports.Go(func() {
		t.pending.Wait()
		w.release(t)
	})
}

// sendDone uploads a frame's files and reports it complete, in the background.
func (w *Worker) sendDone(ctx context.Context, t *task, l api.Lease, files []string, took time.Duration) {
	log := w.cfg.Log.With("job", l.Job, "frame", l.Frame)
	t.pending.Add(1)
	w.reports.Go(func() {
		defer t.pending.Done()
		defer w.markSent(t, l.Frame)
		rctx, abort := context.WithCancelCause(ctx)
		defer abort(nil)
		w.mu.Lock()
		t.aborts[l.Frame] = abort
		w.mu.Unlock()
		rejected := w.report(rctx, log, func(c context.Context) error {
			dog, stop := watch(c, stallLimit)
			defer stop()
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(jobpkg.WriteFiles(pw, t.dir, files)) }()
			err := w.cfg.Client.Complete(dog.Context(), w.cfg.Name, ref(l), took, dog.Reader(pr), -1)
			pr.CloseWithError(errors.New("upload ended"))
			return explain(dog, err)
		})
		if rejected == nil {
			return
		}
		// An output the server will not take (too large, unsafe names) is
		// this attempt failing: reported, so the frame is retried or fails
		// rather than being leased again and again when its lease expires.
		f := api.Failure{Worker: w.cfg.Name, Epoch: l.Epoch, Error: fmt.Sprintf("the server refused the output: %v", rejected)}
		w.report(ctx, log, func(c context.Context) error {
			dog, stop := watch(c, stallLimit)
			defer stop()
			return explain(dog, w.cfg.Client.Fail(dog.Context(), ref(l), f))
		})
	})
}

// sendFail reports a frame's failed attempt (or, with f.NotRun, a frame
// given back unattempted), in the background.
func (w *Worker) sendFail(ctx context.Context, t *task, l api.Lease, f api.Failure) {
	log := w.cfg.Log.With("job", l.Job, "frame", l.Frame)
	if f.NotRun {
		log.Info("frame given back", "reason", f.Error)
	} else {
		log.Warn("frame failed", "err", f.Error)
	}
	f.Worker, f.Epoch = w.cfg.Name, l.Epoch
	t.pending.Add(1)
	w.reports.Go(func() {
		defer t.pending.Done()
		defer w.markSent(t, l.Frame)
		w.report(ctx, log, func(c context.Context) error {
			dog, stop := watch(c, stallLimit)
			defer stop()
			return explain(dog, w.cfg.Client.Fail(dog.Context(), ref(l), f))
		})
	})
}

// markSent records that a frame's report is over: its heartbeats stop.
func (w *Worker) markSent(t *task, frame int64) {
	w.mu.Lock()
	t.sent[frame] = true
	delete(t.aborts, frame)
	w.mu.Unlock()
}

// frameList writes frames compactly: "7" or "7-10".
func frameList(fs []int64) string {
	if len(fs) == 1 {
		return fmt.Sprint(fs[0])
	}
	return fmt.Sprintf("%d-%d", fs[0], fs[len(fs)-1])
}

// report sends a result, retrying while the server is unreachable; a refused
// lease (409) or a rejected report ends it. It returns the rejection (a 4xx
// other than 409), if that is how it ended.
func (w *Worker) report(ctx context.Context, log *slog.Logger, send func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := send(ctx)
		var ce *client.Error
		switch {
		case err == nil:
			return nil
		case client.IsStatus(err, http.StatusConflict):
			log.Info("result refused: lease no longer held", "err", err)
			return nil
		case errors.Is(context.Cause(ctx), errLeaseLost):
			log.Info("result refused: lease no longer held", "err", "the server answered a heartbeat that it no longer holds the lease; the upload is abandoned")
			return nil
		case errors.As(err, &ce) && ce.Status < 500:
			log.Error("result rejected", "err", err)
			return err
		case ctx.Err() != nil || attempt >= 20:
			log.Error("result not delivered", "err", err)
			return nil
		}
		log.Warn("reporting failed, retrying", "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// render runs the backend. Frames it reports done are sent at once; for a
// single frame it does not report, render returns the files the render
// created or changed that match the output globs.
func (w *Worker) render(t *task) ([]string, time.Duration, error) {
	m := t.spec.m
	first := t.leases[0]
	idx, ok := m.FrameIndex(first.Frame)
	if !ok {
		return nil, 0, fmt.Errorf("frame %d is not in job %d's manifest", first.Frame, first.Job)
	}
	spec := &m.Backend
	if b := m.Frames[idx].Backend; b != nil {
		spec = b
	}
	be, ok := w.cfg.Backends[spec.Name]
	if !ok {
		return nil, 0, fmt.Errorf("backend %q is not available on worker %s", spec.Name, w.cfg.Name)
	}
	ctx := t.ctx
	if m.Timeout > 0 {
		var cancel context.CancelFunc
		limit := m.Timeout * time.Duration(len(t.leases))
		ctx, cancel = context.WithTimeoutCause(ctx, limit, errTimeout)
		defer cancel()
	}
	tail := &tailBuffer{max: 4 << 10}
	start := time.Now()
	ev := &events{w: w, t: t, ctx: t.ctx, globs: m.Outputs, last: start}
	task := &backend.Task{Job: first.Job, Frames: t.frames(), Dir: t.dir, Home: t.home, Spec: spec, DepFiles: t.depFiles,
		Stderr: tail, Events: ev}
	err := be.Render(ctx, task)
	took := time.Since(start)
	if err != nil {
		if errors.Is(context.Cause(ctx), errTimeout) {
			err = fmt.Errorf("timed out after %s (the job's <timeout> per frame); renderer killed", m.Timeout*time.Duration(len(t.leases)))
		}
		return nil, took, withTail(err, tail)
	}
	if len(t.leases) > 1 || ev.reported {
		if ev.bad != nil {
			return nil, took, withTail(ev.bad, tail)
		}
		return nil, took, nil
	}
	out, err := collect(t.dir, m.Outputs, t.before)
	if err != nil {
		return nil, took, withTail(err, tail)
	}
	return out, took, nil
}

// events passes a backend's reports on: progress to the heartbeats, finished
// frames to the server.
type events struct {
	w        *Worker
	t        *task
	ctx      context.Context
	globs    []string
	last     time.Time // when the previous frame finished
	reported bool
	bad      error // a reported frame whose files could not be taken
}

func (e *events) Progress(frame int64, p float64) {
	e.w.mu.Lock()
	e.t.progress[frame] = min(max(p, 0), 1)
	e.w.mu.Unlock()
}

func (e *events) FrameDone(frame int64, files []string) {
	e.reported = true
	l, ok := e.t.lease(frame)
	if !ok {
		return
	}
	now := time.Now()
	took := now.Sub(e.last)
	e.last = now
	out, err := checkOutputs(e.t.dir, files, e.globs)
	if err != nil {
		e.bad = fmt.Errorf("frame %d: %w", frame, err)
		return
	}
	e.w.mu.Lock()
	if e.t.done[frame] {
		e.w.mu.Unlock()
		return
	}
	e.t.done[frame] = true
	e.t.progress[frame] = 1
	e.w.mu.Unlock()
	e.w.sendDone(e.ctx, e.t, l, out, took)
}

// checkOutputs keeps the reported files that match the output globs; they
// must be regular files inside dir.
func checkOutputs(dir string, files, globs []string) ([]string, error) {
	var out []string
	for _, f := range files {
		f = filepath.ToSlash(filepath.Clean(f))
		if !filepath.IsLocal(f) {
			return nil, fmt.Errorf("output %s is outside the scratch directory", f)
		}
		if !matchAny(globs, f) {
			continue
		}
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", f, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("output %s is not a regular file (%s)", f, fi.Mode().Type())
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no output matches %s (the renderer wrote %s)", strings.Join(globs, " "), strings.Join(files, ", "))
	}
	return out, nil
}

func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

var errTimeout = errors.New("frame timeout")

// withTail adds the end of the renderer's output to a failure. The
// message's first line — what `distren status` shows — carries the
// renderer's own error line (backend.ErrorLine) unless it already does;
// the tail follows on the next lines.
func withTail(err error, tail *tailBuffer) error {
	s := strings.TrimSpace(tail.String())
	if s == "" {
		return err
	}
	first, _, _ := strings.Cut(err.Error(), "\n")
	if line := backend.ErrorLine(s); line != "" && !strings.Contains(first, line) {
		return fmt.Errorf("%w: %s\nrenderer output ends with:\n%s", err, line, s)
	}
	return fmt.Errorf("%w\nrenderer output ends with:\n%s", err, s)
}

// collect returns the files under dir matching the globs that the render
// produced or changed, sorted. Symbolic links and special files are refused.
func collect(dir string, globs []string, before map[string]fileStamp) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if !matchAny(globs, rel) {
			return nil
		}
		if !de.Type().IsRegular() {
			return fmt.Errorf("output %s is not a regular file (%s)", rel, de.Type())
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		if b, ok := before[rel]; ok && b.size == info.Size() && b.mtime.Equal(info.ModTime()) {
			return nil // an input or a dependency's output, untouched
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no output matches %s", strings.Join(globs, " "))
	}
	return out, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// SetClient sets the server the worker talks to, before Run.
func (w *Worker) SetClient(c *client.Client) { w.cfg.Client = c }
