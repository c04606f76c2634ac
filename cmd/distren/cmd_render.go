package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/farm"
	"github.com/distren/distren/internal/termsafe"
)

type renderOptions struct {
	output
	out     string
	workers int
	data    string
	quiet   bool
}

func newRenderCommand() *cobra.Command {
	var o renderOptions
	c := &cobra.Command{
		Use:   "render JOB",
		Short: "Render a job package here, with a farm in this process, and write its outputs to a directory",
		Long: `Render a job package (directory, .tar, .tar.gz or .tar.zst) with an embedded server
and local worker slots, write every frame's outputs to -o, and exit. Exits 3 if a frame failed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runRender(c.Context(), o, args)
		},
	}
	f := c.Flags()
	f.StringVarP(&o.out, "output", "o", "out", "directory to write the frames' outputs to")
	f.IntVar(&o.workers, "workers", defaultSlots(), "worker slots")
	f.StringVar(&o.data, "data", "", "keep the farm's data directory here (default: a temporary one, removed)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "no progress bars")
	return c
}

func runRender(ctx context.Context, o renderOptions, args []string) error {
	pkg, stderr := args[0], o.stderr
	if o.workers < 1 {
		return usageError{fmt.Errorf("--workers %d: must be at least 1", o.workers)}
	}
	if err := checkBeforeUpload(pkg); err != nil { // not a package at all: say so before starting a farm
		return err
	}
	data := o.data
	if data == "" {
		d, err := os.MkdirTemp("", "distren-render-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		data = d
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() {
		done <- farm.Run(ctx, farm.Config{Data: data, Listen: "127.0.0.1:0", Name: "local", Workers: o.workers, NoCompress: true,
			Log: log, Ready: func(url string) { ready <- url }})
	}()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		return fmt.Errorf("starting the embedded farm: %w", err)
	}
	bar := !o.quiet && isTerminal(stderr)
	err := func() error {
		c, err := client.New(url)
		if err != nil {
			return err
		}
		start := time.Now()
		sub, err := upload(ctx, c, pkg, stderr, bar, true, false)
		if err != nil {
			return err
		}
		_, werr := waitJob(ctx, c, sub.ID, stderr, bar)
		if _, ok := werr.(jobFailedError); werr != nil && !ok {
			return werr
		}
		n, err := fetchInto(ctx, c, sub.ID, "", o.out, o.output)
		if err != nil {
			return err
		}
		fmt.Fprintf(o.stdout, "%s: %s, %s written to %s in %s\n", termsafe.Line(sub.Name), plural(sub.Frames, "frame"), plural(n, "file"),
			o.out, time.Since(start).Round(time.Millisecond))
		return werr
	}()
	stop()
	if ferr := <-done; ferr != nil && err == nil {
		err = ferr
	}
	return err
}
