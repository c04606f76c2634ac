package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/ops/opstest"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/vault"
)

// listServer is a server for the listing tests.
type listServer struct {
	srv  *Server
	sess *session.Session
}

func newListServer(t *testing.T, lim ops.Limits) *listServer {
	t.Helper()
	p := opstest.NewParts(t, "list", vault.Options{SmallObjects: 64 << 10})
	srv := New(Config{Farm: p.Ops(ops.Config{Limits: lim}), URL: "http://list.test",
		Log: slog.New(slog.DiscardHandler), Limits: Limits{MaxClaimWait: time.Millisecond}})
	return &listServer{srv: srv, sess: p.Session}
}

// do serves one request and returns the recorder.
func (ls *listServer) do(t *testing.T, method, path string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, "http://list.test"+path, bytes.NewReader(body))
	if method == "POST" && path == "/v1/jobs" {
		req.Header.Set("Content-Type", "application/x-tar")
	}
	w := httptest.NewRecorder()
	ls.srv.ServeHTTP(w, req)
	return w
}

// rangeJob is a package of a builtin job whose frames are one <range>.
func rangeJob(t *testing.T, first, last int64) []byte {
	return opstest.TarOf(t, map[string]string{"distrenjob.xml": fmt.Sprintf(`<distrenjob version="1"><name>list</name>`+
		`<backend name="builtin"/><frames><range first="%d" last="%d"/></frames>`+
		`<outputs><output>*.png</output></outputs></distrenjob>`, first, last)})
}

func (ls *listServer) submit(t *testing.T, pkg []byte) int64 {
	t.Helper()
	w := ls.do(t, "POST", "/v1/jobs", pkg)
	if w.Code != 200 {
		t.Fatalf("submit: %d %s", w.Code, w.Body)
	}
	var sub api.Submitted
	if err := json.Unmarshal(w.Body.Bytes(), &sub); err != nil {
		t.Fatal(err)
	}
	return sub.ID
}

// pages follows a listing's pages from path (which holds a query), and
// returns the ids (or names) of what each page held.
func (ls *listServer) pages(t *testing.T, path string, key func(json.RawMessage) string) [][]string {
	t.Helper()
	var out [][]string
	after := ""
	for range 1000 {
		p := path
		if after != "" {
			p += "&after=" + after
		}
		w := ls.do(t, "GET", p, nil)
		if w.Code != 200 {
			t.Fatalf("GET %s: %d %s", p, w.Code, w.Body)
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(w.Body.Bytes(), &elems); err != nil {
			t.Fatalf("GET %s: %v: %s", p, err, w.Body)
		}
		var page []string
		for _, e := range elems {
			page = append(page, key(e))
		}
		out = append(out, page)
		next := w.Header().Get(api.NextHeader)
		if next == "" {
			return out
		}
		if len(page) == 0 || next != page[len(page)-1] {
			t.Fatalf("GET %s: next page after %q, but the page ends at %v", p, next, page)
		}
		after = next
	}
	t.Fatalf("GET %s: more than 1000 pages", path)
	return nil
}

func idOf(m json.RawMessage) string {
	var v struct {
		ID   *int64 `json:"id"`
		N    *int64 `json:"n"`
		Name string `json:"name"`
	}
	json.Unmarshal(m, &v)
	switch {
	case v.ID != nil:
		return strconv.FormatInt(*v.ID, 10)
	case v.N != nil:
		return strconv.FormatInt(*v.N, 10)
	}
	return v.Name
}

func seq(first, last int) []string {
	var s []string
	for i := first; i <= last; i++ {
		s = append(s, strconv.Itoa(i))
	}
	return s
}

// TestListingPages: every listing pages by ?after=&limit=, with the next
// page's cursor in X-Distren-Next and none on the last page; without paging
// parameters the whole listing comes, without the header.
func TestListingPages(t *testing.T) {
	ls := newListServer(t, ops.Limits{})
	id := ls.submit(t, rangeJob(t, 0, 24))
	for range 4 {
		ls.submit(t, rangeJob(t, 1, 1))
	}
	// Workers w0..w4, each holding one frame of the first job.
	for i := range 5 {
		if _, err := ls.sess.Claim(context.Background(), session.ClaimRequest{Worker: fmt.Sprintf("w%d", i), Max: 1,
			Backends: map[string]string{"builtin": "1"}}); err != nil {
			t.Fatal(err)
		}
	}
	frames := fmt.Sprintf("/v1/jobs/%d/frames", id)
	for _, c := range []struct {
		path string
		want [][]string
	}{
		{frames + "?limit=10", [][]string{seq(0, 9), seq(10, 19), seq(20, 24)}},
		{frames + "?limit=25", [][]string{seq(0, 24)}},
		{frames + "?limit=5&frames=3-7,21-100", [][]string{{"3", "4", "5", "6", "7"}, {"21", "22", "23", "24"}}},
		{frames + "?frames=30-40&limit=3", [][]string{nil}},
		{"/v1/jobs?limit=2", [][]string{{"5", "4"}, {"3", "2"}, {"1"}}},
		{"/v1/workers?limit=2", [][]string{{"w0", "w1"}, {"w2", "w3"}, {"w4"}}},
	} {
		if got := ls.pages(t, c.path, idOf); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("GET %s: pages %v, want %v", c.path, got, c.want)
		}
	}
	// A cursor alone asks for a page of the default size.
	w := ls.do(t, "GET", frames+"?after=19", nil)
	var fs []api.Frame
	if err := json.Unmarshal(w.Body.Bytes(), &fs); err != nil || len(fs) != 5 || fs[0].ID != 20 || w.Header().Get(api.NextHeader) != "" {
		t.Errorf("GET %s?after=19: %d frames (%v), next %q", frames, len(fs), err, w.Header().Get(api.NextHeader))
	}
	// Unpaged: every element, as one array, without a cursor.
	for _, c := range []struct {
		path string
		n    int
	}{{frames, 25}, {"/v1/jobs", 5}, {"/v1/workers", 5}, {fmt.Sprintf("/v1/jobs/%d/files", id), 0}} {
		w := ls.do(t, "GET", c.path, nil)
		var elems []json.RawMessage
		if err := json.Unmarshal(w.Body.Bytes(), &elems); err != nil || len(elems) != c.n || w.Header().Get(api.NextHeader) != "" {
			t.Errorf("GET %s: %d elements (%v), want %d; next %q", c.path, len(elems), err, c.n, w.Header().Get(api.NextHeader))
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: Content-Type %q", c.path, ct)
		}
	}
}

// TestListingFilesPages: a job's files page across inputs and outputs.
func TestListingFilesPages(t *testing.T) {
	ls := newListServer(t, ops.Limits{})
	id := ls.submit(t, opstest.TarOf(t, map[string]string{"distrenjob.xml": `<distrenjob version="1"><name>files</name>` +
		`<backend name="builtin"/><frames><range first="1" last="3"/></frames>` +
		`<outputs><output>*.png</output></outputs></distrenjob>`, "a.txt": "a", "b.txt": "b"}))
	ctx := context.Background()
	leases, err := ls.sess.Claim(ctx, session.ClaimRequest{Worker: "w", Max: 3, Backends: map[string]string{"builtin": "1"}})
	if err != nil || len(leases) != 3 {
		t.Fatalf("claim: %v, %v", leases, err)
	}
	for _, l := range leases {
		err := ls.sess.Complete(ctx, session.Completion{Worker: "w", Job: id, Frame: l.Frame, Epoch: l.Epoch,
			Output: strings.Repeat("0", 64), Size: 1, Files: []session.OutFile{{Path: fmt.Sprintf("%d.png", l.Frame), Size: 1}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Files 1 and 2 are the inputs (a.txt, b.txt), 3..5 the outputs.
	for limit, want := range map[int][][]string{
		1: {{"1"}, {"2"}, {"3"}, {"4"}, {"5"}},
		2: {{"1", "2"}, {"3", "4"}, {"5"}}, // the inputs end with a page
		3: {{"1", "2", "3"}, {"4", "5"}},
		5: {seq(1, 5)},
	} {
		got := ls.pages(t, fmt.Sprintf("/v1/jobs/%d/files?limit=%d", id, limit), idOf)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("limit %d: file pages %v, want %v", limit, got, want)
		}
	}
}

// TestListingBadParameters: a malformed cursor or limit is a 400 naming the
// parameter, before anything is listed.
func TestListingBadParameters(t *testing.T) {
	ls := newListServer(t, ops.Limits{})
	id := ls.submit(t, rangeJob(t, 1, 3))
	frames := fmt.Sprintf("/v1/jobs/%d/frames", id)
	for _, c := range []struct{ path, want string }{
		{frames + "?limit=0", `limit "0": expected a whole number 1..10000`},
		{frames + "?limit=10001", `limit "10001": expected a whole number 1..10000`},
		{frames + "?limit=many", `limit "many": expected a whole number 1..10000`},
		{frames + "?limit=", `limit "": expected a whole number 1..10000`},
		{frames + "?after=-1", `after "-1": expected a frame id (a whole number 0..9223372036854775807)`},
		{frames + "?after=x1", `after "x1": expected a frame id`},
		{frames + "?after=9223372036854775808", `after "9223372036854775808": expected a frame id`},
		{"/v1/jobs?after=0", `after "0": expected a job id (a whole number 1..9223372036854775807)`},
		{fmt.Sprintf("/v1/jobs/%d/files?after=1.5", id), `after "1.5": expected a file number`},
		{"/v1/workers?after=" + strings.Repeat("w", 300), `after: a worker name of 300 bytes, longer than 256`},
	} {
		w := ls.do(t, "GET", c.path, nil)
		var e api.Error
		json.Unmarshal(w.Body.Bytes(), &e)
		if w.Code != 400 || !strings.Contains(e.Error, c.want) {
			t.Errorf("GET %.80s: %d %q, want 400 %q", c.path, w.Code, e.Error, c.want)
		}
	}
	if w := ls.do(t, "GET", "/v1/jobs/99/frames?limit=5", nil); w.Code != 404 {
		t.Errorf("frames of job 99: %d %s", w.Code, w.Body)
	}
	if w := ls.do(t, "GET", "/v1/jobs/99/frames", nil); w.Code != 404 {
		t.Errorf("frames of job 99, unpaged: %d %s", w.Code, w.Body)
	}
}

// writeLog is a ResponseWriter that records the size of every write, and
// calls during, if set, at the first.
type writeLog struct {
	header http.Header
	body   bytes.Buffer
	writes []int
	during func()
}

func (w *writeLog) Header() http.Header { return w.header }
func (w *writeLog) WriteHeader(int)     {}
func (w *writeLog) Write(p []byte) (int, error) {
	if len(w.writes) == 0 && w.during != nil {
		w.during()
	}
	w.writes = append(w.writes, len(p))
	return w.body.Write(p)
}

// discard is a ResponseWriter that throws the body away.
type discard struct{ h http.Header }

func (d discard) Header() http.Header         { return d.h }
func (d discard) WriteHeader(int)             {}
func (d discard) Write(p []byte) (int, error) { return len(p), nil }

// TestListingStreams: an unpaged listing of 30,000 frames (2.3 MB of JSON) is
// written as it is encoded, in writes of at most 64 KiB, not built whole
// and written at once; its bytes are what encoding the whole list gives;
// and the session's lock is not held while the response is written (a
// command can complete during a write).
func TestListingStreams(t *testing.T) {
	ls := newListServer(t, ops.Limits{})
	id := ls.submit(t, rangeJob(t, 1, 30_000))
	all, err := ls.sess.Frames(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(wireFrames(all))
	want = append(want, '\n')

	submitted := make(chan error, 1)
	w := &writeLog{header: http.Header{}, during: func() {
		// The dispatcher takes the session's write lock to record the job;
		// a listing holding the read lock across this write would stop it.
		go func() {
			_, err := ls.sess.Submit(context.Background(), session.Submission{Manifest: mustManifest(t), Raw: []byte("x")})
			submitted <- err
		}()
		select {
		case err := <-submitted:
			if err != nil {
				t.Errorf("submission during the listing: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("a submission did not complete during a write of the listing: the session is locked while it writes")
		}
	}}
	ls.srv.ServeHTTP(w, httptest.NewRequest("GET", fmt.Sprintf("http://list.test/v1/jobs/%d/frames", id), nil))
	if !bytes.Equal(w.body.Bytes(), want) {
		t.Fatalf("streamed listing differs from the whole list encoded: %d bytes, want %d", w.body.Len(), len(want))
	}
	if len(w.writes) < 10 || slices.Max(w.writes) > 64<<10 {
		t.Errorf("a listing of %d bytes was written in %d writes, the largest %d bytes: not streamed",
			len(want), len(w.writes), slices.Max(w.writes))
	}

	// Nothing is allocated per frame: a listing makes no garbage that
	// grows with the job, whether streamed or paged.
	if raceEnabled {
		t.Log("allocations not counted: the race detector's are its own")
		return
	}
	for _, c := range []struct {
		query string
		max   float64
	}{{"", 200}, {"?limit=10000", 100}, {"?after=20000&limit=5000", 100}} {
		req := httptest.NewRequest("GET", fmt.Sprintf("http://list.test/v1/jobs/%d/frames%s", id, c.query), nil)
		allocs := testing.AllocsPerRun(3, func() {
			ls.srv.ServeHTTP(discard{http.Header{}}, req)
		})
		if allocs > c.max {
			t.Errorf("GET frames%s of a job of 30,000 frames: %.0f allocations, want at most %.0f", c.query, allocs, c.max)
		}
	}
}

func mustManifest(t *testing.T) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Parse(strings.NewReader(`<distrenjob version="1"><name>during</name><backend name="builtin"/>`+
		`<frames><frame id="1"/></frames><outputs><output>*.png</output></outputs></distrenjob>`), "during.xml", manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMaxFramesHeld: a job that would make the server hold more frames than
// --max-frames-held is refused with a 413 naming the numbers; deleting a
// job makes room.
func TestMaxFramesHeld(t *testing.T) {
	ls := newListServer(t, ops.Limits{MaxFramesHeld: 100})
	w := ls.do(t, "POST", "/v1/jobs", rangeJob(t, 1, 101))
	if w.Code != 413 || !strings.Contains(w.Body.String(), `job \"list\": 101 frames, too many frames to hold: over the server's limit of 100 frames held (serve --max-frames-held)`) {
		t.Errorf("a job over the limit alone: %d %s", w.Code, w.Body)
	}
	id := ls.submit(t, rangeJob(t, 1, 60))
	w = ls.do(t, "POST", "/v1/jobs", rangeJob(t, 1, 41))
	if want := `job \"list\": 41 frames, too many frames to hold: the server holds 60 frames of 1 jobs already, and 101 in all would pass its limit of 100 (serve --max-frames-held)`; w.Code != 413 || !strings.Contains(w.Body.String(), want) {
		t.Errorf("a job over what is left: %d %s\nwant 413 %s", w.Code, w.Body, want)
	}
	if w := ls.do(t, "GET", "/v1/jobs", nil); !strings.Contains(w.Body.String(), `"id":1,`) || strings.Contains(w.Body.String(), `"id":2,`) {
		t.Errorf("jobs after the refusal: %s", w.Body)
	}
	if w := ls.do(t, "DELETE", fmt.Sprintf("/v1/jobs/%d", id), nil); w.Code != 200 {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	ls.submit(t, rangeJob(t, 1, 100))
}

// TestClientFollowsPages: the typed client reads a listing page by page,
// and gets it whole and in order.
func TestClientFollowsPages(t *testing.T) {
	ls := newListServer(t, ops.Limits{})
	id := ls.submit(t, rangeJob(t, 1, 50))
	var requests atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == fmt.Sprintf("/v1/jobs/%d/frames", id) {
			requests.Add(1)
		}
		ls.srv.ServeHTTP(w, r)
	}))
	defer hs.Close()
	c, err := client.New(hs.URL, client.WithPageSize(7))
	if err != nil {
		t.Fatal(err)
	}
	fs, err := c.Frames(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, f := range fs {
		ids = append(ids, f.ID)
	}
	var want []int64
	for i := int64(1); i <= 50; i++ {
		want = append(want, i)
	}
	if !slices.Equal(ids, want) {
		t.Errorf("frames through the client: %v", ids)
	}
	if n := requests.Load(); n != 8 { // 7 pages of 7, one of 1
		t.Errorf("%d requests for 50 frames in pages of 7, want 8", n)
	}
	// With a frame set, and stopping early.
	n := 0
	stop := fmt.Errorf("enough")
	err = c.EachFrame(context.Background(), id, "10-30", func(f api.Frame) error {
		if n++; n == 12 {
			return stop
		}
		if f.ID != int64(9+n) {
			t.Errorf("frame %d in place %d of 10-30", f.ID, n)
		}
		return nil
	})
	if err != stop {
		t.Errorf("EachFrame stopped by its function: %v", err)
	}
}

// TestListingFramesExact: frames in every state — done with files, failed
// with a message that JSON must escape, running with progress, blocked by
// the failed one — list as encoding the whole list gives them, URLs
// included, streamed and paged.
func TestListingFramesExact(t *testing.T) {
	ls := newListServer(t, ops.Limits{})
	id := ls.submit(t, opstest.TarOf(t, map[string]string{"distrenjob.xml": `<distrenjob version="1"><name>exact</name>` +
		`<retries>0</retries><backend name="builtin"/><frames><range first="1" last="6"/>` +
		`<frame id="7"><depends on="2"/></frame></frames><outputs><output>*.png</output></outputs></distrenjob>`}))
	ctx := context.Background()
	leases, err := ls.sess.Claim(ctx, session.ClaimRequest{Worker: "w\u00e9", Max: 3, Backends: map[string]string{"builtin": "1"}})
	if err != nil || len(leases) != 3 {
		t.Fatalf("claim: %v, %v", leases, err)
	}
	if err := ls.sess.Complete(ctx, session.Completion{Worker: "w\u00e9", Job: id, Frame: leases[0].Frame, Epoch: leases[0].Epoch,
		Output: strings.Repeat("a", 64), Size: 9, Render: 1500 * time.Millisecond,
		Files: []session.OutFile{{Path: "a.png", Size: 4}, {Path: "b.png", Size: 5}}}); err != nil {
		t.Fatal(err)
	}
	if err := ls.sess.Fail(ctx, "w\u00e9", id, leases[1].Frame, leases[1].Epoch, "<scene> \"broken\" at line 3\n\ttab & more", false); err != nil {
		t.Fatal(err)
	}
	if _, err := ls.sess.Heartbeat(ctx, session.Heartbeat{Worker: "w\u00e9", Leases: []session.LeaseProgress{{
		LeaseRef: session.LeaseRef{Job: id, Frame: leases[2].Frame, Epoch: leases[2].Epoch}, Progress: 0.25}}}); err != nil {
		t.Fatal(err)
	}
	all, err := ls.sess.Frames(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]bool{}
	for _, f := range all {
		states[f.State] = true
	}
	if len(states) < 4 {
		t.Fatalf("test set-up: frame states %v", states)
	}
	want, _ := json.Marshal(wireFrames(all))
	for _, q := range []string{"", "?limit=7", "?limit=10000"} {
		w := ls.do(t, "GET", fmt.Sprintf("/v1/jobs/%d/frames%s", id, q), nil)
		if got := strings.TrimSuffix(w.Body.String(), "\n"); got != string(want) {
			t.Errorf("GET frames%s:\n got %s\nwant %s", q, got, want)
		}
	}
	var paged []string
	path := fmt.Sprintf("/v1/jobs/%d/frames?limit=2", id)
	for next := ""; ; {
		p := path
		if next != "" {
			p += "&after=" + next
		}
		w := ls.do(t, "GET", p, nil)
		paged = append(paged, strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(w.Body.String()), "["), "]"))
		if next = w.Header().Get(api.NextHeader); next == "" {
			break
		}
	}
	if got := "[" + strings.Join(paged, ",") + "]"; got != string(want) {
		t.Errorf("pages of 2:\n got %s\nwant %s", got, want)
	}
}

// TestFrameWithURL: a frame's encoding gets its URL; an encoding of
// another shape than expected is encoded again whole, with the URL.
func TestFrameWithURL(t *testing.T) {
	f := api.Frame{ID: 42, State: "ready"}
	enc, _ := json.Marshal(f)
	want := `{"id":42,"url":"distren://farm/7/frame/42","state":"ready","attempts":0}`
	if got := string(frameWithURL(nil, enc, &f, "farm", 7)); got != want {
		t.Errorf("frameWithURL: %s, want %s", got, want)
	}
	if got := string(frameWithURL([]byte("junk"), []byte(`{"state":"ready","id":42}`), &f, "farm", 7)); got != want {
		t.Errorf("frameWithURL of an unexpected shape: %s, want %s", got, want)
	}
}

// wireFrames returns frames as the API has them.
func wireFrames(fs []session.Frame) []api.Frame {
	out := make([]api.Frame, len(fs))
	for i := range fs {
		out[i] = wireFrame(&fs[i])
	}
	return out
}
