package vault

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPutOpen(t *testing.T) {
	t.Run("files", func(t *testing.T) { testPutOpen(t, Options{}) })
	t.Run("packs", func(t *testing.T) { testPutOpen(t, Options{SmallObjects: 16}) })
}

func testPutOpen(t *testing.T, opt Options) {
	dir := t.TempDir()
	v, err := Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ref, err := v.Put(strings.NewReader("hello"), "")
	if err != nil {
		t.Fatal(err)
	}
	const want = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	if ref.Hash != want || ref.Size != 5 {
		t.Fatalf("ref = %+v", ref)
	}
	// Storing again deduplicates; a wrong expected hash stores nothing.
	if _, err := v.Put(strings.NewReader("hello"), want); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Put(strings.NewReader("other"), want); err == nil {
		t.Fatal("Put accepted content that does not match the expected hash")
	}
	f, err := v.Open(want)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "hello" {
		t.Fatalf("read %q", b)
	}
	if _, err := v.Open(strings.Repeat("0", 64)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open(missing) = %v", err)
	}
	if _, err := v.Open("../../etc/passwd"); err == nil {
		t.Fatal("Open accepted a path as object name")
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	if len(ents) != 0 {
		t.Fatalf("temporary files left behind: %v", ents)
	}
	dst := filepath.Join(t.TempDir(), "x")
	if err := v.CopyTo(want, dst, 0o644, false); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "hello" {
		t.Fatalf("CopyTo wrote %q", b)
	}
}

func TestOpenClearsPartialWrites(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tmp", "put-123"), []byte("half"), 0o644)
	if _, err := Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Fatalf("partial write survived Open: %v", ents)
	}
}
