package worker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/backend"
	"github.com/distren/distren/internal/manifest"
)

// newTask makes a task of one frame of m, with its scratch directory, as
// prepare does.
func newTask(t *testing.T, w *Worker, m *manifest.Manifest, frame int64) *task {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	tk := &task{leases: []api.Lease{{Job: 5, Frame: frame, Epoch: 1}}, spec: &jobSpec{m: m}, ctx: ctx, cancel: cancel,
		progress: map[int64]float64{}, done: map[int64]bool{}, sent: map[int64]bool{}, aborts: map[int64]context.CancelCauseFunc{}}
	if err := w.scratch(tk); err != nil {
		t.Fatal(err)
	}
	return tk
}

func parse(t *testing.T, doc string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Parse(strings.NewReader(doc), manifest.FileName, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRelativeDirCommandFrame: a worker started with a relative --dir works
// in absolute paths, and a command frame it runs sees a private HOME and
// TMPDIR beneath it, DISTREN_FRAME and DISTREN_JOB, and not the worker's
// token, secrets or HOME.
func TestRelativeDirCommandFrame(t *testing.T) {
	cwd := t.TempDir()
	t.Chdir(cwd)
	t.Setenv("DISTREN_TOKEN", "dtk_0123456789ab_the-worker-token")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "a-cloud-secret")
	t.Setenv("HOME", "/home/the-worker-user")
	w, err := New(Config{Dir: "wdir", Backends: backend.Default()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if want := filepath.Join(cwd, "wdir"); w.Dir() != want || w.scr != filepath.Join(want, "scratch") {
		t.Fatalf("worker directory %q, scratch %q: want them absolute, under %s", w.Dir(), w.scr, want)
	}
	m := parse(t, `<distrenjob version="1"><name>env</name>
<backend name="command"><program>sh</program><arg>-c</arg><arg>env > env-{frame}.txt</arg></backend>
<frames><frame id="7"/></frames><outputs><output>*.txt</output></outputs></distrenjob>`)
	tk := newTask(t, w, m, 7)
	if !filepath.IsAbs(tk.dir) || !filepath.IsAbs(tk.home) {
		t.Fatalf("scratch %q and home %q are not absolute", tk.dir, tk.home)
	}
	files, _, err := w.render(tk)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0] != "env-7.txt" {
		t.Fatalf("outputs %v", files)
	}
	b, err := os.ReadFile(filepath.Join(tk.dir, "env-7.txt"))
	if err != nil {
		t.Fatal(err)
	}
	env := string(b)
	for _, secret := range []string{"the-worker-token", "DISTREN_TOKEN", "a-cloud-secret", "/home/the-worker-user"} {
		if strings.Contains(env, secret) {
			t.Errorf("the command frame saw %q:\n%s", secret, env)
		}
	}
	for _, want := range []string{"\nHOME=" + tk.home + "\n", "\nTMPDIR=" + filepath.Join(tk.home, "tmp") + "\n", "\nDISTREN_FRAME=7\n", "\nDISTREN_JOB=5\n"} {
		if !strings.Contains("\n"+env, want) {
			t.Errorf("the command frame's environment lacks %q:\n%s", strings.TrimSpace(want), env)
		}
	}
}

// TestFailureFirstLineCarriesErrorLine: the first line of a failed frame's
// message (what distren status shows) ends with the renderer's own error
// line, not with "renderer output ends with:"; the output's tail follows.
func TestFailureFirstLineCarriesErrorLine(t *testing.T) {
	w, err := New(Config{Dir: t.TempDir(), Backends: backend.Default()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	m := parse(t, `<distrenjob version="1"><name>fail</name>
<backend name="command"><program>sh</program><arg>-c</arg>
<arg>echo 'loading scene'; echo 'Error: license server lic.example not reachable' >&amp;2; echo '50%'; echo 'Render failed?' ; echo; exit 3</arg></backend>
<frames><frame id="1"/></frames><outputs><output>*.png</output></outputs></distrenjob>`)
	_, _, err = w.render(newTask(t, w, m, 1))
	if err == nil {
		t.Fatal("the frame did not fail")
	}
	first, rest, _ := strings.Cut(err.Error(), "\n")
	if want := "sh: exit status 3: Error: license server lic.example not reachable"; first != want {
		t.Errorf("first line %q\nwant       %q", first, want)
	}
	if !strings.HasPrefix(rest, "renderer output ends with:\nloading scene\n") || !strings.HasSuffix(rest, "Render failed?") {
		t.Errorf("the output's tail does not follow:\n%s", rest)
	}
}

func TestWithTail(t *testing.T) {
	tail := func(s string) *tailBuffer { b := &tailBuffer{max: 4 << 10}; b.Write([]byte(s)); return b }
	pov := "==== [Parsing...] ====\nFile 'a.pov' line 1: Parse Error: No matching } in 'pigment', undeclared\n identifier 'Red' found instead\nFatal error in parser: Cannot parse input.\nRender failed\n"
	for _, c := range []struct {
		name      string
		err       error
		out       string
		wantFirst string
	}{
		{"no output", errors.New("sh: exit status 1"), "  \n", "sh: exit status 1"},
		{"the line added", errors.New("sh: exit status 1"), "cat: x.txt: No such file or directory\n", "sh: exit status 1: cat: x.txt: No such file or directory"},
		{"a backend's message holding the line is not repeated",
			&backend.JobError{Err: errors.New("POV-Ray failed on frame 1: File 'a.pov' line 1: Parse Error: No matching } in 'pigment', undeclared identifier 'Red' found instead (povray: exit status 1)")},
			pov, "POV-Ray failed on frame 1: File 'a.pov' line 1: Parse Error: No matching } in 'pigment', undeclared identifier 'Red' found instead (povray: exit status 1)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := withTail(c.err, tail(c.out))
			if !errors.Is(err, c.err) {
				t.Error("the backend's error is not wrapped")
			}
			first, rest, _ := strings.Cut(err.Error(), "\n")
			if first != c.wantFirst {
				t.Errorf("first line %q\nwant       %q", first, c.wantFirst)
			}
			if strings.TrimSpace(c.out) != "" && rest != "renderer output ends with:\n"+strings.TrimSpace(c.out) {
				t.Errorf("then %q", rest)
			}
		})
	}
}
