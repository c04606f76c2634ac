package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/distren/distren/internal/farm"
	"github.com/distren/distren/internal/server"
)

type serveOptions struct {
	data, listen, name string
	workers            int
	leaseTTL           time.Duration
	maxPackage         int64
	maxFrames          int64
	maxManifest        int64
	compress           bool
	gcInterval         time.Duration
	gcGrace            time.Duration
	retention          time.Duration
	maxOpen            int
	vault              vaultFlags
	policy             commandPolicy
}

// vaultFlags are the options that say how the vault's objects are stored:
// serve and vault check take them alike.
type vaultFlags struct {
	encryptKey     string
	encode, decode string
	stall          time.Duration
}

func (v *vaultFlags) add(f *pflag.FlagSet) {
	f.StringVar(&v.encryptKey, "encrypt-key", "", "encrypt stored objects with AES-256-GCM under the key in this file (32 bytes, raw or hex, mode 0600; distren vault key FILE makes one)")
	f.StringVar(&v.encode, "filter-encode", "", "pass stored objects through this program (\"PROGRAM ARGS...\"; protocol in docs/cli.md)")
	f.StringVar(&v.decode, "filter-decode", "", "the program that undoes --filter-encode")
	f.DurationVar(&v.stall, "storage-stall", 300*time.Second, "abort and retry a storage operation that makes no progress for this long")
}

// apply sets the vault's storage options in cfg.
func (v vaultFlags) apply(cfg *farm.Config) error {
	if (v.encode == "") != (v.decode == "") {
		return usageError{fmt.Errorf("--filter-encode and --filter-decode go together")}
	}
	cfg.EncryptKey, cfg.StorageStall = v.encryptKey, v.stall
	cfg.FilterEncode, cfg.FilterDecode = strings.Fields(v.encode), strings.Fields(v.decode)
	return nil
}

func newServeCommand() *cobra.Command {
	var o serveOptions
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run a server: accept jobs, schedule frames, run local worker slots",
		Long: `Run a distren server. It keeps its state in --data (SQLite in WAL mode and a
content-addressed vault); it can be killed at any moment and restarts where it stood.
--workers N runs N local worker slots (default: the number of cores; 0 for none).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return runServe(c.Context(), o) },
	}
	f := c.Flags()
	f.StringVar(&o.data, "data", "distren-data", "data directory")
	f.StringVar(&o.listen, "listen", "127.0.0.1:7878", "address to listen on")
	f.StringVar(&o.name, "name", "local", "server name ([a-z0-9][a-z0-9-]*), constant for the server's life")
	f.IntVar(&o.workers, "workers", defaultSlots(), "local worker slots (0: none)")
	f.DurationVar(&o.leaseTTL, "lease", 30*time.Second, "frame lease length; workers heartbeat at a third of it")
	f.Int64Var(&o.maxPackage, "max-package-bytes", 8<<30, "largest job package accepted (uncompressed bytes)")
	f.Int64Var(&o.maxFrames, "max-frames", 1_000_000, "most frames in one job")
	f.Int64Var(&o.maxManifest, "max-manifest-bytes", 16<<20, "largest distrenjob.xml accepted")
	f.DurationVar(&o.gcInterval, "gc-interval", time.Hour, "how often garbage is collected (0: never by itself; distren gc runs it)")
	f.DurationVar(&o.gcGrace, "gc-grace", time.Hour, "unreferenced objects written or asked about this recently are kept (uploads in progress)")
	f.DurationVar(&o.retention, "retention", 0, "delete finished jobs submitted longer ago than this (0: keep them)")
	f.IntVar(&o.maxOpen, "max-open-objects", 256, "objects held open for readers at once (each at most 4 MiB); readers of one object share it, more readers wait")
	f.BoolVar(&o.compress, "compress", true, "store objects compressed with zstd where that saves space (objects stored either way stay readable)")
	o.vault.add(f)
	o.policy.add(f)
	return c
}

func runServe(ctx context.Context, o serveOptions) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if o.workers < 0 {
		return usageError{fmt.Errorf("--workers %d: must be 0 or more", o.workers)}
	}
	cfg := farm.Config{Data: o.data, Listen: o.listen, Name: o.name, Workers: o.workers,
		LeaseTTL: o.leaseTTL, Log: log, NoCompress: !o.compress, MaxOpenObjects: o.maxOpen,
		GCInterval: gcInterval(o.gcInterval), GC: server.GC{Grace: o.gcGrace, Retention: o.retention},
		Limits: server.Limits{MaxPackageBytes: o.maxPackage, MaxFrames: o.maxFrames, MaxManifestBytes: o.maxManifest}}
	if err := o.vault.apply(&cfg); err != nil {
		return err
	}
	slots, err := o.policy.registry()
	if err != nil {
		return err
	}
	cfg.SlotBackends = slots
	return farm.Run(ctx, cfg)
}

// gcInterval maps the flag (0: never) to farm.Config (negative: never).
func gcInterval(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
