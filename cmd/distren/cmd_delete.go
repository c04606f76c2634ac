package main

import (
	"context"
	"fmt"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
)

type deleteOptions struct {
	connOptions
	output
}

func newDeleteCommand() *cobra.Command {
	var o deleteOptions
	c := &cobra.Command{
		Use:   "delete JOB",
		Short: "Delete a job: stop its frames and make its stored objects collectable (its id is never reused)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runDelete(c.Context(), o, args)
		},
	}
	o.connOptions.addFlags(c)
	return c
}

func runDelete(ctx context.Context, o deleteOptions, args []string) error {
	cl, id, err := o.jobClient(ctx, args[0])
	if err != nil {
		return err
	}
	if err := cl.Delete(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "job %d deleted\n", id)
	return nil
}

type gcOptions struct {
	connOptions
	output
	json bool
}

func newGCCommand() *cobra.Command {
	var o gcOptions
	c := &cobra.Command{
		Use:   "gc",
		Short: "Collect garbage on the server now: delete jobs past retention, remove objects no job refers to",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runGC(c.Context(), o, args)
		},
	}
	o.connOptions.addFlags(c)
	c.Flags().BoolVar(&o.json, "json", false, "print what was removed as JSON (the server's answer: jobs_deleted, objects, bytes, kept)")
	return c
}

func runGC(ctx context.Context, o gcOptions, _ []string) error {
	cl, err := o.client()
	if err != nil {
		return err
	}
	r, err := cl.GC(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(o.stdout, r)
	}
	fmt.Fprintf(o.stdout, "removed %d objects (%s), kept %d recent unreferenced ones; %d jobs deleted by retention\n",
		r.Objects, humanize.IBytes(uint64(r.Bytes)), r.Kept, r.JobsDeleted)
	return nil
}
