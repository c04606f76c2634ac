package server_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
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

// TestVaultIOErrors makes the vault's disk answer EIO to writes, then to
// reads, at each step a client or worker takes: every request that needs
// the disk fails with a 5xx naming the I/O error, nothing half-done shows
// (no job, no completed frame), the server keeps answering, and each step
// succeeds once the disk works again.
func TestVaultIOErrors(t *testing.T) {
	fs, err := storage.NewFS(filepath.Join(t.TempDir(), "vault"), storage.FSOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	disk := storagetest.NewFaulty(fs)
	p := opstest.NewParts(t, "eio", vault.Options{Module: disk})
	sess := p.Session
	srv := httptest.NewServer(server.New(server.Config{Farm: p.Ops(ops.Config{Session: sess}),
		Log: slog.New(slog.DiscardHandler), Limits: server.Limits{MaxClaimWait: time.Millisecond}}))
	t.Cleanup(srv.Close)

	call := func(method, path string, body []byte) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		if body != nil && method == "POST" && path == "/v1/jobs" {
			req.Header.Set("Content-Type", "application/x-tar")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	// failing checks that a request fails with a 5xx naming the I/O error,
	// and that the server still answers.
	failing := func(what string, code int, body []byte) {
		t.Helper()
		var e api.Error
		if code < 500 || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, "input/output error") {
			t.Errorf("%s with a failing disk: %d %s", what, code, body)
		}
		if code, _ := call("GET", "/v1/server", nil); code != 200 {
			t.Fatalf("after %s the server answers %d", what, code)
		}
	}
	eio := func(op string) {
		disk.Inject(storagetest.Fault{Op: op, Err: &os.PathError{Op: op, Path: "object", Err: syscall.EIO}})
	}

	pkg := opstest.TarOf(t, map[string]string{"distrenjob.xml": `<distrenjob version="1"><name>eio</name>
  <backend name="command"><program>sh</program><arg>-c</arg><arg>cat in.txt > out-{frame}.txt</arg></backend>
  <inputs><file>in.txt</file></inputs>
  <frames><range first="1" last="2"/></frames><outputs><output>out-*.txt</output></outputs></distrenjob>`,
		"in.txt": strings.Repeat("input\n", 1000)})

	// A submission while writes fail.
	eio("put")
	code, body := call("POST", "/v1/jobs", pkg)
	failing("a submission", code, body)
	if jobs := sess.Jobs(); len(jobs) != 0 {
		t.Fatalf("a job shows after a failed submission: %+v", jobs)
	}
	disk.Clear()
	code, body = call("POST", "/v1/jobs", pkg)
	var sub api.Submitted
	if code != 200 || json.Unmarshal(body, &sub) != nil {
		t.Fatalf("submission once the disk works: %d %s", code, body)
	}

	// A frame's output while writes fail.
	ls, err := sess.Claim(context.Background(), session.ClaimRequest{Worker: "w", Max: 1, Backends: map[string]string{"command": "1"}})
	if err != nil || len(ls) != 1 {
		t.Fatalf("claim: %v %v", ls, err)
	}
	out := opstest.TarOf(t, map[string]string{fmt.Sprintf("out-%d.txt", ls[0].Frame): "rendered\n"})
	outPath := fmt.Sprintf("/v1/jobs/%d/frames/%d/output?worker=w&epoch=%d", ls[0].Job, ls[0].Frame, ls[0].Epoch)
	eio("put")
	code, body = call("POST", outPath, out)
	failing("a frame output", code, body)
	if f, _ := sess.Frame(sub.ID, ls[0].Frame); f.State != api.StateRunning {
		t.Fatalf("frame after its output failed to store: %+v (want it still leased to w)", f)
	}
	disk.Clear()
	if code, body = call("POST", outPath, out); code != 200 {
		t.Fatalf("output once the disk works: %d %s", code, body)
	}

	// Reading the bundle while reads fail. The vault keeps recently read
	// objects decoded in memory only while a reader holds them, so every
	// download reads the disk.
	resultPath := fmt.Sprintf("/v1/jobs/%d/result", sub.ID)
	eio("get")
	code, body = call("GET", resultPath, nil)
	failing("a bundle download", code, body)
	disk.Clear()
	code, body = call("GET", resultPath, nil)
	if code != 200 {
		t.Fatalf("bundle once the disk works: %d %s", code, body)
	}
	tr := tar.NewReader(bytes.NewReader(body))
	h, err := tr.Next()
	if err != nil || h.Name != fmt.Sprintf("out-%d.txt", ls[0].Frame) {
		t.Fatalf("bundle: %v %v", h, err)
	}
	if b, _ := io.ReadAll(tr); string(b) != "rendered\n" {
		t.Fatalf("bundle holds %q", b)
	}
}

// TestStalledUploadEnds sends a frame-output upload that stops half-way:
// the server ends it after UploadIdle (it holds a temporary copy meanwhile),
// and a collection runs. (A collection does not wait for an upload even
// while it lasts: TestCollectionDuringSlowUploads.)
func TestStalledUploadEnds(t *testing.T) {
	p := opstest.NewParts(t, "stall", vault.Options{})
	sess := p.Session
	srv := httptest.NewServer(server.New(server.Config{Farm: p.Ops(ops.Config{Session: sess}),
		Log: slog.New(slog.DiscardHandler), Limits: server.Limits{UploadIdle: 300 * time.Millisecond}}))
	t.Cleanup(srv.Close)

	var sub api.Submitted
	resp, err := http.Post(srv.URL+"/v1/jobs", "application/x-tar", bytes.NewReader(opstest.TarOf(t, map[string]string{
		"distrenjob.xml": `<distrenjob version="1"><name>stall</name><backend name="command"><program>true</program></backend>
  <frames><frame id="1"/></frames><outputs><output>*</output></outputs></distrenjob>`})))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&sub)
	resp.Body.Close()
	ls, err := sess.Claim(context.Background(), session.ClaimRequest{Worker: "w", Max: 1, Backends: map[string]string{"command": "1"}})
	if err != nil || len(ls) != 1 {
		t.Fatalf("claim: %v %v", ls, err)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/jobs/%d/frames/%d/output?worker=w&epoch=%d HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n%s",
		ls[0].Job, ls[0].Frame, ls[0].Epoch, bytes.Repeat([]byte{0}, 1000))
	// The server ends the stalled request: it answers or closes.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatalf("the stalled upload was not ended: %v", err)
	}
	// The collection runs, and the frame is still leased.
	resp, err = http.Post(srv.URL+"/v1/gc", "application/json", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("collection after the stalled upload: %v %v", resp, err)
	}
	resp.Body.Close()
	if f, _ := sess.Frame(sub.ID, 1); f.State != api.StateRunning {
		t.Fatalf("frame after a stalled upload: %+v (want it still leased)", f)
	}
}
