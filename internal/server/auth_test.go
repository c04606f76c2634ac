package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/auth"
	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/ops/opstest"
	"github.com/distren/distren/internal/vault"
)

// authServer is a server whose token store holds one token of each role,
// and a second worker token.
type authServer struct {
	srv    *Server
	store  *auth.Store
	tokens map[string]string // token name → text: client, worker, read, admin, worker2
}

func newAuthServer(t *testing.T, withAuth bool) *authServer {
	t.Helper()
	dir := t.TempDir()
	p := opstest.NewParts(t, "authtest", vault.Options{SmallObjects: 64 << 10})
	var err error
	as := &authServer{tokens: map[string]string{}}
	var guard *auth.Guard
	if withAuth {
		if as.store, err = auth.Open(filepath.Join(dir, auth.FileName)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { as.store.Close() })
		for _, n := range []string{"client", "worker", "read", "admin", "worker2"} {
			role, _ := auth.ParseRole(strings.TrimSuffix(n, "2"))
			if as.tokens[n], _, err = as.store.Create(context.Background(), n, role); err != nil {
				t.Fatal(err)
			}
		}
		// Read the store on every request: a revocation shows at once.
		if guard, err = auth.NewGuard(context.Background(), as.store, auth.GuardOptions{CacheTTL: -1, Log: slog.New(slog.DiscardHandler)}); err != nil {
			t.Fatal(err)
		}
	}
	as.srv = New(Config{Farm: p.Ops(ops.Config{}), URL: "http://authtest", Auth: guard,
		Log: slog.New(slog.DiscardHandler), Limits: Limits{MaxClaimWait: time.Millisecond}})
	return as
}

// do sends a request with the named token ("" for none, else a name of
// as.tokens or, if not one, the text itself) and returns the status and body.
func (as *authServer) do(t *testing.T, token, method, path string, body []byte) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, "http://authtest"+path, bytes.NewReader(body))
	if text, ok := as.tokens[token]; ok {
		req.Header.Set("Authorization", "Bearer "+text)
	} else if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	as.srv.ServeHTTP(w, req)
	return w.Code, w.Body.Bytes()
}

var commandJob = map[string]string{"distrenjob.xml": `<distrenjob version="1"><name>auth</name>` +
	`<backend name="command"><program>true</program></backend>` +
	`<frames><range first="1" last="4"/></frames><outputs><output>*.txt</output></outputs></distrenjob>`}

// TestRouteTable: every route New registers has an entry in the role table,
// and every entry names a route — a route added without deciding who may
// call it fails here.
func TestRouteTable(t *testing.T) {
	as := newAuthServer(t, false)
	if len(as.srv.routes) < 20 {
		t.Fatalf("New registered %d routes: the test does not see them", len(as.srv.routes))
	}
	for _, p := range as.srv.routes {
		if _, ok := routeAccess[p]; !ok {
			t.Errorf("route %q has no entry in routeAccess (auth.go): decide which roles may call it", p)
		}
	}
	for p := range routeAccess {
		if !slices.Contains(as.srv.routes, p) {
			t.Errorf("routeAccess has %q, which New does not register", p)
		}
	}
	for p, a := range routeAccess {
		method, _, _ := strings.Cut(p, " ")
		if (a.roles&(auth.Worker|auth.Peer) != 0 && a.roles&auth.Client == 0 && a.roles&auth.Read == 0) != (a.worker != nil) {
			t.Errorf("%s: worker-only routes, and only they, must bind the worker name they act as", p)
		}
		if method != "GET" && p != "/" && a.roles&(auth.Read|auth.Public) != 0 {
			t.Errorf("%s: a read token may only call GETs", p)
		}
	}
}

// TestAuthStatuses: 401 without a valid token, 403 for a role that may not
// call the route, the route's answer otherwise.
func TestAuthStatuses(t *testing.T) {
	as := newAuthServer(t, true)
	code, body := as.do(t, "client", "POST", "/v1/jobs", opstest.TarOf(t, commandJob))
	if code != http.StatusOK {
		t.Fatalf("client submits: %d %s", code, body)
	}
	claim := []byte(`{"worker":"w1","max":1,"backends":{"command":"1"}}`)
	for _, tc := range []struct {
		token, method, path string
		body                []byte
		want                int
		msg                 string // in the error message
	}{
		{"", "GET", "/v1/server", nil, 200, ""},
		{"", "GET", "/v1/jobs", nil, 401, "no token"},
		{"", "POST", "/v1/jobs", opstest.TarOf(t, commandJob), 401, "no token"},
		{"", "GET", "/nowhere", nil, 401, "no token"},
		{"dtk_000000000000_" + strings.Repeat("0", 64), "GET", "/v1/jobs", nil, 401, "invalid token"},
		{"garbage", "GET", "/v1/jobs", nil, 401, "invalid token"},
		{"client", "GET", "/nowhere", nil, 404, "no such endpoint"},
		{"client", "GET", "/v1/jobs", nil, 200, ""},
		{"client", "POST", "/v1/jobs/1/retry", []byte(`{}`), 200, ""},
		{"client", "POST", "/v1/claim", claim, 403, `token "client" has role client; this request needs role worker, peer or admin`},
		{"client", "POST", "/v1/gc", []byte(`{}`), 403, "needs role admin"},
		{"read", "GET", "/v1/jobs/1/frames", nil, 200, ""},
		{"read", "GET", "/v1/workers", nil, 200, ""},
		{"read", "POST", "/v1/jobs/1/cancel", []byte(`{}`), 403, "needs role client or admin"},
		{"read", "PUT", "/v1/chunks/" + strings.Repeat("0", 64), []byte("x"), 403, "needs role client or admin"},
		{"worker", "POST", "/v1/jobs", opstest.TarOf(t, commandJob), 403, "needs role client or admin"},
		{"worker", "GET", "/v1/jobs", nil, 403, "needs role client, read or admin"},
		{"worker", "GET", "/v1/jobs/1/spec", nil, 200, ""},
		{"worker", "POST", "/v1/claim", claim, 200, ""},
		{"admin", "POST", "/v1/gc", []byte(`{}`), 200, ""},
		{"admin", "GET", "/v1/jobs/1", nil, 200, ""},
	} {
		code, body := as.do(t, tc.token, tc.method, tc.path, tc.body)
		if code != tc.want {
			t.Errorf("%s %s with token %q: %d %s, want %d", tc.method, tc.path, tc.token, code, body, tc.want)
			continue
		}
		if tc.msg == "" {
			continue
		}
		var e api.Error
		if err := json.Unmarshal(body, &e); err != nil || !strings.Contains(e.Error, tc.msg) {
			t.Errorf("%s %s with token %q: body %s, want an api.Error saying %q", tc.method, tc.path, tc.token, body, tc.msg)
		}
	}

	req := httptest.NewRequest("GET", "http://authtest/v1/jobs", nil)
	w := httptest.NewRecorder()
	as.srv.ServeHTTP(w, req)
	if got := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
		t.Errorf("401 without WWW-Authenticate: Bearer (%q)", got)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("401 Content-Type %q", ct)
	}

	code, body = as.do(t, "read", "GET", "/v1/whoami", nil)
	var id api.Identity
	if json.Unmarshal(body, &id); code != 200 || !id.Auth || id.Name != "read" || id.Role != "read" || id.ID == "" {
		t.Errorf("whoami: %d %s", code, body)
	}

	// A revoked token is refused by the running server.
	if _, err := as.store.Revoke(context.Background(), "read"); err != nil {
		t.Fatal(err)
	}
	if code, body := as.do(t, "read", "GET", "/v1/jobs", nil); code != 401 || !strings.Contains(string(body), "revoked") {
		t.Errorf("revoked token: %d %s", code, body)
	}
}

// TestAuthOff: without a guard, requests need no token and whoami says so.
func TestAuthOff(t *testing.T) {
	as := newAuthServer(t, false)
	if code, body := as.do(t, "", "POST", "/v1/jobs", opstest.TarOf(t, commandJob)); code != 200 {
		t.Fatalf("submit without auth: %d %s", code, body)
	}
	code, body := as.do(t, "", "GET", "/v1/whoami", nil)
	if id := (api.Identity{}); json.Unmarshal(body, &id) != nil || code != 200 || id.Auth {
		t.Errorf("whoami without auth: %d %s", code, body)
	}
}

// TestWorkerBinding: a worker token cannot heartbeat, complete, fail or
// claim as a worker name another token uses, even knowing the lease's job,
// frame and epoch; the owner still can.
func TestWorkerBinding(t *testing.T) {
	as := newAuthServer(t, true)
	if code, body := as.do(t, "client", "POST", "/v1/jobs", opstest.TarOf(t, commandJob)); code != 200 {
		t.Fatalf("submit: %d %s", code, body)
	}
	code, body := as.do(t, "worker", "POST", "/v1/claim", []byte(`{"worker":"w1","max":2,"backends":{"command":"1"}}`))
	var cr api.ClaimResponse
	if json.Unmarshal(body, &cr); code != 200 || len(cr.Leases) != 2 {
		t.Fatalf("claim: %d %s", code, body)
	}
	l, l2 := cr.Leases[0], cr.Leases[1]
	output := opstest.TarOf(t, map[string]string{"out.txt": "x\n"})
	outPath := func(l api.Lease, w string) string {
		return fmt.Sprintf("/v1/jobs/%d/frames/%d/output?worker=%s&epoch=%d", l.Job, l.Frame, w, l.Epoch)
	}
	failPath := fmt.Sprintf("/v1/jobs/%d/frames/%d/fail", l.Job, l.Frame)
	failBody := fmt.Sprintf(`{"worker":"w1","epoch":%d,"error":"sabotage"}`, l.Epoch)
	hb := fmt.Sprintf(`{"worker":"w1","leases":[{"job":%d,"frame":%d,"epoch":%d,"progress":0.5}]}`, l.Job, l.Frame, l.Epoch)
	for _, tc := range []struct {
		what, method, path, body string
	}{
		{"heartbeat", "POST", "/v1/heartbeat", hb},
		{"complete", "POST", outPath(l, "w1"), string(output)},
		{"fail", "POST", failPath, failBody},
		// The handler decodes the first JSON value, as the check does.
		{"fail, trailing garbage", "POST", failPath, failBody + `{"worker":"w2"}`},
		{"claim", "POST", "/v1/claim", `{"worker":"w1","max":1,"backends":{"command":"1"}}`},
	} {
		code, body := as.do(t, "worker2", tc.method, tc.path, []byte(tc.body))
		if code != 403 || !strings.Contains(string(body), `worker \"w1\"`) {
			t.Errorf("%s as w1 with another worker token: %d %s, want 403", tc.what, code, body)
		}
	}
	if code, body := as.do(t, "worker2", "POST", failPath, []byte(`{"worker":`)); code != 400 {
		t.Errorf("fail with a body that does not decode: %d %s, want 400", code, body)
	}
	f, err := as.srv.sess.Frame(l.Job, l.Frame)
	if err != nil || f.State != api.StateRunning || f.Worker != "w1" {
		t.Fatalf("after the other token's attempts the frame is %+v, %v; want running on w1", f, err)
	}
	// Another name is the other token's own.
	if code, body := as.do(t, "worker2", "POST", "/v1/claim", []byte(`{"worker":"w2","max":1,"backends":{"command":"1"}}`)); code != 200 {
		t.Errorf("worker2 claims as w2: %d %s", code, body)
	}
	// The owner reports.
	if code, body := as.do(t, "worker", "POST", outPath(l, "w1"), output); code != 200 {
		t.Errorf("the owner completes its frame: %d %s", code, body)
	}
	if f, _ := as.srv.sess.Frame(l.Job, l.Frame); f.State != api.StateDone {
		t.Errorf("frame %d is %s, want done", l.Frame, f.State)
	}
	// An admin token is a token like another: it cannot act as w1 either.
	if code, _ := as.do(t, "admin", "POST", outPath(l2, "w1"), output); code != 403 {
		t.Errorf("admin completes w1's frame: %d, want 403", code)
	}
	// Revoking the owner frees its names for the next token.
	if _, err := as.store.Revoke(context.Background(), "worker"); err != nil {
		t.Fatal(err)
	}
	if code, body := as.do(t, "worker2", "POST", "/v1/heartbeat", []byte(`{"worker":"w1","leases":[]}`)); code != 200 {
		t.Errorf("after revoking w1's owner, another token uses w1: %d %s", code, body)
	}
}
