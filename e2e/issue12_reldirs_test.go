package e2e

import (
	"bytes"
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

// dirProc is a distren process started in a working directory of the
// test's choosing, so that its relative paths are relative to it.
type dirProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  bytes.Buffer
}

func (p *dirProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *dirProc) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// startIn runs distren with args in the working directory dir, with env
// added to the test's environment, in the background; the test kills it
// at the end.
func startIn(t *testing.T, dir string, env []string, args ...string) *dirProc {
	t.Helper()
	p := &dirProc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Dir = dir
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	})
	return p
}

var relServing = regexp.MustCompile(`msg=serving .*url=(http://127\.0\.0\.1:\d+)`)

// serveIn starts a server in the working directory dir and returns its URL.
func serveIn(t *testing.T, dir string, args ...string) (*dirProc, string) {
	t.Helper()
	p := startIn(t, dir, nil, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	deadline := time.After(30 * time.Second)
	for {
		if m := relServing.FindStringSubmatch(p.String()); m != nil {
			return p, m[1]
		}
		select {
		case <-p.done:
			t.Fatalf("server exited: %s", p)
		case <-deadline:
			t.Fatalf("server did not start: %s", p)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// examplePackage copies examples/NAME into a new directory, with its
// manifest edited by the replacements (old, new, ...), each of which must
// apply.
func examplePackage(t *testing.T, name string, replace ...string) string {
	t.Helper()
	src := filepath.Join("..", "examples", name)
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "distrenjob.xml" {
			s := string(b)
			for i := 0; i+1 < len(replace); i += 2 {
				if !strings.Contains(s, replace[i]) {
					t.Fatalf("examples/%s/distrenjob.xml has no %q", name, replace[i])
				}
				s = strings.ReplaceAll(s, replace[i], replace[i+1])
			}
			b = []byte(s)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestRelativeDirs renders the POV-Ray, Blender and ffmpeg examples (cut
// short) with the directories given relatively, as a new user does: a
// worker with a relative --dir, and serve's local slots under a relative
// --data. Every frame must render at its first attempt (issue 12, item 1:
// POV-Ray could not open its povray.conf, Blender joined the path twice).
func TestRelativeDirs(t *testing.T) {
	needPrograms(t, "povray", "blender", "ffmpeg")
	jobs := []struct {
		example string
		edits   []string
		outputs []string
	}{
		{"povray", []string{`<range first="1" last="48"/>`, `<range first="1" last="4"/>`, `<chunk>4</chunk>`, `<chunk>2</chunk>`},
			[]string{"orbit01.png", "orbit02.png", "orbit03.png", "orbit04.png"}},
		{"blender", []string{`<range first="1" last="24"/>`, `<range first="1" last="2"/>`, `<chunk>4</chunk>`, `<chunk>1</chunk>`},
			[]string{"frame-0001.png", "frame-0002.png"}},
		{"video", []string{`<range first="1" last="48"/>`, `<range first="1" last="3"/>`, `<depends first="1" last="48"/>`, `<depends first="1" last="3"/>`},
			[]string{"orbit-0001.png", "orbit-0002.png", "orbit-0003.png", "orbit.mp4"}},
	}
	for _, farm := range []struct {
		name  string
		setup func(t *testing.T, cwd string) string // starts the farm, returns the server's URL
	}{
		{"worker --dir relative", func(t *testing.T, cwd string) string {
			_, url := serveIn(t, cwd, "--data", "reldata", "--name", "relw", "--workers", "0")
			startIn(t, cwd, nil, "worker", "--server", url, "--dir", "wdir", "--slots", "2", "--name", "relw1")
			waitWorkers(t, url, "relw1")
			return url
		}},
		{"serve --data relative, local slots", func(t *testing.T, cwd string) string {
			_, url := serveIn(t, cwd, "--data", "reldata", "--name", "rels", "--workers", "2")
			return url
		}},
	} {
		t.Run(farm.name, func(t *testing.T) {
			cwd := t.TempDir()
			url := farm.setup(t, cwd)
			for _, j := range jobs {
				t.Run(j.example, func(t *testing.T) {
					pkg := examplePackage(t, j.example, j.edits...)
					id := strings.TrimSpace(run(t, 0, "submit", pkg, "--server", url, "--wait", "-q"))
					job, frames := status(t, url, id)
					if job.State != api.JobDone {
						t.Fatalf("%s: job %s is %s: %s", j.example, id, job.State, job.Error)
					}
					for _, f := range frames {
						if f.Attempts != 1 {
							t.Errorf("%s: frame %d took %d attempts (%s)", j.example, f.ID, f.Attempts, f.Error)
						}
					}
					out := filepath.Join(t.TempDir(), "out")
					run(t, 0, "fetch", id, "--server", url, "-o", out)
					got := readDir(t, out)
					for _, name := range j.outputs {
						if len(got[name]) == 0 {
							t.Errorf("%s: no %s in the result (it holds %d files)", j.example, name, len(got))
						}
					}
				})
			}
		})
	}
}
