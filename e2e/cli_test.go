package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/distren/distren/internal/api"
)

// TestRejections submits bad packages to a live server: each is refused with
// a message naming the problem, and the server keeps serving.
func TestRejections(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "strict", "--workers", "0", "--max-package-bytes", "100000")
	good := `<distrenjob version="1"><name>ok</name><backend name="builtin"/><frames><range first="1" last="2"/></frames><outputs><output>*.png</output></outputs></distrenjob>`
	cases := []struct {
		name, manifest string
		files          map[string]string
		want           string
	}{
		{"malformed XML", `<distrenjob version="1"><name>x</name>`, nil, "distrenjob.xml"},
		{"typo", strings.Replace(good, "<backend", "<rendrer/><backend", 1), nil, "<rendrer>"},
		{"unknown backend", strings.Replace(good, `name="builtin"`, `name="maya"`, 1), nil, `"maya"`},
		{"cycle", strings.Replace(good, `<range first="1" last="2"/>`, `<frame id="1"><depends on="2"/></frame><frame id="2"><depends on="1"/></frame>`, 1), nil, "cycle"},
		{"missing input", strings.Replace(good, "<frames>", "<inputs><file>scene.pov</file></inputs><frames>", 1), nil, "scene.pov"},
		{"too large", good, map[string]string{"big.bin": strings.Repeat("x", 200000)}, "limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pkg := writeJob(t, c.manifest, c.files)
			out := runErr(t, 5, "submit", pkg, "--server", url)
			if !strings.Contains(out, c.want) {
				t.Errorf("error %q does not mention %q", out, c.want)
			}
		})
	}
	t.Run("no manifest", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "scene.pov"), []byte("x"), 0o644)
		// Not a package: submit says so before uploading (exit 2, issue 12 item 16).
		if out := runErr(t, 2, "submit", dir, "--server", url); !strings.Contains(out, "distrenjob.xml") {
			t.Errorf("error %q does not name the manifest", out)
		}
	})
	// Still serving, and ids count on.
	pkg := writeJob(t, good, nil)
	if got := strings.TrimSpace(run(t, 0, "submit", pkg, "--server", url)); got != "distren://strict/1" {
		t.Errorf("first accepted job is %s", got)
	}
	runErr(t, 5, "status", "99", "--server", url)
	runErr(t, 2, "status", "distren://strict/1/frame/2", "--server", url)
	runErr(t, 2, "status", "distren://other/1", "--server", url)
	runErr(t, 4, "status", "--server", "http://127.0.0.1:1")
}

// runErr runs distren expecting exit code want and returns its stderr.
func runErr(t *testing.T, want int, args ...string) string {
	t.Helper()
	return runStderr(t, want, args...)
}

// TestCommandJobAndFailures renders the command example and a failing job.
func TestCommandJobAndFailures(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	run(t, 0, "render", "../examples/command", "-o", out, "--workers", "2")
	b, err := os.ReadFile(filepath.Join(out, "all-lines.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 9 || lines[0] != "Hello from frame 1 of job 1" {
		t.Errorf("all-lines.txt = %q", b)
	}
	failing := `<distrenjob version="1"><name>bad</name><retries>1</retries>
<backend name="command"><program>sh</program><arg>-c</arg><arg>echo "scene error near line 7" >&amp;2; exit 3</arg></backend>
<frames><frame id="1"/></frames><outputs><output>*.png</output></outputs></distrenjob>`
	msg := runStderr(t, 3, "render", writeJob(t, failing, nil), "-o", t.TempDir(), "--workers", "1")
	if !strings.Contains(msg, "scene error near line 7") || !strings.Contains(msg, "exit status 3") {
		t.Errorf("failure message %q lacks the renderer's stderr tail or exit status", msg)
	}
	noOutput := strings.Replace(failing, `echo "scene error near line 7" >&amp;2; exit 3`, `echo hi > x.txt`, 1)
	if msg := runStderr(t, 3, "render", writeJob(t, noOutput, nil), "-o", t.TempDir(), "--workers", "1"); !strings.Contains(msg, "no output matches *.png") {
		t.Errorf("failure message %q does not say no output matched", msg)
	}
	timeout := strings.Replace(failing, `echo "scene error near line 7" >&amp;2; exit 3`, `sleep 60 &amp; sleep 60`, 1)
	timeout = strings.Replace(timeout, "<retries>1</retries>", "<retries>0</retries><timeout>300ms</timeout>", 1)
	if msg := runStderr(t, 3, "render", writeJob(t, timeout, nil), "-o", t.TempDir(), "--workers", "1"); !strings.Contains(msg, "timed out after 300ms") {
		t.Errorf("failure message %q does not report the timeout", msg)
	}
}

// TestCancelAndRetry cancels a job while its frames render (the renderers
// are killed), retries it, then re-renders one done frame with --frames.
func TestCancelAndRetry(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "undo", "--workers", "2")
	marks := t.TempDir()
	pkg := writeJob(t, `<distrenjob version="1"><name>slow</name>
<backend name="command"><program>sh</program><arg>-c</arg>
<arg>echo $$ > `+marks+`/pid-{frame}; echo x >> `+marks+`/runs-{frame}; [ -e `+marks+`/go ] || sleep 120; echo {frame} > f-{frame}.txt</arg></backend>
<frames><range first="1" last="4"/></frames><outputs><output>*.txt</output></outputs></distrenjob>`, nil)
	job := strings.TrimSpace(run(t, 0, "submit", pkg, "--server", url))

	// Two frames start (two slots) and block.
	var pids []int
	waitFor(t, "two renders to start", func() bool {
		pids = pids[:0]
		for i := 1; i <= 4; i++ {
			if b, err := os.ReadFile(filepath.Join(marks, fmt.Sprintf("pid-%d", i))); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					pids = append(pids, pid)
				}
			}
		}
		return len(pids) == 2
	})
	if out := run(t, 0, "cancel", job, "--server", url); !strings.Contains(out, "canceled") {
		t.Errorf("cancel printed %q", out)
	}
	waitFor(t, "the canceled renderers to die", func() bool {
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || !strings.Contains(string(b), ") Z ") {
					return false
				}
			}
		}
		return true
	})
	if j, _ := status(t, url, job); j.State != api.JobCanceled || j.Counts[api.StateDone] != 0 {
		t.Fatalf("after cancel: %+v", j)
	}

	// Retry lets them finish.
	os.WriteFile(filepath.Join(marks, "go"), nil, 0o644)
	run(t, 0, "retry", job, "--server", url)
	run(t, 0, "status", job, "--watch", "--interval", "100ms", "--server", url)
	j, frames := status(t, url, job)
	if j.State != api.JobDone || len(frames) != 4 {
		t.Fatalf("after retry: %+v", j)
	}
	runs := func(frame int) int {
		b, _ := os.ReadFile(filepath.Join(marks, fmt.Sprintf("runs-%d", frame)))
		return strings.Count(string(b), "x")
	}
	before := runs(3)

	// --frames re-renders a done frame, and only it.
	run(t, 0, "retry", job, "--frames", "3", "--server", url)
	run(t, 0, "status", job, "--watch", "--interval", "100ms", "--server", url)
	if runs(3) != before+1 {
		t.Errorf("frame 3 ran %d times after retry --frames 3, want %d", runs(3), before+1)
	}
	for _, f := range []int{1, 2, 4} {
		if n := runs(f); n < 1 || n > 2 {
			t.Errorf("frame %d ran %d times", f, n)
		}
	}
	out := t.TempDir()
	run(t, 0, "fetch", job, "-o", out, "--server", url)
	if got := readDir(t, out); len(got) != 4 || string(got["f-3.txt"]) != "3\n" {
		t.Errorf("result after retries: %v", got)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSubmitTarballs submits the command example as .tar, .tar.gz and
// .tar.zst: each renders to the same result as the directory itself.
func TestSubmitTarballs(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "tarballs", "--workers", "2")
	result := func(pkg string) map[string][]byte {
		job := strings.TrimSpace(run(t, 0, "submit", pkg, "--wait", "--server", url))
		out := t.TempDir()
		run(t, 0, "fetch", job, "-o", out, "--server", url)
		return readDir(t, out)
	}
	want := result("../examples/command")
	if len(want) == 0 {
		t.Fatal("the command example produced nothing")
	}
	for _, ext := range []string{".tar", ".tar.gz", ".tar.zst"} {
		t.Run(ext, func(t *testing.T) {
			pkg := filepath.Join(t.TempDir(), "command"+ext)
			writeTarball(t, pkg, "../examples/command")
			got := result(pkg)
			if len(got) != len(want) {
				t.Fatalf("%d files, want %d", len(got), len(want))
			}
			jobID := regexp.MustCompile(`of job \d+`)
			for name, b := range want {
				// The outputs name the job, whose id differs.
				if g, w := jobID.ReplaceAll(got[name], nil), jobID.ReplaceAll(b, nil); !bytes.Equal(g, w) {
					t.Errorf("%s = %q, want %q", name, got[name], b)
				}
			}
		})
	}
}

// writeTarball writes the files of dir into a tarball at path, compressed
// as its extension says.
func writeTarball(t *testing.T, path, dir string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var w io.WriteCloser = nopCloser{f}
	switch {
	case strings.HasSuffix(path, ".gz"):
		w = gzip.NewWriter(f)
	case strings.HasSuffix(path, ".zst"):
		if w, err = zstd.NewWriter(f); err != nil {
			t.Fatal(err)
		}
	}
	tw := tar.NewWriter(w)
	for name, b := range readDir(t, dir) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	for _, c := range []io.Closer{tw, w, f} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// TestProgressBars runs submit --wait on a terminal (a pseudo-terminal made
// by script(1)): it draws a bar for the upload and one for the frames. Off a
// terminal it draws none.
func TestProgressBars(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Fatal("script(1) from util-linux/bsdutils is needed to give distren a terminal: ", err)
	}
	_, url := serve(t, "--data", t.TempDir(), "--name", "bars", "--workers", "2")
	pkg := writeJob(t, animation, nil)
	cmd := exec.Command(script, "-qec", bin+" submit "+pkg+" --wait --server "+url, "/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("submit --wait on a terminal: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "uploading") {
		t.Errorf("no upload bar on a terminal:\n%q", out)
	}
	if !regexp.MustCompile(`frames +\d+% .*\(\d+/41\)`).Match(out) {
		t.Errorf("no frames bar on a terminal:\n%q", out)
	}
	if !strings.Contains(string(out), "distren://bars/1") {
		t.Errorf("the job's URL is missing:\n%q", out)
	}
	if msg := runStderr(t, 0, "submit", pkg, "--wait", "--server", url); strings.ContainsAny(msg, "\r█") || strings.Contains(msg, "uploading") || !strings.HasPrefix(msg, "sent ") {
		t.Errorf("off a terminal, submit wrote %q; want only the line saying what was sent", msg)
	}
	if msg := runStderr(t, 0, "submit", pkg, "-q", "--server", url); msg != "" {
		t.Errorf("submit -q wrote %q", msg)
	}
}

// TestFetchOnlyWhatIsNew: fetching into a directory again downloads only
// the frames done since, or rendered again.
func TestFetchOnlyWhatIsNew(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "again", "--workers", "2")
	pkg := writeJob(t, `<distrenjob version="1"><name>again</name>
<backend name="command"><program>sh</program><arg>-c</arg>
<arg>echo {frame} $(cat /proc/sys/kernel/random/uuid) > f-{frame}.txt</arg></backend>
<frames><range first="1" last="4"/></frames><outputs><output>*.txt</output></outputs></distrenjob>`, nil)
	job := strings.TrimSpace(run(t, 0, "submit", pkg, "--server", url, "--wait", "-q"))
	out := t.TempDir()
	if msg := runStderr(t, 0, "fetch", job, "-o", out, "--server", url); !strings.Contains(msg, "4 files written") {
		t.Errorf("first fetch: %q", msg)
	}
	first := readDir(t, out)
	if msg := runStderr(t, 0, "fetch", job, "-o", out, "--server", url); !strings.Contains(msg, "4 done frames already in") || !strings.Contains(msg, "0 files written") {
		t.Errorf("fetching again: %q", msg)
	}
	run(t, 0, "retry", job, "--frames", "3", "--server", url)
	run(t, 0, "status", job, "--watch", "--interval", "100ms", "--server", url)
	if msg := runStderr(t, 0, "fetch", job, "-o", out, "--server", url); !strings.Contains(msg, "3 done frames already in") || !strings.Contains(msg, "1 file written") {
		t.Errorf("fetching after frame 3 was rendered again: %q", msg)
	}
	second := readDir(t, out)
	for name, b := range second {
		if changed := !bytes.Equal(b, first[name]); changed != (name == "f-3.txt") {
			t.Errorf("%s changed: %v (only f-3.txt was rendered again)", name, changed)
		}
	}
	// Another directory, or -o FILE.tar, gets everything.
	if msg := runStderr(t, 0, "fetch", job, "-o", t.TempDir(), "--server", url); !strings.Contains(msg, "4 files written") {
		t.Errorf("fetch into a new directory: %q", msg)
	}
}

// TestCommandPolicy: a worker that refuses the command backend never
// claims its frames (the job says it waits for a capable worker); one with
// an allow-list runs the programs listed and fails the others, naming them.
func TestCommandPolicy(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "policy", "--workers", "1", "--command-policy", "refuse")
	allowed := writeJob(t, `<distrenjob version="1"><name>allowed</name>
<backend name="command"><program>sh</program><arg>-c</arg><arg>echo {frame} > f-{frame}.txt</arg></backend>
<frames><range first="1" last="2"/></frames><outputs><output>*.txt</output></outputs></distrenjob>`, nil)
	other := writeJob(t, `<distrenjob version="1"><name>other</name><retries>0</retries>
<backend name="command"><program>touch</program><arg>f-{frame}.txt</arg></backend>
<frames><frame id="1"/></frames><outputs><output>*.txt</output></outputs></distrenjob>`, nil)
	job := strings.TrimSpace(run(t, 0, "submit", allowed, "--server", url))
	waitFor(t, "the job to say why it waits", func() bool {
		j, _ := status(t, url, job)
		return strings.Contains(j.Waiting, "2 ready frames need command")
	})
	if msg := runStderr(t, 2, "worker", "--server", url, "--command-policy", "allow-list"); !strings.Contains(msg, "--command-policy") {
		t.Errorf("an allow-list without programs: %q", msg)
	}
	start(t, "worker", "--server", url, "--slots", "1", "--dir", t.TempDir(), "--name", "strict",
		"--command-policy", "allow-list", "--allow-program", "sh")
	run(t, 0, "status", job, "--watch", "--interval", "100ms", "--server", url)
	if j, _ := status(t, url, job); j.State != api.JobDone {
		t.Fatalf("the allowed program's job: %+v", j)
	}
	job2 := strings.TrimSpace(run(t, 0, "submit", other, "--server", url))
	run(t, 0, "status", job2, "--watch", "--interval", "100ms", "--server", url)
	_, frames := status(t, url, job2)
	if len(frames) != 1 || frames[0].State != api.StateFailed || !strings.Contains(frames[0].Error, `program "touch" is not allowed on this worker`) {
		t.Errorf("a program not listed: %+v", frames)
	}
}
