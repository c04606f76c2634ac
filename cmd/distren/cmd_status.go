package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/termsafe"
)

type statusOptions struct {
	connOptions
	output
	watch, json bool
	interval    time.Duration
}

func newStatusCommand() *cobra.Command {
	var o statusOptions
	c := &cobra.Command{
		Use:   "status [JOB]",
		Short: "Show the server's jobs, or one job and its frames",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runStatus(c.Context(), o, args)
		},
	}
	o.connOptions.addFlags(c)
	c.Flags().BoolVarP(&o.watch, "watch", "w", false, "redraw as the server's events say the job (or the jobs) changed, until the job ends (or until interrupted)")
	c.Flags().BoolVar(&o.json, "json", false, "print JSON for scripts")
	c.Flags().DurationVar(&o.interval, "interval", time.Second, "with --watch, redraw at most this often (and this often if the server sends no events)")
	return c
}

// runStatus reports on the server's jobs, or with a job in args on that
// job.
func runStatus(ctx context.Context, o statusOptions, args []string) error {
	var c *client.Client
	var id int64
	var err error
	if len(args) == 1 {
		c, id, err = o.jobClient(ctx, args[0])
	} else {
		c, err = o.client()
	}
	if err != nil {
		return err
	}
	out := o.stdout
	tty := o.watch && !o.json && isTerminal(out)
	var changed <-chan struct{} // the server's events: a redraw is due
	if o.watch {
		sctx, stop := context.WithCancel(ctx) // ends the stream when the report does
		defer stop()
		changed = watchEvents(sctx, c, id)
	}
	for {
		drawn := time.Now()
		// A redraw is written at once; otherwise the report streams (a
		// job's frames, a page at a time).
		var buf strings.Builder
		w := out
		if tty {
			w = &buf
		}
		ended, err := statusOnce(ctx, c, id, o.json, w)
		if err != nil {
			return err
		}
		if tty {
			fmt.Fprint(out, "\x1b[H\x1b[2J") // home, clear
			fmt.Fprint(out, buf.String())
		}
		if !o.watch || (id != 0 && ended) {
			return nil
		}
		if changed != nil {
			select {
			case _, ok := <-changed:
				if !ok {
					changed = nil // the stream ended: redraw every --interval
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		// At most one redraw per interval, however many events came.
		select {
		case <-time.After(o.interval - time.Since(drawn)):
		case <-ctx.Done():
			return ctx.Err() // interrupted: not a report that ended
		}
	}
}

// watchEvents follows the server's events for the job (all jobs if id is
// 0): the channel receives when something changed, and is closed if the
// stream cannot be opened or ends; nil if the server has none.
func watchEvents(ctx context.Context, c *client.Client, id int64) <-chan struct{} {
	var jobs []int64
	if id != 0 {
		jobs = append(jobs, id)
	}
	es, err := c.Events(ctx, jobs...)
	if err != nil {
		return nil
	}
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		defer es.Close()
		for {
			if _, err := es.Next(); err != nil {
				return
			}
			select {
			case ch <- struct{}{}:
			default: // a redraw is due already
			}
		}
	}()
	return ch
}

// statusOnce writes one report and says whether the job (if one) has ended.
func statusOnce(ctx context.Context, c *client.Client, id int64, asJSON bool, out io.Writer) (bool, error) {
	if id == 0 {
		jobs, err := c.Jobs(ctx)
		if err != nil {
			return false, err
		}
		if asJSON {
			return false, writeJSON(out, jobs)
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "JOB\tNAME\tSTATE\tDONE\tRUNNING\tFAILED\tSUBMITTED\tURL")
		for _, j := range jobs {
			if j.Waiting != "" {
				j.State += " (waiting for a worker)"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d/%d\t%d\t%d\t%s\t%s\n", j.ID, termsafe.Line(j.Name), termsafe.Line(j.State), j.Counts[api.StateDone], j.Frames,
				j.Counts[api.StateRunning], j.Counts[api.StateFailed], j.Submitted.Local().Format("2006-01-02 15:04:05"), termsafe.Line(j.URL))
		}
		return false, tw.Flush()
	}
	j, err := c.Job(ctx, id)
	if err != nil {
		return false, err
	}
	ended := j.State == api.JobDone || j.State == api.JobFailed || j.State == api.JobCanceled
	if asJSON {
		return ended, statusJSON(ctx, c, j, out)
	}
	fmt.Fprintf(out, "%s  %s  %s\n", termsafe.Line(j.URL), termsafe.Line(j.Name), termsafe.Line(strings.ToUpper(j.State)))
	fmt.Fprintf(out, "priority %d", j.Priority)
	if j.Deadline != nil {
		fmt.Fprintf(out, ", deadline %s", j.Deadline.Local().Format(time.RFC3339))
	}
	fmt.Fprintf(out, ", submitted %s\n", j.Submitted.Local().Format("2006-01-02 15:04:05"))
	fmt.Fprintf(out, "frames: %d", j.Frames)
	for _, st := range []string{api.StateDone, api.StateRunning, api.StateReady, api.StateWaiting, api.StateFailed, api.StateCanceled} {
		if n := j.Counts[st]; n > 0 {
			fmt.Fprintf(out, ", %d %s", n, st)
		}
	}
	fmt.Fprintln(out)
	if j.Waiting != "" {
		fmt.Fprintln(out, termsafe.Line(j.Waiting))
	}
	if j.Warning != "" { // frames writing the same file name (docs/api.md, "The result bundle")
		fmt.Fprintln(out, "warning: "+termsafe.Line(j.Warning))
	}
	// The frames are read page by page; only those shown are kept.
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	shown := 0
	err = c.EachFrame(ctx, id, "", func(f api.Frame) error {
		if f.State != api.StateRunning && f.State != api.StateFailed && !(f.Attempts > 1 && f.State != api.StateDone) {
			return nil
		}
		if shown == 0 {
			fmt.Fprintln(tw, "FRAME\tSTATE\tATTEMPTS\tWORKER\tPROGRESS\tMESSAGE")
		}
		if shown++; shown > 40 {
			return nil
		}
		prog := ""
		if f.State == api.StateRunning && f.Progress > 0 {
			prog = fmt.Sprintf("%.0f%%", f.Progress*100)
		}
		msg, _, _ := strings.Cut(f.Error, "\n")
		who := f.Worker
		if f.Server != "" && f.Worker != "" && !strings.HasPrefix(f.URL, "distren://"+f.Server+"/") {
			who = f.Server + "/" + f.Worker // a peer's worker: the frame is lent
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", f.ID, termsafe.Line(f.State), f.Attempts, termsafe.Line(who), prog, termsafe.Line(msg))
		return nil
	})
	if err != nil {
		return ended, err
	}
	if err := tw.Flush(); err != nil {
		return ended, err
	}
	if shown > 40 {
		fmt.Fprintf(out, "… and %d more\n", shown-40)
	}
	return ended, nil
}

// statusJSON writes {"job": ..., "frames": [...]}, the frames as they come
// page by page, so that a job of a million frames is never held whole.
func statusJSON(ctx context.Context, c *client.Client, j api.Job, out io.Writer) error {
	bw := bufio.NewWriter(out)
	jb, err := json.Marshal(j)
	if err != nil {
		return err
	}
	fmt.Fprintf(bw, `{"job":%s,"frames":[`, termsafe.JSON(jb))
	n := 0
	err = c.EachFrame(ctx, j.ID, "", func(f api.Frame) error {
		b, err := json.Marshal(f)
		if err != nil {
			return err
		}
		if n++; n > 1 {
			bw.WriteByte(',')
		}
		_, err = bw.Write(termsafe.JSON(b))
		return err
	})
	if err != nil {
		bw.Flush()
		return err
	}
	bw.WriteString("]}\n")
	return bw.Flush()
}
