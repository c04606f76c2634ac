// Package worker owns the execution of frames: a worker fingerprints its
// backends, claims tasks — a frame, or a chunk of consecutive frames — from a
// server (long-polling), prepares each in a scratch directory of its own
// (the job's inputs, cloned or copied from its own cache of plain object
// files, and the outputs of the frames it depends on; a server that holds
// the objects in the worker's own process, a LocalObjects, has them copied
// straight from its store, with no cache), runs the backend with
// the job's timeout, packs each frame's files into its output tarball and
// uploads it as soon as the frame is done, and empties the scratch
// directory for a later task (scratch.go). While slots render, the next
// claimed tasks' inputs are already being fetched.
//
// The worker knows its server only as a Server (server.go), whose outcomes
// are sentinel errors, not transport statuses. The rest is split by
// concern: claim.go (the claim loop, its backoff and window), leases.go
// (heartbeats, leases lost or canceled), prepare.go (spec, inputs and
// dependency outputs into the scratch directory, through the cache or from
// the server's own store),
// render.go (running the backend) and report.go (collecting the outputs,
// uploading them, reporting failures).
package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/backend"
	"github.com/distren/distren/internal/dirlock"
	"github.com/distren/distren/internal/manifest"
)

// Config configures a worker.
type Config struct {
	Server Server // the server the worker renders for
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
	scr     string         // the scratch area: the scratch directories of the tasks in hand
	spare   *spares        // emptied scratch directories, for the next tasks

	mu     sync.Mutex
	held   map[api.LeaseRef]*task
	specs  map[jobKey]*jobSpec
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
	started  bool                              // a slot has taken it
	progress map[int64]float64                 // frame → fraction done
	done     map[int64]bool                    // frames whose result is sent or being sent
	sent     map[int64]bool                    // frames whose result has been sent (or given up)
	aborts   map[int64]context.CancelCauseFunc // frames whose result is being sent: ends the upload
	pending  sync.WaitGroup                    // results being sent
}

// jobKey names a job among those a worker renders: a job of its server's
// own (server ""), or of a peer that lent the frames.
type jobKey struct {
	server string
	id     int64
}

func (k jobKey) String() string {
	if k.server == "" {
		return strconv.FormatInt(k.id, 10)
	}
	return k.server + "/" + strconv.FormatInt(k.id, 10)
}

func (t *task) job() jobKey { return jobKey{t.leases[0].Server, t.leases[0].Job} }

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
	if strings.Contains(cfg.Name, "/") {
		return nil, fmt.Errorf("worker name %q: a slash marks a peer server's worker (SERVER/WORKER); give a name without one", cfg.Name)
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
	scr, spare := filepath.Join(cfg.Dir, "scratch"), filepath.Join(cfg.Dir, "spare")
	for _, d := range []string{scr, spare} {
		if err := forceRemoveAll(d); err != nil { // leftovers of an earlier run
			return fail(fmt.Errorf("worker scratch: %w", err))
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fail(fmt.Errorf("worker scratch: %w", err))
		}
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	idx := newCacheIndex(cfg.CacheBytes)
	if err := idx.load(filepath.Join(cfg.Dir, "cache", "objects")); err != nil {
		return fail(fmt.Errorf("worker cache: %w", err))
	}
	return &Worker{cfg: cfg, cache: cache, scr: scr, spare: &spares{dir: spare, max: cfg.Slots + maxAhead}, unlock: unlock, idx: idx, held: map[api.LeaseRef]*task{}, specs: map[jobKey]*jobSpec{},
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
	if w.localObjects() != nil {
		w.dropCache()
	}
	w.fingerprint(ctx)
	claimed := make(chan *task, cap(w.tokens))
	prepared := make(chan *task, w.maxAhead)
	var wg sync.WaitGroup
	wg.Go(func() { w.heartbeats(ctx, stop) })
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
					w.mu.Lock()
					t.started = true
					w.mu.Unlock()
					w.run(ctx, t)
				case <-ctx.Done():
					return
				}
			}
		})
	}
	err := w.claimLoop(ctx, claimed)
	if cause := context.Cause(ctx); err == nil && errors.Is(cause, ErrDenied) {
		err = cause // a heartbeat was refused the worker's credential
	}
	stop(err)
	wg.Wait()
	w.reports.Wait()
	if cerr := w.spare.clear(); cerr != nil {
		w.cfg.Log.Warn("spare scratch directories not removed", "err", cerr)
	}
	return err
}

// dropCache removes the objects an earlier run left in the cache, for a
// worker whose server holds the objects itself: it reads them there, and
// caches nothing.
func (w *Worker) dropCache() {
	n := w.idx.usedBytes()
	if n == 0 {
		return
	}
	if err := os.RemoveAll(w.cache.objects); err != nil {
		w.cfg.Log.Warn("object cache not removed", "err", err)
		return
	}
	w.idx = newCacheIndex(w.cfg.CacheBytes)
	w.cfg.Log.Info("object cache removed: the server's objects are read where it stores them", "bytes", n)
}

// SetServer sets the server the worker talks to, before Run.
func (w *Worker) SetServer(s Server) { w.cfg.Server = s }
