package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distren/distren/internal/api"
)

// TestPauseResumePriority: distren pause lets the running frame finish and
// starts no other; resume finishes the job; priority changes which job's
// frames go first.
func TestPauseResumePriority(t *testing.T) {
	renders, gates := gateDirs(t)
	_, url := serve(t, "--data", t.TempDir(), "--name", "pauses", "--workers", "0")
	c := apiClient(t, url)
	// One slot, nothing claimed ahead: the worker holds only what it renders.
	start(t, "worker", "--server", url, "--slots", "1", "--prefetch", "-1", "--dir", t.TempDir(), "--name", "w1")
	jobURL := strings.TrimSpace(run(t, 0, "submit", writeJob(t, gatedJob(renders, gates, 3), nil), "--server", url))
	id := jobID(t, jobURL)
	first := waitRender(t, renders, "a frame to start", func(r render) bool { return r.event == "start" })

	var j api.Job
	if err := json.Unmarshal([]byte(run(t, 0, "pause", jobURL, "--server", url, "--json")), &j); err != nil || j.State != api.JobPaused {
		t.Fatalf("pause --json: %+v %v, want paused", j, err)
	}
	openGates(t, gates, 1, 2, 3)
	waitFor(t, "the running frame to finish", func() bool { return frameOf(t, c, id, first.frame).State == api.StateDone })
	// No frame of the paused job is given out, to the worker or to anyone.
	got, err := c.Claim(context.Background(), api.ClaimRequest{Worker: "probe", Max: 10, Backends: map[string]string{"command": "1"}})
	if err != nil || len(got.Leases) != 0 {
		t.Errorf("a claim while paused: %+v %v, want none", got, err)
	}
	if j := jobOf(t, c, id); j.State != api.JobPaused || j.Counts[api.StateDone] != 1 || j.Counts[api.StateRunning] != 0 {
		t.Errorf("paused job after its running frame ended: %+v", j)
	}
	if out := run(t, 0, "status", jobURL, "--server", url); !strings.Contains(out, "PAUSED") {
		t.Errorf("status of a paused job:\n%s", out)
	}
	if out := run(t, 0, "resume", jobURL, "--server", url); !strings.Contains(out, "resumed") {
		t.Errorf("resume: %s", out)
	}
	waitJobDone(t, c, id)

	// Priority: pause the worker's work with a gate, queue two jobs, raise
	// the second; its frame goes first.
	renders2, gates2 := gateDirs(t)
	low := jobID(t, strings.TrimSpace(run(t, 0, "submit", writeJob(t, gatedJob(renders2, gates2, 1), nil), "--server", url)))
	waitRender(t, renders2, "the blocking frame to start", func(r render) bool { return r.event == "start" })
	order := filepath.Join(t.TempDir(), "order.log")
	logJob := func(name string) string {
		return fmt.Sprintf(`<distrenjob version="1"><name>%s</name>
  <backend name="command"><program>sh</program><arg>-c</arg><arg>echo %s >> %s; echo {frame} > o-{frame}</arg></backend>
  <frames><range first="1" last="1"/></frames><outputs><output>o-*</output></outputs></distrenjob>`, name, name, order)
	}
	a := jobID(t, strings.TrimSpace(run(t, 0, "submit", writeJob(t, logJob("first-submitted"), nil), "--server", url)))
	b := jobID(t, strings.TrimSpace(run(t, 0, "submit", writeJob(t, logJob("raised"), nil), "--server", url)))
	if out := run(t, 0, "priority", fmt.Sprint(b), "80", "--server", url); !strings.Contains(out, "priority 80") {
		t.Errorf("priority: %s", out)
	}
	runStderr(t, 2, "priority", fmt.Sprint(b), "101", "--server", url)
	openGates(t, gates2, 1)
	waitJobDone(t, c, low)
	waitJobDone(t, c, a)
	waitJobDone(t, c, b)
	if ja, jb := jobOf(t, c, a), jobOf(t, c, b); ja.Priority != 50 || jb.Priority != 80 {
		t.Errorf("priorities %d and %d, want 50 and 80", ja.Priority, jb.Priority)
	}
	if got, _ := os.ReadFile(order); string(got) != "raised\nfirst-submitted\n" {
		t.Errorf("frames rendered in the order %q, want the raised job's first", got)
	}
}
