package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/dirlock"
	"github.com/distren/distren/internal/farm"
	"github.com/distren/distren/internal/vault"
)

type vaultCheckOptions struct {
	output
	data  string
	vault vaultFlags
	json  bool
}

type vaultKeyOptions struct {
	output
}

func newVaultCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "vault",
		Short: "Inspect a server's stored objects",
	}
	var co vaultCheckOptions
	check := &cobra.Command{
		Use:   "check --data DIR",
		Short: "Verify every object of a server's data directory (the server must be stopped); exit 6 if any is damaged",
		Long: `Verify every object of a stopped server's vault: each object's header and checksum,
its filters undone, its content hashing to its name; that every chunk of a large object is
there; that every pack record is whole. Damaged objects are named, one per line, and the
command exits with status 6. Give it the server's --encrypt-key and --filter-* options.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			co.output = outputOf(c)
			return runVaultCheck(c.Context(), co, args)
		},
	}
	check.Flags().StringVar(&co.data, "data", "", "the server's data directory")
	check.MarkFlagRequired("data")
	co.vault.add(check.Flags())
	check.Flags().BoolVar(&co.json, "json", false, `print the result as JSON: {"objects", "bytes", "damaged", "damages": [{"object", "where", "msg"}]}, still exiting 6 if anything is damaged`)
	check.Flags().MarkHidden("storage-stall")
	c.AddCommand(check)
	c.AddCommand(&cobra.Command{
		Use:   "key FILE",
		Short: "Write a new random AES-256 key for serve --encrypt-key to FILE (mode 0600; never overwritten)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runVaultKey(c.Context(), vaultKeyOptions{outputOf(c)}, args)
		},
	})
	return c
}

// runVaultKey writes a fresh key, in hex, to a new file only its owner
// reads.
func runVaultKey(_ context.Context, o vaultKeyOptions, args []string) error {
	path := args[0]
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
	fmt.Fprintf(o.stdout, "wrote a new AES-256 key to %s: keep a copy elsewhere — without it the vault's objects cannot be read\n", path)
	return nil
}

// vaultChecked is vault check --json's output.
type vaultChecked struct {
	Objects int            `json:"objects"` // objects checked
	Bytes   int64          `json:"bytes"`   // their stored bytes
	Damaged int            `json:"damaged"` // problems found
	Damages []vaultDamaged `json:"damages"`
}

// vaultDamaged is one problem vault check found.
type vaultDamaged struct {
	Object string `json:"object,omitempty"` // the object's name, if known
	Where  string `json:"where"`            // its file, and offset in a pack
	Msg    string `json:"msg"`
}

func runVaultCheck(ctx context.Context, o vaultCheckOptions, _ []string) error {
	data, vf, out := o.data, o.vault, o.stdout
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
	res := vaultChecked{Damages: []vaultDamaged{}}
	sum, err := v.Check(ctx, func(d vault.Damage) {
		if o.json {
			res.Damages = append(res.Damages, vaultDamaged{d.Object, d.Where, d.Msg})
		} else {
			fmt.Fprintln(out, "DAMAGED", d)
		}
	})
	if err != nil {
		return err
	}
	if o.json {
		res.Objects, res.Bytes, res.Damaged = sum.Objects, sum.Bytes, sum.Damaged
		if err := writeJSON(out, res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "checked %d objects (%s): %d damaged\n", sum.Objects, humanize.IBytes(uint64(sum.Bytes)), sum.Damaged)
	}
	if sum.Damaged > 0 {
		return damageError{sum.Damaged}
	}
	return nil
}
