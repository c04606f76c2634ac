package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/cdc"
)

// Submitting a directory. A directory goes to the server as chunks and a
// tree (docs/api.md): only the chunks the server lacks are sent, so that
// submitting a scene again moves only what changed, and an upload cut off
// resumes where it stood.
//
// Each file is read once. Its chunks are held in memory as they are cut,
// in batches; the server is asked which of a batch's chunks it lacks, and
// those are sent from the bytes in hand while the next batch is cut. A
// file the index (ChunkIndex) knows unchanged is not read at all, unless
// the server lacks some of its chunks: then only those are read, once.

// DirOptions say how SubmitDir sends a directory.
type DirOptions struct {
	// Index, if not nil, gives the chunks of files unchanged since the
	// directory was last submitted, which are then not read; after a
	// successful submission it records every file as submitted.
	Index *ChunkIndex
	// Rechunk reads every file, ignoring what Index holds (which is still
	// recorded afresh).
	Rechunk bool
	// Progress, if not nil, is called as the upload advances, by one
	// goroutine at a time.
	Progress func(UploadProgress)
}

// UploadProgress says how far a submission is.
type UploadProgress struct {
	Total int64 // bytes of the package's files
	Done  int64 // of those, bytes the server holds now: sent, or had already
}

// UploadStats says what a submission moved.
type UploadStats struct {
	Total      int64 // bytes of the package's files
	Sent       int64 // bytes of the chunks sent
	Chunks     int   // distinct chunks of the package
	SentChunks int   // chunks sent (the server had the others)
}

// Upload tuning. A batch is sent to the server's missing-chunks query when
// it holds batchBytes of chunk data or api.MaxMissingBatch chunks; one
// batch is sent while the next is cut. The chunks' bytes are copied into a
// buffer per batch, and the two buffers are used in turn, so that an
// upload holds two batches of the package in memory and makes no garbage
// of them.
const (
	batchBytes     = 8 << 20
	uploadParallel = 4 // chunks sent at once
)

// SubmitDir submits the job package in directory dir as chunks and a tree.
// Symbolic links and other irregular files are refused (cdc.ErrNotRegular);
// files are opened through an os.Root, so that nothing outside dir is read.
func (c *Client) SubmitDir(ctx context.Context, dir string, o DirOptions) (api.Submitted, UploadStats, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return api.Submitted{}, UploadStats{}, err
	}
	defer root.Close()
	return c.SubmitFS(ctx, root.FS(), o)
}

// SubmitFS is SubmitDir for the files of fsys. Files whose chunks Index
// gives are read only where the server lacks a chunk, which needs them to
// implement io.ReaderAt or io.Seeker (os files do).
func (c *Client) SubmitFS(ctx context.Context, fsys fs.FS, o DirOptions) (api.Submitted, UploadStats, error) {
	u := &uploader{c: c, fsys: fsys, o: o, seen: map[[32]byte]bool{}, infos: map[string]fs.FileInfo{}, free: make(chan []byte, 2)}
	if o.Progress != nil {
		total, err := packageBytes(fsys)
		if err != nil {
			return api.Submitted{}, UploadStats{}, err
		}
		u.progress.Total = total
		o.Progress(u.progress)
	}
	ch, err := cdc.New(cdc.Options{})
	if err != nil {
		return api.Submitted{}, UploadStats{}, err
	}
	// A batch is handed over once it holds batchBytes: less, and then at
	// most one chunk. Its buffer is made when first needed.
	u.bufCap = batchBytes + ch.Options().MaxSize
	for range cap(u.free) {
		u.free <- nil
	}
	g, gctx := errgroup.WithContext(ctx)
	batches := make(chan *batch)
	var tree cdc.Tree
	g.Go(func() error {
		defer close(batches)
		u.batches, u.ctx = batches, gctx
		var err error
		if tree, err = cdc.BuildTreeReusing(fsys, ch, u.put, u.reuse); err != nil {
			return err
		}
		return u.flush()
	})
	g.Go(func() error {
		for b := range batches {
			if err := u.send(gctx, b); err != nil {
				return err
			}
			u.free <- b.buf[:0] // nothing refers to it any more
		}
		return nil
	})
	err = g.Wait()
	u.stats.Chunks = u.chunks
	if err != nil {
		return api.Submitted{}, u.stats, err
	}
	for _, f := range tree.Files {
		u.stats.Total += f.Size
	}
	enc, err := tree.Encode()
	if err != nil {
		return api.Submitted{}, u.stats, err
	}
	sub, err := c.SubmitTree(ctx, enc)
	if err != nil {
		return sub, u.stats, err
	}
	if o.Index != nil {
		o.Index.save(u.infos, tree) // also after Rechunk: it recorded everything afresh
	}
	return sub, u.stats, nil
}

// packageBytes sums the sizes of fsys's regular files, for the progress
// total. It reads no file.
func packageBytes(fsys fs.FS) (int64, error) {
	var n int64
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	return n, err
}

// pendingChunk is a chunk to ask the server about and, if it lacks it, to
// send.
type pendingChunk struct {
	hash   [32]byte
	size   int64
	data   []byte // its bytes, read; nil for a chunk of a file not read
	path   string // its file, and where in it
	offset int64
}

// batch is the chunks of one missing-chunks query.
type batch struct {
	buf     []byte // the chunks' data, one after the other
	chunks  []pendingChunk
	covered int64 // package bytes it accounts for, duplicates included
}

// uploader is one submission in flight. put and reuse run on the goroutine
// that builds the tree, send on the one that sends batches.
type uploader struct {
	c    *Client
	fsys fs.FS
	o    DirOptions

	// The tree builder's.
	ctx     context.Context
	batches chan<- *batch
	cur     *batch
	path    string                 // the file being chunked
	seen    map[[32]byte]bool      // chunks met, each counted and sent once
	chunks  int                    // len(seen)
	infos   map[string]fs.FileInfo // each file's stat information as it was opened

	free   chan []byte // batch buffers not in use (nil: not made yet)
	bufCap int         // their capacity

	mu       sync.Mutex // guards stats and progress, updated by the senders
	stats    UploadStats
	progress UploadProgress
}

// reuse is called by the tree builder for every file, before it is read:
// it notes the file, and answers from the index.
func (u *uploader) reuse(path string, info fs.FileInfo) ([]cdc.ChunkRef, bool) {
	u.path = path
	u.infos[path] = info
	if u.o.Index == nil || u.o.Rechunk {
		return nil, false
	}
	refs, ok := u.o.Index.reuse(path, info)
	if !ok {
		return nil, false
	}
	var size int64
	for _, r := range refs {
		size += r.Size
	}
	if size != info.Size() {
		return nil, false // the tree builder would read it anyway
	}
	var off int64
	for _, r := range refs {
		if err := u.add(pendingChunk{hash: r.Hash, size: r.Size, path: path, offset: off}); err != nil {
			// Only a stopped upload fails here; reading the file would
			// fail alike, in put, with the error that stopped it.
			return nil, false
		}
		off += r.Size
	}
	return refs, true
}

// put takes a chunk as it is cut, keeping a copy of its bytes if it is new.
func (u *uploader) put(ch cdc.Chunk) error {
	p := pendingChunk{hash: ch.Hash, size: int64(ch.Size), path: u.path, offset: ch.Offset}
	if !u.seen[ch.Hash] {
		if err := u.start(); err != nil {
			return err
		}
		n := len(u.cur.buf)
		u.cur.buf = append(u.cur.buf, ch.Data...) // within its capacity: p.data stays valid
		p.data = u.cur.buf[n:len(u.cur.buf):len(u.cur.buf)]
	}
	return u.add(p)
}

// start makes sure there is a current batch, with a buffer.
func (u *uploader) start() error {
	if u.cur != nil {
		return nil
	}
	select {
	case buf := <-u.free:
		if buf == nil {
			buf = make([]byte, 0, u.bufCap)
		}
		u.cur = &batch{buf: buf}
		return nil
	case <-u.ctx.Done():
		return u.ctx.Err()
	}
}

// add puts a chunk in the current batch (a chunk met before only counts
// for progress), handing the batch over once full.
func (u *uploader) add(p pendingChunk) error {
	if err := u.start(); err != nil {
		return err
	}
	u.cur.covered += p.size
	if !u.seen[p.hash] {
		u.seen[p.hash] = true
		u.chunks++
		u.cur.chunks = append(u.cur.chunks, p)
	}
	if len(u.cur.buf) >= batchBytes || len(u.cur.chunks) >= api.MaxMissingBatch {
		return u.flush()
	}
	return nil
}

// flush hands the current batch to the sender.
func (u *uploader) flush() error {
	b := u.cur
	u.cur = nil
	if b == nil {
		return nil
	}
	select {
	case u.batches <- b:
		return nil
	case <-u.ctx.Done():
		return u.ctx.Err()
	}
}

// send asks the server which of the batch's chunks it lacks and sends
// those, several at a time.
func (u *uploader) send(ctx context.Context, b *batch) error {
	hashes := make([]string, len(b.chunks))
	for i, p := range b.chunks {
		hashes[i] = hex.EncodeToString(p.hash[:])
	}
	missing := map[string]bool{}
	if len(hashes) > 0 {
		m, err := u.c.MissingChunks(ctx, hashes)
		if err != nil {
			return err
		}
		for _, h := range m {
			missing[h] = true
		}
	}
	var toSend int64
	for i, p := range b.chunks {
		if missing[hashes[i]] {
			toSend += p.size
		}
	}
	u.advance(b.covered-toSend, 0)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(uploadParallel)
	for i, p := range b.chunks {
		if !missing[hashes[i]] {
			continue
		}
		g.Go(func() error {
			if err := u.sendChunk(gctx, hashes[i], p); err != nil {
				return fmt.Errorf("chunk of %s at %d: %w", p.path, p.offset, err)
			}
			u.advance(p.size, p.size)
			return nil
		})
	}
	return g.Wait()
}

// sendChunk sends one chunk: from memory, or read from its file.
func (u *uploader) sendChunk(ctx context.Context, hash string, p pendingChunk) error {
	if p.data != nil {
		return u.c.PutChunk(ctx, hash, bytes.NewReader(p.data), p.size)
	}
	f, err := u.fsys.Open(p.path)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader
	switch sf := f.(type) {
	case io.ReaderAt:
		r = io.NewSectionReader(sf, p.offset, p.size)
	case io.Seeker:
		if _, err := sf.Seek(p.offset, io.SeekStart); err != nil {
			return err
		}
		r = io.LimitReader(f, p.size)
	default:
		return fmt.Errorf("%s: cannot read from an offset", p.path)
	}
	return u.c.PutChunk(ctx, hash, r, p.size)
}

// advance counts done bytes of the package, of which sent were sent (as
// one chunk, if any), and reports the progress.
func (u *uploader) advance(done, sent int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if sent > 0 {
		u.stats.Sent += sent
		u.stats.SentChunks++
	}
	u.progress.Done += done
	if u.o.Progress != nil {
		u.o.Progress(u.progress)
	}
}
