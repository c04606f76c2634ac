package backend

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
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
type Command struct{}

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
	} else if _, err := Expand(prog, 1, 1, "."); err != nil {
		errs = append(errs, specError(spec, line, "program", "%v", err))
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

// Fingerprint implements Backend: running programs needs nothing installed.
func (Command) Fingerprint(context.Context) (Fingerprint, error) {
	return Fingerprint{Version: "1"}, nil
}

// Chunks implements Backend: a command runs once per frame.
func (Command) Chunks() bool { return false }

// Render implements Backend.
func (Command) Render(ctx context.Context, t *Task) error {
	prog, _, _ := t.Spec.Get("program")
	prog, err := Expand(prog, t.Job, t.Frame(), t.Dir)
	if err != nil {
		return err
	}
	var args []string
	for _, a := range t.Spec.All("arg") {
		v, err := Expand(a.Text, t.Job, t.Frame(), t.Dir)
		if err != nil {
			return err
		}
		args = append(args, v)
	}
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = t.Dir
	cmd.Stdout = t.Stderr
	cmd.Stderr = t.Stderr
	cmd.Env = append(os.Environ(), fmt.Sprintf("DISTREN_FRAME=%d", t.Frame()), fmt.Sprintf("DISTREN_JOB=%d", t.Job))
	return RunGroup(ctx, cmd)
}

// RunGroup runs cmd (made by exec.CommandContext with ctx) in a process group of its own and waits for it. When ctx
// ends, the whole group is killed (so are the renderer's children) and the
// context's error is returned.
func RunGroup(ctx context.Context, cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
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
