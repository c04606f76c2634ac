// Package e2e tests distren as users run it: the binary is built once, then
// servers and workers run as real processes talking HTTP on 127.0.0.1.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
)

var bin string // the distren binary under test

// raceBuild tells whether the binary under test is built with the race
// detector (DISTREN_E2E_RACE_BINARY=1; go test -race alone checks only the
// test process). A test then fails if a process it ran reports a race.
var raceBuild = os.Getenv("DISTREN_E2E_RACE_BINARY") == "1"

// raceReport is how the race detector starts a report, on stderr.
const raceReport = "WARNING: DATA RACE"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "distren-e2e-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "distren")
	build := []string{"build", "-o", bin}
	if raceBuild {
		build = append(build, "-race")
	}
	out, err := exec.Command("go", append(build, "../cmd/distren")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building distren: %v\n%s", err, out)
		os.Exit(1)
	}
	// The processes' caches (submit's chunk index) stay in the test's
	// directory; set after the build, which must keep Go's own cache.
	os.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a distren process running in the background.
type proc struct {
	cmd *exec.Cmd
	// done is closed once the process has exited and all its output is in
	// log.
	done chan struct{}
	log  *procLog // its stdout and stderr, whole lines only
}

// procLog is a process's output as it grows, safe to read while the process
// writes it: String returns what it holds so far.
type procLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

// add appends one line.
func (l *procLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.WriteString(line)
}

// String returns the lines written so far; each ends with a newline.
func (l *procLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// start runs distren with args in the background; the test kills it at the end.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	cmd.Stdout = pw
	p := &proc{cmd: cmd, done: make(chan struct{}), log: &procLog{}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Every line goes to the log as soon as it is read, whatever its
	// length, so the process never blocks on its output and no line is
	// lost; a last line without a newline is completed at the end.
	read := make(chan struct{})
	go func() {
		defer close(read)
		r := bufio.NewReader(pr)
		for {
			line, err := r.ReadString('\n')
			if line != "" && !strings.HasSuffix(line, "\n") {
				line += "\n"
			}
			if line != "" {
				p.log.add(line)
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		cmd.Wait()
		pw.Close()
		<-read
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if l := p.log.String(); strings.Contains(l, raceReport) {
			t.Errorf("distren %s: the race detector reported a race:\n%s", strings.Join(args, " "), l[strings.Index(l, raceReport):])
		}
	})
	return p
}

// kill sends SIGKILL to the process and its group and waits for it.
func (p *proc) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

var servingURL = regexp.MustCompile(`msg=serving .*url=(http://127\.0\.0\.1:\d+)`)

// serve starts a server and returns it with its URL.
func serve(t *testing.T, args ...string) (*proc, string) {
	t.Helper()
	p := start(t, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	deadline := time.After(30 * time.Second)
	for {
		if m := servingURL.FindStringSubmatch(p.log.String()); m != nil {
			return p, m[1]
		}
		select {
		case <-p.done:
			t.Fatalf("server exited: %s", p.log)
		case <-deadline:
			t.Fatalf("server did not start: %s", p.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// run runs distren to completion and returns its stdout; it fails the test
// unless the exit code is want.
func run(t *testing.T, want int, args ...string) string {
	t.Helper()
	out, _ := run2(t, want, args...)
	return out
}

// runStderr is run returning stderr.
func runStderr(t *testing.T, want int, args ...string) string {
	t.Helper()
	_, errOut := run2(t, want, args...)
	return errOut
}

func run2(t *testing.T, want int, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if strings.Contains(stderr.String(), raceReport) {
		t.Errorf("distren %s: the race detector reported a race:\n%s", strings.Join(args, " "), stderr.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("distren %v: %v", args, err)
	}
	if code != want {
		t.Fatalf("distren %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

func status(t *testing.T, url, job string) (api.Job, []api.Frame) {
	t.Helper()
	var s struct {
		Job    api.Job     `json:"job"`
		Frames []api.Frame `json:"frames"`
	}
	if err := json.Unmarshal([]byte(run(t, 0, "status", job, "--json", "--server", url)), &s); err != nil {
		t.Fatal(err)
	}
	return s.Job, s.Frames
}

// writeJob writes a job package directory holding manifest and files.
func writeJob(t *testing.T, manifest string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "distrenjob.xml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// readDir returns the files of a directory tree by relative path.
func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == ".distren-fetch.json" { // fetch's record of what it holds
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// animation is a built-in job of 41 frames: 36 renders, a chain of four
// motion-trail frames each depending on the one before, and a contact sheet
// depending on the 36 renders.
const animation = `<distrenjob version="1">
  <name>e2e-orbit</name>
  <backend name="builtin">
    <width>96</width><height>54</height><samples>2</samples><cycle>36</cycle>
    <output>orbit-{frame:04}.png</output>
  </backend>
  <frames>
    <range first="1" last="36"/>
    <frame id="37"><depends on="36"/><backend name="builtin"><mode>trail</mode><width>96</width><height>54</height><output>trail-{frame}.png</output></backend></frame>
    <frame id="38"><depends on="37"/><backend name="builtin"><mode>trail</mode><width>96</width><height>54</height><output>trail-{frame}.png</output></backend></frame>
    <frame id="39"><depends on="38"/><backend name="builtin"><mode>trail</mode><width>96</width><height>54</height><output>trail-{frame}.png</output></backend></frame>
    <frame id="40"><depends on="39"/><backend name="builtin"><mode>trail</mode><width>96</width><height>54</height><output>trail-{frame}.png</output></backend></frame>
    <frame id="50">
      <depends first="1" last="36"/>
      <backend name="builtin"><mode>montage</mode><columns>6</columns><width>48</width><height>27</height><output>sheet.png</output></backend>
    </frame>
  </frames>
  <outputs><output>*.png</output></outputs>
</distrenjob>`

func TestServeWithTwoRemoteWorkers(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "e2e", "--workers", "0")
	start(t, "worker", "--server", url, "--slots", "2", "--dir", t.TempDir(), "--name", "w1")
	start(t, "worker", "--server", url, "--slots", "2", "--dir", t.TempDir(), "--name", "w2")
	waitWorkers(t, url, "w1", "w2") // both fingerprinted and claiming: the test checks both render
	pkg := writeJob(t, animation, nil)

	jobURL := strings.TrimSpace(run(t, 0, "submit", pkg, "--server", url, "--wait"))
	if !regexp.MustCompile(`^distren://e2e/\d+$`).MatchString(jobURL) {
		t.Fatalf("submit printed %q, want a job URL", jobURL)
	}
	job, frames := status(t, url, jobURL)
	if job.State != api.JobDone || job.Frames != 41 || len(frames) != 41 {
		t.Fatalf("job = %+v", job)
	}
	workers := map[string]int{}
	for _, f := range frames {
		workers[f.Worker]++
	}
	if workers["w1"] == 0 || workers["w2"] == 0 || len(workers) != 2 {
		t.Errorf("frames per worker: %v; want both workers rendering", workers)
	}

	out := t.TempDir()
	run(t, 0, "fetch", jobURL, "--server", url, "-o", out)
	got := readDir(t, out)
	want := map[string]bool{"sheet.png": true}
	for i := 1; i <= 36; i++ {
		want[fmt.Sprintf("orbit-%04d.png", i)] = true
	}
	for i := 37; i <= 40; i++ {
		want[fmt.Sprintf("trail-%d.png", i)] = true
	}
	if len(got) != len(want) {
		t.Errorf("fetched %d files, want %d", len(got), len(want))
	}
	for name := range want {
		b, ok := got[name]
		if !ok {
			t.Errorf("%s missing from the result", name)
			continue
		}
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Errorf("%s does not decode: %v", name, err)
		}
	}

	// The one-shot farm renders the same bytes.
	local := filepath.Join(t.TempDir(), "out")
	run(t, 0, "render", pkg, "-o", local, "--workers", "2")
	again := readDir(t, local)
	for name, b := range got {
		if !bytes.Equal(again[name], b) {
			t.Errorf("%s differs between serve+workers and render", name)
		}
	}
	if len(again) != len(got) {
		t.Errorf("render wrote %d files, serve %d", len(again), len(got))
	}

	// Fetching some frames only.
	part := t.TempDir()
	run(t, 0, "fetch", jobURL, "--server", url, "-o", part, "--frames", "1-3,50")
	if p := readDir(t, part); len(p) != 4 || p["sheet.png"] == nil || p["orbit-0002.png"] == nil {
		t.Errorf("fetch --frames 1-3,50 gave %d files", len(p))
	}
}
