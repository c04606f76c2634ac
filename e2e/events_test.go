package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
)

// TestEventsFollowJob: a client follows a job to its end from the server's
// events alone; another, whose connection drops halfway, resumes with the
// last event's id and misses no change, nor gets one twice.
func TestEventsFollowJob(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "events", "--workers", "1")
	jobURL := strings.TrimSpace(run(t, 0, "submit", writeJob(t, numbersJob(20, "0.05"), nil), "--server", url))
	id := jobID(t, jobURL)
	c := apiClient(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// follow reads events until the job is done, and returns their
	// change numbers; stopAfter > 0 drops the connection after that many
	// and resumes from the last one.
	follow := func(stopAfter int) (seqs []uint64, last api.Job) {
		es, err := c.Events(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { es.Close() }()
		var lastID string
		for n := 0; ; n++ {
			if stopAfter > 0 && n == stopAfter {
				es.Close()
				if es, err = c.EventsAfter(ctx, lastID, id); err != nil {
					t.Fatal(err)
				}
			}
			ev, err := es.Next()
			if err != nil {
				t.Fatalf("event %d: %v", n, err)
			}
			if ev.Type != api.EventJob || ev.Job.ID != id {
				t.Fatalf("event %d: %+v, want job %d's summary", n, ev, id)
			}
			if len(seqs) > 0 && ev.Job.Counts[api.StateDone] < last.Counts[api.StateDone] {
				t.Errorf("event %d: %d frames done after %d", n, ev.Job.Counts[api.StateDone], last.Counts[api.StateDone])
			}
			seqs, last, lastID = append(seqs, ev.Seq), ev.Job, ev.ID
			if ev.Job.State == api.JobDone {
				return seqs, last
			}
		}
	}
	type result struct {
		seqs []uint64
		job  api.Job
	}
	whole, dropped := make(chan result, 1), make(chan result, 1)
	go func() { s, j := follow(0); whole <- result{s, j} }()
	go func() { s, j := follow(5); dropped <- result{s, j} }()
	a, b := <-whole, <-dropped
	for _, r := range []result{a, b} {
		if r.job.Counts[api.StateDone] != 20 || r.job.Frames != 20 {
			t.Errorf("last event: %+v, want 20 frames done", r.job)
		}
	}
	// The streams may have opened at different changes: compare from the
	// later start.
	from := max(a.seqs[0], b.seqs[0])
	cut := func(s []uint64) []uint64 {
		return slices.DeleteFunc(slices.Clone(s), func(q uint64) bool { return q < from })
	}
	if !slices.Equal(cut(a.seqs), cut(b.seqs)) {
		t.Errorf("changes seen without a drop %v, with one and a resume %v", a.seqs, b.seqs)
	}
	if len(a.seqs) < 6 {
		t.Errorf("only %d events for 20 frames: the drop did not happen halfway", len(a.seqs))
	}
}
