package vault

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distren/distren/internal/storage"
)

// objectFile is where the filesystem module keeps a module object.
func objectFile(dir, name string) string {
	return filepath.Join(dir, "objects", filepath.FromSlash(name))
}

func flip(t *testing.T, p string, at int) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if at < 0 {
		at += len(b)
	}
	b[at] ^= 1
	os.WriteFile(p, b, 0o644)
}

func TestCheckFindsDamage(t *testing.T) {
	dir := t.TempDir()
	v, err := Open(dir, Options{SmallObjects: 1 << 10, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	var big, small []Ref
	for i := range 3 {
		r, err := v.Put(bg, bytes.NewReader(random(4096+i)), "")
		if err != nil {
			t.Fatal(err)
		}
		big = append(big, r)
		if r, err = v.Put(bg, bytes.NewReader(random(100+i)), ""); err != nil {
			t.Fatal(err)
		}
		small = append(small, r)
	}
	chunked, err := v.Put(bg, bytes.NewReader(random(9<<20)), "")
	if err != nil {
		t.Fatal(err)
	}
	parts, _ := v.index(bg, chunked.Hash)
	check := func() ([]Damage, CheckSummary) {
		var ds []Damage
		sum, err := v.Check(context.Background(), func(d Damage) { ds = append(ds, d) })
		if err != nil {
			t.Fatal(err)
		}
		return ds, sum
	}
	whole := 6 + len(parts)
	if ds, sum := check(); len(ds) != 0 || sum.Objects != whole {
		t.Fatalf("a sound vault: damage %v, %d objects verified, want %d", ds, sum.Objects, whole)
	}
	// A flipped byte in an object, a missing chunk, a flipped byte in the
	// second record of the pack.
	flip(t, objectFile(dir, wholeName(big[1].Hash)), -10)
	lost := hexOf(parts[1].Hash)
	os.Remove(objectFile(dir, wholeName(lost)))
	pack := filepath.Join(dir, "packs", packName(0))
	raw, _ := os.ReadFile(pack)
	second := bytes.Index(raw[4:], []byte(packMagic)) + 4
	flip(t, pack, second+packHeader+60)

	ds, sum := check()
	// The record after the damaged one is hidden with the rest of the pack.
	if len(ds) != 3 || sum.Objects != whole-4 {
		t.Fatalf("damage %v, %d objects verified; want 3 damaged, %d sound", ds, sum.Objects, whole-4)
	}
	found := map[string]string{}
	for _, d := range ds {
		found[d.Object] = d.String()
	}
	if s := found[big[1].Hash]; !strings.Contains(s, "damaged") {
		t.Errorf("object damage reported as %q", s)
	}
	if s := found[chunked.Hash]; !strings.Contains(s, "chunk 2 of") || !strings.Contains(s, lost) {
		t.Errorf("a missing chunk reported as %q", s)
	}
	if s := found[""]; !strings.Contains(s, "pack-000000 at offset") || !strings.Contains(s, "cannot be read") {
		t.Errorf("pack damage reported as %q (all: %v)", s, ds)
	}
	// Reads of the damaged objects fail, naming them; the others work.
	for _, h := range []string{big[1].Hash, chunked.Hash} {
		o, err := v.Open(bg, h)
		if err == nil {
			_, err = io.ReadAll(o.Verified())
			o.Close()
		}
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), h) {
			t.Errorf("reading damaged %s: %v, want ErrCorrupt naming it", h[:8], err)
		}
	}
	if got := read(t, v, big[2].Hash); len(got) != 4098 {
		t.Errorf("a sound object read back as %d bytes", len(got))
	}
}

func TestVerifiedReadRefusesDamage(t *testing.T) {
	dir := t.TempDir()
	v, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	b := random(10000)
	ref, _ := v.Put(bg, bytes.NewReader(b), "")
	if got := read(t, v, ref.Hash); got != string(b) {
		t.Fatal("a sound object does not read back")
	}
	// Other content in a well-formed object under the name: its header
	// and checksum match, so only the content hash can tell.
	bad := bytes.Clone(b)
	bad[5000] ^= 1
	os.WriteFile(objectFile(dir, wholeName(ref.Hash)), storage.Encode(nil, int64(len(bad)), bad), 0o644)
	if _, err := v.Open(bg, ref.Hash); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), ref.Hash) {
		t.Errorf("a damaged object: %v, want ErrCorrupt naming it", err)
	}
}

func hexOf(h [32]byte) string { return hex.EncodeToString(h[:]) }
