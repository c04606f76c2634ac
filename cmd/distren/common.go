package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/durl"
)

// defaultServer is the server URL when neither --server nor DISTREN_SERVER says.
const defaultServer = "http://127.0.0.1:7878"

// serverFlag adds --server, defaulting to $DISTREN_SERVER.
func serverFlag(c *cobra.Command, dst *string) {
	def := os.Getenv("DISTREN_SERVER")
	if def == "" {
		def = defaultServer
	}
	c.Flags().StringVar(dst, "server", def, "server URL (default from $DISTREN_SERVER)")
}

// jobClient resolves a job reference (number or distren:// URL) against the
// server at base. A URL must name that server.
func jobClient(ctx context.Context, base, ref string) (*client.Client, int64, error) {
	server, id, err := durl.ParseJobRef(ref)
	if err != nil {
		return nil, 0, usageError{err}
	}
	c, err := client.New(base)
	if err != nil {
		return nil, 0, usageError{err}
	}
	if server != "" {
		s, err := c.Server(ctx)
		if err != nil {
			return nil, 0, err
		}
		if s.Name != server {
			return nil, 0, usageError{fmt.Errorf("%s names server %q, but %s is server %q: pass --server with %q's URL",
				ref, server, base, s.Name, server)}
		}
	}
	return c, id, nil
}

func isTerminal(f *os.File) bool { return isatty.IsTerminal(f.Fd()) }

func defaultSlots() int { return runtime.NumCPU() }

func plural(n int, s string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, s)
	}
	return fmt.Sprintf("%d %ss", n, strings.TrimSuffix(s, "s"))
}
