package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCommandFrameSeesNoWorkerSecrets: a job submitted with a client token
// cannot read the worker's token, or any other secret of its environment,
// through a command frame (issue 12, item 11); it sees a private HOME,
// DISTREN_FRAME, DISTREN_JOB and what the site passes with --pass-env.
func TestCommandFrameSeesNoWorkerSecrets(t *testing.T) {
	data := t.TempDir()
	workerTok := newToken(t, data, "node-1", "worker")
	clientTok := newToken(t, data, "ci", "client")
	_, url := serve(t, "--data", data, "--name", "envs", "--workers", "0")
	home := t.TempDir()
	w := startIn(t, t.TempDir(), []string{"DISTREN_TOKEN=" + workerTok, "AWS_SECRET_ACCESS_KEY=cloud-secret-e2e",
		"HOME=" + home, "SITE_LICENSE=lic.example:27000"},
		"worker", "--server", url, "--name", "envw", "--slots", "1", "--dir", "wdir", "--pass-env", "SITE_LICENSE")
	waitLine(t, w, `msg="worker started"`)
	pkg := writeJob(t, `<distrenjob version="1"><name>env</name><retries>0</retries>
<backend name="command"><program>sh</program><arg>-c</arg><arg>env > env-{frame}.txt</arg></backend>
<frames><frame id="1"/></frames><outputs><output>*.txt</output></outputs></distrenjob>`, nil)
	job := strings.TrimSpace(run(t, 0, "submit", pkg, "--server", url, "--token", clientTok, "--wait", "-q"))
	out := filepath.Join(t.TempDir(), "out")
	run(t, 0, "fetch", job, "--server", url, "--token", clientTok, "-o", out)
	b, err := os.ReadFile(filepath.Join(out, "env-1.txt"))
	if err != nil {
		t.Fatal(err)
	}
	env := "\n" + string(b)
	secret := workerTok[strings.LastIndexByte(workerTok, '_')+1:]
	for _, leak := range []string{secret, "DISTREN_TOKEN", "cloud-secret-e2e", "\nHOME=" + home + "\n"} {
		if strings.Contains(env, leak) {
			t.Errorf("the command frame saw %q of the worker's environment:%s", leak, env)
		}
	}
	for _, want := range []string{"\nDISTREN_FRAME=1\n", "\nDISTREN_JOB=1\n", "\nSITE_LICENSE=lic.example:27000\n", "/wdir/scratch/1-1-"} {
		if !strings.Contains(env, want) {
			t.Errorf("the command frame's environment lacks %q:%s", strings.TrimSpace(want), env)
		}
	}
	// A worker refuses to hand its token on.
	if msg := runStderr(t, 2, "worker", "--server", url, "--pass-env", "DISTREN_TOKEN"); !strings.Contains(msg, "the worker's token") {
		t.Errorf("worker --pass-env DISTREN_TOKEN: %q", msg)
	}
}

// TestStatusShowsRendererError: distren status shows, on a failed frame's
// line, the renderer's own error line (issue 12, item 6), not a message
// cut at "renderer output ends with:".
func TestStatusShowsRendererError(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "errs", "--workers", "1")
	pkg := writeJob(t, `<distrenjob version="1"><name>fails</name><retries>0</retries>
<backend name="command"><program>sh</program><arg>-c</arg>
<arg>echo 'loading scene.blend'; echo 'Error: license server lic.example:27000 not reachable' >&amp;2; echo 'Blender quit'; exit 1</arg></backend>
<frames><frame id="1"/></frames><outputs><output>*.png</output></outputs></distrenjob>`, nil)
	job := strings.TrimSpace(run(t, 3, "submit", pkg, "--server", url, "--wait", "-q"))
	out := run(t, 0, "status", job, "--server", url)
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "1 ") && strings.Contains(l, "failed") {
			if !strings.Contains(l, "sh: exit status 1: Error: license server lic.example:27000 not reachable") {
				t.Errorf("the failed frame's line does not show the renderer's error:\n%s", l)
			}
			return
		}
	}
	t.Fatalf("no failed frame 1 in status:\n%s", out)
}

// waitLine waits until a process has logged a line holding s.
func waitLine(t *testing.T, p *dirProc, s string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(p.String(), s) {
		select {
		case <-p.done:
			t.Fatalf("the process exited before logging %q:\n%s", s, p)
		case <-deadline:
			t.Fatalf("the process did not log %q:\n%s", s, p)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
