package notify

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/store"
)

func openSession(t *testing.T) *session.Session {
	t.Helper()
	s, err := session.Open(context.Background(), store.NewMem(), session.Options{Name: "farm", LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func submit(t *testing.T, s *session.Session, xml string) int64 {
	t.Helper()
	m, err := manifest.Parse(strings.NewReader(xml), "distrenjob.xml", manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := s.Submit(context.Background(), session.Submission{Manifest: m, Raw: []byte(xml)})
	if err != nil {
		t.Fatal(err)
	}
	return sub.ID
}

// TestNotify: a job's end is posted once to the URL, after the URL refused
// the first tries; a job past its deadline is posted as missed; a job that
// had ended before the notifier started is not posted.
func TestNotify(t *testing.T) {
	s := openSession(t)
	const job = `<distrenjob version="1"><name>n</name><backend name="builtin"/><frames><range first="1" last="1"/></frames><outputs><output>*.png</output></outputs></distrenjob>`
	before := submit(t, s, job)
	if _, err := s.Cancel(context.Background(), before); err != nil {
		t.Fatal(err)
	}
	events := make(chan Event, 10)
	var refuse atomic.Int32
	refuse.Store(2)
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refuse.Add(-1) >= 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var ev Event
		if r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &ev) != nil {
			t.Errorf("notification %q (%s)", b, r.Header.Get("Content-Type"))
		}
		events <- ev
	}))
	defer rx.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	go Run(ctx, Config{Session: s, URLs: []string{rx.URL}, Log: slog.New(slog.DiscardHandler), Backoff: time.Millisecond,
		DeadlineCheck: 5 * time.Millisecond, Ready: func() { close(started) }})
	<-started
	id := submit(t, s, job)
	if _, err := s.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	ev := <-events
	if ev.Event != JobCanceled || ev.Job.ID != id || ev.Server != "farm" {
		t.Errorf("notification %+v, want job %d canceled", ev, id)
	}
	late := submit(t, s, strings.Replace(job, "<name>n</name>", "<name>late</name><deadline>2020-01-01T00:00:00Z</deadline>", 1))
	ev = <-events
	if ev.Event != JobDeadlineMissed || ev.Job.ID != late {
		t.Errorf("notification %+v, want job %d's deadline missed", ev, late)
	}
	cancel()
	select {
	case ev := <-events:
		t.Errorf("another notification: %+v (job %d had ended before the notifier started)", ev, before)
	default:
	}
}
