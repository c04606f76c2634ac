package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/farm"
)

// localFarm runs a farm in this process (as render does) and returns its URL.
func localFarm(t *testing.T, name string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- farm.Run(ctx, farm.Config{Data: t.TempDir(), Listen: "127.0.0.1:0", Name: name, Workers: 2, NoCompress: true,
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
		return u
	case err := <-done:
		t.Fatalf("farm did not start: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("farm did not start in a minute")
	}
	return ""
}

// TestFetchOpensOneResultStream: fetch asks the server for the result
// bundle once per fetch into a directory (none at all when it holds every
// frame already), once for a tarball. It used to open the whole bundle and
// discard it before a directory's own request.
func TestFetchOpensOneResultStream(t *testing.T) {
	target, err := url.Parse(localFarm(t, "fetch"))
	if err != nil {
		t.Fatal(err)
	}
	var results atomic.Int64 // GET /v1/jobs/J/result requests the server saw
	proxy := httputil.NewSingleHostReverseProxy(target)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" && strings.HasSuffix(r.URL.Path, "/result") {
			results.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	defer ts.Close()
	c, err := client.New(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pkg := pkgDir(t, map[string]string{"distrenjob.xml": `<distrenjob version="1"><name>three</name>
<backend name="builtin"><width>8</width><height>8</height><samples>1</samples><output>f-{frame}.png</output></backend>
<frames><range first="1" last="3"/></frames><outputs><output>*.png</output></outputs></distrenjob>`})
	sub, err := upload(ctx, c, pkg, io.Discard, false, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := waitJob(ctx, c, sub.ID, io.Discard, false); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	for _, step := range []struct {
		what     string
		out      string
		files    int
		requests int64
	}{
		{"into a new directory", dir, 3, 1},
		{"into the same directory again", dir, 0, 0},
		{"into a tarball", filepath.Join(t.TempDir(), "r.tar"), 3, 1},
	} {
		results.Store(0)
		n, err := fetchInto(ctx, c, sub.ID, "", step.out, output{io.Discard, io.Discard})
		if err != nil {
			t.Fatalf("fetch %s: %v", step.what, err)
		}
		if n != step.files {
			t.Errorf("fetch %s: %d files, want %d", step.what, n, step.files)
		}
		if got := results.Load(); got != step.requests {
			t.Errorf("fetch %s: %d result streams opened, want %d", step.what, got, step.requests)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "f-2.png")); err != nil {
		t.Errorf("fetch into a directory: %v", err)
	}
}
