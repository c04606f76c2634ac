package cdc

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// writeFiles creates files (path → content) under dir with mode 0644,
// or 0755 for paths ending in ".sh".
func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for p, b := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(full, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
}

func openRoot(t *testing.T, dir string) fs.FS {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return root.FS()
}

func TestBuildTree(t *testing.T) {
	files := map[string][]byte{
		"distrenjob.xml":      []byte("<distrenjob/>"),
		"a/b":                 randData(20, 300<<10),
		"a-b":                 randData(21, 10),
		"a/c/big.exr":         randData(22, 700<<10),
		"a/c/copy.exr":        randData(22, 700<<10), // same content: same chunks
		"empty":               nil,
		"run.sh":              []byte("#!/bin/sh\n"),
		"deep/er/still/x.inc": bytes.Repeat([]byte("#declare X = 1;\n"), 5000),
	}
	dir := t.TempDir()
	writeFiles(t, dir, files)
	c := newChunker(t, small)

	store := map[[32]byte][]byte{}
	puts := 0
	tr, err := BuildTree(openRoot(t, dir), c, func(ch Chunk) error {
		puts++
		store[ch.Hash] = bytes.Clone(ch.Data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range tr.Files {
		paths = append(paths, f.Path)
		var got []byte
		for _, r := range f.Chunks {
			got = append(got, store[r.Hash]...)
		}
		if !bytes.Equal(got, files[f.Path]) || f.Size != int64(len(files[f.Path])) {
			t.Errorf("%s: chunks rebuild %d bytes, size %d; want %d", f.Path, len(got), f.Size, len(files[f.Path]))
		}
		want := uint32(0o644)
		if strings.HasSuffix(f.Path, ".sh") {
			want = 0o755
		}
		if f.Mode != want {
			t.Errorf("%s: mode %#o, want %#o", f.Path, f.Mode, want)
		}
	}
	wantPaths := []string{"a-b", "a/b", "a/c/big.exr", "a/c/copy.exr", "deep/er/still/x.inc", "distrenjob.xml", "empty", "run.sh"}
	if !slices.Equal(paths, wantPaths) {
		t.Errorf("paths %q, want %q", paths, wantPaths)
	}
	if err := tr.Validate(); err != nil {
		t.Error(err)
	}
	if n := len(Missing(tr, func([32]byte) bool { return false })); n != len(store) || puts <= n {
		t.Errorf("%d distinct chunks, %d stored, %d puts: the copy should repeat chunks", n, len(store), puts)
	}

	// The same directory gives the same tree, through os.DirFS too.
	tr2, err := BuildTree(os.DirFS(dir), c, func(Chunk) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := tr.Hash()
	h2, _ := tr2.Hash()
	if h1 != h2 {
		t.Error("two builds of one directory hash differently")
	}

	// An error from put stops the build and names the file.
	full := errors.New("disk full")
	_, err = BuildTree(openRoot(t, dir), c, func(Chunk) error { return full })
	if !errors.Is(err, full) || !strings.Contains(err.Error(), "a-b") {
		t.Errorf("put error: %v, want it wrapped with the path", err)
	}
}

func TestBuildTreeEmptyDir(t *testing.T) {
	tr, err := BuildTree(openRoot(t, t.TempDir()), newChunker(t, small), func(Chunk) error { return nil })
	if err != nil || len(tr.Files) != 0 {
		t.Fatalf("empty directory: %+v, %v", tr, err)
	}
}

func TestBuildTreeRefusesIrregular(t *testing.T) {
	c := newChunker(t, small)
	put := func(Chunk) error { return nil }

	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{"scene.pov": []byte("x"), "tex/wood.png": []byte("y")})
	if err := os.Symlink("../scene.pov", filepath.Join(dir, "tex", "link.pov")); err != nil {
		t.Fatal(err)
	}
	for name, fsys := range map[string]fs.FS{"os.Root": openRoot(t, dir), "os.DirFS": os.DirFS(dir)} {
		_, err := BuildTree(fsys, c, put)
		if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "tex/link.pov: is a symbolic link") {
			t.Errorf("%s: symlink: %v", name, err)
		}
	}

	for _, tc := range []struct {
		name string
		fsys fs.FS
		want string
	}{
		{"symlink", fstest.MapFS{"a/l": {Data: []byte("b"), Mode: fs.ModeSymlink}}, "a/l: is a symbolic link"},
		{"device", fstest.MapFS{"dev/sda": {Mode: fs.ModeDevice}}, "dev/sda: is a device"},
		{"char device", fstest.MapFS{"null": {Mode: fs.ModeDevice | fs.ModeCharDevice}}, "null: is a character device"},
		{"pipe", fstest.MapFS{"p": {Mode: fs.ModeNamedPipe}}, "p: is a named pipe"},
		{"socket", fstest.MapFS{"s": {Mode: fs.ModeSocket}}, "s: is a socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BuildTree(tc.fsys, c, put)
			if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrNotRegular with %q", err, tc.want)
			}
		})
	}

	// A name the tree format cannot hold is refused by name too.
	_, err := BuildTree(fstest.MapFS{`a\b`: {Data: []byte("x")}}, c, put)
	if !errors.Is(err, ErrInvalidTree) || !strings.Contains(err.Error(), `"a\\b"`) {
		t.Errorf("backslash: %v", err)
	}
}
