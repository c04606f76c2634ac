package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/jobpkg"
	"github.com/distren/distren/internal/termsafe"
)

type submitOptions struct {
	server  string
	wait    bool
	quiet   bool
	rechunk bool
}

func newSubmitCommand() *cobra.Command {
	var o submitOptions
	c := &cobra.Command{
		Use:   "submit JOB",
		Short: "Upload a job package (directory, .tar, .tar.gz or .tar.zst) and print its URL",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runSubmit(c.Context(), o, args[0], c.OutOrStdout(), os.Stderr)
		},
	}
	serverFlag(c, &o.server)
	c.Flags().BoolVar(&o.wait, "wait", false, "wait until the job ends; exit 3 if a frame failed")
	c.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "no progress bars, and no line saying how much was sent")
	c.Flags().BoolVar(&o.rechunk, "rechunk", false, "read every file again, ignoring what the last submission of this directory recorded")
	return c
}

func runSubmit(ctx context.Context, o submitOptions, pkg string, stdout io.Writer, stderr *os.File) error {
	if err := checkBeforeUpload(pkg); err != nil { // not a package at all: say so before sending anything
		return err
	}
	c, err := newClient(o.server)
	if err != nil {
		return usageError{err}
	}
	sub, err := upload(ctx, c, pkg, stderr, !o.quiet && isTerminal(stderr), o.quiet, o.rechunk)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, termsafe.Line(sub.URL))
	if !o.wait {
		return nil
	}
	start := time.Now()
	j, err := waitJob(ctx, c, sub.ID, stderr, !o.quiet && isTerminal(stderr))
	if err == nil && !o.quiet {
		// The last word, also in a log where no bar was drawn.
		fmt.Fprintf(stderr, "job %s done: %s in %s\n", termsafe.Line(j.URL), plural(j.Frames, "frame"), roundDuration(time.Since(start)))
	}
	return err
}

// upload sends a package, with a progress bar on stderr if bar is set. A
// directory goes as chunks: only those the server lacks are sent.
func upload(ctx context.Context, c *client.Client, pkg string, stderr io.Writer, bar, quiet, rechunk bool) (api.Submitted, error) {
	if fi, err := os.Stat(pkg); err == nil && fi.IsDir() {
		sub, st, err := uploadChunks(ctx, c, pkg, stderr, bar, !rechunk)
		if err != nil {
			return sub, fmt.Errorf("submitting %s: %w", pkg, err)
		}
		if !quiet {
			fmt.Fprintln(stderr, st)
		}
		return sub, nil
	}
	return uploadTar(ctx, c, pkg, stderr, bar)
}

// uploadTar streams a tarball.
func uploadTar(ctx context.Context, c *client.Client, pkg string, stderr io.Writer, bar bool) (api.Submitted, error) {
	rc, size, err := jobpkg.Open(pkg)
	if err != nil {
		return api.Submitted{}, fmt.Errorf("job package %s: %w", pkg, err)
	}
	defer rc.Close()
	var body io.Reader = rc
	if bar {
		pb := progressbar.NewOptions64(size, progressbar.OptionSetWriter(stderr), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription("uploading"), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
		r := progressbar.NewReader(rc, pb)
		body = &r
		defer pb.Finish()
	}
	sub, err := c.Submit(ctx, body, size)
	if err != nil {
		return sub, fmt.Errorf("submitting %s: %w", pkg, err)
	}
	return sub, nil
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
