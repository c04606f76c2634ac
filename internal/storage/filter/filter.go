// Package filter owns the vault's filter pipeline: a storage.Module that
// passes every object through a configured chain of filters — zstd
// compression (Zstd), AES-256-GCM encryption with a key file (AESGCM), an
// external program (Command) — before storing it on another module, and
// undoes them when the object is read back.
//
// # Stored form
//
// Objects are stored in the storage object format (storage.Encode): the
// header lists the filters actually applied, in order, the plain length and
// the payload's SHA-256. A filter may decline an object — zstd does for data
// it cannot shrink by at least 1/64, which is then stored as is — and is then
// not listed, so the header always says exactly what was done. Get verifies
// the checksum, undoes the listed filters in reverse order and checks the
// plain length: a damaged object fails with storage.ErrCorrupt, an object
// encrypted with another key with ErrWrongKey, never with wrong bytes. Any
// module decodes zstd, so turning compression off leaves old objects
// readable. Stat and List report plain sizes — what Get returns — read from
// the objects' headers, not the stored sizes.
//
// # Pipeline and durability
//
// Filters run in background workers (Options.Workers) fed by a bounded
// queue (Options.Queue objects and Options.QueueBytes bytes, counting the
// objects being written); a writer blocks while the queue is full. Objects
// enter it in one of two ways:
//
//   - Put keeps the storage.Module contract: it returns once the object is
//     written whole and durable on the module below, so a caller may record
//     the object as stored as soon as Put returns, as with any module. Its
//     caller waits, but many concurrent Puts share the workers, which bound
//     the CPU the filters use.
//   - Enqueue is write-behind, for a caller that feeds many objects from one
//     goroutine: it returns once the object is queued. Such an object is NOT
//     durable when Enqueue returns; it is once a later Sync or Close returns
//     without naming it among its failures. Never record it as stored
//     before.
//
// Either way, reads never see an object before it is durable: a Get, Stat
// or List that meets an object still in the pipeline waits for its write
// and then reads what was stored — the final content. When a write fails,
// the Put that made it returns the error; the error of a failed Enqueue'd
// write is returned by the next Sync or Close, and by a Get or Stat of the
// name (waiting or later, wrapping storage.ErrNotFound) until the name is
// put or deleted again. Errors name the object.
//
// Nothing half-written is ever visible below: an object reaches the module
// below in one Put of its whole stored form, which that module makes visible
// only when durable. After a crash, the objects still queued were never
// written, and the one being written is a partial write below that its
// module never takes for done (the filesystem module clears them at start):
// that work is discarded, and redone by whoever has the bytes — the vault
// uploads what a side is missing, so an interrupted upload resends them. Close stops accepting objects and drains the queue; if its context
// ends first, the unwritten objects are discarded and named in its error.
package filter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/distren/distren/internal/storage"
)

// Filter transforms objects on their way to storage and back. Filters are
// safe for concurrent use.
type Filter interface {
	// ID is recorded in the header of every object the filter was applied
	// to; it selects the filter that decodes the object.
	ID() storage.Filter
	// Encode returns in transformed, for the object called name. It neither
	// modifies nor keeps in. It returns applied false to have in stored as
	// is (zstd does for data it cannot shrink); the filter is then not
	// listed in the object's header.
	Encode(ctx context.Context, name string, in []byte) (out []byte, applied bool, err error)
	// Decode undoes Encode for the object called name.
	Decode(ctx context.Context, name string, in []byte) ([]byte, error)
}

// Options configure a Module. Zero values select the defaults.
type Options struct {
	// Workers is how many objects are filtered and written at once
	// (default 2).
	Workers int
	// Queue is how many objects may be queued or being written (default
	// 64); Put and Enqueue block while it is full.
	Queue int
	// QueueBytes bounds the plain bytes queued or being written (default
	// 128 MiB). An object larger than that is admitted when the queue is
	// empty.
	QueueBytes int64
	// MaxObjectSize is the largest plain object accepted, and read back
	// (default 64 MiB): the pipeline holds whole objects in memory.
	MaxObjectSize int64
}

func (o *Options) defaults() {
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.Queue <= 0 {
		o.Queue = 64
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = 128 << 20
	}
	if o.MaxObjectSize <= 0 {
		o.MaxObjectSize = 64 << 20
	}
}

// ErrClosed is returned by writes to a closed Module.
var ErrClosed = errors.New("filter pipeline is closed")

// Module is a storage.Module that filters objects on their way to another
// module, in background workers; see the package comment for its contract.
// Close it to drain its queue.
type Module struct {
	under    storage.Module
	chain    []Filter
	decoders map[storage.Filter]Filter
	opt      Options
	desc     string

	ctx     context.Context // of background writes; canceled when Close gives up
	cancel  context.CancelFunc
	work    chan *entry
	quit    chan struct{}
	quitted sync.Once
	workers sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	pending  map[string]*entry   // the latest write of each name: in flight, or a failed Enqueue
	inflight map[*entry]struct{} // writes not yet done
	seq      uint64              // of the last entry accepted
	failures []failure           // failed Enqueue'd writes not yet reported by Sync or Close
	queued   int                 // objects admitted and not yet released by a worker
	qbytes   int64               // their plain bytes
	space    chan struct{}       // closed when queue space frees up, or on Close
}

type failure struct {
	seq uint64
	err error
}

type state int

const (
	queued state = iota
	running
	done
)

// entry is one write in the pipeline.
type entry struct {
	name  string
	size  int64
	async bool // Enqueue'd
	seq   uint64
	ctx   context.Context
	stop  func() // releases ctx
	done  chan struct{}

	sum *[32]byte // the plain content's SHA-256, if the writer knew it

	// Guarded by Module.mu; err is read without it once done is closed.
	plain []byte
	prev  *entry // an earlier write of the same name, which must land first
	state state
	err   error // naming the object
	cause error // of a failed Enqueue'd write: err unadorned
}

// New returns a Module storing on under through chain, applied in order
// when writing and undone in reverse when reading, and starts its workers.
// A chain lists at most 8 filters, each ID at most once.
func New(under storage.Module, chain []Filter, opt Options) (*Module, error) {
	opt.defaults()
	if len(chain) > storage.MaxFilters {
		return nil, fmt.Errorf("filter chain for %s: %d filters, at most %d", under, len(chain), storage.MaxFilters)
	}
	m := &Module{
		under:    under,
		chain:    chain,
		decoders: map[storage.Filter]Filter{},
		opt:      opt,
		work:     make(chan *entry, opt.Queue),
		quit:     make(chan struct{}),
		pending:  map[string]*entry{},
		inflight: map[*entry]struct{}{},
		space:    make(chan struct{}),
	}
	var names []string
	for _, f := range chain {
		if m.decoders[f.ID()] != nil {
			return nil, fmt.Errorf("filter chain for %s lists %s twice", under, f.ID())
		}
		m.decoders[f.ID()] = f
		names = append(names, f.ID().String())
	}
	if m.decoders[storage.FilterZstd] == nil {
		z, err := sharedZstd()
		if err != nil {
			return nil, err
		}
		m.decoders[storage.FilterZstd] = z
	}
	if len(names) == 0 {
		names = []string{"none"}
	}
	m.desc = fmt.Sprintf("%s (filters: %s)", under, strings.Join(names, ", "))
	m.ctx, m.cancel = context.WithCancel(context.Background())
	for range opt.Workers {
		m.workers.Go(m.worker)
	}
	return m, nil
}

// String names the module below and the filters.
func (m *Module) String() string { return m.desc }

// objectError names the object an error is about.
type objectError struct {
	op, name, module string
	err              error
}

func (e *objectError) Error() string {
	return fmt.Sprintf("%s object %s on %s: %v", e.op, e.name, e.module, e.err)
}

func (e *objectError) Unwrap() error { return e.err }

// wrap names the object in err, unless err does already (errors from the
// module below do, by contract).
func (m *Module) wrap(op, name string, err error) error {
	if err == nil || strings.Contains(err.Error(), name) {
		return err
	}
	return &objectError{op: op, name: name, module: m.desc, err: err}
}

func (m *Module) check(ctx context.Context, op, name string) error {
	if !storage.ValidName(name) {
		return m.wrap(op, fmt.Sprintf("%q", name), fmt.Errorf("%w (want lower-case letters, digits, '.', '_', '-', parts separated by '/')", storage.ErrInvalidName))
	}
	return m.wrap(op, name, ctx.Err())
}

// Put implements storage.Module: it returns once the object is durable
// below, or has failed.
func (m *Module) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	e, err := m.accept(ctx, name, r, size, false)
	if err != nil {
		return err
	}
	return m.await(ctx, e)
}

// await waits for a Put's write.
func (m *Module) await(ctx context.Context, e *entry) error {
	select {
	case <-e.done:
	case <-ctx.Done():
		m.mu.Lock()
		if e.state == queued {
			m.finishLocked(e, ctx.Err())
		}
		m.mu.Unlock()
		<-e.done // a running write ends with its context
	}
	return e.err
}

// Enqueue reads the object and queues it, returning before it is written:
// the object is durable only once a later Sync or Close returns without
// reporting it. It blocks while the queue is full. Reads of the name wait
// for the write.
func (m *Module) Enqueue(ctx context.Context, name string, r io.Reader, size int64) error {
	_, err := m.accept(ctx, name, r, size, true)
	return err
}

// PutContent is Put of an object held in memory whose SHA-256 the caller
// has computed: plain is not copied (nor kept after PutContent returns),
// and when no filter applies the checksum is not computed again.
func (m *Module) PutContent(ctx context.Context, name string, plain []byte, sum [32]byte) error {
	if err := m.check(ctx, "put", name); err != nil {
		return err
	}
	n := int64(len(plain))
	if err := m.fits("put", name, n); err != nil {
		return err
	}
	if err := m.admit(ctx, n); err != nil {
		return m.wrap("put", name, err)
	}
	e := &entry{name: name, size: n, plain: plain, sum: &sum, done: make(chan struct{})}
	if err := m.queue(ctx, e); err != nil {
		return err
	}
	return m.await(ctx, e)
}

// fits refuses an object larger than the pipeline holds in memory.
func (m *Module) fits(op, name string, size int64) error {
	if size > m.opt.MaxObjectSize {
		return m.wrap(op, name, fmt.Errorf("object is %d bytes, over the filter pipeline's limit of %d", size, m.opt.MaxObjectSize))
	}
	return nil
}

// accept reads an object and queues its write.
func (m *Module) accept(ctx context.Context, name string, r io.Reader, size int64, async bool) (*entry, error) {
	if err := m.check(ctx, "put", name); err != nil {
		return nil, err
	}
	if err := m.fits("put", name, size); err != nil {
		return nil, err
	}
	admitted := int64(-1)
	if size >= 0 { // bound memory before reading
		if err := m.admit(ctx, size); err != nil {
			return nil, m.wrap("put", name, err)
		}
		admitted = size
	}
	plain, err := readAll(ctx, r, size, m.opt.MaxObjectSize)
	if err == nil && admitted < 0 {
		if err = m.admit(ctx, int64(len(plain))); err == nil {
			admitted = int64(len(plain))
		}
	}
	if err != nil {
		if admitted >= 0 {
			m.release(admitted)
		}
		return nil, m.wrap("put", name, err)
	}
	e := &entry{name: name, size: admitted, async: async, plain: plain, done: make(chan struct{})}
	return e, m.queue(ctx, e)
}

// queue queues the write of an admitted entry.
func (m *Module) queue(ctx context.Context, e *entry) error {
	var cancel context.CancelFunc
	if e.async {
		e.ctx, cancel = context.WithCancel(m.ctx)
		e.stop = cancel
	} else {
		// The caller's context, and Close giving up, end the write.
		e.ctx, cancel = context.WithCancel(ctx)
		unhook := context.AfterFunc(m.ctx, cancel)
		e.stop = func() { unhook(); cancel() }
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		e.stop()
		m.releaseLocked(e.size)
		return m.wrap("put", e.name, ErrClosed)
	}
	m.seq++
	e.seq = m.seq
	e.prev = m.pending[e.name]
	m.pending[e.name] = e
	m.inflight[e] = struct{}{}
	m.work <- e // never blocks: the queue holds at most opt.Queue admitted objects
	return nil
}

// readAll reads exactly size bytes (size -1: until EOF) from r.
func readAll(ctx context.Context, r io.Reader, size, max int64) ([]byte, error) {
	cr := storage.ContextReader(ctx, r)
	if size < 0 {
		b, err := io.ReadAll(io.LimitReader(cr, max+1))
		if err == nil && int64(len(b)) > max {
			err = fmt.Errorf("object is over the filter pipeline's limit of %d bytes", max)
		}
		return b, err
	}
	b := make([]byte, size)
	if n, err := io.ReadFull(cr, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("got %d bytes, want %d: %w", n, size, io.ErrUnexpectedEOF)
		}
		return nil, err
	}
	var one [1]byte
	switch n, err := io.ReadFull(cr, one[:]); {
	case n > 0:
		return nil, fmt.Errorf("got more than the %d bytes announced", size)
	case err != io.EOF:
		return nil, err
	}
	return b, nil
}

// admit takes queue space for n bytes, waiting for it.
func (m *Module) admit(ctx context.Context, n int64) error {
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return ErrClosed
		}
		if m.queued == 0 || (m.queued < m.opt.Queue && m.qbytes+n <= m.opt.QueueBytes) {
			m.queued++
			m.qbytes += n
			m.mu.Unlock()
			return nil
		}
		space := m.space
		m.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (m *Module) release(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.releaseLocked(n)
}

func (m *Module) releaseLocked(n int64) {
	m.queued--
	m.qbytes -= n
	m.wakeLocked()
}

func (m *Module) wakeLocked() {
	close(m.space)
	m.space = make(chan struct{})
}

func (m *Module) worker() {
	for {
		select {
		case e := <-m.work:
			m.run(e)
			m.release(e.size)
		case <-m.quit:
			return
		}
	}
}

// run filters and writes one object.
func (m *Module) run(e *entry) {
	m.mu.Lock()
	if e.state != queued { // canceled while queued
		m.mu.Unlock()
		return
	}
	e.state = running
	prev, plain, sum := e.prev, e.plain, e.sum
	m.mu.Unlock()

	var err error
	if prev != nil { // an earlier write of the name lands first: the later one wins
		select {
		case <-prev.done:
		case <-e.ctx.Done():
		}
	}
	if err = e.ctx.Err(); err == nil {
		var obj []byte
		if obj, err = m.encode(e.ctx, e.name, plain, sum); err == nil {
			err = m.under.Put(e.ctx, e.name, bytes.NewReader(obj), int64(len(obj)))
		}
	}
	if err != nil && e.async && m.ctx.Err() != nil {
		err = fmt.Errorf("discarded unwritten when the pipeline closed: %w", err)
	}
	m.mu.Lock()
	m.finishLocked(e, err)
	m.mu.Unlock()
}

// encode runs the chain and returns the object to store. sum, if not nil,
// is plain's SHA-256: the checksum when no filter applies.
func (m *Module) encode(ctx context.Context, name string, plain []byte, sum *[32]byte) ([]byte, error) {
	data := plain
	var applied []storage.Filter
	for _, f := range m.chain {
		out, ok, err := f.Encode(ctx, name, data)
		if err != nil {
			return nil, fmt.Errorf("filter %s: %w", f.ID(), err)
		}
		if ok {
			data = out
			applied = append(applied, f.ID())
		}
	}
	if len(applied) == 0 && sum != nil {
		h := storage.Header{Plain: int64(len(plain)), Stored: int64(len(plain)), Checksum: *sum}
		return append(h.Encode(), plain...), nil
	}
	return storage.Encode(applied, int64(len(plain)), data), nil
}

func (m *Module) finishLocked(e *entry, err error) {
	if e.state == done {
		return
	}
	e.state = done
	if err != nil && e.async {
		e.cause = err
		e.err = &objectError{op: "put", name: e.name, module: m.desc, err: fmt.Errorf("background write failed: %w", err)}
	} else if err != nil {
		e.err = m.wrap("put", e.name, err)
	}
	e.plain, e.prev = nil, nil
	e.stop()
	close(e.done)
	delete(m.inflight, e)
	if m.pending[e.name] == e && (err == nil || !e.async) {
		delete(m.pending, e.name)
	}
	if e.async && err != nil {
		m.failures = append(m.failures, failure{e.seq, e.err})
	}
}

// wait waits for the write of name in the pipeline, if any, and returns
// it.
func (m *Module) wait(ctx context.Context, name string) (*entry, error) {
	m.mu.Lock()
	e := m.pending[name]
	m.mu.Unlock()
	if e == nil {
		return nil, nil
	}
	select {
	case <-e.done:
		return e, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// waitRead waits for the write of name in the pipeline, if any: nil when
// the read may go to the module below.
func (m *Module) waitRead(ctx context.Context, op, name string) (*entry, error) {
	e, err := m.wait(ctx, name)
	if err != nil {
		return nil, m.wrap(op, name, fmt.Errorf("waiting for its write: %w", err))
	}
	if e != nil && e.err != nil && e.async {
		return nil, &objectError{op: op, name: name, module: m.desc, err: fmt.Errorf("%w: its background write failed: %w", storage.ErrNotFound, e.cause)}
	}
	return e, nil
}

// Get implements storage.Module. It returns the plain content.
func (m *Module) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	plain, _, _, err := m.GetContent(ctx, name)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(storage.ContextReader(ctx, bytes.NewReader(plain))), nil
}

// GetRange implements storage.Module: a range of the plain content. The
// object is decoded whole (a filtered object cannot be read in part).
func (m *Module) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if off < 0 || length < 0 {
		return nil, m.wrap("get", name, fmt.Errorf("invalid range: offset %d, length %d", off, length))
	}
	plain, _, _, err := m.GetContent(ctx, name)
	if err != nil {
		return nil, err
	}
	off = min(off, int64(len(plain)))
	plain = plain[off : off+min(length, int64(len(plain))-off)]
	return io.NopCloser(storage.ContextReader(ctx, bytes.NewReader(plain))), nil
}

// GetContent returns an object's plain content like Get, without a reader
// around it, and its SHA-256 when that is known for free: when no filter
// was applied, the header's checksum — verified — is the content's.
func (m *Module) GetContent(ctx context.Context, name string) (plain []byte, sum [32]byte, known bool, err error) {
	if err := m.check(ctx, "get", name); err != nil {
		return nil, sum, false, err
	}
	if _, err := m.waitRead(ctx, "get", name); err != nil {
		return nil, sum, false, err
	}
	rc, err := m.under.Get(ctx, name)
	if err != nil {
		return nil, sum, false, m.wrap("get", name, err)
	}
	defer rc.Close()
	data, h, err := m.decode(ctx, name, rc)
	if err != nil {
		return nil, sum, false, m.wrap("get", name, err)
	}
	return data, h.Checksum, len(h.Filters) == 0, nil
}

// decode reads an object in its stored form from r, verifies it and undoes
// its filters.
func (m *Module) decode(ctx context.Context, name string, r io.Reader) ([]byte, storage.Header, error) {
	h, err := storage.ReadHeader(r)
	if err != nil {
		return nil, h, err
	}
	if h.Plain > m.opt.MaxObjectSize || h.Stored > 2*m.opt.MaxObjectSize+1<<20 {
		return nil, h, fmt.Errorf("object is %d bytes (%d stored), over the filter pipeline's limit of %d", h.Plain, h.Stored, m.opt.MaxObjectSize)
	}
	payload := make([]byte, h.Stored)
	pr := storage.PayloadReader(r, h)
	if _, err := io.ReadFull(pr, payload); err != nil {
		return nil, h, err
	}
	var one [1]byte
	if _, err := pr.Read(one[:]); err != io.EOF { // checks length and checksum
		return nil, h, err
	}
	data := payload
	for i := len(h.Filters) - 1; i >= 0; i-- {
		id := h.Filters[i]
		f := m.decoders[id]
		if f == nil {
			return nil, h, fmt.Errorf("object was written with filter %s, which this pipeline is not configured with", id)
		}
		if data, err = f.Decode(ctx, name, data); err != nil {
			return nil, h, fmt.Errorf("undoing filter %s: %w", id, err)
		}
	}
	if int64(len(data)) != h.Plain {
		return nil, h, fmt.Errorf("%w: filters %v gave %d bytes, header says %d", storage.ErrCorrupt, h.Filters, len(data), h.Plain)
	}
	return data, h, nil
}

// Seal returns an object's stored form — header and filtered payload, what
// Put would store — for a caller that keeps it elsewhere than on the module
// below (the vault's pack files). It runs in the caller's goroutine.
func (m *Module) Seal(ctx context.Context, name string, plain []byte) ([]byte, error) {
	if err := m.fits("seal", name, int64(len(plain))); err != nil {
		return nil, err
	}
	b, err := m.encode(ctx, name, plain, nil)
	return b, m.wrap("seal", name, err)
}

// Unseal verifies a stored form made by Seal (or read from the module
// below) and returns the object's plain content.
func (m *Module) Unseal(ctx context.Context, name string, stored []byte) ([]byte, error) {
	b, _, err := m.decode(ctx, name, bytes.NewReader(stored))
	return b, m.wrap("unseal", name, err)
}

// header reads an object's header.
func (m *Module) header(ctx context.Context, name string) (storage.Header, error) {
	rc, err := m.under.Get(ctx, name)
	if err != nil {
		return storage.Header{}, err
	}
	defer rc.Close()
	h, err := storage.ReadHeader(rc)
	return h, m.wrap("stat", name, err)
}

// Stat implements storage.Module. Info.Size is the plain size, what Get
// returns, read from the object's header.
func (m *Module) Stat(ctx context.Context, name string) (storage.Info, error) {
	if err := m.check(ctx, "stat", name); err != nil {
		return storage.Info{}, err
	}
	e, err := m.waitRead(ctx, "stat", name)
	if err != nil {
		return storage.Info{}, err
	}
	if e != nil && e.err == nil {
		return storage.Info{Name: name, Size: e.size}, nil
	}
	h, err := m.header(ctx, name)
	if err != nil {
		return storage.Info{}, err
	}
	return storage.Info{Name: name, Size: h.Plain}, nil
}

// List implements storage.Module. It first waits for the writes in the
// pipeline under prefix, then reads every object's header for its plain
// size: one Get per object on the module below. An object whose header is
// damaged stops the listing with storage.ErrCorrupt, naming it.
func (m *Module) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("listing %q on %s: %w", prefix, m, err)
	}
	m.mu.Lock()
	var writes []*entry
	for e := range m.inflight {
		if strings.HasPrefix(e.name, prefix) {
			writes = append(writes, e)
		}
	}
	m.mu.Unlock()
	for _, e := range writes {
		select {
		case <-e.done:
		case <-ctx.Done():
			return fmt.Errorf("listing %q on %s: waiting for %s to be written: %w", prefix, m, e.name, ctx.Err())
		}
	}
	return m.under.List(ctx, prefix, func(i storage.Info) error {
		h, err := m.header(ctx, i.Name)
		if errors.Is(err, storage.ErrNotFound) {
			return nil // deleted meanwhile
		} else if err != nil {
			return err
		}
		return fn(storage.Info{Name: i.Name, Size: h.Plain})
	})
}

// Delete implements storage.Module. A write of the name in the pipeline
// lands first, then is deleted.
func (m *Module) Delete(ctx context.Context, name string) error {
	if err := m.check(ctx, "delete", name); err != nil {
		return err
	}
	e, err := m.wait(ctx, name)
	if err != nil {
		return m.wrap("delete", name, fmt.Errorf("waiting for its write: %w", err))
	}
	if err := m.under.Delete(ctx, name); err != nil {
		return m.wrap("delete", name, err)
	}
	if e != nil {
		m.mu.Lock()
		if m.pending[name] == e { // a failed Enqueue: forget it
			delete(m.pending, name)
		}
		m.mu.Unlock()
	}
	return nil
}

// Sync waits until every object accepted before it was called is written
// and durable, or has failed, and returns the failures of Enqueue'd objects
// not yet reported (each reported once, by Sync or Close), naming them.
func (m *Module) Sync(ctx context.Context) error {
	m.mu.Lock()
	upto := m.seq
	m.mu.Unlock()
	if err := m.drain(ctx, upto); err != nil {
		return fmt.Errorf("sync %s: %w", m, err)
	}
	return m.takeFailures(upto)
}

// drain waits for the writes accepted up to seq upto.
func (m *Module) drain(ctx context.Context, upto uint64) error {
	m.mu.Lock()
	var writes []*entry
	for e := range m.inflight {
		if e.seq <= upto {
			writes = append(writes, e)
		}
	}
	m.mu.Unlock()
	for i, e := range writes {
		select {
		case <-e.done:
		case <-ctx.Done():
			return fmt.Errorf("%d objects still being written: %w", len(writes)-i, ctx.Err())
		}
	}
	return nil
}

func (m *Module) takeFailures(upto uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	kept := m.failures[:0]
	for _, f := range m.failures {
		if f.seq <= upto {
			errs = append(errs, f.err)
		} else {
			kept = append(kept, f)
		}
	}
	m.failures = kept
	return errors.Join(errs...)
}

// Close stops accepting objects, drains the queue and stops the workers.
// If ctx ends first, the writes still in the pipeline are canceled and
// their objects discarded: nothing of them is visible below. It returns the
// failures of Enqueue'd objects not yet reported by Sync, naming them, and
// those discarded. Close does not close the filters: their owner does.
// Closing twice is harmless.
func (m *Module) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	m.wakeLocked() // writers waiting for queue space fail with ErrClosed
	m.mu.Unlock()
	var errs []error
	if err := m.drain(ctx, ^uint64(0)); err != nil {
		errs = append(errs, fmt.Errorf("closing %s: %w; discarding them", m, err))
		m.cancel()
		m.drain(context.Background(), ^uint64(0))
	}
	m.quitted.Do(func() { close(m.quit) })
	m.workers.Wait()
	m.cancel()
	if err := m.takeFailures(^uint64(0)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
