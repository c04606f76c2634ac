package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckFindsFlippedBytes(t *testing.T) {
	dir := t.TempDir()
	v, err := Open(dir, Options{SmallObjects: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var big, small []Ref
	for i := range 3 {
		b := make([]byte, 4096+i)
		rand.Read(b)
		r, err := v.Put(bytes.NewReader(b), "")
		if err != nil {
			t.Fatal(err)
		}
		big = append(big, r)
		s := make([]byte, 100+i)
		rand.Read(s)
		if r, err = v.Put(bytes.NewReader(s), ""); err != nil {
			t.Fatal(err)
		}
		small = append(small, r)
	}
	check := func() ([]Damage, CheckSummary) {
		var ds []Damage
		sum, err := v.Check(context.Background(), func(d Damage) { ds = append(ds, d) })
		if err != nil {
			t.Fatal(err)
		}
		return ds, sum
	}
	if ds, sum := check(); len(ds) != 0 || sum.Objects != 6 {
		t.Fatalf("a sound vault: damage %v, %d objects verified", ds, sum.Objects)
	}
	// A flipped byte in an object file.
	p, _ := v.Path(big[1].Hash)
	b, _ := os.ReadFile(p)
	b[100] ^= 1
	os.WriteFile(p, b, 0o644)
	// A flipped byte in the second record of the pack.
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "pack-*"))
	pb, _ := os.ReadFile(packs[0])
	second := packHeader + int(small[0].Size) + packTrailer
	pb[second+packHeader+10] ^= 1
	os.WriteFile(packs[0], pb, 0o644)

	ds, sum := check()
	if len(ds) != 2 || sum.Objects != 3 {
		t.Fatalf("damage %v, %d objects verified; want 2 damaged, 3 sound", ds, sum.Objects)
	}
	if ds[0].Object != big[1].Hash || !strings.Contains(ds[0].String(), "hashes to") {
		t.Errorf("object file damage reported as %s", ds[0])
	}
	if ds[1].Object != small[1].Hash || !strings.Contains(ds[1].String(), "checksum mismatch") || !strings.Contains(ds[1].String(), "cannot be read") {
		t.Errorf("pack damage reported as %s", ds[1])
	}
}

func TestVerifiedReadRefusesDamage(t *testing.T) {
	v, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 10000)
	rand.Read(b)
	ref, _ := v.Put(bytes.NewReader(b), "")
	read := func() ([]byte, error) {
		o, err := v.Open(ref.Hash)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		out := make([]byte, ref.Size)
		_, err = io.ReadFull(o.Verified(), out)
		return out, err
	}
	if got, err := read(); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("a sound object: %v", err)
	}
	p, _ := v.Path(ref.Hash)
	b[5000] ^= 1
	os.WriteFile(p, b, 0o644)
	if _, err := read(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), ref.Hash) {
		t.Errorf("a damaged object read exactly to its size: %v, want ErrCorrupt naming it", err)
	}
}

// TestCompressedObjects: with Compress, compressible objects are stored
// smaller, read back whole (also by a vault without the option), checked,
// and damage to them is found.
func TestCompressedObjects(t *testing.T) {
	dir := t.TempDir()
	v, err := Open(dir, Options{Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	text := bytes.Repeat([]byte("sphere { <0, 1, 2>, 0.5 texture { Gold } }\n"), 5000)
	random := make([]byte, 200_000)
	rand.Read(random)
	rt, err := v.Put(bytes.NewReader(text), "")
	if err != nil {
		t.Fatal(err)
	}
	rr, _ := v.Put(bytes.NewReader(random), "")
	if again, err := v.Put(bytes.NewReader(text), rt.Hash); err != nil || again != rt {
		t.Fatalf("storing it again: %v %v", again, err)
	}
	p := filepath.Join(dir, "objects", rt.Hash[:2], rt.Hash)
	if fi, err := os.Stat(p + ".z"); err != nil || fi.Size() > int64(len(text))/10 {
		t.Fatalf("compressible object stored as %v (%v), want a small .z", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "objects", rr.Hash[:2], rr.Hash)); err != nil {
		t.Errorf("random object not stored plain: %v", err)
	}
	v.Close()
	plainVault, _ := Open(dir, Options{}) // reads do not depend on the option
	for _, c := range []struct {
		ref  Ref
		want []byte
	}{{rt, text}, {rr, random}} {
		if !plainVault.Has(c.ref.Hash) {
			t.Errorf("Has(%s) is false", c.ref.Hash)
		}
		o, err := plainVault.Open(c.ref.Hash)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(o.Verified())
		o.Close()
		if err != nil || !bytes.Equal(got, c.want) || o.Size() != c.ref.Size {
			t.Errorf("%s: read %d bytes, %v", c.ref.Hash, len(got), err)
		}
	}
	var ds []Damage
	if sum, err := plainVault.Check(context.Background(), func(d Damage) { ds = append(ds, d) }); err != nil || sum.Objects != 2 || len(ds) != 0 {
		t.Fatalf("check of a sound vault: %+v %v %v", sum, ds, err)
	}
	b, _ := os.ReadFile(p + ".z")
	b[len(b)-5] ^= 1
	os.WriteFile(p+".z", b, 0o644)
	if _, err := plainVault.Open(rt.Hash); !errors.Is(err, ErrCorrupt) {
		t.Errorf("opening the damaged compressed object: %v, want ErrCorrupt", err)
	}
	plainVault.Check(context.Background(), func(d Damage) { ds = append(ds, d) })
	if len(ds) != 1 || ds[0].Object != rt.Hash {
		t.Errorf("check found %v", ds)
	}
	if err := plainVault.Remove(rt.Hash); err != nil || plainVault.Has(rt.Hash) {
		t.Errorf("remove: %v", err)
	}
}
