package main

import (
	"bytes"
	"context"
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
