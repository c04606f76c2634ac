package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/distren/distren/internal/api"
)

// sseServer answers GET /v1/events with body, as the given content type,
// recording the query.
func sseServer(t *testing.T, ctype, body string) (*Client, *string) {
	t.Helper()
	var query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/events" {
			http.Error(w, `{"error":"no such endpoint"}`, 404)
			return
		}
		query = r.URL.RawQuery
		w.Header().Set("Content-Type", ctype)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c, &query
}

// TestEventStream: events with CRLF or LF line ends, comments, blank
// lines and data split over lines are read whole; the stream's end is
// io.EOF.
func TestEventStream(t *testing.T) {
	body := ": keep-alive\n\n\n" +
		"id: 5\r\nevent: job\r\ndata: {\"id\":3,\r\ndata: \"state\":\"running\",\"counts\":{\"running\":2}}\r\n\r\n" +
		": keep-alive\n\n" +
		"id: 6\nevent: deleted\ndata: {\"id\":4}\n\n"
	c, query := sseServer(t, "text/event-stream", body)
	es, err := c.Events(context.Background(), 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	if *query != "job=3&job=4" {
		t.Errorf("query %q, want job=3&job=4", *query)
	}
	ev, err := es.Next()
	if err != nil || ev.Seq != 5 || ev.Type != api.EventJob || ev.Job.ID != 3 || ev.Job.State != "running" || ev.Job.Counts["running"] != 2 {
		t.Errorf("first event: %+v %v", ev, err)
	}
	ev, err = es.Next()
	if err != nil || ev.Seq != 6 || ev.Type != api.EventDeleted || ev.Job.ID != 4 {
		t.Errorf("second event: %+v %v", ev, err)
	}
	if ev, err := es.Next(); err != io.EOF {
		t.Errorf("after the last event: %+v %v, want io.EOF", ev, err)
	}
}

// TestEventStreamErrors: an answer that is not an event stream, an event
// whose data is not a summary, and a stream cut in the middle of an event
// are errors, and say so.
func TestEventStreamErrors(t *testing.T) {
	c, _ := sseServer(t, "application/json", `[]`)
	if _, err := c.Events(context.Background()); err == nil || !strings.Contains(err.Error(), "not an event stream") {
		t.Errorf("a JSON answer: %v", err)
	}

	c, _ = sseServer(t, "text/event-stream", "id: 1\nevent: job\ndata: {nope\n\n")
	es, err := c.Events(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := es.Next(); err == nil || !strings.Contains(err.Error(), "job event") {
		t.Errorf("bad data: %+v %v, want an error naming the event", ev, err)
	}
	es.Close()

	c, _ = sseServer(t, "text/event-stream", "id: 1\nevent: job\ndata: {\"id\":1")
	es, err = c.Events(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	if ev, err := es.Next(); err == nil || err == io.EOF {
		t.Errorf("a stream cut mid-event: %+v %v, want an error other than a clean end", ev, err)
	}
}
