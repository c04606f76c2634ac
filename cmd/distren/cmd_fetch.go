package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/jobpkg"
	"github.com/distren/distren/internal/manifest"
)

type fetchOptions struct {
	server, out, frames string
}

func newFetchCommand() *cobra.Command {
	var o fetchOptions
	c := &cobra.Command{
		Use:   "fetch JOB",
		Short: "Download a job's result: the outputs of its done frames",
		Long: `Download the result bundle of a job (a number or distren:// URL).
-o DIR extracts it into DIR (default job-<id>); -o FILE.tar writes the tarball; -o - writes it to stdout.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, id, err := jobClient(c.Context(), o.server, args[0])
			if err != nil {
				return err
			}
			if o.frames != "" {
				if _, err := manifest.ParseFrameSet(o.frames); err != nil {
					return usageError{fmt.Errorf("--frames %q: %w", o.frames, err)}
				}
			}
			out := o.out
			if out == "" {
				out = fmt.Sprintf("job-%d", id)
			}
			n, err := fetchInto(c.Context(), cl, id, o.frames, out)
			if err != nil {
				return err
			}
			if out != "-" {
				fmt.Fprintf(os.Stderr, "%s written to %s\n", plural(n, "file"), out)
			}
			return nil
		},
	}
	serverFlag(c, &o.server)
	c.Flags().StringVarP(&o.out, "output", "o", "", "directory, FILE.tar, or - for stdout")
	c.Flags().StringVar(&o.frames, "frames", "", "only these frames, e.g. 1-10,20")
	return c
}

// fetchInto downloads a job's result bundle to out and returns the number of files.
func fetchInto(ctx context.Context, c *client.Client, id int64, frames, out string) (int, error) {
	rc, err := c.Result(ctx, id, frames)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	switch {
	case out == "-":
		_, err := io.Copy(os.Stdout, rc)
		return 0, err
	case strings.HasSuffix(out, ".tar"):
		f, err := os.Create(out)
		if err != nil {
			return 0, err
		}
		n := 0
		err = jobpkg.Scan(io.TeeReader(rc, f), jobpkg.Limits{}, func(jobpkg.File, io.Reader) error { n++; return nil })
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(out)
			return 0, fmt.Errorf("result of job %d: %w", id, err)
		}
		return n, nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return 0, err
	}
	files, err := jobpkg.ExtractOver(bufio.NewReaderSize(rc, 256<<10), out, jobpkg.Limits{})
	if err != nil {
		return len(files), fmt.Errorf("result of job %d: %w", id, err)
	}
	return len(files), nil
}
