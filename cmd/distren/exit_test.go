package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/farm"
)

func TestExitStatus(t *testing.T) {
	canceled := &url.Error{Op: "Get", URL: "http://127.0.0.1:7878/v1/jobs/1", Err: context.Canceled}
	refused := &url.Error{Op: "Get", URL: "http://127.0.0.1:1/v1/jobs", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	busy := &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}
	for _, c := range []struct {
		name string
		cmd  string
		err  error
		sig  os.Signal
		want int
	}{
		{"success", "status", nil, nil, exitOK},
		{"server down", "status", fmt.Errorf("GET /v1/jobs: %w", refused), nil, exitUnreachable},
		{"connection reset mid-stream", "fetch", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, nil, exitUnreachable},
		{"a local file's error", "submit", &fs.PathError{Op: "open", Path: "x", Err: syscall.ENOENT}, nil, exitError},
		{"disk full", "fetch", fmt.Errorf("writing: %w", &fs.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}), nil, exitError},
		{"refused by the server", "status", &client.Error{Status: 404, Msg: "no job 9"}, nil, exitRejected},
		{"serve on a busy port", "serve", listenError{fmt.Errorf("port 80 is in use: %w", busy)}, nil, exitError},
		{"Ctrl-C during a request", "submit", canceled, os.Interrupt, 130},
		{"Ctrl-C between requests", "status", context.Canceled, os.Interrupt, 130},
		{"SIGTERM", "status", context.Canceled, syscall.SIGTERM, 143},
		{"Ctrl-C after the command succeeded", "fetch", nil, os.Interrupt, exitOK},
		{"serve stopped by Ctrl-C", "serve", nil, os.Interrupt, exitOK},
		{"worker stopped by SIGTERM", "worker", context.Canceled, syscall.SIGTERM, exitOK},
		{"serve failing while it stops", "serve", errors.New("stopping vault: disk gone"), syscall.SIGTERM, exitError},
	} {
		if got := exitStatus(c.cmd, c.err, c.sig); got != c.want {
			t.Errorf("%s: exit %d, want %d", c.name, got, c.want)
		}
	}
}

// TestExitCodeOfEachError maps each kind of error a verb returns to its
// exit code (the table in exit.go and docs/cli.md), also wrapped, as verbs
// return them.
func TestExitCodeOfEachError(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "http://127.0.0.1:1/v1/jobs", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	untrusted := &url.Error{Op: "Get", URL: "https://127.0.0.1:1/v1/jobs", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}
	for _, c := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"usageError", usageError{errors.New("--frames x: bad")}, exitUsage},
		{"usageError wrapping a network error", usageError{refused}, exitUsage},
		{"farm.ErrInsecure", fmt.Errorf("listen 0.0.0.0:7878: %w", farm.ErrInsecure), exitUsage},
		{"farm.ErrName", fmt.Errorf("--name b: %w", farm.ErrName), exitUsage},
		{"jobFailedError", jobFailedError{"job distren://a/1 failed: 1 of 2 frames done"}, exitJobFailed},
		{"rejectedError", rejectedError{errors.New("token has role read")}, exitRejected},
		{"client.Error 400", &client.Error{Status: 400, Msg: "bad manifest"}, exitRejected},
		{"client.Error 401", fmt.Errorf("claim: %w", &client.Error{Status: 401, Msg: "invalid token"}), exitRejected},
		{"client.Error 403", &client.Error{Status: 403, Msg: "needs role client"}, exitRejected},
		{"client.Error 404", &client.Error{Status: 404, Msg: "no job 9"}, exitRejected},
		{"client.Error 413", &client.Error{Status: 413, Msg: "over --max-frames"}, exitRejected},
		{"client.Error 408", &client.Error{Status: 408, Msg: "timeout"}, exitError},
		{"client.Error 500", &client.Error{Status: 500, Msg: "disk gone"}, exitError},
		{"client.Error 503", &client.Error{Status: 503, Msg: "stopping"}, exitError},
		{"damageError", damageError{3}, exitDamaged},
		{"listenError", listenError{&net.OpError{Op: "listen", Net: "tcp", Err: syscall.EADDRINUSE}}, exitError},
		{"*url.Error", fmt.Errorf("submitting x: %w", refused), exitUnreachable},
		{"certificate not trusted", untrusted, exitUnreachable},
		{"*net.OpError", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, exitUnreachable},
		{"*net.DNSError", &net.DNSError{Err: "no such host", Name: "farm.example", IsNotFound: true}, exitUnreachable},
		{"a local file's error", &fs.PathError{Op: "open", Path: "x", Err: syscall.ENOENT}, exitError},
		{"context.Canceled, no signal", context.Canceled, exitError},
		{"any other error", errors.New("boom"), exitError},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("%s: exit %d, want %d", c.name, got, c.want)
		}
	}
}

// TestCommandLineExitCodes: what cobra refuses exits as docs/cli.md says:
// a flag it does not know (or a value it cannot parse) 2, a wrong number of
// arguments or an unknown command 1.
func TestCommandLineExitCodes(t *testing.T) {
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"status", "--bogus"}, exitUsage},
		{[]string{"status", "--interval", "soon"}, exitUsage},
		{[]string{"status", "a/b"}, exitUsage},
		{[]string{"retry", "1", "--frames", "x-y"}, exitUsage},
		{[]string{"status", "--token", "a", "--token-file", "b"}, exitUsage},
		{[]string{"serve", "--workers", "-1"}, exitUsage},
		{[]string{"cancel"}, exitError},
		{[]string{"cancel", "1", "2"}, exitError},
		{[]string{"bogus"}, exitError},
		{[]string{"version"}, exitOK},
	} {
		root := newRootCommand()
		root.SetArgs(c.args)
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		cmd, err := root.ExecuteContextC(context.Background())
		name := ""
		if cmd != nil {
			name = cmd.Name()
		}
		if got := exitStatus(name, err, nil); got != c.want {
			t.Errorf("distren %s: exit %d, want %d (%v)", strings.Join(c.args, " "), got, c.want, err)
		}
	}
}

// TestExitCodesDocumented: docs/cli.md's table of exit codes lists exactly
// the codes exit.go defines.
func TestExitCodesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "## Exit codes")
	if !ok {
		t.Fatal("docs/cli.md has no section Exit codes")
	}
	var got []string
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, "## ") {
			break
		}
		if cells := strings.Split(l, "|"); len(cells) > 2 && strings.TrimSpace(cells[1]) != "code" && !strings.HasPrefix(strings.TrimSpace(cells[1]), "---") {
			got = append(got, strings.TrimSpace(cells[1]))
		}
	}
	want := []string{fmt.Sprint(exitOK), fmt.Sprint(exitError), fmt.Sprint(exitUsage), fmt.Sprint(exitJobFailed),
		fmt.Sprint(exitUnreachable), fmt.Sprint(exitRejected), fmt.Sprint(exitDamaged),
		fmt.Sprintf("%d, %d", exitSignal+int(syscall.SIGINT), exitSignal+int(syscall.SIGTERM))}
	if !slices.Equal(got, want) {
		t.Errorf("docs/cli.md lists exit codes %q, exit.go defines %q", got, want)
	}
}
