package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/distren/distren/internal/client"
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
