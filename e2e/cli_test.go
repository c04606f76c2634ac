package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		if out := runErr(t, 5, "submit", dir, "--server", url); !strings.Contains(out, "distrenjob.xml") {
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
