package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/manifest"
)

func newRetryCommand() *cobra.Command {
	var server, frames string
	c := &cobra.Command{
		Use:   "retry JOB",
		Short: "Render frames again: the failed ones, or those named by --frames",
		Long: `Retry a job's failed frames (and, for a canceled job, every unfinished frame).
With --frames, retry exactly those frames, rendering done ones again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if frames != "" {
				if _, err := manifest.ParseFrameSet(frames); err != nil {
					return usageError{fmt.Errorf("--frames %q: %w", frames, err)}
				}
			}
			cl, id, err := jobClient(c.Context(), server, args[0])
			if err != nil {
				return err
			}
			ch, err := cl.Retry(c.Context(), id, frames)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "job %d: %s queued again\n", id, plural(ch.Frames, "frame"))
			return nil
		},
	}
	serverFlag(c, &server)
	c.Flags().StringVar(&frames, "frames", "", "frames to render again, e.g. 1-10,20")
	return c
}
