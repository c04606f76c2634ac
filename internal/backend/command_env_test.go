package backend

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommandFrameEnvironment: a command frame sees PATH, LANG, a private
// HOME and TMPDIR, DISTREN_FRAME and DISTREN_JOB, and the variables the
// site passes through — not the worker's token, its cloud secrets or its
// user's HOME.
func TestCommandFrameEnvironment(t *testing.T) {
	t.Setenv("DISTREN_TOKEN", "dtk_000000000000_worker-secret")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "cloud-secret")
	t.Setenv("HOME", "/home/worker-user")
	t.Setenv("SITE_LICENSE_SERVER", "lic.example:27000")
	t.Setenv("NOT_PASSED", "not-passed")
	r, err := CommandEnv(Default(), []string{"SITE_LICENSE_SERVER", "UNSET_VARIABLE"})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	task := &Task{Job: 3, Frames: []int64{7}, Dir: filepath.Join(root, "scratch"), Home: filepath.Join(root, "home"),
		Spec: spec(t, `<backend name="command"><program>sh</program><arg>-c</arg><arg>env > env.txt; pwd > pwd.txt</arg></backend>`)}
	os.Mkdir(task.Dir, 0o755)
	os.Mkdir(task.Home, 0o700)
	var out bytes.Buffer
	task.Stderr = &out
	if err := r["command"].Render(context.Background(), task); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	b, err := os.ReadFile(filepath.Join(task.Dir, "env.txt"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		env[k] = v
	}
	for _, secret := range []string{"worker-secret", "cloud-secret", "/home/worker-user", "not-passed"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the frame saw %q of the worker's environment:\n%s", secret, b)
		}
	}
	for k, want := range map[string]string{
		"HOME": task.Home, "TMPDIR": filepath.Join(task.Home, "tmp"), "DISTREN_FRAME": "7", "DISTREN_JOB": "3",
		"SITE_LICENSE_SERVER": "lic.example:27000", "PATH": os.Getenv("PATH"), "LANG": "C.UTF-8",
	} {
		if env[k] != want {
			t.Errorf("%s=%q, want %q", k, env[k], want)
		}
	}
	for k := range env {
		switch k {
		case "HOME", "TMPDIR", "DISTREN_FRAME", "DISTREN_JOB", "SITE_LICENSE_SERVER", "PATH", "LANG",
			"PWD", "SHLVL", "_", "OLDPWD": // the last ones sh sets itself
		default:
			t.Errorf("the frame saw %s, which distren does not set", k)
		}
	}
	if fi, err := os.Stat(env["TMPDIR"]); err != nil || !fi.IsDir() {
		t.Errorf("TMPDIR %s: %v", env["TMPDIR"], err)
	}
}

func TestCommandEnvRefusesWhatDistrenSets(t *testing.T) {
	for _, c := range []struct {
		names []string
		want  string // "" for accepted
	}{
		{[]string{"LM_LICENSE_FILE", "http_proxy", "_X1"}, ""},
		{[]string{"DISTREN_TOKEN"}, "the worker's token"},
		{[]string{"HOME"}, "private HOME"},
		{[]string{"TMPDIR"}, "private TMPDIR"},
		{[]string{"DISTREN_FRAME"}, "sets it for each frame"},
		{[]string{"A=B"}, "not an environment variable name"},
		{[]string{"1X"}, "not an environment variable name"},
		{[]string{""}, "not an environment variable name"},
	} {
		_, err := CommandEnv(Default(), c.names)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.names, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: got %v, want an error saying %q", c.names, err, c.want)
		}
	}
	// A worker that refuses command frames has nothing to pass them.
	r, err := CommandPolicy(Default(), CommandRefuse, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, err = CommandEnv(r, []string{"X"}); err != nil || r.Known("command") {
		t.Errorf("CommandEnv on a registry without command: %v, command known %v", err, r.Known("command"))
	}
}

// TestRelativeTaskDirsRefused: a renderer given a relative scratch
// directory or HOME would resolve it from its own working directory (the
// scratch directory), so a task must carry absolute paths.
func TestRelativeTaskDirsRefused(t *testing.T) {
	t.Chdir(t.TempDir())
	os.MkdirAll("scratch/1-1-1", 0o755)
	os.MkdirAll("scratch/1-1-1.home", 0o700)
	for _, b := range []Backend{Command{}, Exec(POVRay{}), Exec(Blender{})} {
		task := &Task{Job: 1, Frames: []int64{1}, Dir: "scratch/1-1-1", Home: "scratch/1-1-1.home",
			Spec: spec(t, `<backend name="command"><program>true</program></backend>`)}
		err := b.Render(context.Background(), task)
		if err == nil || !strings.Contains(err.Error(), "absolute") {
			t.Errorf("%s with relative directories: %v", b.Name(), err)
		}
	}
}
