package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/sync/errgroup"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/client"
)

// uploadStats says what a chunked upload moved.
type uploadStats struct {
	total, sent        int64 // package bytes, bytes sent
	chunks, sentChunks int   // distinct chunks, chunks sent
}

// chunkLoc is where a chunk's bytes are in the package.
type chunkLoc struct {
	path   string
	offset int64
	size   int64
}

func (st uploadStats) String() string {
	if st.sentChunks == st.chunks {
		return fmt.Sprintf("sent %s in %d chunks (%d bytes)", humanize.IBytes(uint64(st.sent)), st.chunks, st.sent)
	}
	return fmt.Sprintf("sent %s of %s: %d of %d chunks, the server had the rest (%d of %d bytes)",
		humanize.IBytes(uint64(st.sent)), humanize.IBytes(uint64(st.total)), st.sentChunks, st.chunks, st.sent, st.total)
}

// uploadParallel is how many chunks are sent at once.
const uploadParallel = 4

// uploadChunks submits a directory as a tree: it chunks the files, asks the
// server which chunks it lacks, sends those (several at a time), then the
// tree. Run again after an interruption, it sends only what is still missing.
//
// With reuse, files whose size, times and inode are those recorded at the
// last submission of the same directory are not read again: their chunks
// come from the index in the user's cache directory.
func uploadChunks(ctx context.Context, c *client.Client, dir string, stderr io.Writer, bar, reuse bool) (api.Submitted, uploadStats, error) {
	var st uploadStats
	ch, err := cdc.New(cdc.Options{})
	if err != nil {
		return api.Submitted{}, st, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return api.Submitted{}, st, err
	}
	defer root.Close()
	idx := openChunkIndex(dir)
	var reuseFn cdc.Reuse
	if reuse {
		reuseFn = idx.reuse
	}
	tree, err := cdc.BuildTreeReusing(root.FS(), ch, func(cdc.Chunk) error { return nil }, reuseFn)
	if err != nil {
		return api.Submitted{}, st, err
	}
	locs := map[string]chunkLoc{}
	var order []string
	for _, f := range tree.Files {
		var off int64
		for _, c := range f.Chunks {
			h := hex.EncodeToString(c.Hash[:])
			if _, ok := locs[h]; !ok {
				locs[h] = chunkLoc{f.Path, off, c.Size}
				order = append(order, h)
			}
			off += c.Size
		}
		st.total += f.Size
	}
	st.chunks = len(order)
	missing, err := c.MissingChunks(ctx, order)
	if err != nil {
		return api.Submitted{}, st, err
	}
	var toSend int64
	for _, h := range missing {
		toSend += locs[h].size
	}
	var pb *progressbar.ProgressBar
	if bar && toSend > 0 {
		pb = progressbar.NewOptions64(toSend, progressbar.OptionSetWriter(stderr), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription("uploading"), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
		pb.RenderBlank()
		defer pb.Finish()
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(uploadParallel)
	for _, h := range missing {
		g.Go(func() error {
			l := locs[h]
			f, err := root.Open(filepath.FromSlash(l.path))
			if err != nil {
				return err
			}
			defer f.Close()
			var r io.Reader = io.NewSectionReader(f, l.offset, l.size)
			if pb != nil {
				pr := progressbar.NewReader(r, pb)
				r = &pr
			}
			if err := c.PutChunk(gctx, h, r, l.size); err != nil {
				return fmt.Errorf("chunk of %s at %d: %w", l.path, l.offset, err)
			}
			mu.Lock()
			st.sent += l.size
			st.sentChunks++
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return api.Submitted{}, st, err
	}
	enc, err := tree.Encode()
	if err != nil {
		return api.Submitted{}, st, err
	}
	sub, err := c.SubmitTree(ctx, enc)
	if err == nil {
		idx.save(root, tree) // also after --rechunk: it recorded everything afresh
	}
	return sub, st, err
}
