package ops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/vault"
)

// Chunked uploads: a client sends the package's tree after the chunks the
// server lacks, so a package re-submitted with small changes moves only the
// changed chunks, and an interrupted upload resumes where it stopped.

// MissingChunks returns those of hashes the vault lacks. Those it has are
// touched: the caller counts on them, so collections keep them through the
// grace period.
func (f *Farm) MissingChunks(ctx context.Context, hashes []string) ([]string, error) {
	for _, h := range hashes {
		if !cdc.ValidHash(h) {
			return nil, errorf(Invalid, "chunks/missing: %q is not a SHA-256 in hex", h)
		}
	}
	missing := []string{}
	// Not while a sweep runs, which could remove a chunk found here.
	err := f.record(0, nil, func() error {
		for _, h := range hashes {
			ok, err := f.vault.Has(ctx, h)
			switch {
			case err != nil:
				return fmt.Errorf("chunks/missing: %w", err)
			case !ok:
				missing = append(missing, h)
			default:
				f.vault.Touch(ctx, h)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return missing, nil
}

// PutChunk stores a chunk of the given hash, read from data, of at most
// cdc.MaxChunkSize bytes; size is its length if known (-1 if not).
func (f *Farm) PutChunk(ctx context.Context, hash string, data io.Reader, size int64) error {
	if !cdc.ValidHash(hash) {
		return errorf(Invalid, "chunk %q: not a SHA-256 in hex", hash)
	}
	over := func(n int64) error {
		if n < 0 {
			return errorf(TooLarge, "chunk %s: larger than the limit of %d bytes for a chunk", hash, cdc.MaxChunkSize)
		}
		return errorf(TooLarge, "chunk %s: %d bytes, over the limit of %d for a chunk", hash, n, cdc.MaxChunkSize)
	}
	if size > cdc.MaxChunkSize {
		return over(size)
	}
	body := capReader(data, cdc.MaxChunkSize, over)
	put := func(r io.Reader) error {
		if _, err := f.vault.Put(ctx, r, hash); err != nil {
			if errors.Is(err, vault.ErrMismatch) {
				return errorf(Invalid, "chunk %s: %v", hash, err)
			}
			if KindOf(err) == TooLarge {
				return err
			}
			return fmt.Errorf("chunk %s: %w", hash, err) // the server's disk (507, 500)
		}
		return nil
	}
	// A chunk of at most vault.MaxWhole bytes — every chunk distren's
	// client cuts — is received into memory first, with no lock, then
	// stored with no collection running (gc.go): it needs no copy, so
	// its bytes are written once, to the vault.
	since := f.collections()
	buf := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(buf)
	n, err := io.ReadFull(body, *buf)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return f.record(since, nil, func() error { return put(bytes.NewReader((*buf)[:n])) })
	case err != nil:
		if KindOf(err) == TooLarge {
			return err
		}
		return fmt.Errorf("chunk %s: %w", hash, err)
	}
	// A larger one is stored as it arrives, with no lock, and stored again
	// from its copy if a collection ran meanwhile.
	sp := &spool{dir: f.tmp}
	defer sp.remove()
	if err := put(io.TeeReader(io.MultiReader(bytes.NewReader(*buf), body), sp)); err != nil {
		return err
	}
	return f.record(since, func() error {
		r, err := sp.reader()
		if err != nil {
			return err
		}
		return put(r)
	}, nil)
}

// chunkBufs holds the buffers chunks are received into: one byte more than
// vault.MaxWhole, to tell a chunk that fits from one that does not.
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, vault.MaxWhole+1); return &b }}
