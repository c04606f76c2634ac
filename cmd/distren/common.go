package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/durl"
	"github.com/distren/distren/internal/termsafe"
)

// defaultServer is the server URL when neither --server nor DISTREN_SERVER says.
const defaultServer = "http://127.0.0.1:7878"

// connOptions say how a verb reaches its server: --server (default
// $DISTREN_SERVER) and how to talk to it (connFlags). Every verb that
// talks to a server embeds them in its options and makes its client from
// them: nothing about a connection lives at package level.
type connOptions struct {
	server string
	connFlags
}

// addFlags adds --server, --token, --token-file and --ca-cert to c.
func (o *connOptions) addFlags(c *cobra.Command) {
	def := os.Getenv("DISTREN_SERVER")
	if def == "" {
		def = defaultServer
	}
	f := c.Flags()
	f.StringVar(&o.server, "server", def, "server URL (default from $DISTREN_SERVER)")
	f.StringVar(&o.token, "token", "", "API token, for a server that requires one (default $DISTREN_TOKEN; other users can see a command line: prefer --token-file or the environment)")
	f.StringVar(&o.tokenFile, "token-file", "", "read the API token from this file")
	f.StringVar(&o.caCert, "ca-cert", os.Getenv("DISTREN_CA_CERT"), "PEM file of the CA an https:// server's certificate must chain to, e.g. a private CA or a self-signed certificate (default $DISTREN_CA_CERT; else the system's roots)")
}

// connFlags are the token a verb presents and the CA it trusts.
type connFlags struct {
	token, tokenFile, caCert string
}

// options returns the client options the flags (and environment) ask for.
func (f connFlags) options() ([]client.Option, error) {
	var opts []client.Option
	token := f.token
	switch {
	case f.token != "" && f.tokenFile != "":
		return nil, errors.New("--token and --token-file: give one of them")
	case f.tokenFile != "":
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, fmt.Errorf("--token-file %s is empty", f.tokenFile)
		}
	case token == "":
		token = strings.TrimSpace(os.Getenv("DISTREN_TOKEN"))
	}
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	if f.caCert != "" {
		cfg, err := trustCA("--ca-cert", f.caCert)
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.WithTLS(cfg))
	}
	return opts, nil
}

// trustCA returns a TLS configuration that trusts the CA of a PEM file,
// the value of flag.
func trustCA(flag, file string) (*tls.Config, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", flag, file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// client returns a client for the server, with the token and CA the flags
// name. Flags it cannot use are a usageError.
func (o connOptions) client() (*client.Client, error) {
	opts, err := o.options()
	if err != nil {
		return nil, usageError{err}
	}
	c, err := client.New(o.server, opts...)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// jobClient resolves a job reference (number or distren:// URL) against the
// server. A URL must name that server.
func (o connOptions) jobClient(ctx context.Context, ref string) (*client.Client, int64, error) {
	server, id, err := durl.ParseJobRef(ref)
	if err != nil {
		return nil, 0, usageError{err}
	}
	c, err := o.client()
	if err != nil {
		return nil, 0, err
	}
	if server != "" {
		s, err := c.Server(ctx)
		if err != nil {
			return nil, 0, err
		}
		if s.Name != server {
			return nil, 0, usageError{fmt.Errorf("%s names server %q, but %s is server %q: pass --server with %q's URL",
				ref, server, o.server, s.Name, server)}
		}
	}
	return c, id, nil
}

// output is where a verb writes: what it reports on stdout; notes,
// progress bars and the lines saying what was sent or written on stderr.
type output struct {
	stdout, stderr io.Writer
}

// outputOf returns the command's streams (os.Stdout and os.Stderr unless a
// test set others).
func outputOf(c *cobra.Command) output { return output{c.OutOrStdout(), c.ErrOrStderr()} }

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

func defaultSlots() int { return runtime.NumCPU() }

func plural(n int, s string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, s)
	}
	return fmt.Sprintf("%d %ss", n, strings.TrimSuffix(s, "s"))
}

// writeJSON writes v as one line of JSON, with the characters a terminal
// would act on that encoding/json leaves raw escaped (termsafe.JSON).
func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(termsafe.JSON(b), '\n'))
	return err
}

// logFlags are how serve and worker log: --log-format and --log-level.
type logFlags struct {
	format, level string
}

func (l *logFlags) add(f *pflag.FlagSet) {
	f.StringVar(&l.format, "log-format", "text", "log lines as text (key=value) or json (one object per line)")
	f.StringVar(&l.level, "log-level", "info", "least severe level logged: debug, info, warn or error")
}

// logger returns the logger the flags ask for, writing to w.
func (l logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", l.level)}
	}
	o := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: want text or json", l.format)}
}
