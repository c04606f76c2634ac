package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
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
	exitRejected    = 5 // the server refused the request (invalid package, unknown job or frame, the token)
	exitDamaged     = 6 // vault check found damaged objects
)

// usageError marks command-line mistakes.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// rejectedError is a request refused before the server refused it, e.g. a
// worker whose token's role cannot claim frames.
type rejectedError struct{ error }

func (e rejectedError) Unwrap() error { return e.error }

// jobFailedError reports a job that ended with failed or canceled frames.
type jobFailedError struct{ msg string }

func (e jobFailedError) Error() string { return e.msg }

func exitCode(err error) int {
	var ue usageError
	var re rejectedError
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
	case errors.As(err, &re):
		return exitRejected
	case errors.As(err, &de):
		return exitDamaged
	case errors.As(err, &ce) && ce.Status >= 400 && ce.Status < 500 && ce.Status != http.StatusRequestTimeout:
		return exitRejected
	case errors.As(err, &oe), errors.As(err, &ne):
		return exitUnreachable
	}
	return exitError
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
