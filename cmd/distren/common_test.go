package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestVerbsCarryTheirOwnConnection: two verbs running at once in one
// process, each given its server and token in its options, each reach
// their own server with their own token: no connection state is shared.
func TestVerbsCarryTheirOwnConnection(t *testing.T) {
	type seen struct {
		mu    sync.Mutex
		auths []string
	}
	server := func(s *seen) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			s.auths = append(s.auths, r.Header.Get("Authorization"))
			s.mu.Unlock()
			w.Write([]byte(`[]`))
		}))
	}
	var seenA, seenB seen
	a, b := server(&seenA), server(&seenB)
	defer a.Close()
	defer b.Close()
	t.Setenv("DISTREN_TOKEN", "")
	var outA, outB bytes.Buffer
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, o := range []statusOptions{
		{connOptions: connOptions{server: a.URL, connFlags: connFlags{token: "token-a"}}, output: output{&outA, &outA}, json: true},
		{connOptions: connOptions{server: b.URL, connFlags: connFlags{token: "token-b"}}, output: output{&outB, &outB}, json: true},
	} {
		wg.Go(func() {
			for range 20 {
				if errs[i] = runStatus(context.Background(), o, nil); errs[i] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("status %d: %v", i, err)
		}
	}
	for name, c := range map[string]struct {
		s    *seen
		want string
		out  string
	}{"a": {&seenA, "Bearer token-a", outA.String()}, "b": {&seenB, "Bearer token-b", outB.String()}} {
		if len(c.s.auths) != 20 {
			t.Errorf("server %s got %d requests, want 20", name, len(c.s.auths))
		}
		for _, got := range c.s.auths {
			if got != c.want {
				t.Errorf("server %s got Authorization %q, want %q", name, got, c.want)
				break
			}
		}
		if c.out != strings.Repeat("[]\n", 20) {
			t.Errorf("status of server %s printed %q", name, c.out)
		}
	}
}

// TestLogFlags: --log-format json writes one JSON object per line, at the
// --log-level given and above; wrong values are usage errors.
func TestLogFlags(t *testing.T) {
	var b bytes.Buffer
	log, err := logFlags{format: "json", level: "warn"}.logger(&b)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("not shown")
	log.Warn("shown", "frame", 3)
	var line map[string]any
	if err := json.Unmarshal(b.Bytes(), &line); err != nil || line["msg"] != "shown" || line["level"] != "WARN" || line["frame"] != float64(3) {
		t.Errorf("json log %q: %v %v", b.String(), line, err)
	}
	b.Reset()
	log, _ = logFlags{format: "text", level: "debug"}.logger(&b)
	log.Debug("detail", "k", "v")
	if !strings.Contains(b.String(), "level=DEBUG msg=detail k=v") {
		t.Errorf("text log %q", b.String())
	}
	for _, l := range []logFlags{{format: "xml", level: "info"}, {format: "text", level: "loud"}} {
		var ue usageError
		if _, err := l.logger(&b); !errors.As(err, &ue) {
			t.Errorf("%+v: %v, want a usage error", l, err)
		}
	}
}
