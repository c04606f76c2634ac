package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/ops/opstest"
	"github.com/distren/distren/internal/server"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/vault"
)

// gate lets a test see a handler wait for the network: once the handler has
// read the first after bytes of its request body, its next read closes
// waiting. The test holds the rest of the body back, so from then on the
// handler waits on a slow client, in the middle of its upload.
type gate struct {
	after   int64
	read    int64 // only the handler's goroutine reads the body
	waiting chan struct{}
	once    sync.Once
}

type gateBody struct {
	io.ReadCloser
	g *gate
}

func (b *gateBody) Read(p []byte) (int, error) {
	if b.g.read >= b.g.after {
		b.g.once.Do(func() { close(b.g.waiting) })
	}
	n, err := b.ReadCloser.Read(p)
	b.g.read += int64(n)
	return n, err
}

// gated serves h, putting the gate a request names in X-Test-Gate on its
// body.
type gated struct {
	h     http.Handler
	gates sync.Map // name → *gate
}

func (g *gated) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if v, ok := g.gates.Load(r.Header.Get("X-Test-Gate")); ok {
		r.Body = &gateBody{ReadCloser: r.Body, g: v.(*gate)}
	}
	g.h.ServeHTTP(w, r)
}

// slowUpload is a request whose body the test sends in two parts.
type slowUpload struct {
	name string
	g    *gate
	rest []byte
	pw   *io.PipeWriter
	done chan struct{}
	code int
	body []byte
	err  error
}

// start sends the request with the first cut bytes of body, and returns
// once the server has read them and waits for more.
func (u *slowUpload) start(t *testing.T, gs *gated, method, url, ctype string, body []byte, cut int) {
	t.Helper()
	u.g = &gate{after: int64(cut), waiting: make(chan struct{})}
	gs.gates.Store(u.name, u.g)
	pr, pw := io.Pipe()
	u.pw, u.rest, u.done = pw, body[cut:], make(chan struct{})
	req, _ := http.NewRequest(method, url, pr)
	req.Header.Set("X-Test-Gate", u.name)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	go func() {
		defer close(u.done)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			u.err = err
			return
		}
		defer resp.Body.Close()
		u.code = resp.StatusCode
		u.body, u.err = io.ReadAll(resp.Body)
	}()
	go pw.Write(body[:cut]) // returns once the server has read it
	select {
	case <-u.g.waiting:
	case <-u.done:
		t.Fatalf("%s: answered before its body was sent: %d %s %v", u.name, u.code, u.body, u.err)
	case <-time.After(time.Minute):
		t.Fatalf("%s: the server did not read the first %d bytes of the body", u.name, cut)
	}
}

// finish sends the rest of the body and returns the answer.
func (u *slowUpload) finish(t *testing.T) (int, []byte) {
	t.Helper()
	go func() {
		u.pw.Write(u.rest)
		u.pw.Close()
	}()
	select {
	case <-u.done:
	case <-time.After(time.Minute):
		t.Fatalf("%s: no answer once its body was sent", u.name)
	}
	if u.err != nil {
		t.Fatalf("%s: %v", u.name, u.err)
	}
	return u.code, u.body
}

// within fails the test unless f returns within a minute: what it checks
// must not wait for a slow client.
func within(t *testing.T, what string, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- f() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("%s: no answer while uploads trickle in: it waits for them (a lock held across a request body?)", what)
	}
}

// TestCollectionDuringSlowUploads holds a job submission, a chunk upload and
// a frame-output upload open half-way (their clients send nothing more),
// asks for a collection, and checks that the collection completes, that
// fresh requests of every kind complete meanwhile, and, once the slow
// bodies arrive, that all three succeed with everything they stored intact:
// the output upload was half stored when the collection removed the
// unreferenced objects, and is stored again from its copy.
func TestCollectionDuringSlowUploads(t *testing.T) {
	p := opstest.NewParts(t, "gclock", vault.Options{})
	sess := p.Session
	gs := &gated{}
	// A grace of a nanosecond: the collection removes every object nothing
	// refers to, however recent (the vault was opened before it runs).
	gs.h = server.New(server.Config{Farm: p.Ops(ops.Config{Session: sess, GC: ops.GC{Grace: time.Nanosecond}}),
		Log: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(gs)
	t.Cleanup(srv.Close)
	call := func(method, path, ctype string, body []byte) (int, []byte, error) {
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	ok := func(method, path, ctype string, body []byte) ([]byte, error) {
		code, b, err := call(method, path, ctype, body)
		if err == nil && code != 200 {
			err = fmt.Errorf("%s %s: %d %s", method, path, code, b)
		}
		return b, err
	}
	random := func(n int, seed uint64) []byte {
		b := make([]byte, n)
		r := rand.New(rand.NewPCG(seed, 1))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	const manifest = `<distrenjob version="1"><name>%s</name><backend name="command"><program>true</program></backend>
  <frames><range first="1" last="2"/></frames><outputs><output>*</output></outputs></distrenjob>`

	// A job whose frame 1 is leased, for the output upload.
	b, err := ok("POST", "/v1/jobs", "application/x-tar", opstest.TarOf(t, map[string]string{"distrenjob.xml": fmt.Sprintf(manifest, "leased")}))
	if err != nil {
		t.Fatal(err)
	}
	var leased api.Submitted
	json.Unmarshal(b, &leased)
	ls, err := sess.Claim(context.Background(), session.ClaimRequest{Worker: "w", Max: 2, Backends: map[string]string{"command": "1"}})
	if err != nil || len(ls) != 2 {
		t.Fatalf("claim: %v %v", ls, err)
	}
	outputPath := func(l session.Lease) string {
		return fmt.Sprintf("/v1/jobs/%d/frames/%d/output?worker=w&epoch=%d", l.Job, l.Frame, l.Epoch)
	}

	// The slow uploads: a package with an input of 6 MiB, a chunk of 3
	// MiB, and an output of 12 MiB (stored as chunks as it arrives: the
	// first are stored when the server waits for the rest).
	input := random(6<<20, 1)
	pkg := opstest.TarOf(t, map[string]string{"distrenjob.xml": fmt.Sprintf(manifest, "slow"), "in.bin": string(input)})
	chunk := random(3<<20, 2)
	sum := sha256.Sum256(chunk)
	chunkHash := hex.EncodeToString(sum[:])
	output := opstest.TarOf(t, map[string]string{"out.bin": string(random(12<<20, 3))})
	slow := []*slowUpload{{name: "package"}, {name: "chunk"}, {name: "output"}}
	slow[0].start(t, gs, "POST", srv.URL+"/v1/jobs", "application/x-tar", pkg, len(pkg)/2)
	slow[1].start(t, gs, "PUT", srv.URL+"/v1/chunks/"+chunkHash, "", chunk, len(chunk)/2)
	slow[2].start(t, gs, "POST", srv.URL+outputPath(ls[0]), "", output, 9<<20)

	var res api.GCResult
	within(t, "a collection", func() error {
		b, err := ok("POST", "/v1/gc", "application/json", []byte("{}"))
		if err == nil {
			err = json.Unmarshal(b, &res)
		}
		return err
	})
	if res.Objects == 0 {
		t.Fatalf("the collection removed nothing (%+v): the half-stored output should have been unreferenced", res)
	}
	small := []byte("a small chunk")
	smallSum := sha256.Sum256(small)
	within(t, "a fresh submission", func() error {
		_, err := ok("POST", "/v1/jobs", "application/x-tar", opstest.TarOf(t, map[string]string{"distrenjob.xml": fmt.Sprintf(manifest, "fresh")}))
		return err
	})
	within(t, "a fresh chunk upload", func() error {
		_, err := ok("PUT", "/v1/chunks/"+hex.EncodeToString(smallSum[:]), "", small)
		return err
	})
	within(t, "a fresh chunks/missing", func() error {
		_, err := ok("POST", "/v1/chunks/missing", "application/json", []byte(`{"chunks":["`+hex.EncodeToString(smallSum[:])+`"]}`))
		return err
	})
	within(t, "a fresh frame output", func() error {
		_, err := ok("POST", outputPath(ls[1]), "", opstest.TarOf(t, map[string]string{"out2.txt": "two"}))
		return err
	})
	within(t, "a second collection", func() error {
		_, err := ok("POST", "/v1/gc", "application/json", []byte("{}"))
		return err
	})

	// The slow uploads end; each succeeds, and what it stored is whole.
	code, b := slow[0].finish(t)
	var sub api.Submitted
	if code != 200 || json.Unmarshal(b, &sub) != nil {
		t.Fatalf("the slow submission: %d %s", code, b)
	}
	if _, b, _ = call("GET", fmt.Sprintf("/v1/jobs/%d/files/1", sub.ID), "", nil); !bytes.Equal(b, input) {
		t.Fatalf("the slow submission's input: %d bytes, want the %d sent", len(b), len(input))
	}
	if code, b = slow[1].finish(t); code != 200 {
		t.Fatalf("the slow chunk: %d %s", code, b)
	}
	b, _ = ok("POST", "/v1/chunks/missing", "application/json", []byte(`{"chunks":["`+chunkHash+`"]}`))
	if !strings.Contains(string(b), `"missing":[]`) {
		t.Fatalf("the slow chunk is not stored: %s", b)
	}
	if code, b = slow[2].finish(t); code != 200 {
		t.Fatalf("the slow output: %d %s", code, b)
	}
	if f, _ := sess.Frame(leased.ID, ls[0].Frame); f.State != api.StateDone {
		t.Fatalf("frame after its slow output: %+v", f)
	}
	code, b, err = call("GET", fmt.Sprintf("/v1/jobs/%d/frames/%d/output", leased.ID, ls[0].Frame), "", nil)
	if err != nil || code != 200 || !bytes.Equal(b, output) {
		t.Fatalf("the slow output as stored: %d, %d bytes (want %d), %v: part of it was removed by the collection", code, len(b), len(output), err)
	}
	// And the collections after keep all of it.
	if _, err := ok("POST", "/v1/gc", "application/json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if _, b, _ = call("GET", fmt.Sprintf("/v1/jobs/%d/frames/%d/output", leased.ID, ls[0].Frame), "", nil); !bytes.Equal(b, output) {
		t.Fatal("the slow output after another collection is not whole")
	}
}
