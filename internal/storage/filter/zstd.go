package filter

import (
	"context"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/distren/distren/internal/storage"
)

// Zstd is the zstd compression filter (default level). Data it cannot
// shrink by at least 1/64 — random data, already compressed textures — is
// stored as is, and the object's header does not list zstd.
type Zstd struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

// maxDecoded bounds what zstd decodes one object to.
const maxDecoded = 1 << 30

// NewZstd returns a zstd filter. Close releases its resources.
func NewZstd() (*Zstd, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxDecoded))
	if err != nil {
		enc.Close()
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &Zstd{enc: enc, dec: dec}, nil
}

// sharedZstd decodes zstd objects for modules whose chain has no zstd.
var sharedZstd = sync.OnceValues(NewZstd)

// ID implements Filter.
func (z *Zstd) ID() storage.Filter { return storage.FilterZstd }

// Encode implements Filter. It declines data it cannot shrink by 1/64.
func (z *Zstd) Encode(_ context.Context, _ string, in []byte) ([]byte, bool, error) {
	if len(in) == 0 {
		return nil, false, nil
	}
	out := z.enc.EncodeAll(in, make([]byte, 0, len(in)))
	if len(out) >= len(in)-len(in)/64 {
		return nil, false, nil
	}
	return out, true, nil
}

// Decode implements Filter.
func (z *Zstd) Decode(_ context.Context, _ string, in []byte) ([]byte, error) {
	out, err := z.dec.DecodeAll(in, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: zstd: %w", storage.ErrCorrupt, err)
	}
	return out, nil
}

// Close releases the encoder and decoder.
func (z *Zstd) Close() error {
	z.dec.Close()
	return z.enc.Close()
}
