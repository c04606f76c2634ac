package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/server"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print distren's version",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			fmt.Fprintln(c.OutOrStdout(), "distren", server.Version)
			return nil
		},
	}
}
