// Package storagetest owns the conformance suite that every storage module
// runs (Run), and Faulty, a module that injects faults — stalls, short
// writes, a full disk, errors on the n-th call — into another, for testing
// what sits on top.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/distren/distren/internal/storage"
)

// Run checks that the modules made by open keep the storage.Module
// contract. Each subtest gets a fresh, empty module. The suite never skips.
func Run(t *testing.T, open func(t *testing.T) storage.Module) {
	ctx := context.Background()
	put := func(t *testing.T, m storage.Module, name string, b []byte) {
		t.Helper()
		if err := m.Put(ctx, name, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
	}
	get := func(t *testing.T, m storage.Module, name string) ([]byte, error) {
		t.Helper()
		rc, err := m.Get(ctx, name)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(rc)
	}
	random := func(n int) []byte { b := make([]byte, n); rand.Read(b); return b }

	t.Run("RoundTrip", func(t *testing.T) {
		m := open(t)
		for _, n := range []int{0, 1, 4095, 1 << 20, 3<<20 + 17} {
			name := fmt.Sprintf("obj/%d", n)
			want := random(n)
			put(t, m, name, want)
			got, err := get(t, m, name)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: read %d bytes (err %v), wrote %d", name, len(got), err, n)
			}
			if info, err := m.Stat(ctx, name); err != nil || info.Size != int64(n) || info.Name != name {
				t.Errorf("stat %s = %+v, %v", name, info, err)
			}
		}
	})
	t.Run("UnknownSize", func(t *testing.T) {
		m := open(t)
		want := random(100_000)
		if err := m.Put(ctx, "u", iotest.HalfReader(bytes.NewReader(want)), -1); err != nil {
			t.Fatal(err)
		}
		if got, err := get(t, m, "u"); err != nil || !bytes.Equal(got, want) {
			t.Errorf("read %d bytes, %v", len(got), err)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		m := open(t)
		if _, err := get(t, m, "missing"); !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "missing") {
			t.Errorf("get: %v, want ErrNotFound naming the object", err)
		}
		if _, err := m.Stat(ctx, "missing"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("stat: %v, want ErrNotFound", err)
		}
		if err := m.Delete(ctx, "missing"); err != nil {
			t.Errorf("deleting a missing object: %v", err)
		}
	})
	t.Run("InvalidNames", func(t *testing.T) {
		m := open(t)
		for _, name := range []string{"", "/abs", "a//b", "../x", "a/../b", "a/./b", "UPPER", "sp ace", "a/", strings.Repeat("x", 256), "nul\x00"} {
			err := m.Put(ctx, name, bytes.NewReader([]byte("x")), 1)
			if !errors.Is(err, storage.ErrInvalidName) {
				t.Errorf("put %q: %v, want ErrInvalidName", name, err)
			}
			if _, err := m.Get(ctx, name); !errors.Is(err, storage.ErrInvalidName) {
				t.Errorf("get %q: %v, want ErrInvalidName", name, err)
			}
		}
	})
	t.Run("Range", func(t *testing.T) {
		m := open(t)
		want := random(100_000)
		put(t, m, "r/1", want)
		for _, c := range []struct{ off, length, from, to int64 }{
			{0, 10, 0, 10},
			{4096, 70_000, 4096, 74_096},
			{99_990, 10, 99_990, 100_000},
			{99_995, 100, 99_995, 100_000}, // past the end: what there is
			{100_000, 10, 0, 0},
			{200_000, 1, 0, 0},
			{7, 0, 0, 0},
		} {
			rc, err := m.GetRange(ctx, "r/1", c.off, c.length)
			if err != nil {
				t.Errorf("range %d+%d: %v", c.off, c.length, err)
				continue
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, want[c.from:c.to]) {
				t.Errorf("range %d+%d: read %d bytes (err %v), want bytes %d to %d", c.off, c.length, len(got), err, c.from, c.to)
			}
		}
		if _, err := m.GetRange(ctx, "missing", 0, 1); !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "missing") {
			t.Errorf("range of a missing object: %v, want ErrNotFound naming it", err)
		}
		for _, r := range [][2]int64{{-1, 1}, {0, -1}} {
			if rc, err := m.GetRange(ctx, "r/1", r[0], r[1]); err == nil || errors.Is(err, storage.ErrNotFound) {
				if rc != nil {
					rc.Close()
				}
				t.Errorf("range %d+%d: %v, want an error that is not ErrNotFound", r[0], r[1], err)
			}
		}
		if _, err := m.GetRange(ctx, "UPPER", 0, 1); !errors.Is(err, storage.ErrInvalidName) {
			t.Errorf("range of an invalid name: %v, want ErrInvalidName", err)
		}
		cctx, cancel := context.WithCancel(ctx)
		rc, err := m.GetRange(cctx, "r/1", 0, 100_000)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
			t.Errorf("reading a range after the context ended: %v, want context.Canceled", err)
		}
		rc.Close()
		if _, err := m.GetRange(cctx, "r/1", 0, 1); !errors.Is(err, context.Canceled) {
			t.Errorf("range with an ended context: %v, want context.Canceled", err)
		}
	})
	t.Run("Replace", func(t *testing.T) {
		m := open(t)
		put(t, m, "r", []byte("first"))
		put(t, m, "r", []byte("second, longer"))
		if got, _ := get(t, m, "r"); string(got) != "second, longer" {
			t.Errorf("after replacing: %q", got)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		m := open(t)
		put(t, m, "d/1", []byte("x"))
		if err := m.Delete(ctx, "d/1"); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Stat(ctx, "d/1"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("after delete: %v", err)
		}
		if err := m.Delete(ctx, "d/1"); err != nil {
			t.Errorf("second delete: %v", err)
		}
	})
	t.Run("List", func(t *testing.T) {
		m := open(t)
		names := []string{"ab/1", "ab/2", "ab-c", "abc/d/e", "b/1", "a"}
		for i, n := range names {
			put(t, m, n, random(i))
		}
		for prefix, want := range map[string][]string{
			"":    names,
			"ab":  {"ab/1", "ab/2", "ab-c", "abc/d/e"},
			"ab/": {"ab/1", "ab/2"},
			"abc": {"abc/d/e"},
			"zz":  nil,
		} {
			var got []string
			err := m.List(ctx, prefix, func(i storage.Info) error {
				got = append(got, i.Name)
				if i.Size != int64(slices.Index(names, i.Name)) {
					t.Errorf("list: %s has size %d", i.Name, i.Size)
				}
				return nil
			})
			slices.Sort(got)
			w := slices.Clone(want)
			slices.Sort(w)
			if err != nil || !slices.Equal(got, w) {
				t.Errorf("list %q = %v, %v; want %v", prefix, got, err, w)
			}
		}
		stop := errors.New("stop")
		n := 0
		if err := m.List(ctx, "", func(storage.Info) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
			t.Errorf("an error from fn: %v after %d calls", err, n)
		}
	})
	t.Run("FailedPutLeavesNothing", func(t *testing.T) {
		m := open(t)
		broken := io.MultiReader(bytes.NewReader(random(70_000)), iotest.ErrReader(errors.New("disk vanished")))
		if err := m.Put(ctx, "f", broken, 200_000); err == nil {
			t.Fatal("put from a failing reader succeeded")
		}
		short := random(10)
		if err := m.Put(ctx, "g", bytes.NewReader(short), 11); err == nil {
			t.Error("put of 10 bytes announced as 11 succeeded")
		}
		if err := m.Put(ctx, "h", bytes.NewReader(random(12)), 11); err == nil {
			t.Error("put of 12 bytes announced as 11 succeeded")
		}
		for _, name := range []string{"f", "g", "h"} {
			if _, err := m.Stat(ctx, name); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("%s after a failed put: %v, want ErrNotFound", name, err)
			}
		}
		n := 0
		m.List(ctx, "", func(storage.Info) error { n++; return nil })
		if n != 0 {
			t.Errorf("%d objects listed after failed puts", n)
		}
	})
	t.Run("CanceledPut", func(t *testing.T) {
		m := open(t)
		cctx, cancel := context.WithCancel(ctx)
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() { done <- m.Put(cctx, "c", pr, 1<<20) }()
		pw.Write(random(1000))
		cancel()
		go pw.Write(random(1000)) // wakes a module blocked reading
		err := <-done
		pr.CloseWithError(errors.New("test over")) // and frees the write above
		if !errors.Is(err, context.Canceled) {
			t.Errorf("canceled put: %v, want context.Canceled", err)
		}
		if _, err := m.Stat(ctx, "c"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("after a canceled put: %v", err)
		}
	})
	t.Run("InvisibleUntilWhole", func(t *testing.T) {
		m := open(t)
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		want := random(1 << 20)
		go func() { done <- m.Put(ctx, "slow", pr, int64(len(want))) }()
		for i := 0; i < len(want); i += 64 << 10 {
			pw.Write(want[i : i+64<<10])
			if _, err := m.Stat(ctx, "slow"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("visible after %d of %d bytes: %v", i+64<<10, len(want), err)
			}
		}
		pw.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got, err := get(t, m, "slow"); err != nil || !bytes.Equal(got, want) {
			t.Errorf("after the put: %d bytes, %v", len(got), err)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		m := open(t)
		want := random(256 << 10)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 8 {
			wg.Go(func() { errs <- m.Put(ctx, "same", bytes.NewReader(want), int64(len(want))) })
			wg.Go(func() {
				if err := m.Put(ctx, fmt.Sprintf("own/%d", i), bytes.NewReader(want), int64(len(want))); err != nil {
					errs <- err
					return
				}
				got, err := get(t, m, fmt.Sprintf("own/%d", i))
				if err == nil && !bytes.Equal(got, want) {
					err = fmt.Errorf("own/%d reads back wrong", i)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if got, _ := get(t, m, "same"); !bytes.Equal(got, want) {
			t.Error("the object put concurrently reads back wrong")
		}
	})
	t.Run("CanceledContext", func(t *testing.T) {
		m := open(t)
		put(t, m, "x", []byte("x"))
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := m.Put(cctx, "y", bytes.NewReader([]byte("y")), 1); !errors.Is(err, context.Canceled) {
			t.Errorf("put: %v", err)
		}
		if _, err := m.Get(cctx, "x"); !errors.Is(err, context.Canceled) {
			t.Errorf("get: %v", err)
		}
		if _, err := m.Stat(cctx, "x"); !errors.Is(err, context.Canceled) {
			t.Errorf("stat: %v", err)
		}
		if err := m.Delete(cctx, "x"); !errors.Is(err, context.Canceled) {
			t.Errorf("delete: %v", err)
		}
		if err := m.List(cctx, "", func(storage.Info) error { return nil }); !errors.Is(err, context.Canceled) {
			t.Errorf("list: %v", err)
		}
	})
	t.Run("ReadAfterCancel", func(t *testing.T) {
		m := open(t)
		put(t, m, "big", random(1<<20))
		cctx, cancel := context.WithCancel(ctx)
		rc, err := m.Get(cctx, "big")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		cancel()
		if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
			t.Errorf("reading after the context ended: %v, want context.Canceled", err)
		}
	})
}
