package main

import (
	"context"
	"fmt"
	"io"
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
	check := &cobra.Command{
		Use:   "check --data DIR",
		Short: "Verify every object of a server's data directory (the server must be stopped); exit 6 if any is damaged",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runVaultCheck(c.Context(), data, c.OutOrStdout())
		},
	}
	check.Flags().StringVar(&data, "data", "", "the server's data directory")
	check.MarkFlagRequired("data")
	c.AddCommand(check)
	return c
}

func runVaultCheck(ctx context.Context, data string, out io.Writer) error {
	unlock, err := dirlock.Lock(data, "data directory")
	if err != nil {
		return fmt.Errorf("%w (stop the server first: vault check reads the data directory alone)", err)
	}
	defer unlock()
	v, err := vault.Open(filepath.Join(data, "vault"), vault.Options{SmallObjects: farm.SmallObjects})
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
