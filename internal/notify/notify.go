// Package notify owns the farm's webhooks (`serve --notify URL`): a POST of
// a JSON body to every URL when a job finishes — done, failed or canceled
// — or passes its deadline unfinished (docs/metrics.md, "Notifications").
// It follows the session's change feed, so it costs the farm nothing
// between changes and never holds it up: deliveries are queued, sent by
// their own goroutine per URL, retried with a backoff, and dropped (and
// logged) when a URL has failed too long or too many wait.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/session"
)

// Event is the body of a notification.
type Event struct {
	// Event is job.done, job.failed, job.canceled or job.deadline_missed.
	Event  string `json:"event"`
	Server string `json:"server"`
	// Job is the job's summary, as GET /v1/jobs/{job} answers it.
	Job  api.Job   `json:"job"`
	Time time.Time `json:"time"`
}

// The events.
const (
	JobDone           = "job.done"
	JobFailed         = "job.failed"
	JobCanceled       = "job.canceled"
	JobDeadlineMissed = "job.deadline_missed"
)

// Config configures the notifier.
type Config struct {
	Session *session.Session
	URLs    []string
	Log     *slog.Logger
	// Tries is how many times a delivery is sent before it is dropped
	// (default 8: with the default backoff, over about 4 minutes); Backoff
	// the wait before the second try, doubled for each next (default 1 s).
	Tries   int
	Backoff time.Duration
	// Queue bounds the deliveries waiting per URL (default 1000): more are
	// dropped, and logged.
	Queue int
	// Client sends them (default: a client with a 10 s timeout).
	Client *http.Client
	// DeadlineCheck is how often deadlines are checked (default 10 s).
	DeadlineCheck time.Duration
	// Ready, if set, is called once the notifier follows the feed: what
	// changes after it is notified.
	Ready func()
}

// Run notifies until ctx ends.
func Run(ctx context.Context, cfg Config) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Tries <= 0 {
		cfg.Tries = 8
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1000
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.DeadlineCheck <= 0 {
		cfg.DeadlineCheck = 10 * time.Second
	}
	if len(cfg.URLs) == 0 {
		return
	}
	queues := make([]chan Event, len(cfg.URLs))
	for i, u := range cfg.URLs {
		queues[i] = make(chan Event, cfg.Queue)
		go deliver(ctx, cfg, u, queues[i])
	}
	send := func(ev Event) {
		for i, q := range queues {
			select {
			case q <- ev:
			default:
				cfg.Log.Warn("notification dropped: too many wait for this URL", "url", cfg.URLs[i], "event", ev.Event)
			}
		}
	}
	w := watcher{cfg: cfg, sent: map[int64]string{}, missed: map[int64]bool{}}
	// What has ended before the notifier started was notified before (or
	// never will be: at least once, not again at every start).
	c := cfg.Session.Changes()
	for _, j := range cfg.Session.Jobs() {
		if ev := ended(j.State); ev != "" {
			w.sent[j.ID] = ev
		}
		if j.Deadline != nil && time.Now().After(*j.Deadline) {
			w.missed[j.ID] = true
		}
	}
	tick := time.NewTicker(cfg.DeadlineCheck)
	defer tick.Stop()
	if cfg.Ready != nil {
		cfg.Ready()
	}
	for {
		select {
		case <-c.Ready:
			for _, id := range c.Jobs {
				if j, err := cfg.Session.Job(id); err == nil {
					w.look(j, send)
				} else {
					delete(w.sent, id)
					delete(w.missed, id)
				}
			}
			c = c.Next
		case <-tick.C:
			for _, j := range cfg.Session.Jobs() {
				w.look(j, send)
			}
		case <-ctx.Done():
			return
		}
	}
}

// watcher remembers what was notified of each job.
type watcher struct {
	cfg    Config
	sent   map[int64]string // job → the end notified
	missed map[int64]bool   // job → its deadline's miss notified
}

// look notifies what is new of a job: its end, or its deadline passed.
func (w *watcher) look(j session.Job, send func(Event)) {
	now := time.Now().UTC()
	if ev := ended(j.State); ev != "" && w.sent[j.ID] != ev {
		w.sent[j.ID] = ev
		send(Event{Event: ev, Server: w.cfg.Session.Name(), Job: api.Job(j), Time: now})
	} else if ev == "" {
		delete(w.sent, j.ID) // retried: its next end is notified again
	}
	if ev := ended(j.State); ev == "" && j.Deadline != nil && now.After(*j.Deadline) && !w.missed[j.ID] {
		w.missed[j.ID] = true
		send(Event{Event: JobDeadlineMissed, Server: w.cfg.Session.Name(), Job: api.Job(j), Time: now})
	}
}

// ended returns the event of a job state that has ended, or "".
func ended(state string) string {
	switch state {
	case session.JobDone:
		return JobDone
	case session.JobFailed:
		return JobFailed
	case session.JobCanceled:
		return JobCanceled
	}
	return ""
}

// deliver sends the events of one URL, in order, each tried until it is
// answered 2xx or its tries are spent.
func deliver(ctx context.Context, cfg Config, url string, q <-chan Event) {
	for {
		var ev Event
		select {
		case ev = <-q:
		case <-ctx.Done():
			return
		}
		body, err := json.Marshal(ev)
		if err != nil {
			cfg.Log.Error("notification not encoded", "event", ev.Event, "err", err)
			continue
		}
		wait := cfg.Backoff
		for try := 1; ; try++ {
			err := post(ctx, cfg.Client, url, body)
			if err == nil {
				break
			}
			if try == cfg.Tries || ctx.Err() != nil {
				cfg.Log.Warn("notification dropped", "url", url, "event", ev.Event, "tries", try, "err", err)
				break
			}
			cfg.Log.Info("notification not delivered, retrying", "url", url, "event", ev.Event, "err", err, "retry_in", wait)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
			wait *= 2
		}
	}
}

func post(ctx context.Context, c *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "distren-notify")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}
