package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	"github.com/distren/distren/internal/api"
)

// hostileJob is a job whose every word aims at the user's terminal: its
// name carries a right-to-left override and isolate (the manifest refuses
// control characters in a name, not these); frame 1's
// renderer retitles the terminal (OSC 0), clears it, and overwrites its
// line with a fake report before it fails; frame 2 writes an output whose
// file name clears the screen.
const hostileJob = `<distrenjob version="1">
  <name>evil&#x202e;exe.txt&#x2066;</name>
  <retries>0</retries>
  <backend name="command"><program>sh</program><arg>-c</arg>
    <arg>if [ {frame} = 1 ]; then printf 'rendering\r\033]0;pwned\007\033[2J\033[H\033[32mall 48 frames done\033[0m\n' >&amp;2; exit 1; fi; echo ok > "$(printf 'x\033[2J{frame}.txt')"</arg>
  </backend>
  <frames><range first="1" last="2"/></frames>
  <outputs><output>*.txt</output></outputs>
</distrenjob>`

// terminalControls lists the characters of s a terminal would act on (or
// reorder text by): C0 controls other than newline and tab, DEL, C1
// controls, bidirectional formatting characters, and bytes that are not
// UTF-8. It is written apart from the code under test on purpose.
func terminalControls(s string) []string {
	var found []string
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			found = append(found, fmt.Sprintf("byte %#x at %d", s[i], i))
		case r < 0x20 && r != '\n' && r != '\t', r == 0x7f, r >= 0x80 && r <= 0x9f,
			r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
			found = append(found, fmt.Sprintf("%U at %d", r, i))
		}
		i += n
	}
	return found
}

// checkTerminalSafe fails the test if out holds a terminal control.
func checkTerminalSafe(t *testing.T, what, out string) {
	t.Helper()
	if found := terminalControls(out); len(found) > 0 {
		t.Errorf("%s printed raw terminal controls (%s):\n%q", what, strings.Join(found, ", "), out)
	}
}

// TestHostileOutputIsEscaped runs a job built to take over the user's
// terminal, through a real server and a worker with a name that reorders
// text, and
// checks that nothing the CLI prints about it — submit --wait, status (of
// the job, of all jobs, --watch, --json), workers, fetch, render — holds a
// raw control character, while what they held is still shown, escaped.
func TestHostileOutputIsEscaped(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "hostile", "--workers", "0")
	// The server refuses C0 controls and DEL in a worker's name, not C1
	// controls nor bidirectional overrides.
	worker := "w\u009b2J\u202eevil"
	start(t, "worker", "--server", url, "--slots", "2", "--dir", t.TempDir(), "--name", worker)
	waitFor(t, "the worker to claim", func() bool { // its name is shown escaped: read it from the JSON
		var ws []api.Worker
		if err := json.Unmarshal([]byte(run(t, 0, "workers", "--json", "--server", url)), &ws); err != nil {
			t.Fatal(err)
		}
		return len(ws) == 1 && ws[0].Name == worker
	})
	pkg := writeJob(t, hostileJob, nil)

	code, out, errOut := runCode(t, nil, "submit", pkg, "--wait", "--server", url)
	if code != 3 {
		t.Fatalf("submit --wait: exit %d, want 3 (a frame failed)\nstdout: %q\nstderr: %q", code, out, errOut)
	}
	checkTerminalSafe(t, "submit --wait", out+errOut)
	for _, want := range []string{`\x1b]0;pwned\x07\x1b[2J`, `rendering\r`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("submit --wait does not show the renderer's output escaped (%s):\n%s", want, errOut)
		}
	}
	for _, line := range strings.Split(errOut, "\n") {
		if strings.Contains(line, "all 48 frames done") && !strings.HasPrefix(line, "    ") && !strings.HasPrefix(line, "distren: ") {
			t.Errorf("submit --wait shows the renderer's line %q unindented, as if it were distren's", line)
		}
	}
	job := strings.TrimSpace(out)
	if !regexp.MustCompile(`^distren://hostile/\d+$`).MatchString(job) {
		t.Fatalf("submit printed %q, want a job URL", out)
	}

	for _, args := range [][]string{
		{"status", job},
		{"status"},
		{"status", job, "--watch", "--interval", "100ms"},
		{"status", job, "--json"},
		{"status", "--json"},
		{"workers"},
		{"workers", "--json"},
		{"fetch", job, "-o", t.TempDir()},
		{"fetch", job, "-o", filepath.Join(t.TempDir(), "r.tar")},
	} {
		all := append(args, "--server", url)
		code, out, errOut := runCode(t, nil, all...)
		if code != 0 {
			t.Errorf("distren %s: exit %d\nstdout: %q\nstderr: %q", strings.Join(args, " "), code, out, errOut)
		}
		checkTerminalSafe(t, "distren "+strings.Join(args, " "), out+errOut)
		if args[0] == "status" && !strings.Contains(out, `evil\u202eexe.txt\u2066`) {
			t.Errorf("distren %s does not show the job's name escaped:\n%s", strings.Join(args, " "), out)
		}
		if args[0] == "workers" && !strings.Contains(out, `w\u009b2J\u202eevil`) {
			t.Errorf("distren %s does not show the worker's name escaped:\n%s", strings.Join(args, " "), out)
		}
	}
	if out := run(t, 0, "status", job, "--server", url); !strings.Contains(out, `w\u009b2J\u202eevil`) {
		t.Errorf("status does not name the frames' worker, escaped:\n%s", out)
	}

	// The one-shot farm prints the same failure.
	code, out, errOut = runCode(t, nil, "render", pkg, "-o", t.TempDir(), "--workers", "2")
	if code != 3 {
		t.Errorf("render: exit %d, want 3\nstdout: %q\nstderr: %q", code, out, errOut)
	}
	checkTerminalSafe(t, "render", out+errOut)
	if !strings.Contains(errOut, `\x1b]0;pwned\x07`) {
		t.Errorf("render does not show the renderer's output escaped:\n%s", errOut)
	}
}

// TestInterruptExits130: Ctrl-C (SIGINT to the process group, as a
// terminal sends it) stops submit --wait and status --watch with exit 130,
// not 4 ("server unreachable"); SIGTERM gives 143; serve, which runs until
// stopped, exits 0.
func TestInterruptExits130(t *testing.T) {
	srv, url := serve(t, "--data", t.TempDir(), "--name", "sigint", "--workers", "0") // no slots: the job never ends
	pkg := writeJob(t, `<distrenjob version="1"><name>forever</name><backend name="builtin"/>
<frames><range first="1" last="2"/></frames><outputs><output>*.png</output></outputs></distrenjob>`, nil)
	for _, c := range []struct {
		name  string
		args  []string
		ready string // in the output once the command is waiting
		sig   syscall.Signal
		code  int
	}{
		{"submit --wait, SIGINT", []string{"submit", pkg, "--wait", "--server", url}, "distren://sigint/", syscall.SIGINT, 130},
		{"status --watch, SIGINT", []string{"status", "1", "--watch", "--interval", "50ms", "--server", url}, "distren://sigint/1", syscall.SIGINT, 130},
		{"status --watch of all jobs, SIGTERM", []string{"status", "--watch", "--interval", "50ms", "--server", url}, "distren://sigint/1", syscall.SIGTERM, 143},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := start(t, c.args...)
			waitFor(t, "the command to wait", func() bool { return strings.Contains(p.log.String(), c.ready) })
			syscall.Kill(-p.cmd.Process.Pid, c.sig)
			<-p.done
			if got := p.cmd.ProcessState.ExitCode(); got != c.code {
				t.Errorf("exit %d, want %d\n%s", got, c.code, p.log)
			}
			said := map[syscall.Signal]string{syscall.SIGINT: "distren: interrupted", syscall.SIGTERM: "distren: terminated"}[c.sig]
			if log := p.log.String(); strings.Contains(log, "context canceled") || !strings.Contains(log, said) {
				t.Errorf("the command does not say it was interrupted, plainly:\n%s", log)
			}
		})
	}
	syscall.Kill(-srv.cmd.Process.Pid, syscall.SIGINT)
	<-srv.done
	if got := srv.cmd.ProcessState.ExitCode(); got != 0 {
		t.Errorf("serve stopped by SIGINT: exit %d, want 0\n%s", got, srv.log)
	}
}

// TestUsageAndListenErrors: a package path that is not there is a usage
// error (exit 2) for submit and render; serve on a port another program
// holds says so and how to choose another, exiting 1 (docs/cli.md).
func TestUsageAndListenErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-job")
	for _, args := range [][]string{
		{"submit", missing, "--server", "http://127.0.0.1:1"},
		{"render", missing, "-o", t.TempDir()},
	} {
		t.Run(args[0]+" of a missing package", func(t *testing.T) {
			if msg := runStderr(t, 2, args...); !strings.Contains(msg, missing) || !strings.Contains(msg, "no such file or directory") {
				t.Errorf("distren %s: %q does not name the missing path", args[0], msg)
			}
		})
	}
	t.Run("serve on a busy port", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		msg := runStderr(t, 1, "serve", "--data", t.TempDir(), "--workers", "0", "--listen", "127.0.0.1:"+port)
		for _, want := range []string{"port " + port + " is in use", "address already in use", "pick another with --listen"} {
			if !strings.Contains(msg, want) {
				t.Errorf("serve on a busy port: %q does not say %q", msg, want)
			}
		}
	})
	t.Run("serve on an address without a port", func(t *testing.T) {
		if msg := runStderr(t, 2, "serve", "--data", t.TempDir(), "--workers", "0", "--insecure", "--listen", "127.0.0.1"); !strings.Contains(msg, "--listen 127.0.0.1") || !strings.Contains(msg, "missing port") {
			t.Errorf("serve --listen without a port: %q", msg)
		}
	})
}

// TestWaitFinalLineAndCompletion: submit --wait off a terminal ends with a
// line saying how the job ended (-q leaves it out); shell completion,
// which the README documents, is there for bash, zsh and fish and completes
// commands.
func TestWaitFinalLineAndCompletion(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "last", "--workers", "2")
	pkg := writeJob(t, `<distrenjob version="1"><name>three</name>
<backend name="builtin"><width>8</width><height>8</height><samples>1</samples><output>f-{frame}.png</output></backend>
<frames><range first="1" last="3"/></frames><outputs><output>*.png</output></outputs></distrenjob>`, nil)
	out, errOut := run2(t, 0, "submit", pkg, "--wait", "--server", url)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	want := regexp.MustCompile(`^job ` + regexp.QuoteMeta(strings.TrimSpace(out)) + ` done: 3 frames in \d[0-9.hms]*$`)
	if !want.MatchString(lines[len(lines)-1]) {
		t.Errorf("submit --wait off a terminal ends with %q, want %s", lines[len(lines)-1], want)
	}
	if _, errOut := run2(t, 0, "submit", pkg, "--wait", "-q", "--server", url); errOut != "" {
		t.Errorf("submit --wait -q wrote %q", errOut)
	}

	for _, shell := range []string{"bash", "zsh", "fish"} {
		if out := run(t, 0, "completion", shell); !strings.Contains(out, "distren") || len(out) < 500 {
			t.Errorf("completion %s printed %q", shell, out)
		}
	}
	if out := run(t, 0, "__complete", "sta"); !strings.Contains(out, "status") {
		t.Errorf("completing \"sta\" gives %q, want status", out)
	}
}
