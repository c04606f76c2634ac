package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/jobpkg"
)

// upload sends a package, with a progress bar on stderr if bar is set. A
// directory goes as chunks (client.SubmitDir): only those the server lacks
// are sent, and unless rechunk, files unchanged since the directory was
// last submitted are not read again; the line saying what was sent goes to
// stderr unless quiet.
func upload(ctx context.Context, c *client.Client, pkg string, stderr io.Writer, bar, quiet, rechunk bool) (api.Submitted, error) {
	if fi, err := os.Stat(pkg); err == nil && fi.IsDir() {
		sub, st, err := uploadDir(ctx, c, pkg, stderr, bar, rechunk)
		if err != nil {
			return sub, fmt.Errorf("submitting %s: %w", pkg, err)
		}
		if !quiet {
			fmt.Fprintln(stderr, sentLine(st))
		}
		return sub, nil
	}
	return uploadTar(ctx, c, pkg, stderr, bar)
}

// uploadDir submits a directory, drawing the bar of the package's bytes
// the server holds.
func uploadDir(ctx context.Context, c *client.Client, dir string, stderr io.Writer, bar, rechunk bool) (api.Submitted, client.UploadStats, error) {
	o := client.DirOptions{Index: client.OpenChunkIndex(dir), Rechunk: rechunk}
	var pb *progressbar.ProgressBar
	if bar {
		o.Progress = func(p client.UploadProgress) {
			if pb == nil && p.Total > 0 {
				pb = progressbar.NewOptions64(p.Total, progressbar.OptionSetWriter(stderr), progressbar.OptionShowBytes(true),
					progressbar.OptionSetDescription("uploading"), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
				pb.RenderBlank()
			}
			if pb != nil {
				pb.Set64(p.Done)
			}
		}
	}
	sub, st, err := c.SubmitDir(ctx, dir, o)
	if pb != nil {
		pb.Finish()
	}
	return sub, st, err
}

// sentLine says what a chunked upload moved.
func sentLine(st client.UploadStats) string {
	if st.SentChunks == st.Chunks {
		return fmt.Sprintf("sent %s in %d chunks (%d bytes)", humanize.IBytes(uint64(st.Sent)), st.Chunks, st.Sent)
	}
	return fmt.Sprintf("sent %s of %s: %d of %d chunks, the server had the rest (%d of %d bytes)",
		humanize.IBytes(uint64(st.Sent)), humanize.IBytes(uint64(st.Total)), st.SentChunks, st.Chunks, st.Sent, st.Total)
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
