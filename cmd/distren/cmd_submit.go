package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/termsafe"
)

type submitOptions struct {
	connOptions
	output
	wait    bool
	quiet   bool
	rechunk bool
	json    bool
}

func newSubmitCommand() *cobra.Command {
	var o submitOptions
	c := &cobra.Command{
		Use:   "submit JOB",
		Short: "Upload a job package (directory, .tar, .tar.gz or .tar.zst) and print its URL",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runSubmit(c.Context(), o, args)
		},
	}
	o.connOptions.addFlags(c)
	c.Flags().BoolVar(&o.wait, "wait", false, "wait until the job ends; exit 3 if a frame failed")
	c.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "no progress bars, and no line saying how much was sent")
	c.Flags().BoolVar(&o.rechunk, "rechunk", false, "read every file again, ignoring what the last submission of this directory recorded")
	c.Flags().BoolVar(&o.json, "json", false, "print the job as JSON instead of its URL: the server's answer (id, url, name, frames); with --wait, then the job as it ended (as status --json shows it)")
	return c
}

func runSubmit(ctx context.Context, o submitOptions, args []string) error {
	pkg, stderr := args[0], o.stderr
	if err := checkBeforeUpload(pkg); err != nil { // not a package at all: say so before sending anything
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	sub, err := upload(ctx, c, pkg, stderr, !o.quiet && isTerminal(stderr), o.quiet, o.rechunk)
	if err != nil {
		return err
	}
	if o.json {
		if err := writeJSON(o.stdout, sub); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(o.stdout, termsafe.Line(sub.URL))
	}
	if !o.wait {
		return nil
	}
	start := time.Now()
	j, err := waitJob(ctx, c, sub.ID, stderr, !o.quiet && isTerminal(stderr))
	var jf jobFailedError
	if o.json && (err == nil || errors.As(err, &jf)) {
		if werr := writeJSON(o.stdout, j); werr != nil {
			return werr
		}
	}
	if err == nil && !o.quiet {
		// The last word, also in a log where no bar was drawn.
		fmt.Fprintf(stderr, "job %s done: %s in %s\n", termsafe.Line(j.URL), plural(j.Frames, "frame"), roundDuration(time.Since(start)))
	}
	return err
}

// waitJob follows a job until it ends, with a progress bar of frames if bar
// is set, and returns it as it ended. A job that ends with failed or
// canceled frames is an error.
func waitJob(ctx context.Context, c *client.Client, id int64, stderr io.Writer, bar bool) (api.Job, error) {
	var pb *progressbar.ProgressBar
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		j, err := c.Job(ctx, id)
		if err != nil {
			return j, err
		}
		if bar {
			if pb == nil {
				pb = progressbar.NewOptions(j.Frames, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("frames"),
					progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(),
					progressbar.OptionThrottle(100*time.Millisecond))
			}
			pb.Set(j.Counts[api.StateDone])
		}
		switch j.State {
		case api.JobDone:
			if pb != nil {
				pb.Finish()
			}
			return j, nil
		case api.JobFailed, api.JobCanceled:
			if pb != nil {
				pb.Exit()
				fmt.Fprintln(stderr)
			}
			// main prints it escaped (termsafe.Text): the error quotes the
			// renderer, whose lines are indented so that none passes for
			// one of distren's own.
			msg := fmt.Sprintf("job %s %s: %d of %d frames done", j.URL, j.State, j.Counts[api.StateDone], j.Frames)
			if j.Error != "" {
				msg += "; " + strings.ReplaceAll(strings.TrimRight(j.Error, "\n"), "\n", "\n    ")
			}
			return j, jobFailedError{msg}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return j, ctx.Err()
		}
	}
}

// roundDuration rounds d for people: tenths of a second under a minute,
// seconds above.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Minute {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}
