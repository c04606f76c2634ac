package jobpkg

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// ent is one entry of a tarball built in memory.
type ent struct {
	name string
	typ  byte
	body string
	mode int64
	link string
}

func reg(name, body string) ent { return ent{name: name, typ: tar.TypeReg, body: body, mode: 0o644} }

func mkTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: mode, Linkname: e.link}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zst(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newDst returns an empty dst directory inside its own parent directory.
func newDst(t testing.TB) (parent, dst string) {
	parent = t.TempDir()
	dst = filepath.Join(parent, "dst")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	return parent, dst
}

// checkParent fails unless parent holds dst alone.
func checkParent(t testing.TB, parent string) {
	t.Helper()
	ents, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "dst" || !ents[0].IsDir() {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("parent of dst holds %v, want only dst", names)
	}
}

// readTree returns path -> content of every regular file under dir, plus
// the set of executable ones.
func readTree(t testing.TB, dir string) (map[string]string, map[string]bool) {
	t.Helper()
	files, exec := map[string]string{}, map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = string(b)
		fi, _ := d.Info()
		exec[filepath.ToSlash(rel)] = fi.Mode()&0o100 != 0
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, exec
}

func TestExtractRejectsUnsafe(t *testing.T) {
	cases := []struct {
		name  string
		ents  []ent
		entry string // must appear quoted in the error
	}{
		{"absolute", []ent{reg("/etc/x", "x")}, "/etc/x"},
		{"dotdot", []ent{reg("../x", "x")}, "../x"},
		{"nested dotdot", []ent{reg("a/../../x", "x")}, "a/../../x"},
		{"inner dotdot", []ent{reg("a/../b", "x")}, "a/../b"},
		{"backslash", []ent{reg(`..\x`, "x")}, `..\\x`},
		{"symlink", []ent{{name: "ln", typ: tar.TypeSymlink, link: "/etc"}}, "ln"},
		{"hardlink", []ent{reg("a", "x"), {name: "hl", typ: tar.TypeLink, link: "a"}}, "hl"},
		{"char device", []ent{{name: "null", typ: tar.TypeChar}}, "null"},
		{"block device", []ent{{name: "sda", typ: tar.TypeBlock}}, "sda"},
		{"fifo", []ent{{name: "pipe", typ: tar.TypeFifo}}, "pipe"},
		{"duplicate", []ent{reg("a/b", "1"), reg("a/b", "2")}, "a/b"},
		{"duplicate after clean", []ent{reg("a/b", "1"), reg("./a//b", "2")}, "./a//b"},
		{"through symlink", []ent{{name: "d", typ: tar.TypeSymlink, link: ".."}, reg("d/x", "x")}, "d"},
		{"file under a file", []ent{reg("a", "1"), reg("a/b", "2")}, "a/b"},
		{"dir over a file", []ent{reg("a", "1"), {name: "a/", typ: tar.TypeDir}}, "a/"},
		{"file over a dir", []ent{reg("a/b", "1"), reg("a", "2")}, "a"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parent, dst := newDst(t)
			_, err := Extract(bytes.NewReader(mkTar(t, c.ents...)), dst, Limits{})
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("err = %v, want ErrUnsafe", err)
			}
			if want := `tar entry "` + c.entry + `"`; !strings.Contains(err.Error(), want) {
				t.Errorf("err = %q, want it to contain %s", err, want)
			}
			checkParent(t, parent)
			// Nothing may have been created at the link's place either.
			if _, err := os.Lstat(filepath.Join(dst, "d")); c.name == "through symlink" && err == nil {
				t.Errorf("symlink entry was created")
			}
		})
	}
}

func TestExtractErrorMessage(t *testing.T) {
	_, dst := newDst(t)
	_, err := Extract(bytes.NewReader(mkTar(t, reg("../etc/passwd", "x"))), dst, Limits{})
	want := `tar entry "../etc/passwd": unsafe path: escapes the package root`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestExtractNeedsEmptyDst(t *testing.T) {
	_, dst := newDst(t)
	os.WriteFile(filepath.Join(dst, "old"), []byte("x"), 0o644)
	if _, err := Extract(bytes.NewReader(mkTar(t, reg("a", "x"))), dst, Limits{}); err == nil {
		t.Fatal("Extract into a non-empty directory succeeded")
	}
}

func TestLimits(t *testing.T) {
	tb := mkTar(t, reg("a", strings.Repeat("a", 600)), reg("b", strings.Repeat("b", 600)), reg("c", "c"))
	t.Run("bytes", func(t *testing.T) {
		_, dst := newDst(t)
		_, err := Extract(bytes.NewReader(tb), dst, Limits{MaxBytes: 1000})
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), `"b"`) {
			t.Fatalf("err = %v, want ErrTooLarge naming b", err)
		}
		err = Scan(bytes.NewReader(tb), Limits{MaxBytes: 1000}, func(File, io.Reader) error { return nil })
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Scan err = %v, want ErrTooLarge", err)
		}
	})
	t.Run("bytes exact", func(t *testing.T) {
		_, dst := newDst(t)
		if _, err := Extract(bytes.NewReader(tb), dst, Limits{MaxBytes: 1201, MaxEntries: 3}); err != nil {
			t.Fatalf("at the limits: %v", err)
		}
	})
	t.Run("streamed count", func(t *testing.T) {
		// The check while copying must hold even when the early header
		// check is passed: the byte counter is shared across entries.
		cr := &countReader{r: strings.NewReader(strings.Repeat("x", 100)), total: new(int64), max: 50}
		if _, err := io.Copy(io.Discard, cr); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
	})
	t.Run("entries", func(t *testing.T) {
		_, dst := newDst(t)
		_, err := Extract(bytes.NewReader(tb), dst, Limits{MaxEntries: 2})
		if !errors.Is(err, ErrTooMany) || !strings.Contains(err.Error(), `"c"`) {
			t.Fatalf("err = %v, want ErrTooMany naming c", err)
		}
	})
}

func TestCompressed(t *testing.T) {
	plain := mkTar(t,
		ent{name: "dir/", typ: tar.TypeDir, mode: 0o755},
		reg("dir/a.txt", "alpha"),
		ent{name: "bin/run", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o755},
		reg("empty", ""))
	var want []File
	var wantTree map[string]string
	for i, b := range [][]byte{plain, gz(t, plain), zst(t, plain)} {
		_, dst := newDst(t)
		files, err := Extract(bytes.NewReader(b), dst, Limits{})
		if err != nil {
			t.Fatalf("form %d: %v", i, err)
		}
		tree, _ := readTree(t, dst)
		if i == 0 {
			want, wantTree = files, tree
			if len(files) != 3 || files[0].Path != "bin/run" || files[0].Mode != 0o755 {
				t.Fatalf("plain gives %+v", files)
			}
			continue
		}
		if !reflect.DeepEqual(files, want) || !reflect.DeepEqual(tree, wantTree) {
			t.Errorf("form %d gives %+v %v, want %+v %v", i, files, tree, want, wantTree)
		}
	}
}

func makeTree(t *testing.T) string {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"scene.blend":         "blend",
		"tex/wood.png":        "png",
		"tex/deep/nested.exr": strings.Repeat("exr", 10000),
		"scripts/render.sh":   "#!/bin/sh\necho hi\n",
		"a-very-long-name/" + strings.Repeat("x", 120): "long",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "scripts/render.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "emptydir"), 0o755)
	return dir
}

func TestRoundTrip(t *testing.T) {
	src := makeTree(t)
	var b1, b2 bytes.Buffer
	if err := WriteDir(&b1, src); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(&b2, src); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.Bytes(), b2.Bytes()) {
		t.Fatal("WriteDir is not deterministic")
	}
	// Headers are normalised.
	tr := tar.NewReader(bytes.NewReader(b1.Bytes()))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !hdr.ModTime.Equal(epoch) || hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Typeflag != tar.TypeReg {
			t.Errorf("header not normalised: %+v", hdr)
		}
	}
	_, dst := newDst(t)
	files, err := Extract(&b1, dst, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	wantTree, wantExec := readTree(t, src)
	gotTree, gotExec := readTree(t, dst)
	if !reflect.DeepEqual(gotTree, wantTree) {
		t.Errorf("round trip changed the files")
	}
	if !reflect.DeepEqual(gotExec, wantExec) || !gotExec["scripts/render.sh"] || gotExec["scene.blend"] {
		t.Errorf("exec bits: got %v, want %v", gotExec, wantExec)
	}
	if len(files) != len(wantTree) {
		t.Fatalf("Extract returned %d files, want %d", len(files), len(wantTree))
	}
	for i, f := range files {
		if i > 0 && files[i-1].Path >= f.Path {
			t.Errorf("files not sorted: %q before %q", files[i-1].Path, f.Path)
		}
		if f.Size != int64(len(wantTree[f.Path])) {
			t.Errorf("%s: size %d, want %d", f.Path, f.Size, len(wantTree[f.Path]))
		}
	}
}

func TestWriteDirRefusesSymlink(t *testing.T) {
	src := makeTree(t)
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "tex", "evil")); err != nil {
		t.Skip("no symlinks:", err)
	}
	err := WriteDir(io.Discard, src)
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "evil") {
		t.Fatalf("err = %v, want ErrUnsafe naming evil", err)
	}
}

func TestWriteFiles(t *testing.T) {
	src := makeTree(t)
	var buf bytes.Buffer
	paths := []string{"tex/wood.png", "scene.blend"}
	if err := WriteFiles(&buf, src, paths); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := Scan(&buf, Limits{}, func(f File, r io.Reader) error {
		got = append(got, f.Path)
		return nil
	})
	if err != nil || !reflect.DeepEqual(got, paths) {
		t.Fatalf("Scan = %v, %v; want %v", got, err, paths)
	}
	for _, bad := range []string{"tex", "../x", "/etc/passwd", "missing"} {
		err := WriteFiles(io.Discard, src, []string{bad})
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("WriteFiles(%q) = %v, want an error naming it", bad, err)
		}
		if bad != "missing" && !errors.Is(err, ErrUnsafe) {
			t.Errorf("WriteFiles(%q) = %v, want ErrUnsafe", bad, err)
		}
	}
	os.Symlink("scene.blend", filepath.Join(src, "ln"))
	if err := WriteFiles(io.Discard, src, []string{"ln"}); !errors.Is(err, ErrUnsafe) {
		t.Errorf("WriteFiles of a symlink = %v, want ErrUnsafe", err)
	}
}

func TestExtractOver(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "out"), 0o755)
	os.WriteFile(filepath.Join(dir, "out", "f1.png"), []byte("old"), 0o644)
	os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("keep"), 0o644)
	files, err := ExtractOver(bytes.NewReader(mkTar(t, reg("out/f1.png", "new"), reg("out/f2.png", "two"))), dir, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("files = %+v", files)
	}
	tree, _ := readTree(t, dir)
	want := map[string]string{"out/f1.png": "new", "out/f2.png": "two", "keep.txt": "keep"}
	if !reflect.DeepEqual(tree, want) {
		t.Fatalf("tree = %v, want %v (no temporary file left)", tree, want)
	}
	_, err = ExtractOver(bytes.NewReader(mkTar(t, reg("x", "1"), reg("x", "2"))), dir, Limits{})
	if !errors.Is(err, ErrUnsafe) {
		t.Fatalf("duplicate: err = %v, want ErrUnsafe", err)
	}
	_, err = ExtractOver(bytes.NewReader(mkTar(t, reg("../x", "1"))), dir, Limits{})
	if !errors.Is(err, ErrUnsafe) {
		t.Fatalf("escape: err = %v, want ErrUnsafe", err)
	}
	// A symlink already in dir pointing outside must not let a write escape.
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err == nil {
		_, err = ExtractOver(bytes.NewReader(mkTar(t, reg("link/x", "1"))), dir, Limits{})
		if err == nil {
			t.Error("write through an outside symlink succeeded")
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Errorf("something was written outside: %v", ents)
		}
	}
}

func TestCopyEntries(t *testing.T) {
	src := gz(t, mkTar(t, reg("a.png", "A"), ent{name: "d/", typ: tar.TypeDir}, reg("d/b.png", "B"), reg("skip.log", "L")))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	rename := func(p string) string {
		if strings.HasSuffix(p, ".log") {
			return ""
		}
		return "frame-0001/" + p
	}
	if err := CopyEntries(tw, bytes.NewReader(src), Limits{}, rename); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	got := map[string]string{}
	err := Scan(&buf, Limits{}, func(f File, r io.Reader) error {
		b, err := io.ReadAll(r)
		got[f.Path] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"frame-0001/a.png": "A", "frame-0001/d/b.png": "B"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("copied %v, want %v", got, want)
	}
	err = CopyEntries(tar.NewWriter(io.Discard), bytes.NewReader(src), Limits{}, func(string) string { return "../x" })
	if !errors.Is(err, ErrUnsafe) {
		t.Errorf("unsafe rename: err = %v, want ErrUnsafe", err)
	}
	err = CopyEntries(tar.NewWriter(io.Discard), bytes.NewReader(src), Limits{MaxBytes: 2}, nil)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("limit: err = %v, want ErrTooLarge", err)
	}
}

func TestScanFnError(t *testing.T) {
	boom := errors.New("boom")
	err := Scan(bytes.NewReader(mkTar(t, reg("a", "x"))), Limits{}, func(File, io.Reader) error { return boom })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("err = %v, want boom naming a", err)
	}
}

func TestOpen(t *testing.T) {
	src := makeTree(t)
	rc, size, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	if size != -1 {
		t.Errorf("dir size = %d, want -1", size)
	}
	want, _ := readTree(t, src)
	got := map[string]string{}
	err = Scan(rc, Limits{}, func(f File, r io.Reader) error {
		b, err := io.ReadAll(r)
		got[f.Path] = string(b)
		return err
	})
	rc.Close()
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Scan of Open(dir): %v; equal %v", err, reflect.DeepEqual(got, want))
	}

	// Closing early stops the writer goroutine without a hang.
	rc, _, err = Open(src)
	if err != nil {
		t.Fatal(err)
	}
	rc.Read(make([]byte, 10))
	rc.Close()

	tgz := filepath.Join(t.TempDir(), "job.tar.gz")
	data := gz(t, mkTar(t, reg("scene.blend", "x")))
	os.WriteFile(tgz, data, 0o644)
	rc, size, err = Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if size != int64(len(data)) {
		t.Errorf("size = %d, want %d", size, len(data))
	}
	other := filepath.Join(t.TempDir(), "job.zip")
	os.WriteFile(other, []byte("PK"), 0o644)
	if _, _, err := Open(other); err == nil || !strings.Contains(err.Error(), "job.zip") {
		t.Errorf("Open(.zip) = %v, want an error naming it", err)
	}
	if _, _, err := Open(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("Open(missing) succeeded")
	}
}

func TestCleanPath(t *testing.T) {
	ok := map[string]string{
		".":         ".",
		"./":        ".",
		"a":         "a",
		"./a/b":     "a/b",
		"a//b/":     "a/b",
		"a/./b":     "a/b",
		"..a/b..":   "..a/b..",
		"frame.exr": "frame.exr",
	}
	for in, want := range ok {
		got, err := CleanPath(in)
		if err != nil || got != want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "/", "/etc/x", "..", "../x", "a/../../x", "a/../b", "a/..", `a\b`, `..\x`, "a\x00b"} {
		got, err := CleanPath(in)
		if !errors.Is(err, ErrUnsafe) {
			t.Errorf("CleanPath(%q) = %q, %v; want ErrUnsafe", in, got, err)
		}
	}
}

func FuzzExtract(f *testing.F) {
	f.Add(mkTar(f, reg("a", "x"), ent{name: "d/", typ: tar.TypeDir}, reg("d/b", "yy")))
	f.Add(gz(f, mkTar(f, reg("a/b/c", "x"))))
	f.Add(zst(f, mkTar(f, reg("z", "zz"))))
	f.Add(mkTar(f, reg("../x", "x")))
	f.Add(mkTar(f, ent{name: "d", typ: tar.TypeSymlink, link: ".."}, reg("d/x", "x")))
	f.Add(mkTar(f, reg("a", "1"), ent{name: "a/b", typ: tar.TypeDir}))
	f.Add([]byte{})
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, data []byte) {
		parent, dst := newDst(t)
		files, err := Extract(bytes.NewReader(data), dst, Limits{MaxBytes: 1 << 20, MaxEntries: 64})
		checkParent(t, parent)
		filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !d.Type().IsRegular() {
				t.Errorf("%s: non-regular file created", p)
			}
			return nil
		})
		if err == nil {
			for _, f := range files {
				if _, err := CleanPath(f.Path); err != nil || f.Path == "." {
					t.Errorf("returned unsafe path %q", f.Path)
				}
			}
		}
	})
}

// TestZstdWindowLimit: a zstd stream that asks for a window over
// MaxZstdWindow is refused before the decoder allocates it (a 50-byte
// stream could otherwise cost 512 MiB), and one within it is read.
func TestZstdWindowLimit(t *testing.T) {
	tarball := mkTar(t, reg("a.txt", "hello"))
	compress := func(window int) []byte {
		var buf bytes.Buffer
		zw, err := zstd.NewWriter(&buf, zstd.WithWindowSize(window), zstd.WithSingleSegment(false))
		if err != nil {
			t.Fatal(err)
		}
		// Flushed in parts, so that the frame holds no content size and
		// its window is the one asked for.
		zw.Write(tarball[:512])
		zw.Flush()
		zw.Write(tarball[512:])
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	_, dst := newDst(t)
	_, err := Extract(bytes.NewReader(compress(512<<20)), dst, Limits{})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "window is larger than the limit of 64 MiB") {
		t.Errorf("512 MiB window: err = %v, want ErrTooLarge naming the window limit", err)
	}
	_, dst = newDst(t)
	if files, err := Extract(bytes.NewReader(compress(MaxZstdWindow)), dst, Limits{}); err != nil || len(files) != 1 {
		t.Errorf("window of %d: files %v, err %v", MaxZstdWindow, files, err)
	}
}

// TestExtractCollisionMessages: entries whose paths collide are named with
// what they collide with, not with the file system's error.
func TestExtractCollisionMessages(t *testing.T) {
	for want, ents := range map[string][]ent{
		`tar entry "a/b/c": unsafe tar entry: its directory "a" is a file of the package`:            {reg("a", "1"), reg("a/b/c", "2")},
		`tar entry "a": unsafe tar entry: a file where the package has a directory of the same path`: {{name: "a/", typ: tar.TypeDir}, reg("a", "2")},
	} {
		_, dst := newDst(t)
		if _, err := Extract(bytes.NewReader(mkTar(t, ents...)), dst, Limits{}); err == nil || err.Error() != want {
			t.Errorf("err = %v, want %s", err, want)
		}
	}
}

// TestExtractTruncated: a tarball that ends inside a file's content names
// the file and says it is cut short.
func TestExtractTruncated(t *testing.T) {
	b := mkTar(t, reg("a.txt", "a"), reg("b.txt", strings.Repeat("b", 2000)))
	_, dst := newDst(t)
	_, err := Extract(bytes.NewReader(b[:1024+512+100]), dst, Limits{})
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), `tar entry "b.txt": unexpected EOF: the tarball ends inside it`) {
		t.Errorf("err = %v", err)
	}
}
