package ops

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/vault"
)

// Keep stores an object that no job of this farm references: a chunk of a
// job a peer lent frames of, the output of a frame such a frame depends
// on, or the output of a lent frame, kept until the lender has fetched it
// (internal/federation). If want is set the content must hash to it. The
// object is deduplicated like any other, and a collection removes it once
// it has been unreferenced for the grace period (ops.GC).
func (f *Farm) Keep(ctx context.Context, r io.Reader, want string) (vault.Ref, error) {
	if want != "" && !cdc.ValidHash(want) {
		return vault.Ref{}, errorf(Invalid, "object %q: not a SHA-256 in hex", want)
	}
	over := func(int64) error {
		return errorf(TooLarge, "object %s: larger than the server's limit of %d bytes (serve --max-output-bytes)", want, f.lim.MaxOutputBytes)
	}
	ref, err := f.vault.Put(ctx, capReader(r, f.lim.MaxOutputBytes, over), want)
	switch {
	case errors.Is(err, vault.ErrMismatch):
		return vault.Ref{}, errorf(Invalid, "object %s: %v", want, err)
	case err != nil && KindOf(err) == Failed:
		return vault.Ref{}, fmt.Errorf("object %s: %w", want, err)
	}
	return ref, err
}

// Has reports whether the vault holds an object.
func (f *Farm) Has(ctx context.Context, hash string) (bool, error) {
	if !cdc.ValidHash(hash) {
		return false, errorf(Invalid, "object %q: not a SHA-256 in hex", hash)
	}
	return f.vault.Has(ctx, hash)
}
