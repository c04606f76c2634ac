// Package vault owns the server's stored bytes: a content-addressed object
// store in which every job input chunk and every frame output lives under
// the SHA-256 of its content, on a storage module (internal/storage; the
// filesystem module by default) through the filter pipeline
// (internal/storage/filter: zstd, AES-256-GCM, a command).
//
// # Layout
//
// An object of at most MaxWhole bytes — every chunk a client uploads is —
// is stored whole, as the module object "ab/<hash>". A larger object (a
// big frame output) is cut by content-defined chunking (internal/cdc) into
// chunks stored as objects of their own, and an index object
// "ab/<hash>.index" lists them; its content is their concatenation, so the
// same bytes are stored once wherever they occur. Small objects (frame
// outputs of a few kilobytes) are kept in packs instead (pack.go), sealed
// by the same filters: appended to an open pack on the local disk, which
// is stored on the module as one object ("packs/pack-NNNNNN", with its
// index "packs/pack-NNNNNN.idx") once full or old enough, so the module
// holds everything but the open pack. Every stored object and pack record
// is in the storage object format: a header naming the filters applied,
// the lengths and a checksum.
//
// # Errors and contexts
//
// Every operation takes a context, passed down to the module (whose
// watchdog aborts what stalls). An object the vault does not hold is
// ErrNotFound, and only that: a failure to find out — a disk error, a
// stalled or unreachable module, a canceled context — is another error,
// so that "missing" is never a guess.
//
// # Reads
//
// Every read is verified: an object is decoded whole (it is at most
// MaxWhole bytes), checked against its header and hashed, and handed over
// only if its content hashes to its name; otherwise the read fails with
// ErrCorrupt naming it. Decoded objects are shared by their readers and
// limited in number (Options.MaxOpen), which bounds both memory and the
// files open at once, so the server can serve more concurrent downloads
// than its file-descriptor limit allows.
//
// # Writes
//
// Put returns once the object is durable: a module makes an object visible
// only when written whole, and appends to the open pack are fsynced (group
// commit) before Put returns. A chunked object's index is written after its chunks,
// so an index never names a chunk that is not stored.
package vault

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/storage"
	"github.com/distren/distren/internal/storage/filter"
)

// ErrNotFound is returned for an object the vault does not hold.
var ErrNotFound = errors.New("object not found")

// ErrCorrupt is returned by a read of an object whose stored bytes are
// damaged: its header, its checksum, or the hash of its content.
var ErrCorrupt = errors.New("stored object is damaged")

// Ref names an object by the hex SHA-256 of its content, with its size.
type Ref struct {
	Hash string `json:"hash"`
	Size int64  `json:"size"`
}

// MaxWhole is the largest object stored whole; larger ones are chunked.
// It is the largest chunk internal/cdc cuts.
const MaxWhole = cdc.DefaultMaxSize

// formatFile marks a vault directory with the layout this package writes.
// Format 2 kept every pack on the local disk; format 3 seals them onto the
// module. A vault of format 2 is read as it is — its packs are local packs
// not sealed yet, which format 3 seals in the background — and marked 3 at
// open, so that an older distren, which would not see the sealed packs,
// refuses it.
const (
	formatFile  = "format"
	formatLine2 = "distren vault 2: objects on a storage module, packs of sealed records\n"
	formatLine  = "distren vault 3: objects and sealed packs on a storage module, the open pack local\n"
)

// Vault is a content-addressed object store on a storage module.
type Vault struct {
	// bytesIn and bytesOut count the bytes of objects given to Put and
	// read from objects opened: what the farm stores and reads, before
	// deduplication, compression or encryption (Stats).
	bytesIn, bytesOut atomic.Int64

	dir     string
	raw     storage.Module // the module below the filters
	mod     *filter.Module
	closers []func() error // of the filters
	packs   *packs         // nil when small is 0
	small   int64
	chunker *cdc.Chunker
	wholes  sync.Pool // *[]byte of MaxWhole+1 bytes
	firsts  sync.Pool // *[]byte of firstRead bytes

	opened  time.Time
	rmu     sync.Mutex
	recent  map[string]time.Time // objects written or touched by this process
	grace   time.Duration        // how long an entry of recent matters
	pruneAt int                  // prune recent when it reaches this size

	// Decoded objects are shared by their readers and limited in number.
	hmu     sync.Mutex
	handles map[string]*handle
	slots   chan struct{} // one per decoded object held
}

// Options configure a vault.
type Options struct {
	// Module stores the objects; nil selects the filesystem module in the
	// vault's directory (DIR/objects), with a watchdog (Stall) and retries.
	Module storage.Module
	// Stall is how long an operation on the default module may make no
	// progress before it is aborted and retried (default 300 s).
	Stall time.Duration
	// NoSync skips fsync: for tests and throw-away vaults.
	NoSync bool
	// SmallObjects, if positive, stores objects up to this many bytes in
	// packs rather than one module object each: appended to an open pack
	// on the local disk (DIR/packs), sealed onto the module when full.
	SmallObjects int64
	// SealPacksAfter is how long a pack is appended to at most before it
	// is sealed onto the module (default DefaultSealPacksAfter), so that
	// the module holds the small objects also when few are written.
	SealPacksAfter time.Duration
	// Compress passes objects through zstd (objects it cannot shrink by
	// 1/64 are stored as they are). Objects stay readable whatever the
	// setting, so it can be changed at any time.
	Compress bool
	// KeyFile, if set, encrypts every object with AES-256-GCM under the key
	// in this file (32 bytes, raw or hex; mode 0600).
	KeyFile string
	// EncodeCommand and DecodeCommand, if set, pass every object through
	// external programs speaking the command filter's protocol
	// (internal/storage/filter.Command), after compression and before
	// encryption.
	EncodeCommand, DecodeCommand []string
	// Workers filter and write objects in the background (default 2).
	Workers int
	// Grace is how long a written or touched object counts as recent for
	// Sweep (default 1h): what Touch remembers longer is forgotten, so the
	// memory it takes stays bounded even if nothing sweeps.
	Grace time.Duration
	// MaxOpen bounds the decoded objects held for readers at once (default
	// 256; each at most MaxWhole bytes): readers of one object share it,
	// and an Open beyond the limit waits for a reader to close.
	MaxOpen int
}

// Open opens (creating if needed) the vault in dir. It reads the index of
// the packs from the module; the watchdog of the default module aborts a
// stalled read.
func Open(dir string, opt Options) (*Vault, error) {
	// The process's start, not a request: nothing to cancel but a stall,
	// which the module's watchdog handles.
	ctx := context.Background()
	v := &Vault{dir: dir, opened: time.Now(), recent: map[string]time.Time{}, handles: map[string]*handle{},
		grace: cmp.Or(opt.Grace, time.Hour), pruneAt: minPrune}
	if err := checkFormat(dir); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			v.Close()
		}
	}()
	var chain []filter.Filter
	if opt.Compress {
		z, err := filter.NewZstd()
		if err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		chain, v.closers = append(chain, z), append(v.closers, z.Close)
	}
	if len(opt.EncodeCommand) > 0 || len(opt.DecodeCommand) > 0 {
		c, err := filter.NewCommand(opt.EncodeCommand, opt.DecodeCommand, filter.CommandOptions{})
		if err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		chain, v.closers = append(chain, c), append(v.closers, c.Close)
	}
	if opt.KeyFile != "" {
		a, err := filter.NewAESGCM(opt.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		chain = append(chain, a)
	}
	v.raw = opt.Module
	if v.raw == nil {
		fs, err := storage.NewFS(dir, storage.FSOptions{NoSync: opt.NoSync})
		if err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		v.raw = storage.Resilient(fs, storage.ResilientOptions{StallTimeout: opt.Stall})
	}
	mod, err := filter.New(v.raw, chain, filter.Options{Workers: opt.Workers, MaxObjectSize: 64 << 20})
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	v.mod = mod
	if v.chunker, err = cdc.New(cdc.Options{}); err != nil {
		return nil, err
	}
	v.wholes.New = func() any { b := make([]byte, MaxWhole+1); return &b }
	v.firsts.New = func() any { b := make([]byte, firstRead); return &b }
	if opt.MaxOpen <= 0 {
		opt.MaxOpen = 256
	}
	v.slots = make(chan struct{}, opt.MaxOpen)
	if opt.SmallObjects > 0 {
		p, err := openPacks(ctx, filepath.Join(dir, "packs"), v.raw, opt.NoSync, cmp.Or(opt.SealPacksAfter, DefaultSealPacksAfter))
		if err != nil {
			return nil, err
		}
		v.small, v.packs = min(opt.SmallObjects, MaxWhole), p
	}
	ok = true
	return v, nil
}

// checkFormat refuses a directory written in another layout, and marks a
// new one.
func checkFormat(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	p := filepath.Join(dir, formatFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil && string(b) == formatLine:
		return nil
	case err == nil && string(b) == formatLine2:
		// Its packs are read as local packs and sealed from now on.
		if err := storage.WriteFileSync(p, []byte(formatLine)); err != nil {
			return fmt.Errorf("vault: %w", err)
		}
		return nil
	case err == nil:
		return fmt.Errorf("vault: %s: unknown vault format %q", p, strings.TrimSpace(string(b)))
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("vault: %w", err)
	}
	for _, old := range []string{"objects", "packs"} {
		if ents, _ := os.ReadDir(filepath.Join(dir, old)); len(ents) > 0 {
			return fmt.Errorf("vault: %s holds objects in the layout of an older distren (no %s file): "+
				"move the data directory aside and submit the jobs again", dir, formatFile)
		}
	}
	// Durable before anything is stored: a crash must not leave objects
	// beside an empty format file.
	if err := storage.WriteFileSync(p, []byte(formatLine)); err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	return nil
}

// Names of an object on the module: whole, or the index of its chunks.
func wholeName(hash string) string { return hash[:2] + "/" + hash }

const indexSuffix = ".index"

func indexName(hash string) string { return wholeName(hash) + indexSuffix }

// Has reports whether the vault holds the object. An error means the vault
// could not tell (the module failed, ctx ended); it is never ErrNotFound.
// An invalid name is held by no vault: false, no error.
func (v *Vault) Has(ctx context.Context, hash string) (bool, error) {
	if !cdc.ValidHash(hash) {
		return false, nil
	}
	if v.packs != nil {
		if h, err := rawHash(hash); err == nil && v.packs.has(h) {
			return true, nil
		}
	}
	for _, name := range []string{wholeName(hash), indexName(hash)} {
		_, err := v.raw.Stat(ctx, name)
		switch {
		case err == nil:
			return true, nil
		case !errors.Is(err, storage.ErrNotFound):
			return false, fmt.Errorf("vault: looking for object %s: %w", hash, err)
		}
	}
	return false, nil
}

// firstRead is how much of an object Put reads before it takes a buffer
// of MaxWhole+1 bytes. Most objects (frame outputs, small inputs) fit: if
// every concurrent Put held 4 MiB, hundreds of workers uploading tiny
// outputs would cost gigabytes of heap.
const firstRead = 64 << 10

// Stats are the bytes the vault was given to store and has handed out,
// since it was opened.
type Stats struct{ BytesIn, BytesOut int64 }

// Stats returns the vault's byte counts.
func (v *Vault) Stats() Stats { return Stats{BytesIn: v.bytesIn.Load(), BytesOut: v.bytesOut.Load()} }

// Put stores the content of r and returns its name. If want is not empty,
// the content must hash to it, or Put fails and records nothing.
func (v *Vault) Put(ctx context.Context, r io.Reader, want string) (ref Ref, err error) {
	defer func() {
		if err == nil {
			v.bytesIn.Add(ref.Size)
		}
	}()
	fp := v.firsts.Get().(*[]byte)
	defer v.firsts.Put(fp)
	n, err := io.ReadFull(r, *fp)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return v.putWhole(ctx, (*fp)[:n], sha256.Sum256((*fp)[:n]), want)
	case err != nil:
		return Ref{}, fmt.Errorf("vault: writing object: %w", err)
	}
	bp := v.wholes.Get().(*[]byte)
	defer v.wholes.Put(bp)
	buf := *bp
	copy(buf, (*fp)[:n])
	m, err := io.ReadFull(r, buf[n:])
	n += m
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return v.putWhole(ctx, buf[:n], sha256.Sum256(buf[:n]), want)
	case err != nil:
		return Ref{}, fmt.Errorf("vault: writing object: %w", err)
	}
	return v.putChunked(ctx, io.MultiReader(bytes.NewReader(buf), r), want)
}

// ErrMismatch reports content that does not hash to the name it was sent under.
var ErrMismatch = errors.New("content does not match its name")

func mismatch(got, want string) error {
	return fmt.Errorf("vault: content hashes to %s, expected %s: %w", got, want, ErrMismatch)
}

// putWhole stores an object of at most MaxWhole bytes whose hash is sum.
func (v *Vault) putWhole(ctx context.Context, data []byte, sum [32]byte, want string) (Ref, error) {
	ref := Ref{Hash: hex.EncodeToString(sum[:]), Size: int64(len(data))}
	if want != "" && want != ref.Hash {
		return Ref{}, mismatch(ref.Hash, want)
	}
	defer v.touch(ref.Hash) // stored or found: recent either way
	if v.packs != nil && ref.Size <= v.small {
		if v.packs.has(sum) {
			return ref, nil
		}
		sealed, err := v.mod.Seal(ctx, wholeName(ref.Hash), data)
		if err != nil {
			return Ref{}, fmt.Errorf("vault: %w", err)
		}
		return ref, v.packs.put(ctx, sum, sealed)
	}
	// If the vault cannot tell whether it holds the object, it stores it
	// again: a Put is idempotent, and the store reports what is wrong.
	if ok, _ := v.Has(ctx, ref.Hash); ok {
		return ref, nil
	}
	if err := v.mod.PutContent(ctx, wholeName(ref.Hash), data, sum); err != nil {
		return Ref{}, fmt.Errorf("vault: %w", err)
	}
	return ref, nil
}

// putChunked stores a large object as chunks and an index.
func (v *Vault) putChunked(ctx context.Context, r io.Reader, want string) (Ref, error) {
	whole := sha256.New()
	var parts []cdc.ChunkRef
	var size int64
	err := v.chunker.Split(io.TeeReader(r, whole), func(c cdc.Chunk) error {
		if _, err := v.putWhole(ctx, c.Data, c.Hash, ""); err != nil {
			return err
		}
		parts = append(parts, c.Ref())
		size += int64(c.Size)
		return nil
	})
	if err != nil {
		return Ref{}, fmt.Errorf("vault: writing object: %w", err)
	}
	ref := Ref{Hash: hex.EncodeToString(whole.Sum(nil)), Size: size}
	if want != "" && want != ref.Hash {
		return Ref{}, mismatch(ref.Hash, want) // the chunks are left for collection
	}
	defer v.touch(ref.Hash)
	if ok, _ := v.Has(ctx, ref.Hash); ok { // not known: written again
		return ref, nil
	}
	idx := encodeIndex(parts)
	if err := v.mod.Put(ctx, indexName(ref.Hash), bytes.NewReader(idx), int64(len(idx))); err != nil {
		return Ref{}, fmt.Errorf("vault: %w", err)
	}
	return ref, nil
}

// Remove deletes an object. A chunked object's chunks stay until collected;
// packed objects stay until their pack is compacted.
func (v *Vault) Remove(ctx context.Context, hash string) error {
	if !cdc.ValidHash(hash) {
		return fmt.Errorf("vault: invalid object name %q", hash)
	}
	return errors.Join(v.mod.Delete(ctx, indexName(hash)), v.mod.Delete(ctx, wholeName(hash)))
}

// Touch marks an object as in use now, so that a Sweep with a grace period
// keeps it (a client was just told the server holds it). It remembers in
// memory only; ctx is for the interface's sake, so that a vault keeping
// recency elsewhere can honour it.
func (v *Vault) Touch(ctx context.Context, hash string) {
	v.touch(hash)
}

func (v *Vault) touch(hash string) {
	v.rmu.Lock()
	defer v.rmu.Unlock()
	now := time.Now()
	v.recent[hash] = now
	if len(v.recent) >= v.pruneAt {
		v.forgetLocked(now.Add(-v.grace))
	}
}

// minPrune is the least size at which Touch prunes what it remembers.
const minPrune = 4096

// forgetLocked drops the recency of objects touched before cutoff; called
// with rmu held.
func (v *Vault) forgetLocked(cutoff time.Time) {
	// A new map rather than deletes: a Go map keeps its size at its
	// largest, and a burst of uploads would hold its memory for good.
	kept := make(map[string]time.Time, len(v.recent)/2)
	for h, t := range v.recent {
		if !t.Before(cutoff) {
			kept[h] = t
		}
	}
	v.recent = kept
	v.pruneAt = max(minPrune, 2*len(v.recent))
}

// Dir returns the vault's directory, for messages.
func (v *Vault) Dir() string { return v.dir }

// Close drains the filter pipeline, stops sealing packs (a seal stopped
// halfway is done again at the next open) and releases the files the vault
// keeps open.
func (v *Vault) Close() error {
	var errs []error
	if v.packs != nil {
		v.packs.close()
	}
	if v.mod != nil {
		// Without a deadline: every write in the pipeline belongs to a Put
		// still waiting for it, and ends when that Put's context does.
		errs = append(errs, v.mod.Close(context.Background()))
	}
	for _, c := range v.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// Index objects list a chunked object's chunks:
//
//	"DVX1" | count uint32 | count × (SHA-256 32 bytes | size uint32)
//
// big-endian, the chunks in order.
const indexMagic = "DVX1"

func encodeIndex(parts []cdc.ChunkRef) []byte {
	b := make([]byte, 8, 8+36*len(parts))
	copy(b, indexMagic)
	b[4], b[5], b[6], b[7] = byte(len(parts)>>24), byte(len(parts)>>16), byte(len(parts)>>8), byte(len(parts))
	for _, p := range parts {
		b = append(b, p.Hash[:]...)
		b = append(b, byte(p.Size>>24), byte(p.Size>>16), byte(p.Size>>8), byte(p.Size))
	}
	return b
}

func decodeIndex(b []byte) ([]cdc.ChunkRef, error) {
	if len(b) < 8 || string(b[:4]) != indexMagic {
		return nil, fmt.Errorf("%w: not an index object", ErrCorrupt)
	}
	n := int(b[4])<<24 | int(b[5])<<16 | int(b[6])<<8 | int(b[7])
	if len(b) != 8+36*n {
		return nil, fmt.Errorf("%w: index of %d chunks is %d bytes", ErrCorrupt, n, len(b))
	}
	parts := make([]cdc.ChunkRef, n)
	for i := range parts {
		e := b[8+36*i:]
		copy(parts[i].Hash[:], e[:32])
		parts[i].Size = int64(e[32])<<24 | int64(e[33])<<16 | int64(e[34])<<8 | int64(e[35])
		if parts[i].Size == 0 || parts[i].Size > MaxWhole {
			return nil, fmt.Errorf("%w: index names a chunk of %d bytes", ErrCorrupt, parts[i].Size)
		}
	}
	return parts, nil
}
