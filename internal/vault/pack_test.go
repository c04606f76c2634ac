package vault

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func read(t *testing.T, v *Vault, hash string) string {
	t.Helper()
	o, err := v.Open(bg, hash)
	if err != nil {
		t.Fatalf("Open(%s): %v", hash[:8], err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// packFiles seals what is waiting to be and returns the files of the packs:
// sealed on the (filesystem) module, and the open one on the local disk.
func packFiles(t *testing.T, v *Vault, dir string) []string {
	t.Helper()
	if err := v.packs.sealAll(bg); err != nil {
		t.Fatal(err)
	}
	local, _ := filepath.Glob(filepath.Join(dir, "packs", "pack-*"))
	sealed, _ := filepath.Glob(filepath.Join(dir, "objects", "packs", "pack-*[0-9]"))
	return append(local, sealed...)
}

func TestSmallObjectsGoToPacksLargeToFiles(t *testing.T) {
	dir := t.TempDir()
	v, err := Open(dir, Options{SmallObjects: 100})
	if err != nil {
		t.Fatal(err)
	}
	small, _ := v.Put(bg, strings.NewReader(strings.Repeat("s", 100)), "")
	large, _ := v.Put(bg, strings.NewReader(strings.Repeat("L", 101)), "")
	empty, _ := v.Put(bg, strings.NewReader(""), "")
	if _, err := os.Stat(filepath.Join(dir, "objects", small.Hash[:2], small.Hash)); err == nil {
		t.Error("a 100-byte object got a file of its own")
	}
	if _, err := os.Stat(filepath.Join(dir, "objects", large.Hash[:2], large.Hash)); err != nil {
		t.Errorf("a 101-byte object has no file: %v", err)
	}
	v.Close()
	v, err = Open(dir, Options{SmallObjects: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for ref, want := range map[Ref]string{small: strings.Repeat("s", 100), large: strings.Repeat("L", 101), empty: ""} {
		if !has(t, v, ref.Hash) || read(t, v, ref.Hash) != want {
			t.Errorf("object of %d bytes not read back after reopening", ref.Size)
		}
	}
	// Seeking works on packed objects (http.ServeContent needs it).
	o, _ := v.Open(bg, small.Hash)
	if n, _ := o.Seek(0, io.SeekEnd); n != 100 {
		t.Errorf("Seek(end) = %d", n)
	}
	o.Close()
}

func TestTornPackTailIsCutOff(t *testing.T) {
	dir := t.TempDir()
	v, _ := Open(dir, Options{SmallObjects: 1 << 10})
	a, _ := v.Put(bg, strings.NewReader("first"), "")
	b, _ := v.Put(bg, strings.NewReader("second"), "")
	v.Close()
	pack := filepath.Join(dir, "packs", packName(0))
	st, _ := os.Stat(pack)
	good := st.Size()
	// A crash mid-append leaves part of a record.
	f, _ := os.OpenFile(pack, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte(packMagic + "\x10\x00\x00\x00partial"))
	f.Close()

	v, err := Open(dir, Options{SmallObjects: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(pack); st.Size() != good {
		t.Errorf("pack is %d bytes after reopening, want the torn tail cut to %d", st.Size(), good)
	}
	c, err := v.Put(bg, strings.NewReader("third"), "")
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	v, _ = Open(dir, Options{SmallObjects: 1 << 10})
	defer v.Close()
	for ref, want := range map[string]string{a.Hash: "first", b.Hash: "second", c.Hash: "third"} {
		if got := read(t, v, ref); got != want {
			t.Errorf("read %q, want %q", got, want)
		}
	}
}

func TestCorruptRecordIsNotServed(t *testing.T) {
	dir := t.TempDir()
	v, _ := Open(dir, Options{SmallObjects: 1 << 10})
	a, _ := v.Put(bg, strings.NewReader("intact"), "")
	b, _ := v.Put(bg, strings.NewReader("flipped"), "")
	v.Close()
	pack := filepath.Join(dir, "packs", packName(0))
	raw, _ := os.ReadFile(pack)
	i := bytes.LastIndex(raw, []byte("flipped"))
	raw[i] ^= 0xff
	os.WriteFile(pack, raw, 0o644)
	v, _ = Open(dir, Options{SmallObjects: 1 << 10})
	defer v.Close()
	if read(t, v, a.Hash) != "intact" {
		t.Error("the intact record was lost")
	}
	if has(t, v, b.Hash) {
		t.Error("a record whose checksum fails is served")
	}
}

func TestConcurrentPutsAndRoll(t *testing.T) {
	dir := t.TempDir()
	v, _ := Open(dir, Options{SmallObjects: 1 << 10})
	v.packs.rollAt = 2000 // a few records per pack
	var wg sync.WaitGroup
	refs := make([]Ref, 200)
	for i := range refs {
		wg.Go(func() {
			r, err := v.Put(bg, strings.NewReader(fmt.Sprintf("object %d %s", i, strings.Repeat("x", i))), "")
			if err != nil {
				t.Error(err)
			}
			refs[i] = r
		})
	}
	wg.Wait()
	ents := packFiles(t, v, dir)
	v.Close()
	if len(ents) < 5 {
		t.Errorf("%d packs; rolling at 2000 bytes should have made many", len(ents))
	}
	v, err := Open(dir, Options{SmallObjects: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for i, r := range refs {
		if got := read(t, v, r.Hash); got != fmt.Sprintf("object %d %s", i, strings.Repeat("x", i)) {
			t.Fatalf("object %d read back as %q", i, got)
		}
	}
}

func BenchmarkPutSmall(b *testing.B) {
	for _, c := range []struct {
		name string
		opt  Options
	}{{"files", Options{}}, {"packs", Options{SmallObjects: 64 << 10}},
		// Without fsync: the cost of the code path alone.
		{"packs-nosync", Options{SmallObjects: 64 << 10, NoSync: true}}} {
		b.Run(c.name, func(b *testing.B) {
			v, err := Open(b.TempDir(), c.opt)
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			var n atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := v.Put(bg, strings.NewReader(fmt.Sprintf("frame output %d", n.Add(1))), ""); err != nil {
						b.Error(err)
					}
				}
			})
		})
	}
}

// BenchmarkOpenSmall reads packed objects back: from the open pack on the
// local disk, and from packs sealed on the (filesystem) module, one ranged
// read each.
func BenchmarkOpenSmall(b *testing.B) {
	for _, sealed := range []bool{false, true} {
		name := map[bool]string{false: "open-pack", true: "sealed"}[sealed]
		b.Run(name, func(b *testing.B) {
			v, err := Open(b.TempDir(), Options{SmallObjects: 64 << 10, NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			refs := make([]Ref, 1000)
			for i := range refs {
				if refs[i], err = v.Put(bg, strings.NewReader(fmt.Sprintf("frame output %d %s", i, strings.Repeat("x", 4000))), ""); err != nil {
					b.Fatal(err)
				}
			}
			if sealed {
				v.packs.mu.Lock()
				err = v.packs.rollLocked()
				v.packs.mu.Unlock()
				if err == nil {
					err = v.packs.sealAll(bg)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			var n atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					o, err := v.Open(bg, refs[n.Add(1)%int64(len(refs))].Hash)
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := io.Copy(io.Discard, o); err != nil {
						b.Error(err)
					}
					o.Close()
				}
			})
		})
	}
}
