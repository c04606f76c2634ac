// Package farm assembles a distren server from its subsystems — vault,
// engine (local worker slots), session with the farm's operations
// (internal/ops), net (the HTTP API) — and runs them under the lifecycle
// runner. The local slots call the operations in process (local.go); remote
// workers reach the same operations through the API. `distren serve` and
// `distren render` both use it.
package farm

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/auth"
	"github.com/distren/distren/internal/backend"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/dirlock"
	"github.com/distren/distren/internal/durl"
	"github.com/distren/distren/internal/federation"
	"github.com/distren/distren/internal/lifecycle"
	"github.com/distren/distren/internal/metrics"
	"github.com/distren/distren/internal/notify"
	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/server"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/store"
	"github.com/distren/distren/internal/vault"
	"github.com/distren/distren/internal/work"
	"github.com/distren/distren/internal/worker"
)

// SmallObjects is the size up to which the server's vault packs objects.
const SmallObjects = 64 << 10

// Config configures a server.
type Config struct {
	Data     string // data directory: state.db, vault/, tmp/, worker/
	Listen   string // address to listen on, e.g. 127.0.0.1:7878 (":0" for any free port)
	Name     string // server name, [a-z0-9][a-z0-9-]*; "" for the one the data directory recorded (name.go)
	Workers  int    // local worker slots (0: none)
	LeaseTTL time.Duration
	Limits   ops.Limits
	// API bounds what one request may do (claim waits, stalled uploads).
	API      server.Limits
	Backends backend.Registry
	// SlotBackends, if set, are what the local slots render with (a command
	// policy applied); Backends still say what jobs may use.
	SlotBackends backend.Registry
	Log          *slog.Logger
	// NoCompress stores objects as they are, not compressed with zstd.
	NoCompress bool
	// EncryptKey, if set, encrypts the vault's objects with AES-256-GCM
	// under the key in this file.
	EncryptKey string
	// FilterEncode and FilterDecode, if set, pass the vault's objects
	// through external programs (the command filter).
	FilterEncode, FilterDecode []string
	// StorageStall aborts and retries a storage operation that makes no
	// progress for this long (default 300 s).
	StorageStall time.Duration
	// MaxOpenObjects bounds the decoded objects the vault holds for readers
	// (default 256).
	MaxOpenObjects int
	// GC configures garbage collection; GCInterval is how often it runs
	// (default 1h; negative: never by itself).
	GC         ops.GC
	GCInterval time.Duration
	// Ready, if set, is called with the server's URL once it serves.
	Ready func(url string)
	// Runner hooks, e.g. to stop the farm from outside: see lifecycle.Runner.On.
	Hooks map[lifecycle.Event][]func()
	// Auth guards the API with the tokens of DATA/auth.db (internal/auth):
	// on while it holds a valid token. RequireAuth turns it on without one
	// (then only the local slots may call the API).
	Auth, RequireAuth bool
	// Insecure lets a server without authentication listen on an address
	// other than loopback; without it, such a server refuses to start
	// (ErrInsecure).
	Insecure bool
	// TLSCert and TLSKey, if set, are PEM files: the API is served over
	// HTTPS with this certificate (its chain) and key.
	TLSCert, TLSKey string
	// Peers are the servers this one lends frames to and borrows frames
	// from (internal/federation, docs/federation.md).
	Peers []Peer
	// Notify are the URLs told when a job ends or misses its deadline
	// (internal/notify).
	Notify []string
	// DebugAddr, if set, is a loopback address (127.0.0.1:PORT, [::1]:PORT;
	// port 0 picks one) on which net/http/pprof's endpoints are served
	// under /debug/pprof/, apart from the API and without authentication.
	DebugAddr string
}

// Peer names a peer server.
type Peer struct {
	Name string // its server name
	URL  string // where it serves, http(s)://host:port
	// Token is the token this server presents to it (a token of role peer
	// created there under this server's name); "" for none, as between
	// servers on loopback without tokens.
	Token string
	// TLS, if set, verifies an https:// peer (a private CA's pool).
	TLS *tls.Config
}

// VaultOptions returns the options of the server's vault.
func (cfg Config) VaultOptions() vault.Options {
	return vault.Options{SmallObjects: SmallObjects, Compress: !cfg.NoCompress, KeyFile: cfg.EncryptKey,
		EncodeCommand: cfg.FilterEncode, DecodeCommand: cfg.FilterDecode, Stall: cfg.StorageStall, MaxOpen: cfg.MaxOpenObjects,
		Grace: cfg.GC.Grace}
}

// ErrInsecure refuses to serve without authentication on an address that
// is not loopback.
var ErrInsecure = errors.New("refusing to serve without authentication on an address other than loopback")

// Run runs the server until ctx ends or a subsystem fails.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Name != "" && !durl.ValidServer(cfg.Name) {
		return fmt.Errorf("server name %q: must match [a-z0-9][a-z0-9-]* (at most 63 characters)", cfg.Name)
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Backends == nil {
		cfg.Backends = backend.Default()
	}
	slotBackends := cfg.SlotBackends
	if slotBackends == nil {
		slotBackends = cfg.Backends
	}
	log := cfg.Log
	tlsCfg, err := loadTLS(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return err
	}
	guard, closeAuth, err := openAuth(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeAuth()
	var (
		unlock func()
		v      *vault.Vault
		st     *store.SQLite
		sess   *session.Session
		ln     net.Listener
		srv    *http.Server
		farm   *ops.Farm
		fed    *federation.Federation
		met    *metrics.Metrics
		url    string
	)
	maxWait := cmp.Or(cfg.API.MaxClaimWait, time.Minute)
	r := &lifecycle.Runner{Session: "session", Log: log}
	for e, hs := range cfg.Hooks {
		for _, h := range hs {
			r.On(e, h)
		}
	}
	r.Add(lifecycle.Subsystem{
		Name: "vault",
		Start: func(ctx context.Context) error {
			if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
				return err
			}
			var err error
			if unlock, err = dirlock.Lock(cfg.Data, "data directory"); err != nil {
				return err
			}
			// Before anything uses the name: recorded at the first start,
			// the same ever after.
			if cfg.Name, err = serverName(ctx, filepath.Join(cfg.Data, "state.db"), cfg.Name, log); err != nil {
				return err
			}
			tmp := filepath.Join(cfg.Data, "tmp")
			if err := os.RemoveAll(tmp); err != nil { // upload leftovers
				return err
			}
			if err := os.MkdirAll(tmp, 0o755); err != nil {
				return err
			}
			v, err = vault.Open(filepath.Join(cfg.Data, "vault"), cfg.VaultOptions())
			return err
		},
		Stop: func(context.Context) error {
			if v != nil {
				v.Close()
			}
			unlock()
			return nil
		},
	})
	if cfg.Workers > 0 {
		var w *worker.Worker
		r.Add(lifecycle.Subsystem{
			Name: "engine",
			Start: func(ctx context.Context) error {
				var err error
				w, err = worker.New(worker.Config{Name: cfg.Name + "-local", Slots: cfg.Workers,
					Dir: filepath.Join(cfg.Data, "worker"), Backends: slotBackends, Log: log.With("worker", "local")})
				if err != nil {
					return err
				}
				if guard != nil { // the slots' name is the server's own: no token may act as them
					return guard.ReserveWorker(ctx, w.Name())
				}
				return nil
			},
			Run: func(ctx context.Context) error {
				// The slots call the farm's operations in process; they
				// run once every subsystem has started.
				w.SetServer(fed.Work())
				if err := w.Run(ctx); err != nil && ctx.Err() == nil {
					return err
				}
				return ctx.Err()
			},
			Stop: func(context.Context) error {
				if w != nil {
					w.Close()
				}
				return nil
			},
		})
	}
	r.Add(lifecycle.Subsystem{
		Name: "session",
		Start: func(ctx context.Context) error {
			var err error
			if st, err = store.OpenSQLite(filepath.Join(cfg.Data, "state.db")); err != nil {
				return err
			}
			var peers []string
			for _, p := range cfg.Peers {
				peers = append(peers, p.Name)
			}
			met = metrics.New(nil) // its gauges read the session, made next with it as its observer
			sess, err = session.Open(ctx, st, session.Options{Name: cfg.Name, LeaseTTL: cfg.LeaseTTL, Peers: peers, Observer: met,
				Chunks: func(name string) bool { b, ok := cfg.Backends[name]; return ok && b.Chunks() }})
			if err != nil {
				return err
			}
			met.SetFarm(gauges{sess: sess, v: v})
			farm = ops.New(ops.Config{Session: sess, Vault: v, Backends: cfg.Backends, TmpDir: filepath.Join(cfg.Data, "tmp"),
				DataDir: cfg.Data, Limits: cfg.Limits, GC: cfg.GC, Log: log})
			fed, err = newFederation(cfg, work.New(farm, maxWait), log)
			return err
		},
		Stop: func(context.Context) error {
			if sess != nil {
				sess.Close()
			}
			return st.Close()
		},
	})
	r.Add(lifecycle.Subsystem{
		Name: "net",
		Start: func(context.Context) error {
			var err error
			if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
				return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
			}
			url = "http://" + ln.Addr().String()
			if tlsCfg != nil {
				url = "https://" + ln.Addr().String()
			}
			h := server.New(server.Config{Farm: farm, Limits: cfg.API, URL: url, Log: log, Auth: guard, Federation: fed, Metrics: met})
			srv = &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
				ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn), TLSConfig: tlsCfg}
			return nil
		},
		Run: func(ctx context.Context) error {
			log.Info("serving", "name", cfg.Name, "url", url, "data", cfg.Data, "local_slots", cfg.Workers)
			if cfg.Ready != nil {
				cfg.Ready(url)
			}
			if every := cmp.Or(cfg.GCInterval, time.Hour); every > 0 {
				go farm.CollectEvery(ctx, every)
			}
			go fed.Run(ctx)
			go notify.Run(ctx, notify.Config{Session: sess, URLs: cfg.Notify, Log: log.With("subsystem", "notify")})
			return server.Serve(ctx, srv, func() error {
				serve := srv.Serve
				if tlsCfg != nil {
					serve = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") } // srv.TLSConfig's certificate
				}
				if err := serve(ln); !errors.Is(err, http.ErrServerClosed) {
					return err
				}
				return nil
			})
		},
		Stop: func(context.Context) error {
			if srv != nil {
				srv.Close()
			}
			return nil
		},
	})
	if cfg.DebugAddr != "" {
		r.Add(debugSubsystem(cfg.DebugAddr, log))
	}
	return r.Run(ctx)
}

// newFederation returns the server's peers, each reached through the API's
// client with this server's token for it and its peer header.
func newFederation(cfg Config, home *work.Local, log *slog.Logger) (*federation.Federation, error) {
	fc := federation.Config{Home: home, Version: server.Version, Log: log.With("subsystem", "federation")}
	fc.Instance = federation.NewInstance()
	for _, p := range cfg.Peers {
		opts := []client.Option{client.WithHeader(api.PeerHeader, home.Name()+" "+fc.Instance)}
		if p.Token != "" {
			opts = append(opts, client.WithToken(p.Token))
		}
		if p.TLS != nil {
			opts = append(opts, client.WithTLS(p.TLS))
		}
		c, err := client.New(p.URL, opts...)
		if err != nil {
			return nil, fmt.Errorf("peer %s: %w", p.Name, err)
		}
		fc.Peers = append(fc.Peers, federation.PeerConfig{Name: p.Name, URL: c.Base(), Peer: c.ForPeer()})
	}
	return federation.New(fc)
}

// debugSubsystem serves net/http/pprof on its own loopback listener, so that
// profiles and goroutine dumps never travel through the API's port.
func debugSubsystem(addr string, log *slog.Logger) lifecycle.Subsystem {
	var ln net.Listener
	return lifecycle.Subsystem{
		Name: "debug",
		Start: func(context.Context) error {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return fmt.Errorf("debug address %q: %w", addr, err)
			}
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				return fmt.Errorf("debug address %q: must be a loopback address such as 127.0.0.1:6060 (the debug endpoints have no authentication)", addr)
			}
			if ln, err = net.Listen("tcp", addr); err != nil {
				return fmt.Errorf("debug listener on %s: %w", addr, err)
			}
			return nil
		},
		Run: func(ctx context.Context) error {
			mux := http.NewServeMux()
			mux.HandleFunc("/debug/pprof/", pprof.Index) // also goroutine, heap, allocs, block, mutex, ...
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second,
				ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
			log.Info("debug endpoints", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
			go func() { <-ctx.Done(); srv.Close() }()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("debug listener: %w", err)
			}
			return nil
		},
		Stop: func(context.Context) error {
			if ln != nil {
				ln.Close()
			}
			return nil
		},
	}
}

// openAuth opens the token store and its guard if cfg asks for them, and
// applies the loopback rule: a server without authentication listens on
// loopback only, unless cfg.Insecure.
func openAuth(ctx context.Context, cfg Config) (guard *auth.Guard, closeStore func(), err error) {
	closeStore = func() {}
	if cfg.Auth || cfg.RequireAuth {
		if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
			return nil, nil, err
		}
		st, err := auth.Open(filepath.Join(cfg.Data, auth.FileName))
		if err != nil {
			return nil, nil, err
		}
		if guard, err = auth.NewGuard(ctx, st, auth.GuardOptions{Required: cfg.RequireAuth, Log: cfg.Log}); err != nil {
			st.Close()
			return nil, nil, err
		}
		closeStore = func() { st.Close() }
	}
	on := guard != nil && guard.Enabled(ctx)
	switch {
	case on:
		cfg.Log.Info("authentication on: requests must carry a token", "tokens", filepath.Join(cfg.Data, auth.FileName))
	case loopback(cfg.Listen):
	case !cfg.Insecure:
		closeStore()
		return nil, nil, fmt.Errorf("%w: %s is reachable from other machines, where anyone could submit jobs "+
			"(and run programs through the command backend). Create a token first (distren token create --name NAME --role client --data %s), "+
			"or pass --auth to require tokens before any exists, or --insecure to serve without authentication anyway",
			ErrInsecure, cfg.Listen, cfg.Data)
	default:
		cfg.Log.Warn("serving WITHOUT authentication on an address other than loopback (--insecure): anyone who can reach it may submit jobs and, through the command backend, run programs",
			"listen", cfg.Listen)
	}
	return guard, closeStore, nil
}

// loopback reports whether a listen address is on the loopback interface
// only: localhost or a loopback IP, never a wildcard or another host name.
func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loadTLS loads the API's certificate and key; nil if neither is set.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s, key %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
