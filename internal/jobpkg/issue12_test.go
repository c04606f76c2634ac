package jobpkg

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestExtractOverAllOrNothing: a tarball that fails part-way — a duplicate
// path after good files, a stream cut short, a file where the directory
// holds a directory, a directory where it holds a file — changes nothing in
// the directory extracted into, and leaves no temporary file there; a good
// one replaces what it holds.
func TestExtractOverAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "out.png"), []byte("old"), 0o644)
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "keep"), []byte("keep"), 0o644)
	os.WriteFile(filepath.Join(dir, "file"), []byte("a file"), 0o644)
	before, _ := readTree(t, dir)
	good := mkTar(t, reg("out.png", "new"), reg("frame-2/out.png", "two"))
	for _, c := range []struct {
		name string
		tar  []byte
		want error
	}{
		{"duplicate path", mkTar(t, reg("out.png", "new"), reg("a.png", "a"), reg("out.png", "again")), ErrUnsafe},
		{"truncated", good[:1024+100], nil}, // in the second header
		{"a file where a directory is", mkTar(t, reg("out.png", "new"), reg("sub", "x")), ErrUnsafe},
		{"a directory where a file is", mkTar(t, reg("out.png", "new"), reg("file/x", "x")), ErrUnsafe},
	} {
		_, err := ExtractOver(bytes.NewReader(c.tar), dir, Limits{})
		if err == nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
		if tree, _ := readTree(t, dir); !reflect.DeepEqual(tree, before) {
			t.Errorf("%s: the directory changed: %v, was %v", c.name, tree, before)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 3 {
			t.Errorf("%s: the directory holds %d entries, want the 3 it had (a temporary one left?)", c.name, len(ents))
		}
	}
	files, err := ExtractOver(bytes.NewReader(good), dir, Limits{})
	if err != nil || len(files) != 2 {
		t.Fatalf("good tarball: %v %v", files, err)
	}
	tree, _ := readTree(t, dir)
	want := map[string]string{"out.png": "new", "frame-2/out.png": "two", "sub/keep": "keep", "file": "a file"}
	if !reflect.DeepEqual(tree, want) {
		t.Fatalf("tree = %v, want %v", tree, want)
	}
}

// TestPathLimits: a path longer than MaxPathLen, or with an element longer
// than MaxNameLen, is refused as unsafe, and the message shortens it.
func TestPathLimits(t *testing.T) {
	long := strings.Repeat("a/", 2100) + "x"
	for _, c := range []struct{ path, want string }{
		{long, "4201 bytes, longer than the limit of 4096"},
		{strings.Repeat("n", 256), "an element of 256 bytes, longer than the limit of 255"},
		{"d/" + strings.Repeat("n", 300) + "/f", "an element of 300 bytes"},
	} {
		err := Scan(bytes.NewReader(mkTar(t, reg(c.path, "x"))), Limits{}, func(File, io.Reader) error { return nil })
		if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), c.want) || len(err.Error()) > 300 {
			t.Errorf("%d bytes: %v, want ErrUnsafe saying %q in a short message", len(c.path), err, c.want)
		}
	}
	for _, ok := range []string{strings.Repeat("a/", 2047) + "xy", strings.Repeat("n", 255)} {
		if _, err := CleanPath(ok); err != nil {
			t.Errorf("a path of %d bytes at the limits: %v", len(ok), err)
		}
	}
	if got := Shorten(long); len(got) > 100 || !strings.HasPrefix(got, "a/a/") || !strings.HasSuffix(got, "a/x") || !strings.Contains(got, "…") {
		t.Errorf("Shorten = %q", got)
	}
}
