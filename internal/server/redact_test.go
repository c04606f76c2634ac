package server_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/ops/opstest"
	"github.com/distren/distren/internal/server"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/storage"
	"github.com/distren/distren/internal/storage/storagetest"
	"github.com/distren/distren/internal/vault"
)

// TestNoServerPathInErrors sends requests that fail — tar entries whose
// paths are too long, a missing upload directory, a vault whose disk fails
// with errors naming its files — and checks every answer: no body holds the
// server's data directory, long paths are the client's fault (400, naming
// the entry, no ERROR in the log), and a path as long as the limit allows,
// longer with the upload directory than PATH_MAX, is accepted.
func TestNoServerPathInErrors(t *testing.T) {
	// The data directory, as serve lays it out: the vault's objects in
	// DATA/vault (through a module that can fail), uploads in DATA/tmp.
	data := t.TempDir()
	fsys, err := storage.NewFS(filepath.Join(data, "vault"), storage.FSOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	disk := storagetest.NewFaulty(fsys)
	p := opstest.NewParts(t, "redact", vault.Options{Module: disk})
	p.Tmp = filepath.Join(data, "tmp")
	if err := os.Mkdir(p.Tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	srv := httptest.NewServer(server.New(server.Config{Farm: p.Ops(ops.Config{DataDir: data}), Log: slog.New(slog.NewTextHandler(&log, nil)), Limits: server.Limits{MaxClaimWait: time.Millisecond}}))
	t.Cleanup(srv.Close)
	call := func(t *testing.T, method, path string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		if method == "POST" && path == "/v1/jobs" {
			req.Header.Set("Content-Type", "application/x-tar")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, dir := range []string{data, filepath.Dir(p.Vault.Dir())} {
			if strings.Contains(string(b), dir) {
				t.Errorf("%s %s answers %d with the server's directory %s in it: %s", method, path, resp.StatusCode, dir, b)
			}
		}
		t.Logf("%s %s: %d %.300s", method, path, resp.StatusCode, b)
		return resp.StatusCode, string(b)
	}
	const manifest = `<distrenjob version="1"><name>paths</name><backend name="command"><program>true</program></backend>
  <frames><range first="1" last="2"/></frames><outputs><output>*</output></outputs></distrenjob>`
	packages := 0
	pkg := func(name string) []byte { // a package of one file, of its own content
		packages++
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, f := range []struct{ name, body string }{{"distrenjob.xml", manifest}, {name, fmt.Sprint("content ", packages)}} {
			tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg, Format: tar.FormatPAX})
			tw.Write([]byte(f.body))
		}
		tw.Close()
		return b.Bytes()
	}
	deep := func(n int) string { // a/a/.../x of n bytes
		return strings.Repeat("a/", (n-1)/2) + strings.Repeat("x", 1+(n-1)%2)
	}

	t.Run("long paths", func(t *testing.T) {
		for _, c := range []struct {
			name, path, want string
		}{
			{"longer than the limit", deep(4201), "4201 bytes, longer than the limit of 4096"},
			{"an element longer than NAME_MAX", strings.Repeat("b", 300), "an element of 300 bytes, longer than the limit of 255"},
		} {
			log.Reset()
			code, body := call(t, "POST", "/v1/jobs", pkg(c.path))
			if code != 400 || !strings.Contains(body, `tar entry \"`+c.path[:20]) || !strings.Contains(body, c.want) {
				t.Errorf("%s: %d %s, want 400 naming the entry and %q", c.name, code, body, c.want)
			}
			if len(body) > 1000 {
				t.Errorf("%s: a message of %d bytes (the entry's name should be shortened)", c.name, len(body))
			}
			if strings.Contains(log.String(), "level=ERROR") {
				t.Errorf("%s: logged as a server error: %s", c.name, log.String())
			}
		}
		// The longest path allowed: with the upload directory before it,
		// longer than PATH_MAX, so it must be opened relative to it.
		long := deep(4096)
		if len(filepath.Join(p.Tmp, "upload-1234567890", long)) <= 4096 {
			t.Fatal("the test's path is not longer than PATH_MAX with the upload directory")
		}
		code, body := call(t, "POST", "/v1/jobs", pkg(long))
		var sub api.Submitted
		if code != 200 || json.Unmarshal([]byte(body), &sub) != nil {
			t.Fatalf("a path of 4096 bytes: %d %s", code, body)
		}
		files, err := p.Session.Files(sub.ID)
		if err != nil || len(files) != 1 || files[0].Path != long {
			t.Fatalf("the job's files: %v %v", files, err)
		}
	})

	t.Run("the server's own failures", func(t *testing.T) {
		// The upload directory gone: unpacking the package fails.
		if err := os.RemoveAll(p.Tmp); err != nil {
			t.Fatal(err)
		}
		code, body := call(t, "POST", "/v1/jobs", pkg("in.txt"))
		if code != 500 || !strings.Contains(body, "DATA/tmp") {
			t.Errorf("without an upload directory: %d %s, want 500 naming DATA/tmp", code, body)
		}
		if !strings.Contains(log.String(), data) {
			t.Errorf("the log does not have the whole error, with the path: %s", log.String())
		}
		if err := os.MkdirAll(p.Tmp, 0o755); err != nil {
			t.Fatal(err)
		}
		// The vault's disk fails, with errors naming its files.
		object := filepath.Join(data, "vault", "ab", strings.Repeat("ab", 32))
		eio := func(op string) {
			disk.Clear()
			disk.Inject(storagetest.Fault{Op: op, Err: &os.PathError{Op: op, Path: object, Err: syscall.EIO}})
		}
		eio("put")
		code, body = call(t, "POST", "/v1/jobs", pkg("in.txt"))
		if code < 500 || !strings.Contains(body, "DATA/vault/ab/") {
			t.Errorf("a submission with a failing disk: %d %s, want a 5xx naming DATA/vault/...", code, body)
		}
		chunk := []byte("chunk")
		sum := sha256.Sum256(chunk)
		if code, body = call(t, "PUT", "/v1/chunks/"+hex.EncodeToString(sum[:]), chunk); code < 500 {
			t.Errorf("a chunk with a failing disk: %d %s", code, body)
		}
		disk.Clear()
		code, body = call(t, "POST", "/v1/jobs", pkg("in.txt"))
		var sub api.Submitted
		if code != 200 || json.Unmarshal([]byte(body), &sub) != nil {
			t.Fatalf("a submission once the disk works: %d %s", code, body)
		}
		ls, err := p.Session.Claim(context.Background(), session.ClaimRequest{Worker: "w", Max: 2, Backends: map[string]string{"command": "1"}})
		if err != nil || len(ls) != 2 {
			t.Fatalf("claim: %v %v", ls, err)
		}
		eio("put")
		out := opstest.TarOf(t, map[string]string{"out.txt": "rendered"})
		if code, body = call(t, "POST", fmt.Sprintf("/v1/jobs/%d/frames/%d/output?worker=w&epoch=%d", ls[0].Job, ls[0].Frame, ls[0].Epoch), out); code < 500 {
			t.Errorf("an output with a failing disk: %d %s", code, body)
		}
		disk.Clear()
		if code, body = call(t, "POST", fmt.Sprintf("/v1/jobs/%d/frames/%d/output?worker=w&epoch=%d", ls[0].Job, ls[0].Frame, ls[0].Epoch), out); code != 200 {
			t.Fatalf("an output once the disk works: %d %s", code, body)
		}
		eio("get")
		for _, path := range []string{fmt.Sprintf("/v1/jobs/%d/result", ls[0].Job), fmt.Sprintf("/v1/jobs/%d/frames/%d/output", ls[0].Job, ls[0].Frame),
			fmt.Sprintf("/v1/jobs/%d/files/1", sub.ID)} {
			var e api.Error
			if code, body = call(t, "GET", path, nil); code < 500 || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "DATA/vault/ab/") {
				t.Errorf("GET %s with a failing disk: %d %s, want a JSON error naming DATA/vault/...", path, code, body)
			}
		}
		disk.Clear()
	})
}
