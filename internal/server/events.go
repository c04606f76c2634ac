package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/session"
)

// getEvents serves the change feed (session.Changes) as server-sent
// events: for every committed change of a job, an event "job" whose data
// is the job's summary as GET /v1/jobs/{job} answers it, or an event
// "deleted" with its id once it is gone. Each event's id is BOOT-SEQ, the
// server's incarnation and the change's number. ?job=N (repeatable)
// limits the stream to those jobs. A client that reconnects with
// Last-Event-ID gets the changes since that event replayed, if the server
// still keeps them (session.KeepChanges); otherwise — and on a first
// connection — it gets an event "reset" (only when it asked to resume)
// and the summaries of the jobs it named, so that it misses nothing:
// every event carries a job's whole state, not a difference. A comment
// line every EventKeepAlive keeps idle connections open through proxies.
func (s *Server) getEvents(w http.ResponseWriter, r *http.Request) error {
	var jobs []int64
	for _, v := range r.URL.Query()["job"] {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id < 1 {
			return badRequest("job %q: expected a job number", v)
		}
		jobs = append(jobs, id)
	}
	if len(jobs) > api.MaxEventJobs {
		return badRequest("%d jobs: at most %d per stream", len(jobs), api.MaxEventJobs)
	}
	rc := http.NewResponseController(w)
	boot := s.sess.Boot()
	c, resumed := s.sess.Changes(), false // before the first summaries: nothing after them is missed
	last := r.Header.Get("Last-Event-ID")
	if last != "" {
		var b int64
		var seq uint64
		if _, err := fmt.Sscanf(last, "%d-%d", &b, &seq); err == nil && b == boot {
			c, resumed = s.sess.ChangesAfter(seq)
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(seq uint64, id int64) error {
		j, err := s.sess.Job(id)
		switch {
		case errors.Is(err, session.ErrNotFound):
			_, err = fmt.Fprintf(w, "id: %d-%d\nevent: %s\ndata: {\"id\":%d}\n\n", boot, seq, api.EventDeleted, id)
			return err
		case err != nil:
			return err
		}
		b, err := json.Marshal(wireJob(&j))
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "id: %d-%d\nevent: %s\ndata: %s\n\n", boot, seq, api.EventJob, b)
		return err
	}
	if !resumed {
		if last != "" {
			if _, err := fmt.Fprintf(w, "id: %d-%d\nevent: %s\ndata: {}\n\n", boot, c.Seq-1, api.EventReset); err != nil {
				return nil
			}
		}
		for _, id := range jobs {
			if err := send(c.Seq-1, id); err != nil {
				return nil // the client went away
			}
		}
	}
	if err := rc.Flush(); err != nil {
		return nil
	}
	tick := time.NewTicker(s.lim.EventKeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-c.Ready:
			for _, id := range c.Jobs {
				if len(jobs) > 0 && !slices.Contains(jobs, id) {
					continue
				}
				if err := send(c.Seq, id); err != nil {
					return nil
				}
			}
			c = c.Next
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
		case <-r.Context().Done():
			return nil
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}
