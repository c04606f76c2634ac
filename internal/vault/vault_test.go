package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/storage/filter"
)

// keyFile writes a fresh AES-256 key for a test.
func keyFile(t testing.TB) string {
	p := filepath.Join(t.TempDir(), "vault.key")
	k := make([]byte, 32)
	rand.Read(k)
	if err := os.WriteFile(p, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func random(n int) []byte { b := make([]byte, n); rand.Read(b); return b }

func TestPutOpen(t *testing.T) {
	key := keyFile(t)
	for name, opt := range map[string]Options{
		"plain":     {},
		"packs":     {SmallObjects: 16},
		"zstd":      {Compress: true},
		"encrypted": {Compress: true, KeyFile: key, SmallObjects: 16},
	} {
		t.Run(name, func(t *testing.T) { testPutOpen(t, opt) })
	}
}

func testPutOpen(t *testing.T, opt Options) {
	dir := t.TempDir()
	v, err := Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ref, err := v.Put(bg, strings.NewReader("hello"), "")
	if err != nil {
		t.Fatal(err)
	}
	const want = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	if ref.Hash != want || ref.Size != 5 {
		t.Fatalf("ref = %+v", ref)
	}
	// Storing again deduplicates; a wrong expected hash stores nothing.
	if _, err := v.Put(bg, strings.NewReader("hello"), want); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Put(bg, strings.NewReader("other"), want); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Put of content that does not match the expected hash: %v", err)
	}
	other := "d9298a10d1b0735837dc4bd85dac641b0f3cef27a47e5d53a54f2f3f5b2fcffa" // "other"
	if has(t, v, other) {
		t.Error("the refused content was stored")
	}
	if got := read(t, v, want); got != "hello" {
		t.Fatalf("read %q", got)
	}
	big := bytes.Repeat([]byte("a scene line that compresses well\n"), 3000)
	bigRef, err := v.Put(bg, bytes.NewReader(big), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, v, bigRef.Hash); got != string(big) {
		t.Fatalf("read back %d bytes of %d", len(got), len(big))
	}
	if _, err := v.Open(bg, strings.Repeat("0", 64)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open(missing) = %v", err)
	}
	if _, err := v.Open(bg, "../../etc/passwd"); err == nil {
		t.Fatal("Open accepted a path as object name")
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	if len(ents) != 0 {
		t.Fatalf("temporary files left behind: %v", ents)
	}
	// Every object stored on the module starts with the object header.
	n := 0
	filepath.WalkDir(filepath.Join(dir, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
			if b, _ := os.ReadFile(p); !bytes.HasPrefix(b, []byte("DRVO")) {
				t.Errorf("%s does not start with the object header", p)
			}
		}
		return nil
	})
	if n == 0 {
		t.Error("no object on the module")
	}
}

func TestOpenClearsPartialWrites(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tmp", "put-123"), []byte("half"), 0o644)
	v, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Fatalf("partial write survived Open: %v", ents)
	}
}

// TestOlderLayoutIsRefused: a directory of objects without the format file
// was written by an older distren, whose objects lack headers.
func TestOlderLayoutIsRefused(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "objects", "2c"), 0o755)
	os.WriteFile(filepath.Join(dir, "objects", "2c", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"), []byte("hello"), 0o644)
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "older distren") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Open of an older layout: %v", err)
	}
}

// TestLargeObjectsAreChunked: an object larger than MaxWhole is stored as
// content-defined chunks and an index, reads back whole at any offset, and
// a second object sharing most of its bytes stores only the chunks that
// differ.
func TestLargeObjectsAreChunked(t *testing.T) {
	dir := t.TempDir()
	v, err := Open(dir, Options{Compress: true, SmallObjects: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	a := random(12 << 20)
	ra, err := v.Put(bg, bytes.NewReader(a), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "objects", ra.Hash[:2], ra.Hash+indexSuffix)); err != nil {
		t.Fatalf("a %d-byte object has no index: %v", len(a), err)
	}
	count := func() (n int) {
		filepath.WalkDir(filepath.Join(dir, "objects"), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	first := count()
	if first < 5 {
		t.Errorf("12 MiB stored as %d objects; want chunks of about 1 MiB", first)
	}
	o, err := v.Open(bg, ra.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if o.Size() != int64(len(a)) {
		t.Fatalf("size %d, want %d", o.Size(), len(a))
	}
	for range 50 { // reads across chunk boundaries, backwards and forwards
		off, _ := rand.Int(rand.Reader, big.NewInt(int64(len(a)-70000)))
		buf := make([]byte, 70000)
		if _, err := o.ReadAt(buf, off.Int64()); err != nil || !bytes.Equal(buf, a[off.Int64():off.Int64()+70000]) {
			t.Fatalf("ReadAt(%d): %v or wrong bytes", off, err)
		}
	}
	if _, err := o.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(o)
	o.Close()
	if err != nil || !bytes.Equal(got, a) {
		t.Fatalf("sequential read: %d bytes, %v", len(got), err)
	}
	if v.OpenFiles() != 0 {
		t.Errorf("%d decoded objects held after Close", v.OpenFiles())
	}
	// The same bytes with 100 bytes changed in the middle: a chunk or two.
	b := bytes.Clone(a)
	copy(b[6<<20:], random(100))
	rb, err := v.Put(bg, bytes.NewReader(b), "")
	if err != nil {
		t.Fatal(err)
	}
	if added := count() - first; added > 4 {
		t.Errorf("an edited copy added %d objects; want its index and the one or two chunks that changed", added)
	}
	if got := read(t, v, rb.Hash); got != string(b) {
		t.Error("the edited copy does not read back")
	}
	if _, err := v.Put(bg, bytes.NewReader(a), rb.Hash); err == nil || !strings.Contains(err.Error(), rb.Hash) {
		t.Errorf("a large Put with the wrong expected hash: %v", err)
	}
}

// TestEncryptionAtRest: with a key file, no stored byte — object, index or
// pack record — shows the content; another key cannot read it and says so.
func TestEncryptionAtRest(t *testing.T) {
	dir := t.TempDir()
	key := keyFile(t)
	v, err := Open(dir, Options{KeyFile: key, Compress: true, SmallObjects: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	marker := []byte("SECRET-SCENE-MARKER")
	small := append(bytes.Clone(marker), " small"...)
	large := append(bytes.Repeat(append(bytes.Clone(marker), random(200)...), 30000), random(100)...) // ~6.5 MiB: chunked
	var refs []Ref
	for _, b := range [][]byte{small, large, bytes.Repeat(marker, 100)} {
		r, err := v.Put(bg, bytes.NewReader(b), "")
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, r)
	}
	if got := read(t, v, refs[1].Hash); got != string(large) {
		t.Fatal("the encrypted chunked object does not read back")
	}
	v.Close()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, marker) {
				t.Errorf("%s holds the content in the clear", p)
			}
		}
		return nil
	})
	other, err := Open(dir, Options{KeyFile: keyFile(t), SmallObjects: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, r := range refs {
		if _, err := other.Open(bg, r.Hash); !errors.Is(err, filter.ErrWrongKey) {
			t.Errorf("opening %s with another key: %v, want ErrWrongKey", r.Hash[:8], err)
		}
	}
	v, err = Open(dir, Options{SmallObjects: 1 << 10}) // no key configured
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Open(bg, refs[0].Hash); err == nil || !strings.Contains(err.Error(), "aes-256-gcm") {
		t.Errorf("opening an encrypted object without a key: %v, want an error naming the filter", err)
	}
}

// TestCommandFilter: objects pass through an external program, one process
// for all of them, and read back.
func TestCommandFilter(t *testing.T) {
	xor := filepath.Join(t.TempDir(), "xorfilter")
	if out, err := execGo("build", "-o", xor, "../storage/filter/testdata/xorfilter"); err != nil {
		t.Fatalf("building the test filter: %v\n%s", err, out)
	}
	dir := t.TempDir()
	starts := filepath.Join(t.TempDir(), "starts")
	argv := []string{xor, "-starts", starts}
	v, err := Open(dir, Options{EncodeCommand: argv, DecodeCommand: argv, SmallObjects: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, b := range [][]byte{[]byte("tiny"), random(50_000), random(5 << 20)} {
		r, err := v.Put(bg, bytes.NewReader(b), "")
		if err != nil {
			t.Fatal(err)
		}
		if got := read(t, v, r.Hash); got != string(b) {
			t.Fatalf("object of %d bytes read back wrong", len(b))
		}
	}
	if b, _ := os.ReadFile(starts); strings.Count(string(b), "\n") != 2 {
		t.Errorf("the filter program started %d times for 10 objects; want twice (one encoder, one decoder)", strings.Count(string(b), "\n"))
	}
}

func execGo(args ...string) ([]byte, error) {
	return exec.Command("go", args...).CombinedOutput()
}

// FuzzDecodeIndex: an index object decodes to chunks of sane sizes or is
// refused as damaged; what decodes encodes back to the same bytes.
func FuzzDecodeIndex(f *testing.F) {
	f.Add(encodeIndex(nil))
	f.Add(encodeIndex([]cdc.ChunkRef{{Hash: [32]byte{1}, Size: 1 << 20}, {Hash: [32]byte{2}, Size: 7}}))
	f.Add([]byte("DVX1\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parts, err := decodeIndex(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("refused with %v, not ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(encodeIndex(parts), b) {
			t.Fatal("a decoded index does not encode back to its bytes")
		}
	})
}

// bg is the context of test calls that are not about contexts.
var bg = context.Background()

// has is Has for tests, which fails the test on an error.
func has(t testing.TB, v *Vault, hash string) bool {
	t.Helper()
	ok, err := v.Has(bg, hash)
	if err != nil {
		t.Fatalf("Has(%s): %v", hash[:min(8, len(hash))], err)
	}
	return ok
}
