package ops

import (
	"context"
	"errors"
	"fmt"
	"io"

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
	// Stored as it arrives, with no lock (gc.go); stored again from its
	// copy if a collection ran meanwhile.
	since := f.collections()
	sp := &spool{dir: f.tmp}
	defer sp.remove()
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
	if err := put(io.TeeReader(body, sp)); err != nil {
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
