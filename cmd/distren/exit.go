package main

import (
	"errors"
	"net"
	"net/http"

	"github.com/distren/distren/internal/client"
)

// Exit codes: the interface scripts rely on (docs/cli.md).
const (
	exitOK          = 0 // success
	exitError       = 1 // any other error
	exitUsage       = 2 // bad command line
	exitJobFailed   = 3 // a frame failed or the job was canceled (render, submit --wait)
	exitUnreachable = 4 // the server could not be reached
	exitRejected    = 5 // the server refused the request (invalid package, unknown job or frame)
	exitDamaged     = 6 // vault check found damaged objects
)

// usageError marks command-line mistakes.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// jobFailedError reports a job that ended with failed or canceled frames.
type jobFailedError struct{ msg string }

func (e jobFailedError) Error() string { return e.msg }

func exitCode(err error) int {
	var ue usageError
	var jf jobFailedError
	var de damageError
	var ce *client.Error
	var ne net.Error
	var oe *net.OpError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &jf):
		return exitJobFailed
	case errors.As(err, &de):
		return exitDamaged
	case errors.As(err, &ce) && ce.Status >= 400 && ce.Status < 500 && ce.Status != http.StatusRequestTimeout:
		return exitRejected
	case errors.As(err, &oe), errors.As(err, &ne):
		return exitUnreachable
	}
	return exitError
}
