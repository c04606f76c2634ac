package worker

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/distren/distren/internal/api"
)

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func openTestStore(t *testing.T) (*store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

// put stores b and returns its chunk reference.
func put(t *testing.T, s *store, b []byte) api.ChunkRef {
	t.Helper()
	h := hashOf(b)
	n, err := s.Put(bytes.NewReader(b), h)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if n != int64(len(b)) {
		t.Fatalf("Put returned size %d for %d bytes", n, len(b))
	}
	return api.ChunkRef{Hash: h, Size: n}
}

func TestStoreRoundTrip(t *testing.T) {
	s, dir := openTestStore(t)
	data := []byte("a chunk of a scene")
	h := hashOf(data)
	if s.Has(h) {
		t.Fatal("an empty cache has the object")
	}
	put(t, s, data)
	put(t, s, data) // storing it again changes nothing
	if !s.Has(h) {
		t.Fatal("Has is false after Put")
	}
	// The layout existing caches have: objects/ab/<hash>, the plain content.
	want := filepath.Join(dir, "objects", h[:2], h)
	if p, err := s.Path(h); err != nil || p != want {
		t.Errorf("Path = %q, %v; want %q", p, err, want)
	}
	if b, err := os.ReadFile(want); err != nil || !bytes.Equal(b, data) {
		t.Errorf("file %s holds %q, %v", want, b, err)
	}
	f, err := s.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil || !bytes.Equal(b, data) {
		t.Errorf("Open read %q, %v; want %q", b, err, data)
	}
	if err := s.Remove(h); err != nil {
		t.Fatal(err)
	}
	if s.Has(h) {
		t.Error("Has is true after Remove")
	}
	if _, err := s.Open(h); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), h) {
		t.Errorf("Open after Remove: %v; want a not-found error naming the object", err)
	}
	if err := s.Remove(h); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second Remove: %v; want a not-found error", err)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestStorePutWrongHashStoresNothing(t *testing.T) {
	s, dir := openTestStore(t)
	data := []byte("what the server sent")
	got, want := hashOf(data), hashOf([]byte("what the worker asked for"))
	_, err := s.Put(bytes.NewReader(data), want)
	if !errors.Is(err, errMismatch) {
		t.Fatalf("Put with a wrong hash: %v; want errMismatch", err)
	}
	if !strings.Contains(err.Error(), got) || !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name both hashes", err)
	}
	if s.Has(want) || s.Has(got) {
		t.Error("the object was stored")
	}
	for _, sub := range []string{"objects", "tmp"} {
		filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				t.Errorf("file left behind: %s", p)
			}
			return nil
		})
	}
	// A reader that fails stores nothing either.
	_, err = s.Put(io.MultiReader(bytes.NewReader(data), iotestErrReader{}), got)
	if err == nil || s.Has(got) {
		t.Errorf("Put of a failing reader: %v, stored %v", err, s.Has(got))
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestStoreRefusesInvalidNames(t *testing.T) {
	s, _ := openTestStore(t)
	valid := hashOf([]byte("x"))
	for _, h := range []string{"", "ab", strings.ToUpper(valid), valid[:63], valid + "0",
		"../../../../etc/passwd" + valid[22:], valid[:62] + "/x", valid[:63] + "g"} {
		if s.Has(h) {
			t.Errorf("Has(%q) is true", h)
		}
		if _, err := s.Path(h); err == nil {
			t.Errorf("Path(%q) succeeded", h)
		}
		if _, err := s.Open(h); err == nil {
			t.Errorf("Open(%q) succeeded", h)
		}
		if err := s.Remove(h); err == nil {
			t.Errorf("Remove(%q) succeeded", h)
		}
		if _, err := s.Put(strings.NewReader("x"), h); err == nil {
			t.Errorf("Put(%q) succeeded", h)
		}
	}
}

// A worker opens a cache left by an earlier process: its objects are kept
// and indexed, its temporary files removed.
func TestStoreOpensExistingCacheAndClearsLeftovers(t *testing.T) {
	dir := t.TempDir()
	data := []byte("cached by an earlier run")
	h := hashOf(data)
	obj := filepath.Join(dir, "cache", "objects", h[:2], h)
	leftover := filepath.Join(dir, "cache", "tmp", "put-12345")
	for p, b := range map[string][]byte{obj: data, leftover: data[:5]} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("leftover temporary file still there: %v", err)
	}
	if !w.cache.Has(h) {
		t.Error("the object of the earlier run is gone")
	}
	if n := w.idx.usedBytes(); n != int64(len(data)) {
		t.Errorf("index holds %d bytes, want %d", n, len(data))
	}
}

// umasked returns the mode a new file created with perm gets here.
func umasked(t *testing.T, perm fs.FileMode) fs.FileMode {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestMaterialize(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	files := []struct {
		name   string
		chunks [][]byte
		perm   fs.FileMode
	}{
		{"no chunk", nil, 0o644},
		{"one empty chunk", [][]byte{{}}, 0o644},
		{"one chunk", [][]byte{random(300 << 10)}, 0o644},
		{"one chunk, executable", [][]byte{[]byte("#!/bin/sh\necho hi\n")}, 0o755},
		{"several chunks", [][]byte{random(5000), random(1), random(200 << 10), random(4096), random(77)}, 0o600},
		{"a chunk repeated", [][]byte{[]byte("abc"), []byte("defg"), []byte("abc")}, 0o644},
	}
	// Each way of copying: the system calls as they are (on this machine's
	// file system, FICLONE may or may not work), then each fallback forced.
	unsupported := func(err error) func(int, int) error { return func(int, int) error { return err } }
	modes := []struct {
		name          string
		ficlone       func(dst, src int) error
		copyFileRange func(rfd int, roff *int64, wfd int, woff *int64, n int, flags int) (int, error)
	}{
		{"system", nil, nil},
		{"no reflinks", unsupported(unix.EOPNOTSUPP), nil},
		{"no reflinks, no copy_file_range", unsupported(unix.EXDEV),
			func(int, *int64, int, *int64, int, int) (int, error) { return 0, unix.ENOSYS }},
		{"copy_file_range in short steps", unsupported(unix.EOPNOTSUPP),
			func(rfd int, roff *int64, wfd int, woff *int64, n int, flags int) (int, error) {
				return unix.CopyFileRange(rfd, roff, wfd, woff, min(n, 1000), flags)
			}},
		{"copy_file_range gives up midway", unsupported(unix.EINVAL), func() func(int, *int64, int, *int64, int, int) (int, error) {
			calls := 0
			return func(rfd int, roff *int64, wfd int, woff *int64, n int, flags int) (int, error) {
				if calls++; calls%2 == 0 {
					return 0, unix.EXDEV
				}
				return unix.CopyFileRange(rfd, roff, wfd, woff, min(n, 3), flags)
			}
		}()},
		{"copy_file_range copies nothing", unsupported(unix.EOPNOTSUPP),
			func(int, *int64, int, *int64, int, int) (int, error) { return 0, nil }},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			if m.ficlone != nil {
				old := ficlone
				ficlone = m.ficlone
				t.Cleanup(func() { ficlone = old })
			}
			if m.copyFileRange != nil {
				old := copyFileRange
				copyFileRange = m.copyFileRange
				t.Cleanup(func() { copyFileRange = old })
			}
			w, err := New(Config{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			scratch := t.TempDir()
			for _, f := range files {
				t.Run(f.name, func(t *testing.T) {
					var parts []api.ChunkRef
					for _, c := range f.chunks {
						parts = append(parts, put(t, w.cache, c))
					}
					dst := filepath.Join(scratch, strings.ReplaceAll(f.name, " ", "_"))
					if err := w.materialize(parts, dst, f.perm); err != nil {
						t.Fatal(err)
					}
					got, err := os.ReadFile(dst)
					if err != nil {
						t.Fatal(err)
					}
					if want := bytes.Join(f.chunks, nil); !bytes.Equal(got, want) {
						t.Fatalf("materialized %d bytes, not the %d bytes of the chunks", len(got), len(want))
					}
					fi, err := os.Stat(dst)
					if err != nil {
						t.Fatal(err)
					}
					if want := umasked(t, f.perm); fi.Mode() != want {
						t.Errorf("mode %v, want %v", fi.Mode(), want)
					}
					// A renderer writing to its input leaves the cache alone.
					if len(parts) == 0 {
						return
					}
					if err := os.WriteFile(dst, []byte("overwritten by the renderer"), 0o644); err != nil {
						t.Fatal(err)
					}
					for i, p := range parts {
						src, _ := w.cache.Path(p.Hash)
						b, err := os.ReadFile(src)
						if err != nil || !bytes.Equal(b, f.chunks[i]) || hashOf(b) != p.Hash {
							t.Fatalf("cached chunk %d changed by a write to the scratch file (%v)", i, err)
						}
					}
				})
			}
		})
	}
}

func TestMaterializeErrors(t *testing.T) {
	s, dir := openTestStore(t)
	a := put(t, s, []byte("present"))
	missing := hashOf([]byte("never fetched"))
	err := s.materialize([]api.ChunkRef{a, {Hash: missing, Size: 13}}, filepath.Join(dir, "out"), 0o644)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("materialize with a missing chunk: %v; want a not-found error naming it", err)
	}
	// The destination is a new file: an existing one is an error, not overwritten.
	existing := filepath.Join(dir, "existing")
	os.WriteFile(existing, []byte("keep"), 0o644)
	if err := s.materialize([]api.ChunkRef{a}, existing, 0o644); !errors.Is(err, fs.ErrExist) {
		t.Errorf("materialize over an existing file: %v; want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep" {
		t.Errorf("existing file now holds %q", b)
	}
}

// copyObject with a reader that is not a file copies through user space,
// from the destination's current offset.
func TestCopyObjectFromAReader(t *testing.T) {
	dst, err := os.Create(filepath.Join(t.TempDir(), "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	first := bytes.Repeat([]byte("0123456789"), 30000)
	second := []byte("and the rest")
	for _, b := range [][]byte{first, second} {
		n, err := copyObject(dst, struct{ io.Reader }{bytes.NewReader(b)})
		if err != nil || n != int64(len(b)) {
			t.Fatalf("copyObject = %d, %v; want %d bytes", n, err, len(b))
		}
	}
	got, err := os.ReadFile(dst.Name())
	if err != nil {
		t.Fatal(err)
	}
	if want := append(first, second...); !bytes.Equal(got, want) {
		t.Errorf("copied %d bytes, not the %d written", len(got), len(want))
	}
}
