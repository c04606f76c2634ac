package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/termsafe"
)

type workersOptions struct {
	connOptions
	output
	json bool
}

func newWorkersCommand() *cobra.Command {
	var o workersOptions
	c := &cobra.Command{
		Use:   "workers",
		Short: "List the workers a server has heard from, with the backends (and versions) they have",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runWorkers(c.Context(), o, args)
		},
	}
	o.connOptions.addFlags(c)
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return c
}

func runWorkers(ctx context.Context, o workersOptions, _ []string) error {
	cl, err := o.client()
	if err != nil {
		return err
	}
	ws, err := cl.Workers(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(o.stdout, ws)
	}
	tw := tabwriter.NewWriter(o.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tLIVE\tRUNNING\tLAST SEEN\tBACKENDS")
	for _, w := range ws {
		var bs []string
		for name, v := range w.Backends {
			bs = append(bs, termsafe.Line(name+" "+v))
		}
		slices.Sort(bs)
		live := "no"
		if w.Live {
			live = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s ago\t%s\n", termsafe.Line(w.Name), live, w.Running,
			time.Since(w.LastSeen).Round(time.Second), strings.Join(bs, ", "))
	}
	return tw.Flush()
}
