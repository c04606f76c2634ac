package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
)

// gatedJob is a job of frames 1..n whose command logs each render to a
// render log ("start F PID DIR", "done F PID DIR"), waits until the test
// creates gates/F, then writes f-FFFF.txt holding "F DIR". DIR, the scratch
// directory, names the worker's --dir and the lease's epoch, so every
// render's output is told apart from every other's; PID is the render's
// process group.
func gatedJob(renders, gates string, n int) string {
	return fmt.Sprintf(`<distrenjob version="1">
  <name>loss</name>
  <retries>3</retries>
  <backend name="command">
    <program>sh</program><arg>-c</arg>
    <arg>echo "start {frame} $$ {dir}" >> %[1]s; while [ ! -e %[2]s/{frame} ]; do sleep 0.05; done; echo "{frame} {dir}" > f-{frame:04}.txt; echo "done {frame} $$ {dir}" >> %[1]s</arg>
  </backend>
  <frames><range first="1" last="%[3]d"/></frames>
  <outputs><output>f-*.txt</output></outputs>
</distrenjob>`, renders, gates, n)
}

// render is one line of a render log.
type render struct {
	event string // start or done
	frame int64
	pid   int    // the render's process group
	dir   string // its scratch directory: <worker dir>/scratch/<job>-<frame>-<epoch>
}

// epoch is the lease epoch the render ran under, from its scratch directory.
func (r render) epoch() uint64 {
	base := filepath.Base(r.dir)
	n, _ := strconv.ParseUint(base[strings.LastIndexByte(base, '-')+1:], 10, 64)
	return n
}

// by reports whether the render ran on the worker whose --dir is dir.
func (r render) by(dir string) bool { return strings.HasPrefix(r.dir, dir+string(filepath.Separator)) }

// readRenders parses a render log.
func readRenders(t *testing.T, path string) []render {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []render
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 {
			continue
		}
		frame, err1 := strconv.ParseInt(f[1], 10, 64)
		pid, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			t.Fatalf("render log line %q", l)
		}
		out = append(out, render{f[0], frame, pid, f[3]})
	}
	return out
}

// waitRender waits for a render log line that ok accepts.
func waitRender(t *testing.T, path, what string, ok func(render) bool) render {
	t.Helper()
	var found render
	waitFor(t, what, func() bool {
		for _, r := range readRenders(t, path) {
			if ok(r) {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

// openGates lets the renders of the frames go on.
func openGates(t *testing.T, gates string, frames ...int64) {
	t.Helper()
	for _, f := range frames {
		if err := os.WriteFile(filepath.Join(gates, strconv.FormatInt(f, 10)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// jobID returns the number of a job URL (distren://server/7 → 7).
func jobID(t *testing.T, jobURL string) int64 {
	t.Helper()
	id, err := strconv.ParseInt(jobURL[strings.LastIndexByte(jobURL, '/')+1:], 10, 64)
	if err != nil {
		t.Fatalf("job URL %q: %v", jobURL, err)
	}
	return id
}

// apiClient returns a typed client of the server, for polling without a
// process per look.
func apiClient(t *testing.T, url string) *client.Client {
	t.Helper()
	c, err := client.New(url)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// frameOf returns one frame's state.
func frameOf(t *testing.T, c *client.Client, job, frame int64) api.Frame {
	t.Helper()
	fs, err := c.Frames(context.Background(), job, strconv.FormatInt(frame, 10))
	if err != nil || len(fs) != 1 {
		t.Fatalf("frame %d of job %d: %v (%d frames)", frame, job, err, len(fs))
	}
	return fs[0]
}

// jobOf returns a job's summary.
func jobOf(t *testing.T, c *client.Client, job int64) api.Job {
	t.Helper()
	j, err := c.Job(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// waitJobDone waits for a job to finish and fails unless it is done.
func waitJobDone(t *testing.T, c *client.Client, job int64) {
	t.Helper()
	var j api.Job
	waitFor(t, fmt.Sprintf("job %d to finish", job), func() bool {
		j = jobOf(t, c, job)
		return j.State != api.JobQueued && j.State != api.JobRunning
	})
	if j.State != api.JobDone {
		t.Fatalf("job %d is %s: %+v", job, j.State, j)
	}
}

// bundleFiles fetches the job's result bundle and returns each file's
// contents, failing on a name that comes twice.
func bundleFiles(t *testing.T, c *client.Client, job int64) map[string][]byte {
	t.Helper()
	rc, err := c.Result(context.Background(), job, "")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	return tarFiles(t, "result bundle", rc)
}

// tarFiles reads a tar stream (what names it in messages) and returns each
// file's contents, failing on a name that comes twice.
func tarFiles(t *testing.T, what string, r io.Reader) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s, %s: %v", what, h.Name, err)
		}
		if _, dup := out[h.Name]; dup {
			t.Errorf("%s holds %s twice", what, h.Name)
		}
		out[h.Name] = b
	}
}

// outputsPerFrame counts the output files the server numbered for each
// frame: a frame completed twice would have its files numbered twice.
func outputsPerFrame(t *testing.T, c *client.Client, job int64) map[int64]int {
	t.Helper()
	files, err := c.Files(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	n := map[int64]int{}
	for _, f := range files {
		if f.Frame != nil {
			n[*f.Frame]++
		}
	}
	return n
}

// lossFarm is a server without local slots (2 s leases) named name, a
// gated job of n frames on it, and worker wa — one slot, nothing claimed
// ahead: it holds exactly the frame it renders — rendering the first of
// them. Worker wb's directory is ready for the test to start it.
type lossFarm struct {
	url, renders, gates, dirA, dirB string
	c                               *client.Client
	job                             int64
	a                               *proc
	first                           render // wa's render
}

func newLossFarm(t *testing.T, name string, n int) *lossFarm {
	t.Helper()
	tmp := t.TempDir()
	lf := &lossFarm{renders: filepath.Join(tmp, "renders.log"), gates: filepath.Join(tmp, "gates"), dirA: t.TempDir(), dirB: t.TempDir()}
	if err := os.Mkdir(lf.gates, 0o755); err != nil {
		t.Fatal(err)
	}
	_, lf.url = serve(t, "--data", t.TempDir(), "--name", name, "--workers", "0", "--lease", "2s")
	lf.c = apiClient(t, lf.url)
	lf.a = start(t, "worker", "--server", lf.url, "--slots", "1", "--prefetch", "-1", "--dir", lf.dirA, "--name", "wa")
	lf.job = jobID(t, strings.TrimSpace(run(t, 0, "submit", writeJob(t, gatedJob(lf.renders, lf.gates, n), nil), "--server", lf.url)))
	lf.first = waitRender(t, lf.renders, "worker wa to start a frame", func(r render) bool { return r.event == "start" && r.by(lf.dirA) })
	return lf
}

// startB opens the gates of the job's n frames but wa's, and starts worker
// wb (two slots, nothing claimed ahead) to render them.
func (lf *lossFarm) startB(t *testing.T, n int) {
	t.Helper()
	var others []int64
	for f := int64(1); f <= int64(n); f++ {
		if f != lf.first.frame {
			others = append(others, f)
		}
	}
	openGates(t, lf.gates, others...)
	start(t, "worker", "--server", lf.url, "--slots", "2", "--prefetch", "-1", "--dir", lf.dirB, "--name", "wb")
}

// TestWorkerKilledMidFrame kills a remote worker with SIGKILL in the middle
// of a frame. Its renderer dies with it; the frame stays leased to the dead
// worker until its lease expires, is then requeued with the expiry recorded,
// and is rendered and completed by a second worker; the job completes with
// every frame's output present once.
func TestWorkerKilledMidFrame(t *testing.T) {
	const frames = 4
	lf := newLossFarm(t, "loss", frames)
	c, job, a, renders, gates, dirA, dirB := lf.c, lf.job, lf.a, lf.renders, lf.gates, lf.dirA, lf.dirB
	killed := lf.first
	if f := frameOf(t, c, job, killed.frame); f.State != api.StateRunning || f.Worker != "wa" {
		t.Fatalf("frame %d is rendering on wa but the server has it %s on %q", killed.frame, f.State, f.Worker)
	}
	a.kill()
	// The renderer does not outlive its worker: the kernel kills it
	// (parent-death signal) rather than leave it rendering for nobody.
	waitFor(t, "the dead worker's renderer to be killed", func() bool { return !processAlive(killed.pid) })
	t.Logf("killed worker wa while it rendered frame %d (epoch %d)", killed.frame, killed.epoch())

	lf.startB(t, frames)

	// The lost frame is requeued when its lease expires, not before, and
	// goes to wb; its gate is still closed, so it stays there, running.
	var requeued api.Frame
	waitFor(t, fmt.Sprintf("frame %d to be re-leased to wb", killed.frame), func() bool {
		requeued = frameOf(t, c, job, killed.frame)
		return requeued.State == api.StateRunning && requeued.Worker == "wb"
	})
	if requeued.Attempts != 1 || !strings.Contains(requeued.Error, "lease expired") || !strings.Contains(requeued.Error, `"wa"`) {
		t.Errorf("frame %d re-leased after %d attempts with error %q; want 1 attempt, the lease of wa expired", killed.frame, requeued.Attempts, requeued.Error)
	}
	openGates(t, gates, killed.frame)
	waitJobDone(t, c, job)

	fs, err := c.Frames(context.Background(), job, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		want := 1
		if f.ID == killed.frame {
			want = 2 // the expired lease, then wb's
		}
		if f.State != api.StateDone || f.Worker != "wb" || f.Attempts != want {
			t.Errorf("frame %d: %s by %q after %d attempts, want done by wb after %d", f.ID, f.State, f.Worker, f.Attempts, want)
		}
	}
	// Every frame rendered to the end once, by wb; the killed frame was
	// also started on wa, which never finished it.
	done := map[int64]render{}
	for _, r := range readRenders(t, renders) {
		switch {
		case r.event == "done" && r.by(dirA):
			t.Errorf("frame %d finished on the killed worker", r.frame)
		case r.event == "done":
			if _, dup := done[r.frame]; dup {
				t.Errorf("frame %d rendered twice to the end", r.frame)
			}
			done[r.frame] = r
		case r.event == "start" && r.by(dirA) && r != killed:
			t.Errorf("wa started frame %d too", r.frame)
		}
	}
	files := bundleFiles(t, c, job)
	if len(files) != frames {
		t.Errorf("the bundle holds %d files, want %d", len(files), frames)
	}
	outputs := outputsPerFrame(t, c, job)
	for f := int64(1); f <= frames; f++ {
		r, ok := done[f]
		if !ok || !r.by(dirB) {
			t.Errorf("frame %d: no finished render on wb (%+v)", f, r)
			continue
		}
		name := fmt.Sprintf("f-%04d.txt", f)
		if got, want := string(files[name]), fmt.Sprintf("%d %s\n", f, r.dir); got != want {
			t.Errorf("%s holds %q, want %q (wb's render)", name, got, want)
		}
		if outputs[f] != 1 {
			t.Errorf("frame %d has %d output files numbered, want 1", f, outputs[f])
		}
	}
	if r := done[killed.frame]; r.epoch() == killed.epoch() {
		t.Errorf("frame %d completed under the killed worker's epoch %d", killed.frame, r.epoch())
	}
}

// TestStaleLeaseRefused freezes a worker (SIGSTOP) in the middle of a frame
// for longer than its lease. The frame is re-leased to another worker and
// completed there. A result posted with the old lease is refused with 409
// naming the frame and the lease; when the frozen worker wakes up, finds its
// render finished and reports it, its result is refused too, and the bundle
// holds the other worker's output.
func TestStaleLeaseRefused(t *testing.T) {
	const frames = 3
	lf := newLossFarm(t, "stale", frames)
	url, c, job, a, renders, gates, dirB := lf.url, lf.c, lf.job, lf.a, lf.renders, lf.gates, lf.dirB
	frozen := lf.first
	// The worker process stops; its renderer, in a process group of its
	// own, goes on and waits at its gate.
	if err := syscall.Kill(-a.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Logf("froze worker wa while it rendered frame %d (epoch %d)", frozen.frame, frozen.epoch())
	lf.startB(t, frames)
	waitFor(t, fmt.Sprintf("frame %d to be re-leased to wb", frozen.frame), func() bool {
		f := frameOf(t, c, job, frozen.frame)
		return f.State == api.StateRunning && f.Worker == "wb"
	})

	// The old lease, by its holder or anyone else, is refused while the
	// new one runs: fencing is by epoch, not by worker name.
	for _, worker := range []string{"wa", "wb"} {
		status, msg := postOutput(t, url, job, frozen.frame, worker, frozen.epoch())
		frameURL := fmt.Sprintf("distren://stale/%d/frame/%d", job, frozen.frame)
		if status != http.StatusConflict || !strings.Contains(msg, frameURL) || !strings.Contains(msg, fmt.Sprintf("epoch %d", frozen.epoch())) ||
			!strings.Contains(msg, "lease is not held") {
			t.Errorf("output of frame %d posted by %s with the expired epoch %d: %d %q; want 409 naming %s and the epoch",
				frozen.frame, worker, frozen.epoch(), status, msg, frameURL)
		}
	}

	// Both renders of the frame finish: wb's is reported, wa's waits for
	// its frozen worker.
	openGates(t, gates, frozen.frame)
	waitJobDone(t, c, job)
	waitRender(t, renders, "wa's render to finish", func(r render) bool { return r.event == "done" && r.dir == frozen.dir })
	before := frameOf(t, c, job, frozen.frame)

	if err := syscall.Kill(-a.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// wa wakes with a finished render in hand and reports it (refused), or
	// learns from its first heartbeat that the lease is gone (abandoned).
	refused := fmt.Sprintf(`msg="result refused: lease no longer held" job=%d frame=%d`, job, frozen.frame)
	abandoned := fmt.Sprintf(`msg="abandoning frame" job=%d frame=%d reason="lease no longer held"`, job, frozen.frame)
	waitFor(t, "wa to give up its stale lease", func() bool {
		l := a.log.String()
		return strings.Contains(l, refused) || strings.Contains(l, abandoned)
	})
	if strings.Contains(a.log.String(), refused) {
		t.Logf("wa reported frame %d and was refused", frozen.frame)
	} else {
		t.Logf("wa abandoned frame %d at its first heartbeat", frozen.frame)
	}

	after := frameOf(t, c, job, frozen.frame)
	if after.State != api.StateDone || after.Worker != "wb" || after.Attempts != 2 || after.Output != before.Output {
		t.Errorf("frame %d after wa woke: %+v; before: %+v", frozen.frame, after, before)
	}
	files := bundleFiles(t, c, job)
	name := fmt.Sprintf("f-%04d.txt", frozen.frame)
	got := string(files[name])
	if !strings.HasPrefix(got, fmt.Sprintf("%d %s%c", frozen.frame, dirB, filepath.Separator)) {
		t.Errorf("%s holds %q, want wb's output (scratch under %s)", name, got, dirB)
	}
	if len(files) != frames {
		t.Errorf("the bundle holds %d files, want %d", len(files), frames)
	}
	for f, n := range outputsPerFrame(t, c, job) {
		if n != 1 {
			t.Errorf("frame %d has %d output files numbered, want 1", f, n)
		}
	}
}

// postOutput posts a one-file output tarball for a frame under a lease, as
// a worker would, and returns the answer's status and error message.
func postOutput(t *testing.T, url string, job, frame int64, worker string, epoch uint64) (int, string) {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	body := []byte("stale\n")
	tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f-%04d.txt", frame), Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write(body)
	tw.Close()
	u := fmt.Sprintf("%s/v1/jobs/%d/frames/%d/output?worker=%s&epoch=%d&render_ms=1", url, job, frame, worker, epoch)
	resp, err := http.Post(u, "application/x-tar", &tb)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e api.Error
	b, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(b, &e) != nil {
		e.Error = string(b)
	}
	return resp.StatusCode, e.Error
}

// processAlive reports whether pid runs (a zombie waiting for its reaper
// does not).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}
