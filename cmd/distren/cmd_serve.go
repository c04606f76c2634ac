package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/distren/distren/internal/farm"
	"github.com/distren/distren/internal/ops"
)

type serveOptions struct {
	output
	data, listen, name string
	workers            int
	leaseTTL           time.Duration
	maxPackage         int64
	maxFrames          int64
	maxFramesHeld      int64
	maxManifest        int64
	maxFiles           int
	maxOutput          int64
	compress           bool
	gcInterval         time.Duration
	gcGrace            time.Duration
	retention          time.Duration
	maxOpen            int
	vault              vaultFlags
	policy             commandPolicy
	debugAddr          string
	security           securityFlags
	peers              peerFlags
	logs               logFlags
	notify             []string
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
--workers N runs N local worker slots (default: the number of cores; 0 for none).

Authentication is on while DATA/auth.db holds a token (distren token create), or
with --auth; then every request but GET /v1/server needs one. Without it, serve
listens on loopback only, unless --insecure. --tls-cert and --tls-key serve
HTTPS. Behind a reverse proxy that terminates TLS, listen on 127.0.0.1 and let
the proxy pass long requests through unbuffered: docs/security.md has an
example.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runServe(c.Context(), o, args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.data, "data", "distren-data", "data directory")
	f.StringVar(&o.listen, "listen", "127.0.0.1:7878", "address to listen on")
	f.StringVar(&o.name, "name", "", "server name ([a-z0-9][a-z0-9-]*), recorded in --data at the first start and the same ever after (default: the name recorded; at the first start, the host name and a random suffix)")
	f.IntVar(&o.workers, "workers", defaultSlots(), "local worker slots (0: none)")
	f.DurationVar(&o.leaseTTL, "lease", 30*time.Second, "frame lease length; workers heartbeat at a third of it")
	f.Int64Var(&o.maxPackage, "max-package-bytes", 8<<30, "largest job package accepted (uncompressed bytes)")
	f.Int64Var(&o.maxFrames, "max-frames", 1_000_000, "most frames in one job")
	f.Int64Var(&o.maxFramesHeld, "max-frames-held", ops.DefaultMaxFramesHeld, "most frames of all jobs held at once (each costs memory until its job is deleted); a job that would pass it is refused")
	f.Int64Var(&o.maxManifest, "max-manifest-bytes", 16<<20, "largest distrenjob.xml accepted")
	f.IntVar(&o.maxFiles, "max-package-files", 100_000, "most files (tar entries, directories included) in one job package")
	f.Int64Var(&o.maxOutput, "max-output-bytes", 4<<30, "largest output tarball of one frame accepted from a worker")
	f.DurationVar(&o.gcInterval, "gc-interval", time.Hour, "how often garbage is collected (0: never by itself; distren gc runs it)")
	f.DurationVar(&o.gcGrace, "gc-grace", time.Hour, "unreferenced objects written or asked about this recently are kept (uploads in progress)")
	f.DurationVar(&o.retention, "retention", 0, "delete finished jobs submitted longer ago than this (0: keep them)")
	f.IntVar(&o.maxOpen, "max-open-objects", 256, "objects held open for readers at once (each at most 4 MiB); readers of one object share it, more readers wait")
	f.BoolVar(&o.compress, "compress", true, "store objects compressed with zstd where that saves space (objects stored either way stay readable)")
	o.vault.add(f)
	o.policy.add(f)
	o.security.add(f)
	o.peers.add(f)
	o.logs.add(f)
	f.StringArrayVar(&o.notify, "notify", nil, "POST a JSON notification to this URL when a job ends (done, failed, canceled) or passes its deadline unfinished (repeatable; docs/metrics.md)")
	f.StringVar(&o.debugAddr, "debug-addr", "", "serve net/http/pprof (/debug/pprof/) on this loopback address, e.g. 127.0.0.1:6060; no authentication")
	return c
}

func runServe(ctx context.Context, o serveOptions, _ []string) error {
	log, err := o.logs.logger(o.stderr)
	if err != nil {
		return err
	}
	if o.workers < 0 {
		return usageError{fmt.Errorf("--workers %d: must be 0 or more", o.workers)}
	}
	if abs, err := filepath.Abs(o.data); err == nil { // paths given to renderers must not depend on their working directory
		o.data = abs
	}
	cfg := farm.Config{Data: o.data, Listen: o.listen, Name: o.name, Workers: o.workers,
		LeaseTTL: o.leaseTTL, Log: log, NoCompress: !o.compress, MaxOpenObjects: o.maxOpen,
		GCInterval: gcInterval(o.gcInterval), GC: ops.GC{Grace: o.gcGrace, Retention: o.retention},
		Limits: ops.Limits{MaxPackageBytes: o.maxPackage, MaxFrames: o.maxFrames, MaxFramesHeld: o.maxFramesHeld, MaxManifestBytes: o.maxManifest,
			MaxPackageFiles: o.maxFiles, MaxOutputBytes: o.maxOutput}}
	if err := o.checkLimits(); err != nil {
		return err
	}
	if err := o.vault.apply(&cfg); err != nil {
		return err
	}
	slots, err := o.policy.registry()
	if err != nil {
		return err
	}
	cfg.SlotBackends = slots
	cfg.DebugAddr = o.debugAddr
	if err := o.security.apply(&cfg); err != nil {
		return err
	}
	if err := o.peers.apply(&cfg); err != nil {
		return err
	}
	for _, u := range o.notify {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return usageError{fmt.Errorf("--notify %q: expected an http:// or https:// URL", u)}
		}
	}
	cfg.Notify = o.notify
	return o.listenFailure(farm.Run(ctx, cfg)) // farm.ErrInsecure and ErrName are usage errors (exit.go)
}

// listenFailure says what to do when serve cannot listen on an address it
// was given (--listen, or --debug-addr): a port another program holds, an
// address that is not this machine's, or one that is not an address.
func (o serveOptions) listenFailure(err error) error {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "listen" {
		return err
	}
	flag, addr := "--listen", o.listen
	if oe.Addr != nil && o.debugAddr != "" && port(oe.Addr.String()) == port(o.debugAddr) && port(o.debugAddr) != port(o.listen) {
		flag, addr = "--debug-addr", o.debugAddr
	}
	var ae *net.AddrError
	var de *net.DNSError
	switch {
	case errors.As(err, &ae), errors.As(err, &de) && de.IsNotFound:
		return usageError{fmt.Errorf("%s %s: %w", flag, addr, oe)}
	case errors.Is(err, syscall.EADDRINUSE):
		return listenError{fmt.Errorf("port %s is in use: %w; pick another with %s (port 0 picks a free one)", port(addr), oe, flag)}
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return listenError{fmt.Errorf("%s %s: %w (not an address of this machine)", flag, addr, oe)}
	}
	return listenError{fmt.Errorf("%s %s: %w", flag, addr, oe)}
}

// port returns the port of a host:port address ("" if it has none).
func port(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return p
}

// gcInterval maps the flag (0: never) to farm.Config (negative: never).
func gcInterval(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// checkLimits refuses limits that are not positive: 0 would otherwise mean
// the default, silently.
func (o serveOptions) checkLimits() error {
	for _, l := range []struct {
		flag string
		v    int64
	}{
		{"--max-package-bytes", o.maxPackage}, {"--max-package-files", int64(o.maxFiles)}, {"--max-frames", o.maxFrames}, {"--max-frames-held", o.maxFramesHeld},
		{"--max-manifest-bytes", o.maxManifest}, {"--max-output-bytes", o.maxOutput},
	} {
		if l.v <= 0 {
			return usageError{fmt.Errorf("%s %d: must be 1 or more", l.flag, l.v)}
		}
	}
	return nil
}

// securityFlags say who may talk to the server, and how (docs/security.md).
type securityFlags struct {
	auth, insecure  bool
	tlsCert, tlsKey string
}

func (o *securityFlags) add(f *pflag.FlagSet) {
	f.BoolVar(&o.auth, "auth", false, "require a token even while DATA/auth.db holds none (then only the local slots can call the API until one is created)")
	f.BoolVar(&o.insecure, "insecure", false, "serve without authentication on an address other than loopback (anyone who reaches it may submit jobs)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (chain); needs --tls-key")
	f.StringVar(&o.tlsKey, "tls-key", "", "the PEM private key of --tls-cert")
}

func (o securityFlags) apply(cfg *farm.Config) error {
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return usageError{errors.New("--tls-cert and --tls-key go together")}
	}
	if o.auth && o.insecure {
		return usageError{errors.New("--auth and --insecure contradict each other")}
	}
	cfg.Auth, cfg.RequireAuth, cfg.Insecure = true, o.auth, o.insecure
	cfg.TLSCert, cfg.TLSKey = o.tlsCert, o.tlsKey
	return nil
}
