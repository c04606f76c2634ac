package backend

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/distren/distren/internal/manifest"
)

// Command runs a program for each frame:
//
//	<program>sh</program>
//	<arg>-c</arg> <arg>echo {frame} > out-{frame:04}.txt</arg>
//
// {frame}, {frame:N}, {job} and {dir} are substituted in the program and each
// argument. The program runs in the frame's scratch directory, in a process
// group of its own that is killed whole on timeout or cancel.
//
// Whoever may submit a job may run any program on the workers that take
// command frames: that is the backend's purpose, as in other farms, and
// the submit token is what guards it. A worker narrows it with a policy
// (CommandPolicy): refuse the backend, or run only listed programs.
//
// The program gets the environment every renderer gets (PATH, LANG, a
// private HOME and TMPDIR beneath it), DISTREN_FRAME and DISTREN_JOB, and
// the worker's values of the variables the site lets through (PassEnv) —
// never the rest of the worker's environment, where its token and cloud
// credentials live.
type Command struct {
	// Allow, if not nil, lists the only programs this worker runs: a
	// frame's <program>, after substitution, must be one of them as
	// written, or resolve (through PATH, or the scratch directory for a
	// relative path) to one given as an absolute path. Another program
	// fails the frame on this worker, so that it is retried elsewhere.
	Allow []string
	// PassEnv names variables of the worker's environment that command
	// frames see with the worker's values (when set); see CommandEnv.
	PassEnv []string
}

// Command policies for CommandPolicy.
const (
	CommandAny       = "any"        // run any program (the default)
	CommandRefuse    = "refuse"     // never run the command backend
	CommandAllowList = "allow-list" // run only the listed programs
)

// CommandPolicy applies a worker's command policy to its registry: any
// leaves it; refuse removes the command backend, so the worker never
// claims its frames (the server says they wait for a capable worker);
// allow-list runs only the programs listed.
func CommandPolicy(r Registry, policy string, allow []string) (Registry, error) {
	switch {
	case policy == CommandAny && len(allow) == 0:
		return r, nil
	case policy == CommandRefuse && len(allow) == 0:
		delete(r, "command")
		return r, nil
	case policy == CommandAllowList && len(allow) > 0:
		r["command"] = Command{Allow: allow}
		return r, nil
	case policy == CommandAllowList:
		return nil, fmt.Errorf("command policy %s needs the programs allowed", policy)
	case policy == CommandAny || policy == CommandRefuse:
		return nil, fmt.Errorf("command policy %s takes no list of programs (use %s)", policy, CommandAllowList)
	}
	return nil, fmt.Errorf("command policy %q: want %s, %s or %s", policy, CommandAny, CommandRefuse, CommandAllowList)
}

// reservedEnv are the variables CommandEnv refuses to pass through, and why.
var reservedEnv = map[string]string{
	"HOME":          "each frame has a private HOME",
	"TMPDIR":        "each frame has a private TMPDIR",
	"DISTREN_FRAME": "distren sets it for each frame",
	"DISTREN_JOB":   "distren sets it for each frame",
	"DISTREN_TOKEN": "it would hand the worker's token to every job",
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// CommandEnv lets the command frames of r see the worker's values of the
// named environment variables (a site's license server, proxy, ...). Names
// distren sets per frame, and DISTREN_TOKEN, are refused.
func CommandEnv(r Registry, names []string) (Registry, error) {
	for _, n := range names {
		if !envName.MatchString(n) {
			return nil, fmt.Errorf("%q is not an environment variable name (letters, digits and _, not starting with a digit)", n)
		}
		if why, ok := reservedEnv[n]; ok {
			return nil, fmt.Errorf("%s cannot be passed to command frames: %s", n, why)
		}
	}
	if c, ok := r["command"].(Command); ok && len(names) > 0 {
		c.PassEnv = slices.Clone(names)
		r["command"] = c
	}
	return r, nil
}

// env is a command frame's environment.
func (c Command) env(t *Task) ([]string, error) {
	env, err := taskEnv(t)
	if err != nil {
		return nil, err
	}
	for _, n := range c.PassEnv {
		if v, ok := os.LookupEnv(n); ok {
			env = append(env, n+"="+v)
		}
	}
	return append(env, fmt.Sprintf("DISTREN_FRAME=%d", t.Frame()), fmt.Sprintf("DISTREN_JOB=%d", t.Job)), nil
}

// allowed reports whether the policy lets prog run, for a frame whose
// scratch directory is dir.
func (c Command) allowed(prog, dir string) bool {
	if c.Allow == nil {
		return true
	}
	resolved := ""
	if strings.Contains(prog, "/") {
		if !filepath.IsAbs(prog) {
			prog = filepath.Join(dir, prog)
		}
		resolved = filepath.Clean(prog)
	} else if p, err := exec.LookPath(prog); err == nil {
		resolved, _ = filepath.Abs(p)
	}
	for _, a := range c.Allow {
		if a == prog || (filepath.IsAbs(a) && resolved != "" && filepath.Clean(a) == resolved) {
			return true
		}
	}
	return false
}

// Name implements Backend.
func (Command) Name() string { return "command" }

// Check implements Backend.
func (Command) Check(spec *manifest.Backend) error {
	var errs manifest.ErrorList
	for _, e := range spec.Elements {
		if e.Name != "program" && e.Name != "arg" {
			errs = append(errs, specError(spec, e.Line, e.Name, "unknown element for backend command (known: program, arg)"))
		}
	}
	if len(spec.All("program")) > 1 {
		errs = append(errs, specError(spec, spec.All("program")[1].Line, "program", "more than one <program>"))
	}
	prog, line, ok := spec.Get("program")
	if !ok || prog == "" {
		errs = append(errs, specError(spec, 0, "program", "backend command needs a <program>"))
	} else if p, err := Expand(prog, 1, 1, "."); err != nil {
		errs = append(errs, specError(spec, line, "program", "%v", err))
	} else if c := filepath.Clean(p); !filepath.IsAbs(p) && (c == ".." || strings.HasPrefix(c, "../")) {
		// A relative program runs from the frame's scratch directory; above
		// it are other frames' directories and the worker's cache.
		errs = append(errs, specError(spec, line, "program", "%q leaves the frame's scratch directory; name a program on PATH, one in the package, or an absolute path", prog))
	}
	for _, a := range spec.All("arg") {
		if _, err := Expand(a.Text, 1, 1, "."); err != nil {
			errs = append(errs, specError(spec, a.Line, "arg", "%v", err))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// Files implements FileNamer: a <program> given as a relative path (with a
// /, without substitutions) runs from the scratch directory, so it is a
// file of the package.
func (Command) Files(spec *manifest.Backend) []NamedFile {
	prog, line, ok := spec.Get("program")
	if !ok || !strings.Contains(prog, "/") || strings.Contains(prog, "{") || filepath.IsAbs(prog) {
		return nil
	}
	return []NamedFile{{Path: path.Clean(prog), Line: line, Element: "program"}}
}

// Fingerprint implements Backend: running programs needs nothing installed.
func (Command) Fingerprint(context.Context) (Fingerprint, error) {
	return Fingerprint{Version: "1"}, nil
}

// Chunks implements Backend: a command runs once per frame.
func (Command) Chunks() bool { return false }

// Render implements Backend.
func (c Command) Render(ctx context.Context, t *Task) error {
	if err := t.checkDirs(); err != nil {
		return err
	}
	prog, _, _ := t.Spec.Get("program")
	prog, err := Expand(prog, t.Job, t.Frame(), t.Dir)
	if err != nil {
		return err
	}
	if !c.allowed(prog, t.Dir) {
		return fmt.Errorf("program %q is not allowed on this worker (its command policy allows only %s)", prog, strings.Join(c.Allow, ", "))
	}
	var args []string
	for _, a := range t.Spec.All("arg") {
		v, err := Expand(a.Text, t.Job, t.Frame(), t.Dir)
		if err != nil {
			return err
		}
		args = append(args, v)
	}
	env, err := c.env(t)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = t.Dir
	cmd.Stdout = t.Stderr
	cmd.Stderr = t.Stderr
	cmd.Env = env
	return RunGroup(ctx, cmd)
}

// RunGroup runs cmd (made by exec.CommandContext with ctx) in a process
// group of its own and waits for it. When ctx ends, the whole group is
// killed (so are the renderer's children) and the context's error is
// returned. If the worker itself dies (killed, out of memory), the kernel
// kills the renderer (the group's leader) rather than leave it rendering
// for nobody.
func RunGroup(ctx context.Context, cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	err := cmd.Wait()
	// Children that outlived the leader are killed too.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%s: %s", cmd.Args[0], ee.ProcessState.String())
	}
	return err
}
