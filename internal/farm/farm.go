// Package farm assembles a distren server from its subsystems — vault,
// engine (local worker slots), session, net (the HTTP API) — and runs them
// under the lifecycle runner. `distren serve` and `distren render` both use it.
package farm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/distren/distren/internal/dirlock"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/distren/distren/internal/backend"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/durl"
	"github.com/distren/distren/internal/lifecycle"
	"github.com/distren/distren/internal/server"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/store"
	"github.com/distren/distren/internal/vault"
	"github.com/distren/distren/internal/worker"
)

// SmallObjects is the size up to which the server's vault packs objects.
const SmallObjects = 64 << 10

// Config configures a server.
type Config struct {
	Data     string // data directory: state.db, vault/, tmp/, worker/
	Listen   string // address to listen on, e.g. 127.0.0.1:7878 (":0" for any free port)
	Name     string // server name, [a-z0-9][a-z0-9-]*
	Workers  int    // local worker slots (0: none)
	LeaseTTL time.Duration
	Limits   server.Limits
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
	GC         server.GC
	GCInterval time.Duration
	// Ready, if set, is called with the server's URL once it serves.
	Ready func(url string)
	// Runner hooks, e.g. to stop the farm from outside: see lifecycle.Runner.On.
	Hooks map[lifecycle.Event][]func()
}

// VaultOptions returns the options of the server's vault.
func (cfg Config) VaultOptions() vault.Options {
	return vault.Options{SmallObjects: SmallObjects, Compress: !cfg.NoCompress, KeyFile: cfg.EncryptKey,
		EncodeCommand: cfg.FilterEncode, DecodeCommand: cfg.FilterDecode, Stall: cfg.StorageStall, MaxOpen: cfg.MaxOpenObjects,
		Grace: cfg.GC.Grace}
}

// Run runs the server until ctx ends or a subsystem fails.
func Run(ctx context.Context, cfg Config) error {
	if !durl.ValidServer(cfg.Name) {
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
	var (
		unlock  func()
		v       *vault.Vault
		st      *store.SQLite
		sess    *session.Session
		ln      net.Listener
		srv     *http.Server
		handler *server.Server
		url     string
		urlSet  = make(chan struct{})
		once    sync.Once
	)
	r := &lifecycle.Runner{Session: "session", Log: log}
	for e, hs := range cfg.Hooks {
		for _, h := range hs {
			r.On(e, h)
		}
	}
	r.Add(lifecycle.Subsystem{
		Name: "vault",
		Start: func(context.Context) error {
			if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
				return err
			}
			var err error
			if unlock, err = dirlock.Lock(cfg.Data, "data directory"); err != nil {
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
			Start: func(context.Context) error {
				var err error
				w, err = worker.New(worker.Config{Name: cfg.Name + "-local", Slots: cfg.Workers,
					Dir: filepath.Join(cfg.Data, "worker"), Backends: slotBackends, Log: log.With("worker", "local")})
				return err
			},
			Run: func(ctx context.Context) error {
				select { // the slots talk to the API, which opens after the engine starts
				case <-urlSet:
				case <-ctx.Done():
					return nil
				}
				c, err := client.New(localURL(url))
				if err != nil {
					return err
				}
				w.SetClient(c)
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
			sess, err = session.Open(ctx, st, session.Options{Name: cfg.Name, LeaseTTL: cfg.LeaseTTL,
				Chunks: func(name string) bool { b, ok := cfg.Backends[name]; return ok && b.Chunks() }})
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
			h := server.New(server.Config{Session: sess, Vault: v, Backends: cfg.Backends, TmpDir: filepath.Join(cfg.Data, "tmp"),
				Limits: cfg.Limits, URL: url, Log: log, GC: cfg.GC})
			handler = h
			srv = &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
				ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
			once.Do(func() { close(urlSet) })
			return nil
		},
		Run: func(ctx context.Context) error {
			log.Info("serving", "name", cfg.Name, "url", url, "data", cfg.Data, "local_slots", cfg.Workers)
			if cfg.Ready != nil {
				cfg.Ready(url)
			}
			if every := cmp.Or(cfg.GCInterval, time.Hour); every > 0 {
				go handler.CollectEvery(ctx, every)
			}
			return server.Serve(ctx, srv, func() error {
				if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
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
	return r.Run(ctx)
}

// localURL turns a listen URL on a wildcard address into one that reaches it locally.
func localURL(u string) string {
	for _, w := range []string{"http://0.0.0.0:", "http://[::]:"} {
		if strings.HasPrefix(u, w) {
			return "http://127.0.0.1:" + strings.TrimPrefix(u, w)
		}
	}
	return u
}
