package server_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/ops/opstest"
	"github.com/distren/distren/internal/server"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/vault"
)

// FuzzAPI sends every route of the API requests built from fuzzed parts, to
// one real server (SQLite store, session, vault) holding a real job: a frame
// done with its output stored, a frame leased to a worker, frames ready.
//
// An input is a route (an index into fuzzRoutes), the arguments that fill the
// route's slots ("|"-separated; a missing one takes the route's default), a
// content type and a body. Arguments and JSON bodies may name the fixture's
// current values: {job} {spare} {frame} {epoch} {worker} {done} {hash}
// {chunk} {file}, and {sha} is the SHA-256 of the body.
//
// Properties, for every input: the handler does not panic; the status is
// below 500 (bad input is the client's fault, and nothing here makes the
// server fail); an error answer is JSON, {"error": "..."} with a message; a
// JSON success answer is valid JSON; and the server still answers GET
// /v1/server afterwards.
//
// Requests may delete, cancel, fail, complete or retry anything, the fixture
// job included: after each input the harness puts back what is gone (a new
// fixture job, a new lease, a new done frame, a new spare job), so every
// input meets a real job with real leases.
//
// Inputs are quick (thousands a second), but the fuzzer minimizes each new
// one for up to a minute by default, and minimizing a tarball body takes
// that long: -fuzzminimizetime 2s keeps the workers fuzzing.
func FuzzAPI(f *testing.F) {
	h := newHarness(f)
	for _, s := range h.seeds(f) {
		f.Add(routeIndex(f, s.route), s.args, s.ctype, s.body)
	}
	f.Fuzz(func(t *testing.T, route uint8, args string, ctype uint8, body []byte) {
		req := h.request(route, args, ctype, body)
		if req == nil {
			return // not a request net/http would deliver
		}
		w := httptest.NewRecorder()
		// A request that hangs would stall the fuzzer silently: crash
		// instead, so that the input is recorded.
		what := req.Method + " " + req.URL.RequestURI()
		watchdog := time.AfterFunc(answerWithin, func() {
			buf := make([]byte, 1<<20)
			panic(fmt.Sprintf("%s: no answer within %s\n%s", what, answerWithin, buf[:runtime.Stack(buf, true)]))
		})
		h.srv.ServeHTTP(w, req)
		watchdog.Stop()
		checkAnswer(t, req, w)
		h.alive(t)
		// Restore now rather than before the next input: the coverage of
		// restoring goes to the input that called for it, and every input
		// starts from the same state.
		h.ensure(t)
	})
}

// fuzzRoute is a route of the API with slots $1, $2, $3 in its path, filled
// from the fuzzed arguments or the defaults.
type fuzzRoute struct {
	name     string // the route as New registers it, with a variant after a space
	method   string
	path     string
	defaults []string
	ctype    string // forced content type, if any
	json     bool   // the body is JSON: placeholders are replaced in it too
}

var fuzzRoutes = []fuzzRoute{
	{name: "GET /v1/server", method: "GET", path: "/v1/server$1"},
	{name: "POST /v1/jobs tar", method: "POST", path: "/v1/jobs$1"},
	{name: "POST /v1/jobs tree", method: "POST", path: "/v1/jobs$1", ctype: api.TreeContentType},
	{name: "DELETE /v1/jobs/{job}", method: "DELETE", path: "/v1/jobs/$1", defaults: []string{"{spare}"}},
	{name: "POST /v1/gc", method: "POST", path: "/v1/gc$1", json: true},
	{name: "POST /v1/chunks/missing", method: "POST", path: "/v1/chunks/missing$1", json: true},
	{name: "PUT /v1/chunks/{hash}", method: "PUT", path: "/v1/chunks/$1", defaults: []string{"{sha}"}},
	{name: "GET /v1/jobs", method: "GET", path: "/v1/jobs$1"},
	{name: "GET /v1/jobs/{job}", method: "GET", path: "/v1/jobs/$1", defaults: []string{"{job}"}},
	{name: "GET /v1/jobs/{job}/frames", method: "GET", path: "/v1/jobs/$1/frames$2", defaults: []string{"{job}", "?frames={done}-{frame}"}},
	{name: "GET /v1/jobs/{job}/frames/{frame}", method: "GET", path: "/v1/jobs/$1/frames/$2", defaults: []string{"{job}", "{done}"}},
	{name: "GET /v1/jobs/{job}/files", method: "GET", path: "/v1/jobs/$1/files", defaults: []string{"{job}"}},
	{name: "GET /v1/jobs/{job}/spec", method: "GET", path: "/v1/jobs/$1/spec", defaults: []string{"{job}"}},
	{name: "POST /v1/jobs/{job}/cancel", method: "POST", path: "/v1/jobs/$1/cancel", defaults: []string{"{spare}"}, json: true},
	{name: "POST /v1/jobs/{job}/retry", method: "POST", path: "/v1/jobs/$1/retry", defaults: []string{"{job}"}, json: true},
	{name: "GET /v1/workers", method: "GET", path: "/v1/workers$1"},
	{name: "POST /v1/claim", method: "POST", path: "/v1/claim$1", json: true},
	{name: "POST /v1/heartbeat", method: "POST", path: "/v1/heartbeat$1", json: true},
	{name: "POST /v1/jobs/{job}/frames/{frame}/output", method: "POST", path: "/v1/jobs/$1/frames/$2/output?$3",
		defaults: []string{"{job}", "{frame}", "worker={worker}&epoch={epoch}&render_ms=7"}},
	{name: "POST /v1/jobs/{job}/frames/{frame}/fail", method: "POST", path: "/v1/jobs/$1/frames/$2/fail",
		defaults: []string{"{job}", "{frame}"}, json: true},
	{name: "GET /v1/jobs/{job}/result", method: "GET", path: "/v1/jobs/$1/result$2", defaults: []string{"{job}"}},
	{name: "GET /v1/jobs/{job}/frames/{frame}/output", method: "GET", path: "/v1/jobs/$1/frames/$2/output", defaults: []string{"{job}", "{done}"}},
	{name: "GET /v1/jobs/{job}/files/{n}", method: "GET", path: "/v1/jobs/$1/files/$2", defaults: []string{"{job}", "{file}"}},
	{name: "GET /v1/blobs/{hash}", method: "GET", path: "/v1/blobs/$1", defaults: []string{"{hash}"}},
	// Beyond the routes: a GET route asked with HEAD, a method no route
	// has, and any path at all.
	{name: "HEAD /v1/blobs/{hash}", method: "HEAD", path: "/v1/blobs/$1", defaults: []string{"{hash}"}},
	{name: "PATCH /v1/jobs/{job}", method: "PATCH", path: "/v1/jobs/$1", defaults: []string{"{job}"}},
	{name: "GET any", method: "GET", path: "$1", defaults: []string{"/v1/nowhere"}},
}

// fuzzTypes are the content types a request may carry (unless its route
// forces one).
var fuzzTypes = []string{"", "application/json", "application/x-tar", api.TreeContentType,
	api.TreeContentType + "; charset=utf-8", "text/plain"}

func routeIndex(tb testing.TB, name string) uint8 {
	for i, r := range fuzzRoutes {
		if r.name == name {
			return uint8(i)
		}
	}
	tb.Fatalf("no fuzz route %q", name)
	return 0
}

// fixture names the state every input meets.
type fixture struct {
	job    int64  // a job of 50 command frames
	done   int64  // a frame of it that is done
	hash   string // that frame's output tarball
	file   int64  // that frame's first output file
	frame  int64  // a frame of it leased to worker
	epoch  uint64 // that lease's epoch
	worker string
	spare  int64  // another job, for deleting and canceling
	chunk  string // a chunk of the vault (the input file's)
}

// answerWithin bounds the time a request may take.
const answerWithin = 10 * time.Second

const fixtureWorker = "fuzz-worker"

type harness struct {
	srv   *server.Server
	sess  *session.Session
	vault *vault.Vault
	fx    fixture
	pkg   []byte // the fixture job's package, a tarball
	spare []byte // the spare job's
	out   []byte // a frame's output, a tarball
}

func newHarness(tb testing.TB) *harness {
	p := opstest.NewParts(tb, "fuzz", vault.Options{SmallObjects: 64 << 10})
	sess, v := p.Session, p.Vault
	srv := server.New(server.Config{URL: "http://fuzz.test", Log: slog.New(slog.DiscardHandler),
		// Small limits keep every input quick; a claim never waits long.
		Farm:   p.Ops(ops.Config{Limits: ops.Limits{MaxPackageBytes: 8 << 20, MaxOutputBytes: 8 << 20, MaxFrames: 1000}}),
		Limits: server.Limits{MaxClaimWait: time.Millisecond}})
	h := &harness{srv: srv, sess: sess, vault: v, fx: fixture{worker: fixtureWorker},
		pkg:   tarball(tb, tarFile{name: "distrenjob.xml", data: fixtureManifest}, tarFile{name: "greeting.txt", data: "hello\n"}),
		spare: tarball(tb, tarFile{name: "distrenjob.xml", data: spareManifest}),
		out:   tarball(tb, tarFile{name: "line-001.txt", data: "hello from a frame\n"})}
	sum := sha256.Sum256([]byte("hello\n"))
	h.fx.chunk = hex.EncodeToString(sum[:]) // one chunk: the file is small
	h.ensure(tb)
	if ok, err := v.Has(context.Background(), h.fx.chunk); !ok || err != nil {
		tb.Fatalf("the input chunk %s is not in the vault", h.fx.chunk)
	}
	return h
}

// spareManifest is the spare job's: its builtin frames are not for the
// fixture's worker, which renders command frames only.
const spareManifest = `<?xml version="1.0"?><distrenjob version="1"><name>spare</name><backend name="builtin"/>` +
	`<frames><range first="1" last="2"/></frames><outputs><output>*.png</output></outputs></distrenjob>`

const fixtureManifest = `<?xml version="1.0" encoding="UTF-8"?>
<distrenjob version="1">
  <name>fuzz</name>
  <backend name="command">
    <program>sh</program>
    <arg>-c</arg>
    <arg>cat greeting.txt > line-{frame:03}.txt</arg>
  </backend>
  <inputs>
    <file>greeting.txt</file>
  </inputs>
  <frames>
    <range first="1" last="50"/>
  </frames>
  <outputs>
    <output>*.txt</output>
  </outputs>
</distrenjob>
`

// do serves one request the harness itself needs, and insists on a 200.
func (h *harness) do(tb testing.TB, method, path, ctype string, body []byte, v any) {
	tb.Helper()
	req := httptest.NewRequest(method, "http://fuzz.test"+path, bytes.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		tb.Fatalf("fixture: %s %s: %d %s", method, path, w.Code, w.Body.Bytes())
	}
	if v != nil {
		if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
			tb.Fatalf("fixture: %s %s: %v", method, path, err)
		}
	}
}

func (h *harness) submit(tb testing.TB, pkg []byte) int64 {
	var sub api.Submitted
	h.do(tb, "POST", "/v1/jobs", "application/x-tar", pkg, &sub)
	return sub.ID
}

// claim leases one frame of the fixture job to the fixture's worker; false
// if none is to be had. Frames of other jobs that come first (submitted by
// inputs) are canceled out of the way.
func (h *harness) claim(tb testing.TB) (session.Lease, bool) {
	for range 16 {
		ls, err := h.sess.Claim(context.Background(), session.ClaimRequest{Worker: h.fx.worker, Max: 1,
			Backends: map[string]string{"command": "1"}})
		if err != nil {
			tb.Fatalf("fixture: claim: %v", err)
		}
		if len(ls) == 0 {
			return session.Lease{}, false
		}
		if ls[0].Job == h.fx.job {
			return ls[0], true
		}
		if _, err := h.sess.Cancel(context.Background(), ls[0].Job); err != nil {
			tb.Fatalf("fixture: cancel job %d: %v", ls[0].Job, err)
		}
	}
	return session.Lease{}, false
}

// ensure restores the fixture: whatever the last input deleted, canceled,
// completed, failed or retried is replaced.
func (h *harness) ensure(tb testing.TB) {
	tb.Helper()
	if _, err := h.sess.Job(h.fx.spare); err != nil {
		h.fx.spare = h.submit(tb, h.spare)
	}
	for range 8 {
		j, err := h.sess.Job(h.fx.job)
		if err != nil || j.State == session.JobCanceled || j.State == session.JobDone || j.State == session.JobFailed {
			if err == nil { // its frames must not come first in claims
				h.sess.Cancel(context.Background(), h.fx.job)
			}
			h.fx.job, h.fx.done, h.fx.frame, h.fx.epoch = h.submit(tb, h.pkg), 0, 0, 0
			continue
		}
		if fr, err := h.sess.Frame(h.fx.job, h.fx.done); err != nil || fr.State != session.StateDone || len(fr.Files) == 0 {
			l, ok := h.claim(tb)
			if !ok {
				h.fx.job = 0
				continue
			}
			q := fmt.Sprintf("/v1/jobs/%d/frames/%d/output?worker=%s&epoch=%d", l.Job, l.Frame, h.fx.worker, l.Epoch)
			h.do(tb, "POST", q, "application/x-tar", h.out, nil)
			fr, err := h.sess.Frame(l.Job, l.Frame)
			if err != nil {
				tb.Fatal(err)
			}
			h.fx.done, h.fx.hash, h.fx.file = l.Frame, fr.Output, fr.Files[0]
			continue
		}
		if h.sess.CheckLease(h.fx.worker, h.fx.job, h.fx.frame, h.fx.epoch) != nil {
			l, ok := h.claim(tb)
			if !ok {
				h.fx.job = 0
				continue
			}
			h.fx.frame, h.fx.epoch = l.Frame, l.Epoch
			continue
		}
		return
	}
	tb.Fatalf("fixture: cannot restore it (%+v)", h.fx)
}

// alive checks that the server still answers.
func (h *harness) alive(tb testing.TB) {
	tb.Helper()
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, httptest.NewRequest("GET", "http://fuzz.test/v1/server", nil))
	var s api.Server
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &s) != nil || s.Name != "fuzz" {
		tb.Fatalf("GET /v1/server after the input: %d %s", w.Code, w.Body.Bytes())
	}
}

// request builds the request an input describes, or nil if it is not one.
func (h *harness) request(route uint8, args string, ctype uint8, body []byte) *http.Request {
	rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
	var parts []string
	if args != "" {
		parts = strings.Split(args, "|")
	}
	p := rt.path
	for i := 3; i >= 1; i-- { // $3 first: no slot value is read twice
		v := ""
		if i <= len(parts) {
			v = parts[i-1]
		} else if i <= len(rt.defaults) {
			v = rt.defaults[i-1]
		}
		p = strings.ReplaceAll(p, "$"+strconv.Itoa(i), v)
	}
	r := h.placeholders(body)
	if rt.json {
		body = []byte(r.Replace(string(body)))
	}
	p = h.placeholders(body).Replace(p)
	req, err := http.NewRequest(rt.method, "http://fuzz.test"+p, bytes.NewReader(body))
	if err != nil || !strings.HasPrefix(req.URL.Path, "/") || req.URL.Host != "fuzz.test" {
		return nil
	}
	req.RequestURI = req.URL.RequestURI()
	ct := rt.ctype
	if ct == "" {
		ct = fuzzTypes[int(ctype)%len(fuzzTypes)]
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	return req
}

func (h *harness) placeholders(body []byte) *strings.Replacer {
	sum := sha256.Sum256(body)
	d := func(n int64) string { return strconv.FormatInt(n, 10) }
	return strings.NewReplacer("{job}", d(h.fx.job), "{spare}", d(h.fx.spare), "{frame}", d(h.fx.frame),
		"{epoch}", strconv.FormatUint(h.fx.epoch, 10), "{worker}", h.fx.worker, "{done}", d(h.fx.done),
		"{hash}", h.fx.hash, "{chunk}", h.fx.chunk, "{file}", d(h.fx.file), "{sha}", hex.EncodeToString(sum[:]))
}

// checkAnswer asserts the properties every answer has.
func checkAnswer(t *testing.T, req *http.Request, w *httptest.ResponseRecorder) {
	t.Helper()
	what := req.Method + " " + req.URL.RequestURI()
	ct := w.Header().Get("Content-Type")
	switch {
	case w.Code >= 500:
		t.Fatalf("%s: status %d: %s", what, w.Code, w.Body.Bytes())
	case w.Code >= 400:
		if ct != "application/json" {
			t.Fatalf("%s: status %d with Content-Type %q: %q", what, w.Code, ct, w.Body.Bytes())
		}
		var e api.Error
		d := json.NewDecoder(w.Body)
		d.DisallowUnknownFields()
		if err := d.Decode(&e); err != nil || e.Error == "" {
			t.Fatalf("%s: status %d without an error message: %q (%v)", what, w.Code, w.Body.Bytes(), err)
		}
	case w.Code >= 200 && w.Code < 300 && ct == "application/json":
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s: status %d with invalid JSON: %q", what, w.Code, w.Body.Bytes())
		}
	}
}

type seed struct {
	route string
	args  string
	ctype uint8
	body  []byte
}

func ctypeIndex(ct string) uint8 {
	for i, c := range fuzzTypes {
		if c == ct {
			return uint8(i)
		}
	}
	panic("no fuzz content type " + ct)
}

// seeds returns, for every route, valid requests and a few invalid ones.
func (h *harness) seeds(tb testing.TB) []seed {
	js := func(route, args, body string) seed {
		return seed{route: route, args: args, ctype: ctypeIndex("application/json"), body: []byte(body)}
	}
	get := func(route, args string) seed { return seed{route: route, args: args} }
	tarType := ctypeIndex("application/x-tar")
	up := func(body []byte) seed { return seed{route: "POST /v1/jobs tar", ctype: tarType, body: body} }
	out := func(args string, body []byte) seed {
		return seed{route: "POST /v1/jobs/{job}/frames/{frame}/output", args: args, ctype: tarType, body: body}
	}
	tree := func(body []byte) seed { return seed{route: "POST /v1/jobs tree", body: body} }
	const (
		big  = "9223372036854775808"
		huge = "18446744073709551616"
	)
	manifestB := []byte(strings.ReplaceAll(fixtureManifest, `last="50"`, `last="2"`))
	builtin := spareManifest

	s := []seed{
		get("GET /v1/server", ""),
		get("GET /v1/server", "?x=1"),
		get("GET /v1/jobs", ""),
		get("GET /v1/workers", ""),

		// Packages as tarballs.
		up(h.pkg),
		up(tarball(tb, tarFile{name: "distrenjob.xml", data: builtin})),
		up(gzipped(tb, h.pkg)),
		up(zstded(tb, h.pkg)),
		up(h.pkg[:len(h.pkg)/2]),
		up(h.pkg[:700]),
		up(gzipped(tb, h.pkg)[:40]),
		up(nil),
		up([]byte("not a tarball")),
		up(tarball(tb, tarFile{name: "greeting.txt", data: "hello\n"})),
		up(tarball(tb, tarFile{name: "distrenjob.xml", data: fixtureManifest})),
		up(tarball(tb, tarFile{name: "distrenjob.xml", data: "<distrenjob"})),
		up(tarball(tb, tarFile{name: "distrenjob.xml", data: strings.Replace(builtin, "<name>", "<nmae>", 1)})),
		up(tarball(tb, tarFile{name: "distrenjob.xml", data: builtin}, tarFile{name: "../evil.txt", data: "x"})),
		up(tarball(tb, tarFile{name: "distrenjob.xml", data: builtin}, tarFile{name: "/etc/evil", data: "x"})),
		up(tarball(tb, tarFile{name: "distrenjob.xml", data: builtin}, tarFile{name: "link", link: "../../etc/passwd"})),
		up(tarball(tb, tarFile{name: "distrenjob.xml", data: builtin}, tarFile{name: "a", data: "x"}, tarFile{name: "a/b", data: "y"})),
		up(tarball(tb, tarFile{name: "distrenjob.xml/", dir: true}, tarFile{name: "distrenjob.xml/x", data: "y"})),
		up(tarball(tb, tarFile{name: "distrenjob.xml", data: builtin}, tarFile{name: "distrenjob.xml", data: builtin})),
		up(tarball(tb, tarFile{name: "distrenjob.xml", data: strings.Replace(builtin, `last="2"`, `last="`+big+`"`, 1)})),
		up(tarball(tb, tarFile{name: "distrenjob.xml", data: strings.Replace(builtin, `last="2"`, `last="100000"`, 1)})),
		up(tarball(tb, tarFile{name: "distrenjob.xml", data: strings.Replace(builtin, `first="1"`, `first="-1"`, 1)})),

		// Packages as trees, after their chunks.
		tree(h.tree(tb, manifestB, true)),
		tree(h.tree(tb, manifestB, false)),
		tree(h.tree(tb, nil, true)),
		tree(h.tree(tb, manifestB, true)[:30]),
		tree(h.lyingTree(tb, manifestB)),
		tree([]byte("DTRE")),
		tree(nil),
		{route: "POST /v1/jobs tar", ctype: ctypeIndex(api.TreeContentType + "; charset=utf-8"), body: h.tree(tb, manifestB, true)},

		js("POST /v1/chunks/missing", "", `{"chunks":["{chunk}","{hash}","`+strings.Repeat("0", 64)+`"]}`),
		js("POST /v1/chunks/missing", "", `{"chunks":[]}`),
		js("POST /v1/chunks/missing", "", `{"chunks":null}`),
		js("POST /v1/chunks/missing", "", `{"chunks":["XYZ"]}`),
		js("POST /v1/chunks/missing", "", `{"chunks":["`+strings.Repeat("A", 64)+`"]}`),
		js("POST /v1/chunks/missing", "", `{"chunks":["{chunk}"],"more":1}`),
		js("POST /v1/chunks/missing", "", `{"chunks":["{chunk}"`),
		js("POST /v1/chunks/missing", "", `[]`),
		js("POST /v1/chunks/missing", "", ``),
		{route: "PUT /v1/chunks/{hash}", body: []byte("a chunk of bytes")},
		{route: "PUT /v1/chunks/{hash}", args: strings.Repeat("0", 64), body: []byte("a chunk of bytes")},
		{route: "PUT /v1/chunks/{hash}", args: "xyz", body: []byte("x")},
		{route: "PUT /v1/chunks/{hash}", args: "{sha}", body: nil},

		js("POST /v1/gc", "", `{}`),

		get("GET /v1/jobs/{job}", ""),
		get("GET /v1/jobs/{job}", "{spare}"),
		get("GET /v1/jobs/{job}", "0"),
		get("GET /v1/jobs/{job}", "-1"),
		get("GET /v1/jobs/{job}", big),
		get("GET /v1/jobs/{job}", "abc"),
		get("GET /v1/jobs/{job}", "%31"),
		get("GET /v1/jobs/{job}", "1/../2"),
		get("GET /v1/jobs/{job}/frames", ""),
		get("GET /v1/jobs/{job}/frames", "{job}|?frames=1-3,7"),
		get("GET /v1/jobs/{job}/frames", "{job}|?frames=5-1"),
		get("GET /v1/jobs/{job}/frames", "{job}|?frames="+big),
		get("GET /v1/jobs/{job}/frames", "{job}|?frames=0-9223372036854775807"),
		get("GET /v1/jobs/{job}/frames", "{job}|?frames=-3"),
		get("GET /v1/jobs/{job}/frames/{frame}", ""),
		get("GET /v1/jobs/{job}/frames/{frame}", "{job}|{frame}"),
		get("GET /v1/jobs/{job}/frames/{frame}", "{job}|-1"),
		get("GET /v1/jobs/{job}/frames/{frame}", "{job}|"+big),
		get("GET /v1/jobs/{job}/files", ""),
		get("GET /v1/jobs/{job}/files", "x"),
		get("GET /v1/jobs/{job}/spec", ""),
		get("GET /v1/jobs/{job}/spec", "0"),
		get("GET /v1/jobs/{job}/result", ""),
		get("GET /v1/jobs/{job}/result", "{job}|?frames={done}"),
		get("GET /v1/jobs/{job}/result", "{job}|?frames=x"),
		get("GET /v1/jobs/{job}/result", big),
		get("GET /v1/jobs/{job}/frames/{frame}/output", ""),
		get("GET /v1/jobs/{job}/frames/{frame}/output", "{job}|{frame}"),
		get("GET /v1/jobs/{job}/frames/{frame}/output", "{job}|"+big),
		get("GET /v1/jobs/{job}/files/{n}", ""),
		get("GET /v1/jobs/{job}/files/{n}", "{job}|1"),
		get("GET /v1/jobs/{job}/files/{n}", "{job}|0"),
		get("GET /v1/jobs/{job}/files/{n}", "{job}|"+big),
		get("GET /v1/blobs/{hash}", ""),
		get("GET /v1/blobs/{hash}", "{chunk}"),
		get("GET /v1/blobs/{hash}", strings.Repeat("0", 64)),
		get("GET /v1/blobs/{hash}", strings.Repeat("A", 64)),
		get("GET /v1/blobs/{hash}", "..%2f..%2fstate.db"),
		get("GET /v1/blobs/{hash}", "../../etc/passwd"),
		get("HEAD /v1/blobs/{hash}", ""),
		get("PATCH /v1/jobs/{job}", ""),
		get("GET any", ""),
		get("GET any", "/v1/jobs/{job}/frames/{done}/nothing"),
		get("GET any", "/"),

		seed{route: "DELETE /v1/jobs/{job}"},
		seed{route: "DELETE /v1/jobs/{job}", args: "{job}"},
		seed{route: "DELETE /v1/jobs/{job}", args: "0"},
		seed{route: "DELETE /v1/jobs/{job}", args: big},
		seed{route: "DELETE /v1/jobs/{job}", args: "999999"},

		js("POST /v1/jobs/{job}/cancel", "", `{}`),
		js("POST /v1/jobs/{job}/cancel", "{job}", `{}`),
		js("POST /v1/jobs/{job}/cancel", "-5", `{}`),
		js("POST /v1/jobs/{job}/retry", "", `{}`),
		js("POST /v1/jobs/{job}/retry", "", `{"frames":"1-10,20"}`),
		js("POST /v1/jobs/{job}/retry", "", `{"frames":"{done}"}`),
		js("POST /v1/jobs/{job}/retry", "", `{"frames":"`+big+`"}`),
		js("POST /v1/jobs/{job}/retry", "", `{"frames":"5-1"}`),
		js("POST /v1/jobs/{job}/retry", "", `{"frames":"100000-200000"}`),
		js("POST /v1/jobs/{job}/retry", "", `{"frames":7}`),
		js("POST /v1/jobs/{job}/retry", "{spare}", `{}`),

		js("POST /v1/claim", "", `{"worker":"{worker}","max":1,"wait_ms":0,"backends":{"command":"1"}}`),
		js("POST /v1/claim", "", `{"worker":"other","max":2,"wait_ms":10,"backends":{"command":"1","povray":"3.7.0.10"}}`),
		js("POST /v1/claim", "", `{"worker":"idle","max":1,"wait_ms":60000,"backends":{}}`),
		js("POST /v1/claim", "", `{"worker":"","max":1}`),
		js("POST /v1/claim", "", `{"worker":"w","max":0}`),
		js("POST /v1/claim", "", `{"worker":"w","max":1025}`),
		js("POST /v1/claim", "", `{"worker":"w","max":`+big+`}`),
		js("POST /v1/claim", "", `{"worker":"w","max":1,"wait_ms":-1}`),
		js("POST /v1/claim", "", `{"worker":"w","max":1,"lease":true}`),
		js("POST /v1/claim", "", `{"worker":"w","max":1`),
		js("POST /v1/claim", "", `{"worker":"w","max":1}{"worker":"v"}`),
		js("POST /v1/claim", "", `null`),

		js("POST /v1/heartbeat", "", `{"worker":"{worker}","leases":[{"job":{job},"frame":{frame},"epoch":{epoch},"progress":0.5}]}`),
		js("POST /v1/heartbeat", "", `{"worker":"{worker}","leases":[{"job":{job},"frame":{frame},"epoch":1,"progress":-3}]}`),
		js("POST /v1/heartbeat", "", `{"worker":"{worker}","leases":[{"job":-1,"frame":-1,"epoch":0}]}`),
		js("POST /v1/heartbeat", "", `{"worker":"{worker}","leases":[{"job":{job},"frame":{frame},"epoch":`+huge+`}]}`),
		js("POST /v1/heartbeat", "", `{"worker":"{worker}","leases":[{"job":{job},"frame":{frame},"epoch":-1}]}`),
		js("POST /v1/heartbeat", "", `{"worker":"{worker}","leases":[{"job":{job},"frame":{frame},"epoch":{epoch},"progress":1e400}]}`),
		js("POST /v1/heartbeat", "", `{"worker":"{worker}","leases":null}`),
		js("POST /v1/heartbeat", "", `{"leases":[{}]}`),

		out("", h.out),
		out("", tarball(tb, tarFile{name: "../escape.txt", data: "x"})),
		out("", tarball(tb, tarFile{name: "only-a-dir/", dir: true})),
		out("", h.out[:100]),
		out("", []byte("not a tarball")),
		out("", nil),
		out("{job}|{done}|worker={worker}&epoch={epoch}", h.out),
		out("{job}|{frame}|worker={worker}&epoch="+huge, h.out),
		out("{job}|{frame}|worker={worker}&epoch=-1", h.out),
		out("{job}|{frame}|epoch={epoch}", h.out),
		out("{job}|{frame}|worker={worker}&epoch={epoch}&render_ms="+big, h.out),
		out("{job}|-1|worker={worker}&epoch={epoch}", h.out),
		out("0|{frame}|worker={worker}&epoch={epoch}", h.out),

		js("POST /v1/jobs/{job}/frames/{frame}/fail", "", `{"worker":"{worker}","epoch":{epoch},"error":"boom"}`),
		js("POST /v1/jobs/{job}/frames/{frame}/fail", "", `{"worker":"{worker}","epoch":{epoch},"error":"scene","job_error":true}`),
		js("POST /v1/jobs/{job}/frames/{frame}/fail", "", `{"worker":"{worker}","epoch":{epoch},"not_run":true}`),
		js("POST /v1/jobs/{job}/frames/{frame}/fail", "", `{"worker":"{worker}","epoch":-1,"error":"x"}`),
		js("POST /v1/jobs/{job}/frames/{frame}/fail", "", `{"worker":"{worker}","epoch":`+huge+`}`),
		js("POST /v1/jobs/{job}/frames/{frame}/fail", "", `{"worker":"{worker}","epoch":{epoch},"error":"x","reason":1}`),
		js("POST /v1/jobs/{job}/frames/{frame}/fail", "{job}|{done}", `{"worker":"{worker}","epoch":1,"error":"x"}`),
		js("POST /v1/jobs/{job}/frames/{frame}/fail", "-1|x", `{}`),
		js("POST /v1/jobs/{job}/frames/{frame}/fail", "", `{"worker":"{worker}","epoch":{epoch},"error":"\xff\u0000"}`),
	}
	return s
}

// tree returns the encoded tree of a package of manifest and greeting.txt,
// after storing their chunks (unless store is false). A nil manifest leaves
// it out.
func (h *harness) tree(tb testing.TB, manifest []byte, store bool) []byte {
	var t cdc.Tree
	for _, f := range []struct {
		path string
		data []byte
	}{{"distrenjob.xml", manifest}, {"greeting.txt", []byte("hello\n")}} {
		if f.data == nil {
			continue
		}
		sum := sha256.Sum256(f.data)
		if store {
			if _, err := h.vault.Put(context.Background(), bytes.NewReader(f.data), hex.EncodeToString(sum[:])); err != nil {
				tb.Fatal(err)
			}
		}
		t.Files = append(t.Files, cdc.File{Path: f.path, Mode: 0o644, Size: int64(len(f.data)),
			Chunks: []cdc.ChunkRef{{Hash: sum, Size: int64(len(f.data))}}})
	}
	if !store { // a chunk the server cannot have
		t.Files[0].Chunks[0].Hash[0] ^= 0xff
	}
	b, err := t.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// lyingTree returns a tree whose manifest names its stored chunk with a
// smaller size than it has.
func (h *harness) lyingTree(tb testing.TB, manifest []byte) []byte {
	sum := sha256.Sum256(manifest)
	if _, err := h.vault.Put(context.Background(), bytes.NewReader(manifest), hex.EncodeToString(sum[:])); err != nil {
		tb.Fatal(err)
	}
	t := cdc.Tree{Files: []cdc.File{{Path: "distrenjob.xml", Mode: 0o644, Size: 10, Chunks: []cdc.ChunkRef{{Hash: sum, Size: 10}}}}}
	b, err := t.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestTreeManifestChunkSize: the server reads a tree's manifest no further
// than the size the tree gives it, checked against the limit. A tree that
// names a larger chunk (or one chunk many times) is refused, not read.
func TestTreeManifestChunkSize(t *testing.T) {
	h := newHarness(t)
	manifest := []byte(strings.ReplaceAll(fixtureManifest, `last="50"`, `last="2"`))
	req := httptest.NewRequest("POST", "http://fuzz.test/v1/jobs", bytes.NewReader(h.lyingTree(t, manifest)))
	req.Header.Set("Content-Type", api.TreeContentType)
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, req)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "not 10 as the tree says") {
		t.Fatalf("a tree whose manifest chunk is larger than it says: %d %s", w.Code, w.Body.Bytes())
	}
}

type tarFile struct {
	name, data string
	dir        bool
	link       string
}

// tarball writes files into a tarball, as they are (unsafe names too).
func tarball(tb testing.TB, files ...tarFile) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg}
		switch {
		case f.dir:
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeDir, 0o755, 0
		case f.link != "":
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeSymlink, f.link, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			tb.Fatal(err)
		}
		if _, err := io.WriteString(tw, f.data); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

func gzipped(tb testing.TB, b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

func zstded(tb testing.TB, b []byte) []byte {
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}
