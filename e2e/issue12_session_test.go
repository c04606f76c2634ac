package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
)

// waitExit waits for p to exit and returns its exit code.
func waitExit(t *testing.T, p *proc, what string) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s did not end:\n%s", what, p.log)
	}
	return p.cmd.ProcessState.ExitCode()
}

// TestWaitEndsOnFailedDependencyOfAnotherJob (issue 12, item 4): a frame
// that depends on a frame of another job that fails does not wait forever:
// `submit --wait` of its job ends with exit 3 and a message naming the
// failed frame's URL — for a job submitted before the failure and for one
// submitted after it. Retrying the failed job brings the dependent back.
func TestWaitEndsOnFailedDependencyOfAnotherJob(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "deps", "--workers", "2")
	marks := t.TempDir()
	upstream := writeJob(t, `<distrenjob version="1"><name>upstream</name><retries>0</retries>
<backend name="command"><program>sh</program><arg>-c</arg>
<arg>while [ ! -e `+marks+`/go ]; do sleep 0.05; done; if [ -e `+marks+`/fixed ]; then echo ok > f-{frame}.txt; else echo "scene error near line 7" >&amp;2; exit 3; fi</arg></backend>
<frames><frame id="7"/></frames><outputs><output>*.txt</output></outputs></distrenjob>`, nil)
	a := strings.TrimSpace(run(t, 0, "submit", upstream, "--server", url))
	dependent := writeJob(t, `<distrenjob version="1"><name>dependent</name>
<backend name="command"><program>sh</program><arg>-c</arg><arg>cat f-7.txt > g-{frame}.txt</arg></backend>
<frames><frame id="1"><depends on="`+a+`/frame/7"/></frame></frames><outputs><output>g-*.txt</output></outputs></distrenjob>`, nil)
	failedURL := a + "/frame/7" // a is the job's URL

	// Submitted while frame 7 renders: --wait follows it until it cannot run.
	waiting := start(t, "submit", dependent, "--server", url, "--wait", "-q")
	waitFor(t, "the dependent job to be submitted", func() bool { return strings.Contains(waiting.log.String(), "distren://deps/") })
	os.WriteFile(filepath.Join(marks, "go"), nil, 0o644)
	if code := waitExit(t, waiting, "submit --wait of the dependent job"); code != 3 {
		t.Fatalf("submit --wait exited %d, want 3:\n%s", code, waiting.log)
	}
	msg := waiting.log.String()
	if !strings.Contains(msg, "depends on "+failedURL+", which failed: ") || !strings.Contains(msg, "scene error near line 7") {
		t.Errorf("submit --wait does not name the failed frame %s and its error:\n%s", failedURL, msg)
	}
	b := strings.TrimSpace(strings.SplitN(msg, "\n", 2)[0])
	if j, frames := status(t, url, b); j.State != api.JobFailed || len(frames) != 1 || frames[0].State != api.StateFailed ||
		!strings.Contains(frames[0].Error, failedURL) {
		t.Errorf("status of the dependent job: %+v %+v", j, frames)
	}

	// Submitted after the failure: it fails at once.
	msg = runStderr(t, 3, "submit", dependent, "--server", url, "--wait", "-q")
	if !strings.Contains(msg, "depends on "+failedURL+", which failed") {
		t.Errorf("submit --wait after the failure: %q", msg)
	}

	// Retrying the dependent job alone says which frame to retry.
	if msg := runStderr(t, 5, "retry", b, "--server", url); !strings.Contains(msg, "distren retry "+a+" --frames 7") {
		t.Errorf("retry of the dependent job: %q", msg)
	}
	// Once the frame at fault renders, the dependent job does too.
	os.WriteFile(filepath.Join(marks, "fixed"), nil, 0o644)
	run(t, 0, "retry", a, "--server", url)
	run(t, 0, "status", b, "--watch", "--interval", "100ms", "--server", url)
	if j, _ := status(t, url, b); j.State != api.JobDone {
		t.Errorf("the dependent job after its dependency was retried: %+v", j)
	}
}

// TestRetryFramesOfCanceledJobOnly (issue 12, item 5): `retry --frames 1-2`
// on a canceled job renders frames 1 and 2 only; frames 3 and 4 stay
// canceled, also across a kill -9 of the server, and the job ends canceled.
func TestRetryFramesOfCanceledJobOnly(t *testing.T) {
	data := t.TempDir()
	srv, url := serve(t, "--data", data, "--name", "undo2", "--workers", "2")
	marks := t.TempDir()
	pkg := writeJob(t, `<distrenjob version="1"><name>slow</name>
<backend name="command"><program>sh</program><arg>-c</arg>
<arg>echo x >> `+marks+`/runs-{frame}; while [ ! -e `+marks+`/go ]; do sleep 0.05; done; echo {frame} > f-{frame}.txt</arg></backend>
<frames><range first="1" last="4"/></frames><outputs><output>*.txt</output></outputs></distrenjob>`, nil)
	job := strings.TrimSpace(run(t, 0, "submit", pkg, "--server", url))
	runs := func(frame int) int {
		b, _ := os.ReadFile(filepath.Join(marks, fmt.Sprintf("runs-%d", frame)))
		return strings.Count(string(b), "x")
	}
	waitFor(t, "two renders to start", func() bool { return runs(1)+runs(2)+runs(3)+runs(4) == 2 })
	before := map[int]int{3: runs(3), 4: runs(4)}
	run(t, 0, "cancel", job, "--server", url)
	if out := run(t, 0, "retry", job, "--frames", "1-2", "--server", url); !strings.Contains(out, "2 frames queued again") {
		t.Errorf("retry --frames 1-2 printed %q", out)
	}
	j, _ := status(t, url, job)
	if j.Counts[api.StateCanceled] != 2 || j.Counts[api.StateReady]+j.Counts[api.StateRunning] != 2 {
		t.Fatalf("after retry --frames 1-2: %+v", j.Counts)
	}
	srv.kill()
	_, url = serve(t, "--data", data, "--name", "undo2", "--workers", "2")
	os.WriteFile(filepath.Join(marks, "go"), nil, 0o644)
	run(t, 0, "status", job, "--watch", "--interval", "100ms", "--server", url)
	j, frames := status(t, url, job)
	if j.State != api.JobCanceled || fmt.Sprint(j.Counts) != "map[canceled:2 done:2]" {
		t.Errorf("at the end: %s %v, want canceled with 2 done and 2 canceled", j.State, j.Counts)
	}
	for _, f := range frames {
		want := map[int64]string{1: api.StateDone, 2: api.StateDone, 3: api.StateCanceled, 4: api.StateCanceled}[f.ID]
		if f.State != want {
			t.Errorf("frame %d is %s, want %s", f.ID, f.State, want)
		}
	}
	for _, f := range []int{3, 4} {
		if runs(f) != before[f] {
			t.Errorf("frame %d, canceled and not retried, was rendered again", f)
		}
	}
	out := t.TempDir()
	run(t, 0, "fetch", job, "-o", out, "--server", url)
	if got := readDir(t, out); len(got) != 2 || string(got["f-1.txt"]) != "1\n" || string(got["f-2.txt"]) != "2\n" {
		t.Errorf("result: %v", got)
	}
}

// TestJobOwnFaultStopsJob (issue 12, item 7): a job whose first frames all
// fail the same way is stopped after a few attempts instead of spending
// every frame's retries, and `submit --wait` says why, naming the frames
// tried; a POV-Ray scene that does not parse (a JobError) stops its job at
// the first failure. One worker slot claiming nothing ahead renders the
// frames in order, so the attempts are counted exactly.
func TestJobOwnFaultStopsJob(t *testing.T) {
	farm := func(t *testing.T, name string) string {
		_, url := serve(t, "--data", t.TempDir(), "--name", name, "--workers", "0")
		start(t, "worker", "--server", url, "--slots", "1", "--prefetch", "-1", "--dir", t.TempDir(), "--name", "w1")
		return url
	}
	t.Run("same failure", func(t *testing.T) {
		url := farm(t, "fault")
		marks := t.TempDir()
		pkg := writeJob(t, `<distrenjob version="1"><name>no-match</name><retries>2</retries>
<backend name="command"><program>sh</program><arg>-c</arg><arg>echo x >> `+marks+`/runs; echo {frame} > frame-{frame}.txt</arg></backend>
<frames><range first="1" last="12"/></frames><outputs><output>*.png</output></outputs></distrenjob>`, nil)
		_, msg := run2(t, 3, "submit", pkg, "--server", url, "--wait", "-q")
		if !strings.Contains(msg, "the farm stopped the job: frames ") || !strings.Contains(msg, "frames 1, 2 and 3, the first to fail, each failed twice the same way on worker w1") ||
			!strings.Contains(msg, "no output matches *.png") {
			t.Errorf("submit --wait: %q", msg)
		}
		b, _ := os.ReadFile(filepath.Join(marks, "runs"))
		// 12 frames × 3 attempts without the rule; with it, frame 1's three
		// attempts, frame 2's three, and frame 3's two (frames go lowest
		// first, so a frame's retries come before the next frame).
		if runs := strings.Count(string(b), "x"); runs != 8 {
			t.Errorf("%d renders before the job stopped, want 8", runs)
		}
	})
	t.Run("POV-Ray parse error", func(t *testing.T) {
		needPrograms(t, "povray")
		url := farm(t, "fault2")
		files := povFiles(t, func(ini string) string { return strings.Replace(ini, "Final_Frame=48", "Final_Frame=8", 1) })
		files["orbit.pov"] = "#declare Broken = ;\n" + files["orbit.pov"]
		pkg := writeJob(t, `<distrenjob version="1"><name>broken</name><retries>2</retries>
<backend name="povray"><scene>orbit.pov</scene><ini>orbit.ini</ini></backend>
<frames><range first="1" last="8"/></frames><outputs><output>*.png</output></outputs></distrenjob>`, files)
		out, msg := run2(t, 3, "submit", pkg, "--server", url, "--wait", "-q")
		if !strings.Contains(msg, "the farm stopped the job: frame 1 failed for a reason in the job") {
			t.Errorf("submit --wait: %q", msg)
		}
		j, frames := status(t, url, strings.TrimSpace(out))
		if j.State != api.JobFailed || fmt.Sprint(j.Counts) != "map[canceled:7 failed:1]" {
			t.Errorf("job: %s %v, want failed with frame 1 failed and the other 7 canceled", j.State, j.Counts)
		}
		if len(frames) != 8 || frames[0].Attempts != 1 {
			t.Errorf("frame 1 was attempted %d times, want once", frames[0].Attempts)
		}
	})
}
