package storagetest

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/distren/distren/internal/storage"
)

// Fault is a fault Faulty injects.
type Fault struct {
	Op   string // "put", "get", "getrange", "stat", "list" or "delete"
	Call int    // fires on this call of Op (1-based); 0: on every call
	// After, for put and get, lets this many bytes through first: a short
	// write or a read that breaks mid-stream.
	After int64
	Stall bool  // blocks until the operation's context ends
	Err   error // returned (when not stalling)
}

// Faulty is a module that injects faults into another. Faults are matched
// by operation and call number; calls are counted per operation.
type Faulty struct {
	storage.Module

	mu     sync.Mutex
	faults []Fault
	calls  map[string]int
}

// NewFaulty wraps m.
func NewFaulty(m storage.Module) *Faulty { return &Faulty{Module: m, calls: map[string]int{}} }

// Inject adds faults.
func (f *Faulty) Inject(faults ...Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, faults...)
}

// Clear removes every fault: the module works again.
func (f *Faulty) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = nil
}

// Calls returns how many times op was called.
func (f *Faulty) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *Faulty) String() string { return "faulty " + f.Module.String() }

// next counts a call and returns the fault that applies to it, if any.
func (f *Faulty) next(op string) *Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	for i := range f.faults {
		if ft := &f.faults[i]; ft.Op == op && (ft.Call == 0 || ft.Call == f.calls[op]) {
			return ft
		}
	}
	return nil
}

// fail stalls or returns the fault's error.
func (ft *Fault) fail(ctx context.Context) error {
	if ft.Stall {
		<-ctx.Done()
		return ctx.Err()
	}
	if ft.Err == nil {
		return fmt.Errorf("injected fault")
	}
	return ft.Err
}

// breaking lets n bytes through, then fails as ft says.
type breaking struct {
	ctx context.Context
	r   io.Reader
	n   int64
	ft  *Fault
}

func (b *breaking) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, b.ft.fail(b.ctx)
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	return n, err
}

func (f *Faulty) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if ft := f.next("put"); ft != nil {
		if ft.After <= 0 {
			return ft.fail(ctx)
		}
		r = &breaking{ctx, r, ft.After, ft}
	}
	return f.Module.Put(ctx, name, r, size)
}

func (f *Faulty) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	return f.get(ctx, "get", func() (io.ReadCloser, error) { return f.Module.Get(ctx, name) })
}

func (f *Faulty) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	return f.get(ctx, "getrange", func() (io.ReadCloser, error) { return f.Module.GetRange(ctx, name, off, length) })
}

// get opens an object with open, failing as the next fault of op says.
func (f *Faulty) get(ctx context.Context, op string, open func() (io.ReadCloser, error)) (io.ReadCloser, error) {
	ft := f.next(op)
	if ft != nil && ft.After <= 0 {
		return nil, ft.fail(ctx)
	}
	rc, err := open()
	if err != nil || ft == nil {
		return rc, err
	}
	return struct {
		io.Reader
		io.Closer
	}{&breaking{ctx, rc, ft.After, ft}, rc}, nil
}

func (f *Faulty) Stat(ctx context.Context, name string) (storage.Info, error) {
	if ft := f.next("stat"); ft != nil {
		return storage.Info{}, ft.fail(ctx)
	}
	return f.Module.Stat(ctx, name)
}

func (f *Faulty) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	if ft := f.next("list"); ft != nil {
		return ft.fail(ctx)
	}
	return f.Module.List(ctx, prefix, fn)
}

func (f *Faulty) Delete(ctx context.Context, name string) error {
	if ft := f.next("delete"); ft != nil {
		return ft.fail(ctx)
	}
	return f.Module.Delete(ctx, name)
}
