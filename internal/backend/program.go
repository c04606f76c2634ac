package backend

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/sandbox"
)

// Program is a renderer that runs as an external program — POV-Ray,
// Blender, ffmpeg. It is the part of a task driver that knows the renderer:
// Exec does the running. Adding a renderer means implementing Program and
// registering Exec(it) in Default.
type Program interface {
	// Name is the manifest's <backend name="...">.
	Name() string
	// Check validates a backend element at submission (see Backend.Check).
	Check(spec *manifest.Backend) error
	// Fingerprint finds the renderer on this machine (see Backend.Fingerprint).
	Fingerprint(ctx context.Context) (Fingerprint, error)
	// Chunks reports whether one process can render a range of frames.
	Chunks() bool
	// Command builds the process that renders the task. It may write files
	// the renderer needs into t.Home (configuration) or t.Dir.
	Command(t *Task) (*Invocation, error)
}

// Invocation is one renderer process for a task.
type Invocation struct {
	Path string   // the program, looked up in PATH if not absolute
	Args []string // its arguments, without the program name
	// Env is added to the renderer's environment, which otherwise holds
	// only PATH, LANG, HOME=Task.Home and TMPDIR beneath it.
	Env []string
	// Sandbox, if not nil, confines the process (see package sandbox): the
	// task's directories are added to its writable paths.
	Sandbox *sandbox.Policy
	// Output reads what the renderer prints; nil ignores it.
	Output OutputParser
}

// OutputParser follows a renderer's output and classifies its end.
type OutputParser interface {
	// Line gets each line the renderer writes on standard output or error
	// (split at \n and at \r, which progress counters use), without the
	// line ending. It reports progress and finished frames to ev.
	Line(line string, ev Events)
	// Finish gets the process's end — nil if it exited with status 0 — and
	// returns the task's outcome: nil, or an error that says what went
	// wrong (a *JobError where the job is at fault). It may report frames
	// done that the output did not announce.
	Finish(exit error, ev Events) error
}

// Exec makes a Backend of a Program.
func Exec(p Program) Backend { return execBackend{p} }

type execBackend struct{ Program }

// Files implements FileNamer for the Programs that name package files.
func (b execBackend) Files(spec *manifest.Backend) []NamedFile {
	if fn, ok := b.Program.(FileNamer); ok {
		return fn.Files(spec)
	}
	return nil
}

// Render implements Backend: it runs the program's invocation in the task's
// directory, in a process group of its own, feeding its output to the
// parser and to t.Stderr.
func (b execBackend) Render(ctx context.Context, t *Task) error {
	if err := t.checkDirs(); err != nil {
		return err
	}
	inv, err := b.Command(t)
	if err != nil {
		return err
	}
	env, err := taskEnv(t)
	if err != nil {
		return err
	}
	env = append(env, inv.Env...)
	var cmd *exec.Cmd
	if inv.Sandbox != nil {
		p := *inv.Sandbox
		p.ReadWrite = append(p.ReadWrite[:len(p.ReadWrite):len(p.ReadWrite)], t.Dir, t.Home)
		if cmd, err = sandbox.Command(ctx, p, env, inv.Path, inv.Args...); err != nil {
			return fmt.Errorf("%s: %w", b.Name(), err)
		}
	} else {
		cmd = exec.CommandContext(ctx, inv.Path, inv.Args...)
		cmd.Env = env
	}
	cmd.Dir = t.Dir
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	ev := t.Events
	if ev == nil {
		ev = discard{}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer pr.Close()
		follow(io.TeeReader(pr, stderrOf(t)), inv.Output, ev)
	})
	err = RunGroup(ctx, cmd)
	pw.Close()
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if inv.Output != nil {
		return inv.Output.Finish(err, ev)
	}
	return err
}

// taskEnv is the environment every renderer process starts from, and all
// it gets of the worker's: PATH, LANG=C.UTF-8, HOME the task's private home
// and TMPDIR beneath it. Nothing else of the worker's environment — its
// token, cloud credentials, its user's HOME — reaches a job.
func taskEnv(t *Task) ([]string, error) {
	tmp := filepath.Join(t.Home, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	return []string{"PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8", "HOME=" + t.Home, "TMPDIR=" + tmp}, nil
}

func stderrOf(t *Task) io.Writer {
	if t.Stderr == nil {
		return io.Discard
	}
	return t.Stderr
}

// follow splits output into lines at \n or \r and passes them to p.
func follow(r io.Reader, p OutputParser, ev Events) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		for i, c := range data {
			if c == '\n' || c == '\r' {
				return i + 1, data[:i], nil
			}
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		if len(data) >= 1<<20 { // an endless line: pass it on in pieces
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		if p != nil {
			if line := strings.TrimRight(sc.Text(), " \t"); line != "" {
				p.Line(line, ev)
			}
		}
	}
	io.Copy(io.Discard, r) // drain, so the renderer never blocks on a full pipe
}

type discard struct{}

func (discard) Progress(int64, float64)   {}
func (discard) FrameDone(int64, []string) {}

// lookVersion runs a program's version command and returns its output, or an
// error wrapping ErrUnavailable.
func lookVersion(ctx context.Context, name string, args ...string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s is not installed (not found in PATH)", ErrUnavailable, name)
	}
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "", fmt.Errorf("%w: %s %s: %v", ErrUnavailable, path, strings.Join(args, " "), err)
	}
	return string(out), nil
}

var errNoVersion = errors.New("no version in its output")
