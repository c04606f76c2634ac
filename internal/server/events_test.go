package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/ops/opstest"
	"github.com/distren/distren/internal/server"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/vault"
)

// eventServer is a real HTTP server of a farm, for the event stream.
type eventServer struct {
	url  string
	sess *session.Session
}

func newEventServer(t *testing.T, keepAlive time.Duration) *eventServer {
	t.Helper()
	p := opstest.NewParts(t, "ev", vault.Options{})
	srv := httptest.NewServer(server.New(server.Config{Farm: p.Ops(ops.Config{}), Log: slog.New(slog.DiscardHandler),
		Limits: server.Limits{MaxClaimWait: time.Millisecond, EventKeepAlive: keepAlive}}))
	t.Cleanup(srv.Close)
	return &eventServer{url: srv.URL, sess: p.Session}
}

func (es *eventServer) submit(t *testing.T, frames int) int64 {
	t.Helper()
	pkg := opstest.TarOf(t, map[string]string{"distrenjob.xml": fmt.Sprintf(`<distrenjob version="1"><name>ev</name>`+
		`<backend name="builtin"/><frames><range first="1" last="%d"/></frames>`+
		`<outputs><output>*.png</output></outputs></distrenjob>`, frames)})
	resp, err := http.Post(es.url+"/v1/jobs", "application/x-tar", bytes.NewReader(pkg))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sub api.Submitted
	if resp.StatusCode != 200 || json.Unmarshal(b, &sub) != nil {
		t.Fatalf("submit: %d %s", resp.StatusCode, b)
	}
	return sub.ID
}

// sse reads a raw event stream, one block (the lines up to a blank one)
// at a time.
type sse struct {
	t    *testing.T
	r    *bufio.Reader
	body io.Closer
}

// open opens GET path, which must answer an event stream; the stream
// ends with the test, or after a minute at most.
func (es *eventServer) open(t *testing.T, path string) *sse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", es.url+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %q %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return &sse{t: t, r: bufio.NewReader(resp.Body), body: resp.Body}
}

// block returns the next block's lines.
func (s *sse) block() []string {
	s.t.Helper()
	var lines []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("event stream after %q: %v", lines, err)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			return lines
		}
		lines = append(lines, line)
	}
}

// rawEvent is an event as the stream wrote it.
type rawEvent struct {
	seq  uint64
	typ  string
	data string
}

// event returns the next block, which must be an event.
func (s *sse) event() rawEvent {
	s.t.Helper()
	lines := s.block()
	var ev rawEvent
	for _, l := range lines {
		k, v, _ := strings.Cut(l, ": ")
		switch k {
		case "id": // BOOT-SEQ
			boot, seq, ok := strings.Cut(v, "-")
			n, err := strconv.ParseUint(seq, 10, 64)
			if _, berr := strconv.ParseUint(boot, 10, 64); !ok || err != nil || berr != nil {
				s.t.Fatalf("event %q: id %q, want BOOT-SEQ", lines, v)
			}
			ev.seq = n
		case "event":
			ev.typ = v
		case "data":
			ev.data += v
		default:
			s.t.Fatalf("not an event: %q", lines)
		}
	}
	return ev
}

// job returns the next event, which must be a job's summary.
func (s *sse) job() (uint64, api.Job) {
	s.t.Helper()
	ev := s.event()
	var j api.Job
	if ev.typ != api.EventJob || json.Unmarshal([]byte(ev.data), &j) != nil {
		s.t.Fatalf("event %+v, want a job's summary", ev)
	}
	return ev.seq, j
}

// TestEvents: a stream for a job opens with its summary, then has one
// event per committed change of it — not of other jobs — and ends with
// its deletion.
func TestEvents(t *testing.T) {
	es := newEventServer(t, time.Hour)
	a := es.submit(t, 2)
	b := es.submit(t, 1)
	ctx := context.Background()

	st := es.open(t, fmt.Sprintf("/v1/events?job=%d", a))
	seq0, j := st.job()
	if j.ID != a || j.State != session.JobQueued || j.Counts[api.StateReady] != 2 || j.Frames != 2 {
		t.Fatalf("first event: %+v, want job %d with 2 ready frames", j, a)
	}

	// A change of b alone is not sent; the claim of a's frame that
	// follows is.
	if _, err := es.sess.Cancel(ctx, b); err != nil {
		t.Fatal(err)
	}
	ls, err := es.sess.Claim(ctx, session.ClaimRequest{Worker: "w", Max: 1, Backends: map[string]string{"builtin": "1"}})
	if err != nil || len(ls) != 1 || ls[0].Job != a {
		t.Fatalf("claim: %+v %v", ls, err)
	}
	seq1, j := st.job()
	if j.ID != a || j.State != session.JobRunning || j.Counts[api.StateRunning] != 1 {
		t.Errorf("after the claim: %+v, want job %d running a frame", j, a)
	}
	if seq1 != seq0+2 { // b's cancel was change seq0+1
		t.Errorf("the claim's event is change %d, the first %d: want %d", seq1, seq0, seq0+2)
	}

	if _, err := es.sess.Cancel(ctx, a); err != nil {
		t.Fatal(err)
	}
	seq2, j := st.job()
	if j.ID != a || j.State != session.JobCanceled || seq2 != seq1+1 {
		t.Errorf("after the cancel: change %d %+v, want %d, job %d canceled", seq2, j, seq1+1, a)
	}

	req, _ := http.NewRequest("DELETE", fmt.Sprintf("%s/v1/jobs/%d", es.url, a), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("delete: %s", resp.Status)
	}
	ev := st.event()
	if want := (rawEvent{seq2 + 1, api.EventDeleted, fmt.Sprintf(`{"id":%d}`, a)}); ev != want {
		t.Errorf("after the delete: %+v, want %+v", ev, want)
	}

	// A stream for a job that is gone opens with its deletion.
	if ev := es.open(t, fmt.Sprintf("/v1/events?job=%d", a)).event(); ev.typ != api.EventDeleted || ev.data != fmt.Sprintf(`{"id":%d}`, a) {
		t.Errorf("stream of a deleted job opens with %+v", ev)
	}
}

// TestEventsAllJobs: without ?job, every job's changes are sent, and no
// summary first.
func TestEventsAllJobs(t *testing.T) {
	es := newEventServer(t, time.Hour)
	st := es.open(t, "/v1/events")
	a := es.submit(t, 1)
	b := es.submit(t, 1)
	for _, want := range []int64{a, b} {
		if _, j := st.job(); j.ID != want {
			t.Errorf("event of job %d, want %d", j.ID, want)
		}
	}
}

// TestEventsBadRequest: job numbers that are not, or too many of them.
func TestEventsBadRequest(t *testing.T) {
	es := newEventServer(t, time.Hour)
	many := strings.Repeat("job=1&", api.MaxEventJobs) + "job=1"
	for _, q := range []string{"job=x", "job=0", "job=-3", "job=1&job=", many} {
		resp, err := http.Get(es.url + "/v1/events?" + q)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Errorf("?%.40s: %d %q %s, want 400", q, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
	}
}

// TestEventsKeepAlive: an idle stream gets a comment every EventKeepAlive.
func TestEventsKeepAlive(t *testing.T) {
	es := newEventServer(t, 5*time.Millisecond)
	a := es.submit(t, 1)
	st := es.open(t, fmt.Sprintf("/v1/events?job=%d", a))
	st.job()
	for range 2 {
		if got := st.block(); len(got) != 1 || got[0] != ": keep-alive" {
			t.Fatalf("idle stream sent %q, want a keep-alive comment", got)
		}
	}
}

// TestClientEvents: the client reads the same stream: summaries, the
// changes, keep-alives skipped, a deletion; a refused stream is an error.
func TestClientEvents(t *testing.T) {
	es := newEventServer(t, time.Millisecond)
	a := es.submit(t, 1)
	c, err := client.New(es.url)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Events(ctx, 0); err == nil {
		t.Error("a stream of job 0 was opened")
	} else if ce := (*client.Error)(nil); !errors.As(err, &ce) || ce.Status != 400 {
		t.Errorf("a stream of job 0: %v, want a 400", err)
	}

	stream, err := c.Events(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	ev, err := stream.Next()
	if err != nil || ev.Type != api.EventJob || ev.Job.ID != a || ev.Job.Counts[api.StateReady] != 1 {
		t.Fatalf("first event: %+v %v", ev, err)
	}
	first := ev.Seq
	// Keep-alives arrive every millisecond meanwhile: they are no events.
	if _, err := es.sess.Claim(ctx, session.ClaimRequest{Worker: "w", Max: 1, Backends: map[string]string{"builtin": "1"}}); err != nil {
		t.Fatal(err)
	}
	ev, err = stream.Next()
	if err != nil || ev.Type != api.EventJob || ev.Seq != first+1 || ev.Job.Counts[api.StateRunning] != 1 {
		t.Fatalf("after a claim: %+v %v, want change %d with a running frame", ev, err, first+1)
	}
	if err := es.sess.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	ev, err = stream.Next()
	if err != nil || ev.Type != api.EventDeleted || ev.Job.ID != a || ev.Seq != first+2 {
		t.Fatalf("after the delete: %+v %v", ev, err)
	}
	cancel()
	if _, err := stream.Next(); err == nil {
		t.Error("Next after the context ended returned an event")
	}
}

// TestEventsResume: a client that reconnects with the last event's id gets
// every change since, none twice, and no summary first; an id the server
// no longer keeps, or of another incarnation, gets "reset" and the
// summaries.
func TestEventsResume(t *testing.T) {
	es := newEventServer(t, time.Hour)
	a := es.submit(t, 3)
	c, err := client.New(es.url)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := c.Events(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Next()
	if err != nil {
		t.Fatal(err)
	}
	stream.Close() // the connection drops; the farm goes on
	claims := 0
	for range 3 {
		ls, err := es.sess.Claim(ctx, session.ClaimRequest{Worker: "w", Max: 1, Backends: map[string]string{"builtin": "1"}})
		if err != nil || len(ls) != 1 {
			t.Fatalf("claim: %+v %v", ls, err)
		}
		claims++
	}
	stream, err = c.EventsAfter(ctx, first.ID, a)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	for i := range claims {
		ev, err := stream.Next()
		if err != nil || ev.Type != api.EventJob || ev.Seq != first.Seq+1+uint64(i) {
			t.Fatalf("replayed event %d: %+v %v, want change %d", i, ev, err, first.Seq+1+uint64(i))
		}
		if ev.Job.Counts[api.StateRunning] != 3 { // a replay carries the state now
			t.Errorf("replayed event %d: %+v, want the job's state now, 3 running", i, ev.Job)
		}
	}
	// And it goes on live.
	if _, err := es.sess.Cancel(ctx, a); err != nil {
		t.Fatal(err)
	}
	if ev, err := stream.Next(); err != nil || ev.Seq != first.Seq+4 || ev.Job.State != api.JobCanceled {
		t.Errorf("live after the replay: %+v %v, want change %d, canceled", ev, err, first.Seq+4)
	}

	for _, id := range []string{"0-1", "garbage", fmt.Sprintf("%d-0", es.sess.Boot()+1)} {
		s2, err := c.EventsAfter(ctx, id, a)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := s2.Next()
		if err != nil || ev.Type != api.EventReset {
			t.Errorf("resume after %q: %+v %v, want reset", id, ev, err)
		}
		if ev, err := s2.Next(); err != nil || ev.Type != api.EventJob || ev.Job.ID != a {
			t.Errorf("resume after %q, then: %+v %v, want the job's summary", id, ev, err)
		}
		s2.Close()
	}
}
