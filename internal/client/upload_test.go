package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/farm"
)

// startFarm runs a server of no worker slots in this process and returns a
// client of it.
func startFarm(t *testing.T) *client.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- farm.Run(ctx, farm.Config{Data: t.TempDir(), Listen: "127.0.0.1:0", Name: "upload", Workers: 0, NoCompress: true,
			Log: slog.New(slog.DiscardHandler), Ready: func(u string) { ready <- u }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("farm: %v", err)
		}
	})
	select {
	case u := <-ready:
		c, err := client.New(u)
		if err != nil {
			t.Fatal(err)
		}
		return c
	case err := <-done:
		t.Fatalf("farm did not start: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("farm did not start in a minute")
	}
	return nil
}

// countingFS counts, per file, the bytes read from it, by Read and ReadAt.
type countingFS struct {
	fs.FS
	mu   sync.Mutex
	read map[string]int64
}

func (c *countingFS) Open(name string) (fs.File, error) {
	f, err := c.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return &countingFile{File: f, fs: c, name: name}, nil
}

func (c *countingFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(c.FS, name) }

func (c *countingFS) add(name string, n int) {
	c.mu.Lock()
	c.read[name] += int64(n)
	c.mu.Unlock()
}

// reads returns the counts so far and starts again from zero.
func (c *countingFS) reads() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.read
	c.read = map[string]int64{}
	return r
}

type countingFile struct {
	fs.File
	fs   *countingFS
	name string
}

func (f *countingFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	f.fs.add(f.name, n)
	return n, err
}

func (f *countingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.(io.ReaderAt).ReadAt(p, off)
	f.fs.add(f.name, n)
	return n, err
}

// writePackage writes a package of a manifest, two random textures (one of
// several chunks), a copy of the large one, and a small text file.
func writePackage(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	wood := random(9 << 20)
	files := map[string][]byte{
		"distrenjob.xml": []byte(`<distrenjob version="1"><name>up</name><backend name="builtin"/>
<frames><range first="1" last="2"/></frames><outputs><output>*.png</output></outputs></distrenjob>`),
		"textures/wood.bin":  wood,
		"textures/stone.bin": random(700 << 10),
		"textures/wood2.bin": wood, // the same chunks as wood.bin: sent once
		"scene.txt":          bytes.Repeat([]byte("sphere { <0,0,0>, 1 }\n"), 500),
	}
	for name, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, files
}

// TestSubmitDirReadsEachFileOnce: a submission reads each file of the
// package exactly once, although it sends the chunks the server lacks
// (each once, the duplicate file's not at all); the job's files are the
// package's. Files the index knows unchanged are not read, unless the
// server lacks their chunks: then each byte is read once too.
func TestSubmitDirReadsEachFileOnce(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ctx := context.Background()
	dir, files := writePackage(t)
	var total int64
	for _, b := range files {
		total += int64(len(b))
	}
	cfs := &countingFS{FS: os.DirFS(dir), read: map[string]int64{}}
	wantRead := func(step string, want func(name string) int64) {
		t.Helper()
		got := cfs.reads()
		for name, b := range files {
			if w := want(name); got[name] != w {
				t.Errorf("%s: read %d bytes of %s (%d bytes), want %d", step, got[name], name, len(b), w)
			}
		}
	}
	whole := func(name string) int64 { return int64(len(files[name])) }
	none := func(string) int64 { return 0 }

	c := startFarm(t)
	var last client.UploadProgress
	sub, st, err := c.SubmitFS(ctx, cfs, client.DirOptions{Index: client.OpenChunkIndex(dir), Progress: func(p client.UploadProgress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	wantRead("first submission", whole)
	copyLen := int64(len(files["textures/wood2.bin"]))
	if st.Total != total || st.Sent != total-copyLen || st.SentChunks != st.Chunks || st.Chunks < 4 {
		t.Errorf("first submission: %+v, want all %d bytes but the copy's %d sent", st, total, copyLen)
	}
	if last.Total != total || last.Done != total {
		t.Errorf("last progress %+v, want %d of %d bytes done", last, total, total)
	}
	// The server holds the package as it is (its files beside the
	// manifest).
	list, err := c.Files(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(files)-1 {
		t.Errorf("job has %d files, want %d", len(list), len(files)-1)
	}
	for _, f := range list {
		rc, err := c.File(ctx, sub.ID, f.N)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(b, files[f.Path]) {
			t.Errorf("job file %s: %d bytes (%v), not the package's %d", f.Path, len(b), err, len(files[f.Path]))
		}
	}

	// Again, to the same server: the index knows every file.
	_, st, err = c.SubmitFS(ctx, cfs, client.DirOptions{Index: client.OpenChunkIndex(dir)})
	if err != nil {
		t.Fatal(err)
	}
	wantRead("unchanged, with the index", none)
	if st.Sent != 0 || st.Total != total {
		t.Errorf("unchanged: %+v, want nothing sent", st)
	}

	// To a new server, with the index: the files are read for the chunks
	// it lacks, each byte once (the copy's chunks are wood.bin's).
	fresh := startFarm(t)
	_, st, err = fresh.SubmitFS(ctx, cfs, client.DirOptions{Index: client.OpenChunkIndex(dir)})
	if err != nil {
		t.Fatal(err)
	}
	wantRead("to a new server, with the index", func(name string) int64 {
		if name == "textures/wood2.bin" {
			return 0
		}
		return whole(name)
	})
	if st.Sent != total-copyLen {
		t.Errorf("to a new server: sent %d bytes, want %d", st.Sent, total-copyLen)
	}

	// A file changed in place, without the index (--rechunk): every file
	// read once, only the changed chunk sent.
	p := filepath.Join(dir, "textures", "stone.bin")
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("an edit"), 100)
	f.Close()
	_, st, err = c.SubmitFS(ctx, cfs, client.DirOptions{Index: client.OpenChunkIndex(dir), Rechunk: true})
	if err != nil {
		t.Fatal(err)
	}
	wantRead("rechunked after an edit", whole)
	if stone := int64(len(files["textures/stone.bin"])); st.SentChunks < 1 || st.SentChunks > 2 || st.Sent <= 0 || st.Sent > stone {
		t.Errorf("after an edit of stone.bin (%d bytes): %+v, want only the chunks around the edit sent", stone, st)
	}
}

// TestSubmitDirErrors: a server out of reach, a chunk the server refuses
// (the error names its file and offset), a package holding a symbolic link
// and an upload canceled half-way each fail the submission, which returns.
func TestSubmitDirErrors(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ctx := context.Background()
	dir, _ := writePackage(t)
	c, err := client.New("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.SubmitDir(ctx, dir, client.DirOptions{}); err == nil {
		t.Error("submitting to no server succeeded")
	}

	// A server whose disk is full refuses every chunk.
	srv := startFarm(t)
	target, err := url.Parse(srv.Base())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	full := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PUT" && strings.HasPrefix(r.URL.Path, "/v1/chunks/") {
			w.WriteHeader(http.StatusInsufficientStorage)
			w.Write([]byte(`{"error":"no space left on device"}`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer full.Close()
	fc, err := client.New(full.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = fc.SubmitDir(ctx, dir, client.DirOptions{})
	if !client.IsStatus(err, http.StatusInsufficientStorage) || !regexp.MustCompile(`^chunk of \S+ at \d+: PUT /v1/chunks/`).MatchString(err.Error()) {
		t.Errorf("a refused chunk: %v", err)
	}

	// Canceled once the first chunk is sent: the submission stops.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, _, err = startFarm(t).SubmitDir(cctx, dir, client.DirOptions{Progress: func(p client.UploadProgress) {
		if p.Done > 0 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("an upload canceled half-way: %v", err)
	}

	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := srv.SubmitDir(ctx, dir, client.DirOptions{}); !errors.Is(err, cdc.ErrNotRegular) {
		t.Errorf("a package with a symbolic link: %v", err)
	}
}
