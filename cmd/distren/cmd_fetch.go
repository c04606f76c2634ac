package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/jobpkg"
	"github.com/distren/distren/internal/manifest"
)

type fetchOptions struct {
	connOptions
	output
	out, frames string
}

func newFetchCommand() *cobra.Command {
	var o fetchOptions
	c := &cobra.Command{
		Use:   "fetch JOB",
		Short: "Download a job's result: the outputs of its done frames",
		Long: `Download the result bundle of a job (a number or distren:// URL).
-o DIR extracts it into DIR (default job-<id>); -o FILE.tar writes the tarball; -o - writes it to stdout.
Fetching into a directory again downloads only the frames done since, or rendered again: the
outputs it holds are recorded in DIR/.distren-fetch.json.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runFetch(c.Context(), o, args)
		},
	}
	o.connOptions.addFlags(c)
	c.Flags().StringVarP(&o.out, "output", "o", "", "directory, FILE.tar, or - for stdout")
	c.Flags().StringVar(&o.frames, "frames", "", "only these frames, e.g. 1-10,20")
	return c
}

func runFetch(ctx context.Context, o fetchOptions, args []string) error {
	cl, id, err := o.jobClient(ctx, args[0])
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
	n, err := fetchInto(ctx, cl, id, o.frames, out, o.output)
	if err != nil {
		return err
	}
	if out != "-" {
		fmt.Fprintf(o.stderr, "%s written to %s\n", plural(n, "file"), out)
	}
	return nil
}

// fetchInto downloads a job's result bundle to out and returns the number of
// files; out "-" is w.stdout. It opens the result stream once: here for
// stdout or a tarball, in fetchDir for a directory (which asks only for the
// frames it lacks).
func fetchInto(ctx context.Context, c *client.Client, id int64, frames, out string, w output) (int, error) {
	if out != "-" && !strings.HasSuffix(out, ".tar") {
		return fetchDir(ctx, c, id, frames, out, w.stderr)
	}
	rc, err := c.Result(ctx, id, frames)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	if out == "-" {
		_, err := io.Copy(w.stdout, rc)
		return 0, err
	}
	// Written beside out and renamed over it once whole and checked: an
	// error leaves no partial tarball, and out as it was.
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.partial")
	if err != nil {
		return 0, err
	}
	n := 0
	err = jobpkg.Scan(io.TeeReader(rc, f), jobpkg.Limits{}, func(jobpkg.File, io.Reader) error { n++; return nil })
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), out)
	}
	if err != nil {
		os.Remove(f.Name())
		return 0, fmt.Errorf("result of job %d: %w", id, err)
	}
	return n, nil
}

// fetchRecord, in a directory fetch writes into, names the frames whose
// outputs it holds.
const fetchRecord = ".distren-fetch.json"

// fetchState is what fetchRecord holds: the job, and the output (vault
// name) of each frame extracted.
type fetchState struct {
	Job    string           `json:"job"`
	Frames map[int64]string `json:"frames"`
}

// fetchDir extracts into a directory the outputs of the done frames it does
// not hold yet: those fetched before with the same output (a frame rendered
// again has a new one) are not downloaded again.
func fetchDir(ctx context.Context, c *client.Client, id int64, frames, out string, stderr io.Writer) (int, error) {
	list, err := c.Frames(ctx, id, frames)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil { // once the job is known to be there
		return 0, err
	}
	job := fmt.Sprintf("%s/v1/jobs/%d", c.Base(), id)
	rec := filepath.Join(out, fetchRecord)
	var st fetchState
	if b, err := os.ReadFile(rec); err == nil {
		if json.Unmarshal(b, &st) != nil || st.Job != job {
			st = fetchState{} // another job's, or unreadable: fetch everything
		}
	}
	if st.Frames == nil {
		st = fetchState{Job: job, Frames: map[int64]string{}}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	var need []manifest.Range
	have := 0
	for _, f := range list {
		needed := f.State == api.StateDone && st.Frames[f.ID] != f.Output
		switch {
		case needed && len(need) > 0 && need[len(need)-1].Last == f.ID-1:
			need[len(need)-1].Last = f.ID
		case needed:
			need = append(need, manifest.Range{First: f.ID, Last: f.ID})
		case f.State == api.StateDone:
			have++
		}
	}
	if have > 0 {
		fmt.Fprintf(stderr, "%s already in %s\n", plural(have, "done frame"), out)
	}
	if len(need) == 0 {
		return 0, nil
	}
	set := manifest.FormatFrameSet(need)
	if len(set) > 32<<10 {
		set = frames // too scattered for one request: fetch them all again
	}
	rc, err := c.Result(ctx, id, set)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	files, err := jobpkg.ExtractOver(bufio.NewReaderSize(rc, 256<<10), out, jobpkg.Limits{})
	if err != nil {
		return len(files), fmt.Errorf("result of job %d: %w", id, err)
	}
	for _, f := range list {
		if f.State == api.StateDone && manifest.Contains(need, f.ID) {
			st.Frames[f.ID] = f.Output
		}
	}
	b, _ := json.Marshal(st)
	tmp := rec + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return len(files), fmt.Errorf("recording what %s holds: %w", out, err)
	}
	if err := os.Rename(tmp, rec); err != nil {
		return len(files), fmt.Errorf("recording what %s holds: %w", out, err)
	}
	return len(files), nil
}
