package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/manifest"
)

type retryOptions struct {
	connOptions
	output
	frames string
	json   bool
}

func newRetryCommand() *cobra.Command {
	var o retryOptions
	c := &cobra.Command{
		Use:   "retry JOB",
		Short: "Render frames again: the failed ones, or those named by --frames",
		Long: `Retry a job's failed frames (and, for a canceled job, every unfinished frame).
With --frames, retry exactly those frames, rendering done ones again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runRetry(c.Context(), o, args)
		},
	}
	o.connOptions.addFlags(c)
	c.Flags().StringVar(&o.frames, "frames", "", "frames to render again, e.g. 1-10,20")
	c.Flags().BoolVar(&o.json, "json", false, `print the server's answer as JSON ({"frames": N}, the frames queued again)`)
	return c
}

func runRetry(ctx context.Context, o retryOptions, args []string) error {
	if o.frames != "" {
		if _, err := manifest.ParseFrameSet(o.frames); err != nil {
			return usageError{fmt.Errorf("--frames %q: %w", o.frames, err)}
		}
	}
	cl, id, err := o.jobClient(ctx, args[0])
	if err != nil {
		return err
	}
	ch, err := cl.Retry(ctx, id, o.frames)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(o.stdout, ch)
	}
	fmt.Fprintf(o.stdout, "job %d: %s queued again\n", id, plural(ch.Frames, "frame"))
	return nil
}
