package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/termsafe"
)

// jobActionOptions are the options of the verbs that change a job and
// answer with its summary: pause, resume, priority.
type jobActionOptions struct {
	connOptions
	output
	json bool
}

func (o *jobActionOptions) add(c *cobra.Command) {
	o.connOptions.addFlags(c)
	c.Flags().BoolVar(&o.json, "json", false, "print the job's summary as JSON, as GET /v1/jobs/{job} answers it")
}

// report prints a job's summary after an action.
func (o jobActionOptions) report(j api.Job, what string) error {
	if o.json {
		return writeJSON(o.stdout, j)
	}
	fmt.Fprintf(o.stdout, "job %s %s: %s, priority %d\n", termsafe.Line(j.URL), what, termsafe.Line(j.State), j.Priority)
	return nil
}

func newPauseCommand() *cobra.Command {
	var o jobActionOptions
	c := &cobra.Command{
		Use:   "pause JOB",
		Short: "Pause a job: its running frames finish, no other starts until it is resumed",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runPause(c.Context(), o, args, true)
		},
	}
	o.add(c)
	return c
}

func newResumeCommand() *cobra.Command {
	var o jobActionOptions
	c := &cobra.Command{
		Use:   "resume JOB",
		Short: "Resume a paused job",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runPause(c.Context(), o, args, false)
		},
	}
	o.add(c)
	return c
}

func runPause(ctx context.Context, o jobActionOptions, args []string, paused bool) error {
	cl, id, err := o.jobClient(ctx, args[0])
	if err != nil {
		return err
	}
	j, err := cl.Pause(ctx, id, paused)
	if err != nil {
		return err
	}
	what := "resumed"
	if paused {
		what = "paused"
	}
	return o.report(j, what)
}

func newPriorityCommand() *cobra.Command {
	var o jobActionOptions
	c := &cobra.Command{
		Use:   "priority JOB N",
		Short: fmt.Sprintf("Change a job's priority (0 to %d, higher first), as if its manifest had said so", manifest.MaxPriority),
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runPriority(c.Context(), o, args)
		},
	}
	o.add(c)
	return c
}

func runPriority(ctx context.Context, o jobActionOptions, args []string) error {
	p, err := strconv.Atoi(args[1])
	if err != nil || p < 0 || p > manifest.MaxPriority {
		return usageError{fmt.Errorf("priority %q: want a whole number from 0 to %d", args[1], manifest.MaxPriority)}
	}
	cl, id, err := o.jobClient(ctx, args[0])
	if err != nil {
		return err
	}
	j, err := cl.SetPriority(ctx, id, p)
	if err != nil {
		return err
	}
	return o.report(j, "reprioritized")
}
