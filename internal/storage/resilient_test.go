package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distren/distren/internal/storage"
	"github.com/distren/distren/internal/storage/storagetest"
)

var ctx = context.Background()

func faultyFS(t *testing.T) *storagetest.Faulty {
	m, err := storage.NewFS(t.TempDir(), storage.FSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return storagetest.NewFaulty(m)
}

var fast = storage.ResilientOptions{StallTimeout: 100 * time.Millisecond, Attempts: 3, Backoff: time.Millisecond}

// The wrappers keep the contract when no fault fires.
func TestFaultyConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Module { return faultyFS(t) })
}

func TestResilientConformance(t *testing.T) {
	// No fault is injected here, so the watchdog must never fire: a stall
	// timeout of 100 ms would, on a loaded machine whose fsyncs of 16
	// concurrent puts take longer (the Concurrent case).
	opt := fast
	opt.StallTimeout = time.Minute
	storagetest.Run(t, func(t *testing.T) storage.Module { return storage.Resilient(faultyFS(t), opt) })
}

func random(n int) []byte { b := make([]byte, n); rand.Read(b); return b }

func TestWatchdogFiresOnStall(t *testing.T) {
	for _, op := range []string{"put", "get", "stat", "delete"} {
		t.Run(op, func(t *testing.T) {
			f := faultyFS(t)
			f.Module.Put(ctx, "obj", bytes.NewReader([]byte("data")), 4)
			f.Inject(storagetest.Fault{Op: op, Stall: true})
			m := storage.Resilient(f, storage.ResilientOptions{StallTimeout: 50 * time.Millisecond, Attempts: 2, Backoff: time.Millisecond})
			var err error
			switch op {
			case "put":
				err = m.Put(ctx, "obj", bytes.NewReader([]byte("data")), 4)
			case "get":
				_, err = m.Get(ctx, "obj")
			case "stat":
				_, err = m.Stat(ctx, "obj")
			case "delete":
				err = m.Delete(ctx, "obj")
			}
			if !errors.Is(err, storage.ErrStalled) || !strings.Contains(err.Error(), "obj") || !strings.Contains(err.Error(), "after 2 attempts") {
				t.Errorf("%s on a stalled module: %v, want ErrStalled naming the object after 2 attempts", op, err)
			}
			if f.Calls(op) != 2 {
				t.Errorf("%d calls, want 2", f.Calls(op))
			}
		})
	}
}

func TestStallThenRecover(t *testing.T) {
	f := faultyFS(t)
	f.Inject(storagetest.Fault{Op: "put", Call: 1, After: 1000, Stall: true}) // stalls mid-upload
	m := storage.Resilient(f, fast)
	want := random(100_000)
	if err := m.Put(ctx, "obj", bytes.NewReader(want), int64(len(want))); err != nil {
		t.Fatal(err)
	}
	if f.Calls("put") != 2 {
		t.Errorf("%d puts, want 2", f.Calls("put"))
	}
	rc, err := m.Get(ctx, "obj")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("read back %d bytes, %v", len(got), err)
	}
}

func TestTransientErrorsAreRetried(t *testing.T) {
	f := faultyFS(t)
	f.Inject(storagetest.Fault{Op: "put", Call: 1, After: 5000, Err: syscall.EIO},
		storagetest.Fault{Op: "put", Call: 2, Err: fmt.Errorf("connection reset: %w", syscall.ECONNRESET)})
	m := storage.Resilient(f, fast)
	want := random(20_000)
	if err := m.Put(ctx, "obj", bytes.NewReader(want), int64(len(want))); err != nil {
		t.Fatalf("after two transient faults: %v", err)
	}
	if f.Calls("put") != 3 {
		t.Errorf("%d puts, want 3", f.Calls("put"))
	}
	// A reader that cannot seek back is not retried.
	f.Inject(storagetest.Fault{Op: "put", Call: 4, Err: syscall.EIO})
	if err := m.Put(ctx, "other", io.MultiReader(bytes.NewReader(want)), int64(len(want))); !errors.Is(err, syscall.EIO) {
		t.Errorf("put from a stream: %v, want EIO", err)
	}
	if f.Calls("put") != 4 {
		t.Errorf("a put from a stream was retried (%d puts)", f.Calls("put"))
	}
}

func TestPermanentErrorsSurfaceAtOnce(t *testing.T) {
	f := faultyFS(t)
	f.Inject(storagetest.Fault{Op: "put", After: 100, Err: fmt.Errorf("write: %w", syscall.ENOSPC)})
	m := storage.Resilient(f, fast)
	err := m.Put(ctx, "chunks/ab12", bytes.NewReader(random(1000)), 1000)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "chunks/ab12") {
		t.Errorf("put on a full disk: %v, want ENOSPC naming the object", err)
	}
	if f.Calls("put") != 1 {
		t.Errorf("a full disk was retried (%d puts)", f.Calls("put"))
	}
	if _, err := m.Stat(ctx, "chunks/ab12"); !errors.Is(err, storage.ErrNotFound) || f.Calls("stat") != 1 {
		t.Errorf("stat of the object a full disk refused: %v after %d calls", err, f.Calls("stat"))
	}
}

func TestStallMidRead(t *testing.T) {
	f := faultyFS(t)
	f.Module.Put(ctx, "obj", bytes.NewReader(random(10_000)), 10_000)
	f.Inject(storagetest.Fault{Op: "get", After: 4096, Stall: true})
	m := storage.Resilient(f, fast)
	rc, err := m.Get(ctx, "obj")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	if !errors.Is(err, storage.ErrStalled) || n != 4096 || !strings.Contains(err.Error(), "obj") {
		t.Errorf("read %d bytes, then %v; want 4096 and ErrStalled naming the object", n, err)
	}
}

func TestHeader(t *testing.T) {
	payload := random(5000)
	obj := storage.Encode([]storage.Filter{storage.FilterZstd, storage.FilterAESGCM}, 9000, payload)
	read := func(b []byte) ([]byte, storage.Header, error) {
		r := bytes.NewReader(b)
		h, err := storage.ReadHeader(r)
		if err != nil {
			return nil, h, err
		}
		got, err := io.ReadAll(storage.PayloadReader(r, h))
		return got, h, err
	}
	got, h, err := read(obj)
	if err != nil || !bytes.Equal(got, payload) || h.Plain != 9000 || len(h.Filters) != 2 || h.Filters[1] != storage.FilterAESGCM {
		t.Fatalf("round trip: %v %+v", err, h)
	}
	damage := map[string]func([]byte) []byte{
		"flipped payload byte": func(b []byte) []byte { b[len(b)-100] ^= 1; return b },
		"flipped header byte":  func(b []byte) []byte { b[10] ^= 1; return b },
		"truncated payload":    func(b []byte) []byte { return b[:len(b)-1] },
		"truncated header":     func(b []byte) []byte { return b[:20] },
		"extra byte":           func(b []byte) []byte { return append(b, 0) },
		"not an object":        func(b []byte) []byte { return []byte("PNG\x00 not ours at all, no: definitely not") },
	}
	for name, f := range damage {
		if _, _, err := read(f(bytes.Clone(obj))); !errors.Is(err, storage.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	// Reading exactly the payload's length checks the checksum too.
	bad := bytes.Clone(obj)
	bad[len(bad)-1] ^= 1
	r := bytes.NewReader(bad)
	h2, _ := storage.ReadHeader(r)
	if _, err := io.ReadFull(storage.PayloadReader(r, h2), make([]byte, h2.Stored)); !errors.Is(err, storage.ErrCorrupt) {
		t.Errorf("io.ReadFull of a damaged payload: %v, want ErrCorrupt", err)
	}
	future := bytes.Clone(obj)
	future[4] = 9
	if _, _, err := read(future); err == nil || !strings.Contains(err.Error(), "version 9") {
		t.Errorf("a newer format: %v", err)
	}
}
