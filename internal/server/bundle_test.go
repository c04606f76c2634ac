package server_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/ops/opstest"
	"github.com/distren/distren/internal/server"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/vault"
)

// TestBundleOfCollidingOutputs: two frames write out.txt. The result bundle
// holds each once — the first frame done keeps out.txt, the other is
// frame-<id>/out.txt — whole or for one frame, and the job warns, naming
// both frames.
func TestBundleOfCollidingOutputs(t *testing.T) {
	p := opstest.NewParts(t, "bundle", vault.Options{})
	srv := httptest.NewServer(server.New(server.Config{Farm: p.Ops(ops.Config{}),
		Log: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	call := func(method, path string, body []byte) []byte {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		if path == "/v1/jobs" {
			req.Header.Set("Content-Type", "application/x-tar")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return b
	}
	var sub api.Submitted
	json.Unmarshal(call("POST", "/v1/jobs", opstest.TarOf(t, map[string]string{"distrenjob.xml": `<distrenjob version="1"><name>same</name>
  <backend name="command"><program>true</program></backend>
  <frames><range first="1" last="2"/></frames><outputs><output>*.txt</output></outputs></distrenjob>`})), &sub)
	ls, err := p.Session.Claim(context.Background(), session.ClaimRequest{Worker: "w", Max: 2, Backends: map[string]string{"command": "1"}})
	if err != nil || len(ls) != 2 {
		t.Fatalf("claim: %v %v", ls, err)
	}
	// Frame 2 is done first.
	for _, l := range []session.Lease{ls[1], ls[0]} {
		call("POST", fmt.Sprintf("/v1/jobs/%d/frames/%d/output?worker=w&epoch=%d", l.Job, l.Frame, l.Epoch),
			opstest.TarOf(t, map[string]string{"out.txt": fmt.Sprintf("frame %d", l.Frame)}))
	}
	entries := func(set string) map[string]string {
		t.Helper()
		path := fmt.Sprintf("/v1/jobs/%d/result", sub.ID)
		if set != "" {
			path += "?frames=" + set
		}
		tr := tar.NewReader(bytes.NewReader(call("GET", path, nil)))
		out := map[string]string{}
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, dup := out[h.Name]; dup {
				t.Fatalf("the bundle holds %s twice", h.Name)
			}
			b, _ := io.ReadAll(tr)
			out[h.Name] = string(b)
		}
	}
	want := map[string]string{"out.txt": "frame 2", "frame-1/out.txt": "frame 1"}
	if got := entries(""); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("bundle = %v, want %v", got, want)
	}
	if got := entries("1"); fmt.Sprint(got) != fmt.Sprint(map[string]string{"frame-1/out.txt": "frame 1"}) {
		t.Errorf("bundle of frame 1 = %v: the same name as in the whole bundle", got)
	}
	var j api.Job
	json.Unmarshal(call("GET", fmt.Sprintf("/v1/jobs/%d", sub.ID), nil), &j)
	if !strings.Contains(j.Warning, `frames 2 and 1 both wrote "out.txt"`) || !strings.Contains(j.Warning, "frame-1/out.txt") {
		t.Errorf("job warning %q", j.Warning)
	}
}
