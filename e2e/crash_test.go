package e2e

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
)

// TestKill9MidJob kills the server (and its local slots) with SIGKILL in the
// middle of a job, restarts it on the same data directory, and checks that
// the job completes with every frame present once, that no frame completed
// before the crash was rendered again, and that job ids are not reused.
func TestKill9MidJob(t *testing.T) {
	data := t.TempDir()
	renders := filepath.Join(t.TempDir(), "renders.log") // each render appends its frame number
	manifest := fmt.Sprintf(`<distrenjob version="1">
  <name>crash</name>
  <backend name="command">
    <program>sh</program><arg>-c</arg>
    <arg>echo {frame} >> %s; sleep 0.05; echo {frame} > f-{frame:04}.txt</arg>
  </backend>
  <frames>
    <range first="1" last="60"/>
    <range first="61" last="90"><depends offset="-30"/></range>
  </frames>
  <outputs><output>f-*.txt</output></outputs>
</distrenjob>`, renders)
	pkg := writeJob(t, manifest, nil)

	srv, url := serve(t, "--data", data, "--name", "crashy", "--workers", "2", "--lease", "2s")
	jobURL := strings.TrimSpace(run(t, 0, "submit", pkg, "--server", url))
	var doneBefore []api.Frame
	deadline := time.Now().Add(time.Minute)
	for {
		job, frames := status(t, url, jobURL)
		if job.Counts[api.StateDone] >= 20 {
			for _, f := range frames {
				if f.State == api.StateDone {
					doneBefore = append(doneBefore, f)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job made no progress: %+v", job)
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.kill()
	if len(doneBefore) == 90 {
		t.Fatal("the job finished before the crash; make frames slower")
	}

	srv2, url2 := serve(t, "--data", data, "--name", "crashy", "--workers", "2", "--lease", "2s")
	defer srv2.kill()
	run(t, 0, "status", jobURL, "--watch", "--interval", "100ms", "--server", url2)
	job, frames := status(t, url2, jobURL)
	if job.State != api.JobDone {
		t.Fatalf("after restart the job is %s: %+v", job.State, job)
	}
	byID := map[int64]api.Frame{}
	for _, f := range frames {
		byID[f.ID] = f
	}
	for _, f := range doneBefore {
		if after := byID[f.ID]; after.Output != f.Output || after.Attempts != f.Attempts {
			t.Errorf("frame %d changed after restart: before %+v, after %+v", f.ID, f, after)
		}
	}
	// Frames done before the crash were rendered exactly once.
	log, err := os.ReadFile(renders)
	if err != nil {
		t.Fatal(err)
	}
	count := map[int64]int{}
	for _, l := range strings.Fields(string(log)) {
		n, _ := strconv.ParseInt(l, 10, 64)
		count[n]++
	}
	for _, f := range doneBefore {
		if count[f.ID] != 1 {
			t.Errorf("frame %d was done before the crash and rendered %d times", f.ID, count[f.ID])
		}
	}
	// Every frame's output is in the bundle exactly once, with its content.
	var bundle bytes.Buffer
	cmd := exec.Command(bin, "fetch", jobURL, "--server", url2, "-o", "-")
	cmd.Stdout = &bundle
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	tr := tar.NewReader(&bundle)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		var b bytes.Buffer
		b.ReadFrom(tr)
		seen[h.Name]++
		want := strings.TrimLeft(strings.TrimSuffix(strings.TrimPrefix(h.Name, "f-"), ".txt"), "0") + "\n"
		if b.String() != want {
			t.Errorf("%s holds %q, want %q", h.Name, b.String(), want)
		}
	}
	for i := 1; i <= 90; i++ {
		if n := seen[fmt.Sprintf("f-%04d.txt", i)]; n != 1 {
			t.Errorf("frame %d output present %d times", i, n)
		}
	}
	// Job ids are never reused.
	next := strings.TrimSpace(run(t, 0, "submit", pkg, "--server", url2))
	if next == jobURL || !strings.HasPrefix(next, "distren://crashy/") {
		t.Errorf("job after restart is %s, first was %s", next, jobURL)
	}
}
