package main

import (
	"fmt"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
)

func newDeleteCommand() *cobra.Command {
	var server string
	c := &cobra.Command{
		Use:   "delete JOB",
		Short: "Delete a job: stop its frames and make its stored objects collectable (its id is never reused)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, id, err := jobClient(c.Context(), server, args[0])
			if err != nil {
				return err
			}
			if err := cl.Delete(c.Context(), id); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "job %d deleted\n", id)
			return nil
		},
	}
	serverFlag(c, &server)
	return c
}

func newGCCommand() *cobra.Command {
	var server string
	c := &cobra.Command{
		Use:   "gc",
		Short: "Collect garbage on the server now: delete jobs past retention, remove objects no job refers to",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := newClient(server)
			if err != nil {
				return usageError{err}
			}
			r, err := cl.GC(c.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "removed %d objects (%s), kept %d recent unreferenced ones; %d jobs deleted by retention\n",
				r.Objects, humanize.IBytes(uint64(r.Bytes)), r.Kept, r.JobsDeleted)
			return nil
		},
	}
	serverFlag(c, &server)
	return c
}
