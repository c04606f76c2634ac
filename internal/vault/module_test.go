package vault

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distren/distren/internal/storage"
	"github.com/distren/distren/internal/storage/storagetest"
)

// faultyVault opens a vault in dir on a fault-injecting filesystem module.
func faultyVault(t *testing.T, dir string, opt Options) (*Vault, *storagetest.Faulty) {
	t.Helper()
	fs, err := storage.NewFS(dir, storage.FSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := storagetest.NewFaulty(fs)
	opt.Module = f
	v, err := Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	return v, f
}

// TestHasTellsAbsentFromFailed: a module that fails makes Has and Open
// fail with an error that is not ErrNotFound; only an object the vault
// does not hold is absent.
func TestHasTellsAbsentFromFailed(t *testing.T) {
	v, f := faultyVault(t, t.TempDir(), Options{})
	defer v.Close()
	held, err := v.Put(bg, bytes.NewReader(random(100_000)), "")
	if err != nil {
		t.Fatal(err)
	}
	missing := strings.Repeat("ab", 32)
	if ok, err := v.Has(bg, held.Hash); !ok || err != nil {
		t.Fatalf("Has(held) = %v, %v", ok, err)
	}
	if ok, err := v.Has(bg, missing); ok || err != nil {
		t.Fatalf("Has(missing) = %v, %v; want false, no error", ok, err)
	}
	if _, err := v.Open(bg, missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open(missing): %v, want ErrNotFound", err)
	}

	f.Inject(storagetest.Fault{Op: "stat", Err: syscall.EIO}, storagetest.Fault{Op: "get", Err: syscall.EIO})
	for _, h := range []string{held.Hash, missing} {
		ok, err := v.Has(bg, h)
		if ok || err == nil || errors.Is(err, ErrNotFound) || !errors.Is(err, syscall.EIO) {
			t.Errorf("Has(%s) on a failing disk = %v, %v; want an I/O error that is not ErrNotFound", h[:8], ok, err)
		}
		if _, err := v.Open(bg, h); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Open(%s) on a failing disk: %v, want an error that is not ErrNotFound", h[:8], err)
		}
	}
	f.Clear()
	if ok, err := v.Has(bg, held.Hash); !ok || err != nil {
		t.Errorf("Has(held) once the disk works again = %v, %v", ok, err)
	}
}

// TestStalledModuleHonoursContext: Put and Open on a module that stalls
// return when their context ends — for objects on the module and packed
// objects in a sealed pack alike — and the vault works again after.
func TestStalledModuleHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v, f := faultyVault(t, t.TempDir(), Options{SmallObjects: 1 << 10})
		defer v.Close()
		large, err := v.Put(bg, bytes.NewReader(random(100_000)), "")
		if err != nil {
			t.Fatal(err)
		}
		small, err := v.Put(bg, strings.NewReader("a small frame output"), "")
		if err != nil {
			t.Fatal(err)
		}
		seal(t, v)

		for _, op := range []string{"put", "get", "getrange", "stat", "list"} {
			f.Inject(storagetest.Fault{Op: op, Stall: true})
		}
		ctx, cancel := context.WithTimeout(bg, time.Minute)
		defer cancel()
		start := time.Now()
		if _, err := v.Put(ctx, bytes.NewReader(random(200_000)), ""); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Put on a stalled module: %v, want the context's deadline", err)
		}
		for _, h := range []string{large.Hash, small.Hash} {
			if _, err := v.Open(ctx, h); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNotFound) {
				t.Errorf("Open(%s) on a stalled module: %v, want the context's deadline", h[:8], err)
			}
		}
		if ok, err := v.Has(ctx, strings.Repeat("cd", 32)); ok || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Has on a stalled module = %v, %v; want the context's deadline", ok, err)
		}
		if d := time.Since(start); d != time.Minute {
			t.Errorf("the calls took %s, want the context's minute", d)
		}
		f.Clear()
		if got := read(t, v, small.Hash); got != "a small frame output" {
			t.Errorf("after the stall, the packed object reads %q", got)
		}
	})
}

// seal seals every pack, the open one included, onto the module.
func seal(t *testing.T, v *Vault) {
	t.Helper()
	v.packs.mu.Lock()
	err := v.packs.rollLocked()
	v.packs.mu.Unlock()
	if err == nil {
		err = v.packs.sealAll(bg)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestPacksLiveOnTheModule: packs are sealed onto the module, by size and
// by age, and read from it with ranged reads: a vault with another local
// directory on the same module reads every small object.
func TestPacksLiveOnTheModule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fs, err := storage.NewFS(t.TempDir(), storage.FSOptions{})
		if err != nil {
			t.Fatal(err)
		}
		mod := storagetest.NewFaulty(fs)
		opt := Options{Module: mod, SmallObjects: 1 << 10, SealPacksAfter: time.Hour}
		local := t.TempDir()
		v, err := Open(local, opt)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		v.packs.rollAt = 1000
		want := map[string]string{}
		for i := range 40 {
			s := strings.Repeat(string(rune('a'+i%26)), 50+i)
			r, err := v.Put(bg, strings.NewReader(s), "")
			if err != nil {
				t.Fatal(err)
			}
			want[r.Hash] = s
		}
		synctest.Wait() // the seals of the full packs
		var sealed []string
		mod.List(bg, packPrefix, func(i storage.Info) error { sealed = append(sealed, i.Name); return nil })
		if len(sealed) < 4 {
			t.Errorf("%d objects under %s on the module after filling packs of 1,000 bytes: %v", len(sealed), packPrefix, sealed)
		}
		if ents, _ := os.ReadDir(filepath.Join(local, "packs")); len(ents) != 1 {
			t.Errorf("%d packs on the local disk, want only the open one", len(ents))
		}
		// An hour later the open pack is sealed too, though not full.
		time.Sleep(time.Hour)
		synctest.Wait()
		if ents, _ := os.ReadDir(filepath.Join(local, "packs")); len(ents) != 1 {
			t.Errorf("%d packs on the local disk after an hour, want the new, empty open one", len(ents))
		} else if fi, _ := ents[0].Info(); fi.Size() != 0 {
			t.Errorf("the open pack holds %d bytes an hour later; want it sealed and a new one started", fi.Size())
		}
		ranged := mod.Calls("getrange")
		for h, s := range want {
			if got := read(t, v, h); got != s {
				t.Fatalf("%s reads back %q, want %q", h[:8], got, s)
			}
		}
		if mod.Calls("getrange")-ranged != len(want) {
			t.Errorf("%d ranged reads for %d packed objects", mod.Calls("getrange")-ranged, len(want))
		}

		// Everything is on the module: another local directory reads it all.
		other, err := Open(t.TempDir(), opt)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		for h, s := range want {
			if got := read(t, other, h); got != s {
				t.Fatalf("from the module alone, %s reads back %q", h[:8], got)
			}
		}
		// A pack whose index was lost is scanned again, and indexed.
		if err := mod.Delete(bg, packIndexObject(0)); err != nil {
			t.Fatal(err)
		}
		again, err := Open(t.TempDir(), opt)
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		for h, s := range want {
			if got := read(t, again, h); got != s {
				t.Fatalf("with an index rebuilt, %s reads back %q", h[:8], got)
			}
		}
		if _, err := mod.Stat(bg, packIndexObject(0)); err != nil {
			t.Errorf("the lost index was not written again: %v", err)
		}
		// The index of a pack compacted away (a crash between deleting the
		// pack and its index) is removed at the next open.
		orphan := encodePackIndex(nil)
		if err := mod.Put(bg, packIndexObject(999), bytes.NewReader(orphan), int64(len(orphan))); err != nil {
			t.Fatal(err)
		}
		last, err := Open(t.TempDir(), opt)
		if err != nil {
			t.Fatal(err)
		}
		defer last.Close()
		if _, err := mod.Stat(bg, packIndexObject(999)); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("the index of a pack that is gone: %v, want it removed", err)
		}
	})
}

// TestSealedPackDamageIsFound: Check reads the packs on the module, and
// reports a damaged record there.
func TestSealedPackDamageIsFound(t *testing.T) {
	dir := t.TempDir()
	v, err := Open(dir, Options{SmallObjects: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, s := range []string{"first output", "second output", "third output"} {
		if _, err := v.Put(bg, strings.NewReader(s), ""); err != nil {
			t.Fatal(err)
		}
	}
	seal(t, v)
	var ds []Damage
	if sum, err := v.Check(bg, func(d Damage) { ds = append(ds, d) }); err != nil || len(ds) != 0 || sum.Objects != 3 {
		t.Fatalf("sound sealed pack: %+v, %v, damage %v", sum, err, ds)
	}
	pack := filepath.Join(dir, "objects", filepath.FromSlash(packObject(0)))
	raw, err := os.ReadFile(pack)
	if err != nil {
		t.Fatal(err)
	}
	flip(t, pack, bytes.Index(raw, []byte("second"))-len(raw))
	ds = nil
	if _, err := v.Check(bg, func(d Damage) { ds = append(ds, d) }); err != nil || len(ds) != 1 || !strings.Contains(ds[0].String(), "pack-000000 at offset") {
		t.Errorf("a flipped byte in a sealed pack: %v, damage %v", err, ds)
	}
}

// TestOpensFormat2Vault: a vault written by the format before packs moved
// to the module (testdata/format2, made by that version) reads back whole;
// its packs are sealed onto the module, and it stays readable after.
func TestOpensFormat2Vault(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vault")
	if err := os.CopyFS(dir, os.DirFS("testdata/format2")); err != nil {
		t.Fatal(err)
	}
	wf, err := os.Open("testdata/format2.want")
	if err != nil {
		t.Fatal(err)
	}
	defer wf.Close()
	want := map[string]string{}
	sc := bufio.NewScanner(wf)
	for sc.Scan() {
		h, s, _ := strings.Cut(sc.Text(), " ")
		want[h] = s
	}
	if len(want) != 7 {
		t.Fatalf("%d objects in the fixture", len(want))
	}
	opt := Options{SmallObjects: 1 << 10, Compress: true}
	v, err := Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	readAll := func(v *Vault) {
		t.Helper()
		for h, s := range want {
			if got := read(t, v, h); got != s {
				t.Fatalf("%s reads back %q, want %q", h[:8], got, s)
			}
		}
	}
	readAll(v)
	files := packFiles(t, v, dir)
	var local, sealed int
	for _, f := range files {
		if strings.Contains(f, string(filepath.Separator)+"objects"+string(filepath.Separator)) {
			sealed++
		} else {
			local++
		}
	}
	if sealed != 2 || local != 1 {
		t.Errorf("packs after opening: %v; want the two full ones sealed, the last going on as the open pack", files)
	}
	var ds []Damage
	if sum, err := v.Check(bg, func(d Damage) { ds = append(ds, d) }); err != nil || len(ds) != 0 || sum.Objects != 7 {
		t.Errorf("check after the migration: %+v, %v, damage %v", sum, err, ds)
	}
	r, err := v.Put(bg, strings.NewReader("written by the new format"), "")
	if err != nil {
		t.Fatal(err)
	}
	want[r.Hash] = "written by the new format"
	v.Close()
	if b, _ := os.ReadFile(filepath.Join(dir, formatFile)); string(b) != formatLine {
		t.Errorf("format file says %q, want %q", b, formatLine)
	}
	v, err = Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	readAll(v)
}

// TestCanceledReaderDoesNotFailOthers: readers of one object share its
// read; one whose context ends fails alone.
func TestCanceledReaderDoesNotFailOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v, f := faultyVault(t, t.TempDir(), Options{})
		defer v.Close()
		r, err := v.Put(bg, bytes.NewReader(random(50_000)), "")
		if err != nil {
			t.Fatal(err)
		}
		f.Inject(storagetest.Fault{Op: "get", Call: 1, Stall: true})
		ctx, cancel := context.WithCancel(bg)
		first := make(chan error)
		go func() {
			_, err := v.Open(ctx, r.Hash)
			first <- err
		}()
		synctest.Wait() // the first reader is stalled, holding the read
		second := make(chan error)
		go func() {
			o, err := v.Open(bg, r.Hash)
			if err == nil {
				_, err = io.Copy(io.Discard, o)
				o.Close()
			}
			second <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-first; !errors.Is(err, context.Canceled) {
			t.Errorf("the canceled reader: %v", err)
		}
		if err := <-second; err != nil {
			t.Errorf("the reader waiting beside it: %v, want its read to go on", err)
		}
	})
}

// TestWatchdogAbortsStalledPut: the context a Put is given reaches the
// module under the watchdog, which aborts a write that stalls even when
// the caller set no deadline.
func TestWatchdogAbortsStalledPut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		fs, err := storage.NewFS(dir, storage.FSOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f := storagetest.NewFaulty(fs)
		mod := storage.Resilient(f, storage.ResilientOptions{StallTimeout: 30 * time.Second, Attempts: 2, Backoff: time.Second})
		v, err := Open(dir, Options{Module: mod})
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		f.Inject(storagetest.Fault{Op: "put", Stall: true})
		start := time.Now()
		_, err = v.Put(bg, bytes.NewReader(random(100_000)), "")
		if !errors.Is(err, storage.ErrStalled) || !strings.Contains(err.Error(), "after 2 attempts") {
			t.Errorf("Put on a stalled module: %v, want ErrStalled after 2 attempts", err)
		}
		if d := time.Since(start); d < time.Minute || d > time.Minute+2*time.Second {
			t.Errorf("the stalled Put took %s, want two stalls of 30 s and a backoff", d)
		}
		if n := f.Calls("put"); n != 2 {
			t.Errorf("%d writes tried, want 2", n)
		}
	})
}
