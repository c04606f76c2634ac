// Package cdc owns the content addressing of the vault: splitting files into
// content-defined chunks (FastCDC) named by the SHA-256 of their bytes, and
// tree objects listing a package's files — path, permissions, size and
// chunks — in a canonical encoding whose SHA-256 names the tree.
//
// Chunk boundaries are a pure function of the bytes: the same content cuts
// the same way on every run and machine, whatever sizes the reader returns,
// so a small edit changes only the chunks around it and re-submitting a
// scene moves only those. The package does no I/O of its own beyond reading
// the files BuildTree is given; storing chunks is the caller's business.
package cdc

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc" // registers "fastcdc-v1.0.0"
)

// Default chunk sizes: FastCDC cuts around an average of 1 MiB, never below
// 256 KiB (except a file's last chunk) nor above 4 MiB.
const (
	DefaultMinSize = 256 << 10
	DefaultAvgSize = 1 << 20
	DefaultMaxSize = 4 << 20
)

// MaxChunkSize is the largest chunk a Chunker may be configured to produce
// and a tree may name.
const MaxChunkSize = 64 << 20

// algorithm is the go-cdc-chunkers implementation used. "fastcdc-v1.0.0" is
// the spec-faithful FastCDC whose masks derive from the average size; the
// library's plain "fastcdc" is a legacy variant whose masks are fixed for an
// 8 KiB average whatever the options say. Changing the algorithm, its Gear
// table or the sizes moves every boundary: TestGolden pins them.
const algorithm = "fastcdc-v1.0.0"

// ErrOptions reports chunker options that cannot be used.
var ErrOptions = errors.New("cdc: invalid chunker options")

// Options configure a Chunker. Zero fields take the defaults.
type Options struct {
	MinSize int // smallest chunk except a stream's last; 64 <= MinSize < AvgSize
	AvgSize int // normal chunk size; a power of two
	MaxSize int // largest chunk; AvgSize < MaxSize <= MaxChunkSize
}

func (o Options) withDefaults() Options {
	if o.MinSize == 0 {
		o.MinSize = DefaultMinSize
	}
	if o.AvgSize == 0 {
		o.AvgSize = DefaultAvgSize
	}
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	return o
}

// validate checks what the library would silently accept: NewChunker does
// not call the implementation's Validate.
func (o Options) validate() error {
	switch {
	case o.AvgSize < 128 || o.AvgSize&(o.AvgSize-1) != 0:
		return fmt.Errorf("%w: average size %d is not a power of two of at least 128", ErrOptions, o.AvgSize)
	case o.MinSize < 64 || o.MinSize >= o.AvgSize:
		return fmt.Errorf("%w: minimum size %d must be at least 64 and below the average size %d", ErrOptions, o.MinSize, o.AvgSize)
	case o.MaxSize <= o.AvgSize || o.MaxSize > MaxChunkSize:
		return fmt.Errorf("%w: maximum size %d must be above the average size %d and at most %d", ErrOptions, o.MaxSize, o.AvgSize, MaxChunkSize)
	}
	return nil
}

// Chunk is one content-defined piece of a stream.
type Chunk struct {
	Hash   [32]byte // SHA-256 of Data
	Offset int64    // position of the chunk's first byte in the stream
	Size   int      // len(Data)
	// Data holds the chunk's bytes. It aliases the chunker's buffer and is
	// valid only until the callback that received it returns: copy it to
	// keep it.
	Data []byte
}

// Ref returns the chunk's name and size, as a tree lists it.
func (c Chunk) Ref() ChunkRef { return ChunkRef{Hash: c.Hash, Size: int64(c.Size)} }

// Chunker splits streams into content-defined chunks. It is safe for
// concurrent use: each Split borrows a scan buffer (2×MaxSize bytes) from a
// pool, so memory grows with the number of concurrent splits, not with the
// number of streams.
type Chunker struct {
	opts Options
	pool sync.Pool // of *chunkers.Chunker, each owning its buffer
}

// New returns a Chunker with the given options (zero fields take the
// defaults).
func New(opts Options) (*Chunker, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	c := &Chunker{opts: opts}
	// Fail now rather than in Split if the library refuses the options.
	lc, err := c.newLibChunker()
	if err != nil {
		return nil, err
	}
	c.pool.Put(lc)
	return c, nil
}

// Options returns the chunker's options, defaults filled in.
func (c *Chunker) Options() Options { return c.opts }

func (c *Chunker) newLibChunker() (*chunkers.Chunker, error) {
	// The library fills in and keeps the options it is given: pass a copy.
	lopts := &chunkers.ChunkerOpts{MinSize: c.opts.MinSize, NormalSize: c.opts.AvgSize, MaxSize: c.opts.MaxSize}
	// A buffer of 2×MaxSize lets the reader refill in large strides.
	lc, err := chunkers.NewChunkerBuffer(algorithm, nil, lopts, make([]byte, 2*c.opts.MaxSize))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOptions, err)
	}
	return lc, nil
}

func (c *Chunker) get() (*chunkers.Chunker, error) {
	if lc, ok := c.pool.Get().(*chunkers.Chunker); ok {
		return lc, nil
	}
	return c.newLibChunker()
}

// cut reads r to its end and calls fn with each chunk's offset and bytes,
// without hashing them. data is valid only during fn.
func (c *Chunker) cut(r io.Reader, fn func(offset int64, data []byte) error) error {
	lc, err := c.get()
	if err != nil {
		return err
	}
	lc.Reset(r)
	defer func() {
		lc.Reset(nil) // do not keep the reader alive from the pool
		c.pool.Put(lc)
	}()
	var off int64
	for {
		data, err := lc.Next()
		if err != nil && err != io.EOF {
			return fmt.Errorf("reading at offset %d: %w", off, err)
		}
		// The library reports the end with a last call that may return an
		// empty chunk: skip it.
		if len(data) > 0 {
			if ferr := fn(off, data); ferr != nil {
				return ferr
			}
			off += int64(len(data))
		}
		if err == io.EOF {
			return nil
		}
	}
}

// Split reads r to its end and calls fn with each chunk, in order. It never
// holds more than 2×MaxSize bytes of the stream. An empty stream has no
// chunks. Errors from fn are returned unchanged and stop the split; read
// errors are wrapped with the offset reached.
func (c *Chunker) Split(r io.Reader, fn func(Chunk) error) error {
	return c.cut(r, func(off int64, data []byte) error {
		return fn(Chunk{Hash: sha256.Sum256(data), Offset: off, Size: len(data), Data: data})
	})
}
