// Package opstest assembles the farm's operations for tests: a session on a
// real SQLite store, a vault and an upload directory in a temporary
// directory removed with the test, and the tarballs tests submit.
package opstest

import (
	"archive/tar"
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/distren/distren/internal/backend"
	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/store"
	"github.com/distren/distren/internal/vault"
)

// Parts are what tests assemble the operations (and a server) from: a session on
// a real SQLite store (one-hour leases), a vault and an upload directory,
// all in a temporary directory removed with the test.
type Parts struct {
	Session *session.Session
	Vault   *vault.Vault
	Tmp     string // upload directory (Config.TmpDir)
}

// NewParts opens the parts of a test farm named name; vopt configures
// its vault, with NoSync set.
func NewParts(tb testing.TB, name string, vopt vault.Options) Parts {
	tb.Helper()
	dir := tb.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, "state.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	reg := backend.Default()
	sess, err := session.Open(context.Background(), st, session.Options{Name: name, LeaseTTL: time.Hour,
		Chunks: func(name string) bool { b, ok := reg[name]; return ok && b.Chunks() }})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(sess.Close)
	vopt.NoSync = true
	v, err := vault.Open(filepath.Join(dir, "vault"), vopt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { v.Close() })
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		tb.Fatal(err)
	}
	return Parts{Session: sess, Vault: v, Tmp: tmp}
}

// Ops returns the operations of the parts, configured by cfg: its session,
// vault, backends and upload directory default to the parts', its log to
// none.
func (p Parts) Ops(cfg ops.Config) *ops.Farm {
	if cfg.Session == nil {
		cfg.Session = p.Session
	}
	if cfg.Vault == nil {
		cfg.Vault = p.Vault
	}
	if cfg.Backends == nil {
		cfg.Backends = backend.Default()
	}
	if cfg.TmpDir == "" {
		cfg.TmpDir = p.Tmp
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return ops.New(cfg)
}

// TarOf returns a tarball of regular files (name → content), in name order.
func TarOf(tb testing.TB, files map[string]string) []byte {
	tb.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg}); err != nil {
			tb.Fatal(err)
		}
		tw.Write([]byte(files[name]))
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}
