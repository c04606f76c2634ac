package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/distren/distren/internal/api"
)

// Event is one event of a server's event stream (GET /v1/events).
type Event struct {
	ID   string  // BOOT-SEQ: the server's incarnation and its change's number (Last-Event-ID)
	Seq  uint64  // the change's number
	Type string  // api.EventJob, api.EventDeleted or api.EventReset
	Job  api.Job // the job's summary (EventJob); for EventDeleted only its ID
}

// EventStream reads a server's event stream.
type EventStream struct {
	body io.ReadCloser
	r    *bufio.Reader
}

// Events opens the server's event stream, limited to the jobs given (all
// jobs if none). Their summaries come first.
func (c *Client) Events(ctx context.Context, jobs ...int64) (*EventStream, error) {
	return c.EventsAfter(ctx, "", jobs...)
}

// EventsAfter opens the event stream resuming after the event of that id
// (Last-Event-ID): the changes since are replayed if the server still
// keeps them; otherwise an api.EventReset event, then the jobs' summaries.
func (c *Client) EventsAfter(ctx context.Context, lastID string, jobs ...int64) (*EventStream, error) {
	q := url.Values{}
	for _, j := range jobs {
		q.Add("job", strconv.FormatInt(j, 10))
	}
	path := "/v1/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	rctx := ctx
	if lastID != "" {
		rctx = context.WithValue(ctx, headerKey{}, [2]string{"Last-Event-ID", lastID})
	}
	resp, err := c.req(rctx, "GET", path, nil, 0, "")
	if err != nil {
		return nil, err
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: answered %q, not an event stream", path, ct)
	}
	return &EventStream{body: resp.Body, r: bufio.NewReaderSize(resp.Body, 64<<10)}, nil
}

// maxEventLine bounds one line of the stream: a job's summary is small.
const maxEventLine = 1 << 20

// Next returns the next event; it blocks until one arrives, the stream
// ends (io.EOF) or its context ends.
func (s *EventStream) Next() (Event, error) {
	var ev Event
	var data strings.Builder
	for {
		line, err := s.r.ReadString('\n')
		if len(line) > maxEventLine {
			return Event{}, fmt.Errorf("event stream: a line of more than %d bytes", maxEventLine)
		}
		if err != nil {
			if err == io.EOF && line == "" {
				return Event{}, io.EOF
			}
			return Event{}, fmt.Errorf("event stream: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if ev.Type == "" && data.Len() == 0 {
				continue // a keep-alive, or blank lines
			}
			if err := json.Unmarshal([]byte(data.String()), &ev.Job); err != nil {
				return Event{}, fmt.Errorf("event stream: %s event: %w", ev.Type, err)
			}
			return ev, nil
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id:"):
			ev.ID = strings.TrimSpace(line[3:])
			seq := ev.ID
			if _, after, ok := strings.Cut(ev.ID, "-"); ok {
				seq = after
			}
			ev.Seq, _ = strconv.ParseUint(seq, 10, 64)
		case strings.HasPrefix(line, "event:"):
			ev.Type = strings.TrimSpace(line[6:])
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n') // the lines of one event's data join with line feeds
			}
			data.WriteString(strings.TrimPrefix(line[5:], " "))
		}
	}
}

// Close ends the stream.
func (s *EventStream) Close() error { return s.body.Close() }

// Frame returns one frame's state.
func (c *Client) Frame(ctx context.Context, id, frame int64) (api.Frame, error) {
	var f api.Frame
	return f, c.call(ctx, "GET", fmt.Sprintf("/v1/jobs/%d/frames/%d", id, frame), nil, &f)
}
