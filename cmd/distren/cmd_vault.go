package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/dirlock"
	"github.com/distren/distren/internal/farm"
	"github.com/distren/distren/internal/vault"
)

// damageError reports that vault check found damaged objects.
type damageError struct{ n int }

func (e damageError) Error() string { return fmt.Sprintf("%d damaged objects or pack regions", e.n) }

func newVaultCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "vault",
		Short: "Inspect a server's stored objects",
	}
	var data string
	var vf vaultFlags
	check := &cobra.Command{
		Use:   "check --data DIR",
		Short: "Verify every object of a server's data directory (the server must be stopped); exit 6 if any is damaged",
		Long: `Verify every object of a stopped server's vault: each object's header and checksum,
its filters undone, its content hashing to its name; that every chunk of a large object is
there; that every pack record is whole. Damaged objects are named, one per line, and the
command exits with status 6. Give it the server's --encrypt-key and --filter-* options.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runVaultCheck(c.Context(), data, vf, c.OutOrStdout())
		},
	}
	check.Flags().StringVar(&data, "data", "", "the server's data directory")
	check.MarkFlagRequired("data")
	vf.add(check.Flags())
	check.Flags().MarkHidden("storage-stall")
	c.AddCommand(check)
	c.AddCommand(&cobra.Command{
		Use:   "key FILE",
		Short: "Write a new random AES-256 key for serve --encrypt-key to FILE (mode 0600; never overwritten)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return writeKey(args[0], c.OutOrStdout())
		},
	})
	return c
}

// writeKey writes a fresh key, in hex, to a new file only its owner reads.
func writeKey(path string, out io.Writer) error {
	k := make([]byte, 32)
	rand.Read(k)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("vault key: %w", err)
	}
	_, err = fmt.Fprintln(f, hex.EncodeToString(k))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("vault key: %w", err)
	}
	fmt.Fprintf(out, "wrote a new AES-256 key to %s: keep a copy elsewhere — without it the vault's objects cannot be read\n", path)
	return nil
}

func runVaultCheck(ctx context.Context, data string, vf vaultFlags, out io.Writer) error {
	unlock, err := dirlock.Lock(data, "data directory")
	if err != nil {
		return fmt.Errorf("%w (stop the server first: vault check reads the data directory alone)", err)
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(data, "vault")); err != nil {
		return fmt.Errorf("vault check: %s holds no vault: %w", data, err)
	}
	var cfg farm.Config
	if err := vf.apply(&cfg); err != nil {
		return err
	}
	v, err := vault.Open(filepath.Join(data, "vault"), cfg.VaultOptions())
	if err != nil {
		return err
	}
	defer v.Close()
	sum, err := v.Check(ctx, func(d vault.Damage) { fmt.Fprintln(out, "DAMAGED", d) })
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "checked %d objects (%s): %d damaged\n", sum.Objects, humanize.IBytes(uint64(sum.Bytes)), sum.Damaged)
	if sum.Damaged > 0 {
		return damageError{sum.Damaged}
	}
	return nil
}
