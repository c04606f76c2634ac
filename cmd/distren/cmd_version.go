package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/server"
)

type versionOptions struct {
	output
	json bool
}

func newVersionCommand() *cobra.Command {
	var o versionOptions
	c := &cobra.Command{
		Use:   "version",
		Short: "Print distren's version",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runVersion(c.Context(), o, args)
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, `print {"version": "..."} (the field GET /v1/server names it by)`)
	return c
}

// versionJSON is version --json's output: the version as GET /v1/server's
// answer (api.Server) names it.
type versionJSON struct {
	Version string `json:"version"`
}

func runVersion(_ context.Context, o versionOptions, _ []string) error {
	if o.json {
		return writeJSON(o.stdout, versionJSON{server.Version})
	}
	fmt.Fprintln(o.stdout, "distren", server.Version)
	return nil
}
