package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/termsafe"
)

func newWorkersCommand() *cobra.Command {
	var server string
	var asJSON bool
	c := &cobra.Command{
		Use:   "workers",
		Short: "List the workers a server has heard from, with the backends (and versions) they have",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClient(server)
			if err != nil {
				return usageError{err}
			}
			ws, err := cl.Workers(c.Context())
			if err != nil {
				return err
			}
			out := c.OutOrStdout()
			if asJSON {
				return writeJSON(out, ws)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
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
		},
	}
	serverFlag(c, &server)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}
