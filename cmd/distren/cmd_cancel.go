package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

type cancelOptions struct {
	connOptions
	output
	json bool
}

func newCancelCommand() *cobra.Command {
	var o cancelOptions
	c := &cobra.Command{
		Use:   "cancel JOB",
		Short: "Cancel a job: withdraw its queued frames and stop its running ones",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runCancel(c.Context(), o, args)
		},
	}
	o.connOptions.addFlags(c)
	c.Flags().BoolVar(&o.json, "json", false, `print the server's answer as JSON ({"frames": N}, the frames stopped)`)
	return c
}

func runCancel(ctx context.Context, o cancelOptions, args []string) error {
	cl, id, err := o.jobClient(ctx, args[0])
	if err != nil {
		return err
	}
	ch, err := cl.Cancel(ctx, id)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(o.stdout, ch)
	}
	fmt.Fprintf(o.stdout, "job %d canceled: %s stopped\n", id, plural(ch.Frames, "frame"))
	return nil
}
