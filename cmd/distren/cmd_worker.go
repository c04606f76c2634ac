package main

import (
	"context"
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
	server, dir, name string
	slots, prefetch   int
	cacheSize         string
	policy            commandPolicy
}

// commandPolicy is what a worker (or serve's local slots) lets the command
// backend run.
type commandPolicy struct {
	policy string
	allow  []string
}

func (p *commandPolicy) add(f *pflag.FlagSet) {
	f.StringVar(&p.policy, "command-policy", backend.CommandAny, "what the command backend may run here: any (whoever may submit may run any program), refuse (never claim command frames), allow-list (only --allow-program)")
	f.StringArrayVar(&p.allow, "allow-program", nil, "with --command-policy allow-list: a program command frames may run, as written in <program> or as an absolute path (repeat for more)")
}

// registry returns the backends with the policy applied.
func (p commandPolicy) registry() (backend.Registry, error) {
	r, err := backend.CommandPolicy(backend.Default(), p.policy, p.allow)
	if err != nil {
		return nil, usageError{fmt.Errorf("--command-policy: %w", err)}
	}
	return r, nil
}

func newWorkerCommand() *cobra.Command {
	var o workerOptions
	c := &cobra.Command{
		Use:   "worker",
		Short: "Run worker slots that pull frames from a server",
		Args:  cobra.NoArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return runWorker(c.Context(), o) },
	}
	serverFlag(c, &o.server)
	f := c.Flags()
	f.IntVar(&o.slots, "slots", defaultSlots(), "frames rendered at once")
	f.IntVar(&o.prefetch, "prefetch", 0, "frames claimed ahead of free slots; 0 adapts to frame times (slots ahead for long frames, up to 8×slots for millisecond frames), negative claims none ahead")
	f.StringVar(&o.dir, "dir", "", "cache and scratch directory (default: the user cache directory)")
	f.StringVar(&o.name, "name", "", "worker name (default: host-pid-random)")
	f.StringVar(&o.cacheSize, "cache-size", "20GiB", "byte limit of the object cache (least recently used objects are evicted, never those a task in hand needs)")
	o.policy.add(f)
	return c
}

func runWorker(ctx context.Context, o workerOptions) error {
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
	c, err := client.New(o.server)
	if err != nil {
		return usageError{err}
	}
	if o.dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		o.dir = filepath.Join(base, "distren", "worker")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	w, err := worker.New(worker.Config{Client: c, Name: o.name, Slots: o.slots, Prefetch: o.prefetch, Dir: o.dir, CacheBytes: int64(cacheBytes), Backends: backends, Log: log})
	if err != nil {
		return err
	}
	defer w.Close()
	log.Info("worker started", "name", w.Name(), "server", o.server, "slots", o.slots, "dir", o.dir)
	return w.Run(ctx)
}
