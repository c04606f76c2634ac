package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"

	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/farm"
)

// Exit codes: the interface scripts rely on (docs/cli.md).
const (
	exitOK          = 0 // success
	exitError       = 1 // any other error
	exitUsage       = 2 // bad command line
	exitJobFailed   = 3 // a frame failed or the job was canceled (render, submit --wait)
	exitUnreachable = 4 // the server could not be reached
	exitRejected    = 5 // the server refused the request (invalid package, unknown job or frame, the token)
	exitDamaged     = 6 // vault check found damaged objects
	// A command stopped by a signal exits 128 + the signal's number, as
	// shells report it: 130 for SIGINT (Ctrl-C), 143 for SIGTERM. serve
	// and worker, which run until stopped, exit 0 when a signal stops them
	// (and as usual if they fail).
	exitSignal = 128
)

// untilStopped are the commands a signal is the normal way to stop.
var untilStopped = map[string]bool{"serve": true, "worker": true}

// exitStatus is the exit code of command cmd (its name) that returned err,
// sig being the signal that stopped it (nil if none came). It is the only
// place exit codes are decided: main exits with it.
func exitStatus(cmd string, err error, sig os.Signal) int {
	if sig == nil {
		return exitCode(err)
	}
	if untilStopped[cmd] {
		if errors.Is(err, context.Canceled) {
			return exitOK // stopped as asked
		}
		return exitCode(err) // a failure while stopping is one still
	}
	if err == nil {
		return exitOK // done before the signal stopped anything
	}
	if s, ok := sig.(syscall.Signal); ok {
		return exitSignal + int(s)
	}
	return exitSignal + int(syscall.SIGINT)
}

// The errors verbs return to say which exit code they mean. A verb (runX)
// returns one of these, an error of the client or the network, or any other
// error; exitCode alone turns them into codes:
//
//	usageError, farm.ErrInsecure, farm.ErrName  2  the command line
//	jobFailedError                              3  a job that ended badly
//	rejectedError, *client.Error 4xx (not 408)  5  refused
//	damageError                                 6  vault check
//	listenError                                 1  serve's own address
//	*url.Error, *net.OpError, *net.DNSError     4  the server out of reach
//	anything else                               1
//
// The first that matches in that order decides, so that a usage error that
// wraps a network error is still a usage error.

// usageError marks command-line mistakes.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// rejectedError is a request refused before the server refused it, e.g. a
// worker whose token's role cannot claim frames, or a package validate
// finds the server would refuse.
type rejectedError struct{ error }

func (e rejectedError) Unwrap() error { return e.error }

// jobFailedError reports a job that ended with failed or canceled frames.
type jobFailedError struct{ msg string }

func (e jobFailedError) Error() string { return e.msg }

// damageError reports that vault check found damaged objects.
type damageError struct{ n int }

func (e damageError) Error() string { return fmt.Sprintf("%d damaged objects or pack regions", e.n) }

// listenError is serve failing to listen on an address it was given.
type listenError struct{ error }

func (e listenError) Unwrap() error { return e.error }

// exitCode is the exit code of a command that returned err, no signal
// having stopped it.
func exitCode(err error) int {
	var ue usageError
	var re rejectedError
	var jf jobFailedError
	var de damageError
	var ce *client.Error
	var le listenError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue), errors.Is(err, farm.ErrInsecure), errors.Is(err, farm.ErrName):
		return exitUsage // farm's two: serve's flags decide
	case errors.As(err, &jf):
		return exitJobFailed
	case errors.As(err, &re):
		return exitRejected
	case errors.As(err, &de):
		return exitDamaged
	case errors.As(err, &ce) && ce.Status >= 400 && ce.Status < 500 && ce.Status != http.StatusRequestTimeout:
		return exitRejected
	case errors.As(err, &le):
		return exitError // serve's own address, not a server out of reach
	case unreachable(err):
		return exitUnreachable
	}
	return exitError
}

// unreachable reports whether err is the failure of a request to reach a
// server: a *url.Error (how the HTTP client reports a request it could not
// complete) or a network operation's error. A local file's error is not,
// although syscall.Errno, which it wraps, satisfies net.Error.
func unreachable(err error) bool {
	var ue *url.Error
	var oe *net.OpError
	var de *net.DNSError
	return errors.As(err, &ue) || errors.As(err, &oe) || errors.As(err, &de)
}

// explain says what to do about errors whose remedy the server's or the
// library's words do not name: a token refused, a certificate not trusted.
func explain(err error) error {
	var ce *client.Error
	var he x509.HostnameError
	var cv *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ce) && ce.Status == http.StatusUnauthorized:
		return fmt.Errorf("server refused the token: %w (distren token create makes one on the server; pass it with --token-file, --token or $DISTREN_TOKEN)", err)
	case errors.As(err, &ce) && ce.Status == http.StatusForbidden:
		return fmt.Errorf("server refused the token: %w", err)
	case errors.As(err, &he):
		return fmt.Errorf("%w (the server's certificate does not name the host of --server: use a URL with a name the certificate holds)", err)
	case errors.As(err, &cv):
		return fmt.Errorf("%w (the server's certificate is not trusted here: pass the CA that signed it, or the certificate itself, with --ca-cert or $DISTREN_CA_CERT)", err)
	}
	return err
}
