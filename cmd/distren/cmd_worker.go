package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/distren/distren/internal/backend"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/worker"
)

type workerOptions struct {
	connOptions
	output
	dir, name       string
	slots, prefetch int
	cacheSize       string
	policy          commandPolicy
	logs            logFlags
}

// commandPolicy is what a worker (or serve's local slots) lets the command
// backend run, and which of its environment variables command frames see.
type commandPolicy struct {
	policy  string
	allow   []string
	passEnv []string
}

func (p *commandPolicy) add(f *pflag.FlagSet) {
	f.StringVar(&p.policy, "command-policy", backend.CommandAny, "what the command backend may run here: any (whoever may submit may run any program), refuse (never claim command frames), allow-list (only --allow-program)")
	f.StringArrayVar(&p.allow, "allow-program", nil, "with --command-policy allow-list: a program command frames may run, as written in <program> or as an absolute path (repeat for more)")
	f.StringArrayVar(&p.passEnv, "pass-env", nil, "an environment variable of this process that command frames see (they get only PATH, LANG, a private HOME and TMPDIR, DISTREN_FRAME and DISTREN_JOB otherwise); repeat for more")
}

// registry returns the backends with the policy applied.
func (p commandPolicy) registry() (backend.Registry, error) {
	r, err := backend.CommandPolicy(backend.Default(), p.policy, p.allow)
	if err != nil {
		return nil, usageError{fmt.Errorf("--command-policy: %w", err)}
	}
	if r, err = backend.CommandEnv(r, p.passEnv); err != nil {
		return nil, usageError{fmt.Errorf("--pass-env: %w", err)}
	}
	return r, nil
}

func newWorkerCommand() *cobra.Command {
	var o workerOptions
	c := &cobra.Command{
		Use:   "worker",
		Short: "Run worker slots that pull frames from a server",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runWorker(c.Context(), o, args)
		},
	}
	o.connOptions.addFlags(c)
	f := c.Flags()
	f.IntVar(&o.slots, "slots", defaultSlots(), "frames rendered at once")
	f.IntVar(&o.prefetch, "prefetch", 0, "frames claimed ahead of free slots; 0 adapts to frame times (slots ahead for long frames, up to 8×slots for millisecond frames), negative claims none ahead")
	f.StringVar(&o.dir, "dir", "", "cache and scratch directory (default: the user cache directory)")
	f.StringVar(&o.name, "name", "", "worker name (default: host-pid-random)")
	o.logs.add(f)
	f.StringVar(&o.cacheSize, "cache-size", "20GiB", "byte limit of the object cache (least recently used objects are evicted, never those a task in hand needs)")
	o.policy.add(f)
	return c
}

func runWorker(ctx context.Context, o workerOptions, _ []string) error {
	if o.slots < 1 {
		return usageError{fmt.Errorf("--slots %d: must be at least 1", o.slots)}
	}
	cacheBytes, err := humanize.ParseBytes(o.cacheSize)
	if err != nil || cacheBytes == 0 {
		return usageError{fmt.Errorf("--cache-size %q: want a size such as 20GiB", o.cacheSize)}
	}
	backends, err := o.policy.registry()
	if err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	if o.dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		o.dir = filepath.Join(base, "distren", "worker")
	}
	log, err := o.logs.logger(o.stderr)
	if err != nil {
		return err
	}
	if err := checkWorkerToken(ctx, c, log); err != nil {
		return err
	}
	w, err := worker.New(worker.Config{Server: c.ForWorker(), Name: o.name, Slots: o.slots, Prefetch: o.prefetch, Dir: o.dir, CacheBytes: int64(cacheBytes), Backends: backends, Log: log})
	if err != nil {
		return err
	}
	defer w.Close()
	log.Info("worker started", "name", w.Name(), "server", o.server, "slots", o.slots, "dir", w.Dir())
	return w.Run(ctx)
}

// checkWorkerToken fails at once if the server refuses the worker's token
// or certificate, or the token's role cannot claim frames: the claim loop
// would retry them forever. A server that does not answer yet is left to
// the claim loop, which waits for it.
func checkWorkerToken(ctx context.Context, c *client.Client, log *slog.Logger) error {
	id, err := c.Whoami(ctx)
	var ce *client.Error
	var cv *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ce) && (ce.Status == 401 || ce.Status == 403), errors.As(err, &cv):
		return err
	case err != nil:
		log.Warn("could not check the token with the server", "server", c.Base(), "err", err)
		return nil
	case id.Auth && id.Role != "worker" && id.Role != "admin":
		return rejectedError{fmt.Errorf("token %q has role %s: a worker needs a token of role worker (distren token create --role worker)", id.Name, id.Role)}
	case id.Auth:
		log.Info("token accepted", "server", c.Base(), "token", id.Name, "role", id.Role)
	}
	return nil
}
