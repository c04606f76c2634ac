package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newCancelCommand() *cobra.Command {
	var server string
	c := &cobra.Command{
		Use:   "cancel JOB",
		Short: "Cancel a job: withdraw its queued frames and stop its running ones",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, id, err := jobClient(c.Context(), server, args[0])
			if err != nil {
				return err
			}
			ch, err := cl.Cancel(c.Context(), id)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "job %d canceled: %s stopped\n", id, plural(ch.Frames, "frame"))
			return nil
		},
	}
	serverFlag(c, &server)
	return c
}
