// Package vault owns distren's stored bytes: a content-addressed object store
// in which every job input file and every frame output lives under the
// SHA-256 of its content. An object becomes visible only when written whole
// (temporary file, fsync, rename), so a crash never leaves a half-written
// object under a valid name, and reads verify nothing is missing.
package vault

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/distren/distren/internal/storage"
	"github.com/distren/distren/internal/storage/filter"
)

// ErrNotFound is returned for an object the vault does not hold.
var ErrNotFound = errors.New("object not found")

// Ref names an object by the hex SHA-256 of its content, with its size.
type Ref struct {
	Hash string `json:"hash"`
	Size int64  `json:"size"`
}

// Vault is a content-addressed object store in a directory.
type Vault struct {
	dir       string // objects live in dir/objects/ab/abcdef...
	tmp       string // partial writes, removed at Open
	noSync    bool
	bufPool   sync.Pool
	shards    sync.Map // "ab" → *os.File of dir/objects/ab
	small     int64    // objects up to this size go to packs
	packs     *packs   // nil when small is 0
	smallPool sync.Pool
	zstd      *filter.Zstd // not nil: compress file objects

	// Open object files are shared by their readers and limited in number.
	hmu     sync.Mutex
	handles map[string]*handle
	slots   chan struct{} // one per open object file
}

// handle is an object file open for any number of readers.
type handle struct {
	f    *os.File
	size int64
	refs int
}

// Options configure a vault.
type Options struct {
	// NoSync skips fsync of written objects: for caches whose loss is harmless.
	NoSync bool
	// SmallObjects, if positive, stores objects up to this many bytes in
	// append-only pack files (dir/packs) rather than one file each. Such
	// objects have no Path.
	SmallObjects int64
	// Compress stores file objects of at most MaxCompressed bytes with zstd
	// when that saves at least 1/64 of them, in the storage object format
	// (internal/storage: header with filters, lengths and checksum) under
	// objects/ab/<hash>.z. Reads return the plain content either way, so
	// the option can be turned on or off at any time. Path is not usable
	// with it.
	Compress bool
	// MaxOpen bounds the object files open at once (default 512): readers
	// of one object share its file, and an Open beyond the limit waits for
	// a reader to close, so more downloads can run than the process's file
	// descriptor limit would allow. Pack files are always open.
	MaxOpen int
}

// MaxCompressed is the largest object Compress compresses: chunks are at
// most a few MiB; larger objects (big frame outputs) are stored plain.
const MaxCompressed = 64 << 20

// Open opens (creating if needed) the vault in dir and removes partial writes
// left by an earlier process.
func Open(dir string, opt Options) (*Vault, error) {
	v := &Vault{dir: filepath.Join(dir, "objects"), tmp: filepath.Join(dir, "tmp"), noSync: opt.NoSync}
	v.bufPool.New = func() any { b := make([]byte, 128<<10); return &b }
	if err := os.RemoveAll(v.tmp); err != nil {
		return nil, fmt.Errorf("vault: clearing partial writes in %s: %w", v.tmp, err)
	}
	for _, d := range []string{v.dir, v.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
	}
	if opt.MaxOpen <= 0 {
		opt.MaxOpen = 512
	}
	v.handles, v.slots = map[string]*handle{}, make(chan struct{}, opt.MaxOpen)
	if opt.Compress {
		z, err := filter.NewZstd()
		if err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		v.zstd = z
	}
	if opt.SmallObjects > 0 {
		p, err := openPacks(filepath.Join(dir, "packs"), opt.NoSync)
		if err != nil {
			return nil, err
		}
		v.small, v.packs = min(opt.SmallObjects, 1<<30), p
		v.smallPool.New = func() any { b := make([]byte, v.small+1); return &b }
	}
	return v, nil
}

// ValidHash reports whether h looks like a hex SHA-256.
func ValidHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func (v *Vault) path(hash string) string { return filepath.Join(v.dir, hash[:2], hash) }

// Path returns the file holding an object, for callers that link or copy
// it. Objects in packs have none: use Open.
func (v *Vault) Path(hash string) (string, error) {
	if !ValidHash(hash) {
		return "", fmt.Errorf("vault: invalid object name %q", hash)
	}
	return v.path(hash), nil
}

// Has reports whether the vault holds the object.
func (v *Vault) Has(hash string) bool {
	if !ValidHash(hash) {
		return false
	}
	if v.packs != nil {
		if h, err := rawHash(hash); err == nil && v.packs.has(h) {
			return true
		}
	}
	_, err := os.Stat(v.path(hash))
	if err != nil {
		_, err = os.Stat(v.path(hash) + compressedSuffix)
	}
	return err == nil
}

// Object is an open object: read it, seek in it, or read at offsets.
type Object struct {
	*io.SectionReader
	v      *Vault // nil for a packed or decoded object
	name   string
	closed bool
}

// ErrCorrupt is returned by a verified read of an object whose content does
// not hash to its name.
var ErrCorrupt = errors.New("stored object is damaged")

// Verified returns a reader of the object's content that checks it against
// its name: the read that would hand over the last bytes fails with
// ErrCorrupt instead if the content does not hash to the object's name, so
// a damaged object never reads as whole.
func (o *Object) Verified() io.Reader {
	return &verifier{o: o, r: io.NewSectionReader(o.SectionReader, 0, o.Size()), left: o.Size(), h: sha256.New()}
}

type verifier struct {
	o    *Object
	r    io.Reader
	left int64
	h    hash.Hash
	err  error
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.left -= int64(n)
	if v.left == 0 && v.err == nil {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.o.name {
			v.err = fmt.Errorf("vault: object %s: %w (its content hashes to %s)", v.o.name, ErrCorrupt, got)
			return 0, v.err
		}
	}
	return n, err
}

// Close releases the object.
func (o *Object) Close() error {
	if o.v != nil && !o.closed {
		o.closed = true
		o.v.release(o.name)
	}
	return nil
}

// acquire returns the open file of an object, opening it if no reader has
// it open, after waiting for a free slot.
func (v *Vault) acquire(hash string) (*handle, error) {
	v.hmu.Lock()
	if h := v.handles[hash]; h != nil {
		h.refs++
		v.hmu.Unlock()
		return h, nil
	}
	v.hmu.Unlock()
	v.slots <- struct{}{}
	f, err := os.Open(v.path(hash))
	var st os.FileInfo
	if err == nil {
		if st, err = f.Stat(); err != nil {
			f.Close()
		}
	}
	if err != nil {
		<-v.slots
		return nil, err
	}
	v.hmu.Lock()
	defer v.hmu.Unlock()
	if h := v.handles[hash]; h != nil { // opened meanwhile by another reader
		f.Close()
		<-v.slots
		h.refs++
		return h, nil
	}
	h := &handle{f: f, size: st.Size(), refs: 1}
	v.handles[hash] = h
	return h, nil
}

func (v *Vault) release(hash string) {
	v.hmu.Lock()
	defer v.hmu.Unlock()
	h := v.handles[hash]
	if h == nil {
		return
	}
	if h.refs--; h.refs == 0 {
		h.f.Close()
		delete(v.handles, hash)
		<-v.slots
	}
}

// OpenFiles returns how many object files are open (not counting packs).
func (v *Vault) OpenFiles() int { return len(v.slots) }

// Open opens an object for reading.
func (v *Vault) Open(hash string) (*Object, error) {
	h, err := rawHash(hash)
	if err != nil {
		return nil, err
	}
	if v.packs != nil {
		if r, ok := v.packs.open(h); ok {
			return &Object{SectionReader: r, name: hash}, nil
		}
	}
	fh, err := v.acquire(hash)
	if errors.Is(err, fs.ErrNotExist) {
		return v.openCompressed(hash)
	}
	if err != nil {
		return nil, err
	}
	return &Object{SectionReader: io.NewSectionReader(fh.f, 0, fh.size), v: v, name: hash}, nil
}

// Put stores the content of r and returns its name. If want is not empty,
// the content must hash to it, or Put fails and stores nothing.
func (v *Vault) Put(r io.Reader, want string) (Ref, error) {
	if v.packs != nil {
		bp := v.smallPool.Get().(*[]byte)
		defer v.smallPool.Put(bp)
		buf := *bp
		n, err := io.ReadFull(r, buf)
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return v.putSmall(buf[:n], want)
		case err != nil:
			return Ref{}, fmt.Errorf("vault: writing object: %w", err)
		}
		r = io.MultiReader(bytes.NewReader(buf), r) // large: a file of its own
	}
	if v.zstd != nil {
		b, err := io.ReadAll(io.LimitReader(r, MaxCompressed+1))
		if err != nil {
			return Ref{}, fmt.Errorf("vault: writing object: %w", err)
		}
		if len(b) <= MaxCompressed {
			return v.putCompressed(b, want)
		}
		r = io.MultiReader(bytes.NewReader(b), r) // too large to compress
	}
	f, err := os.CreateTemp(v.tmp, "put-*")
	if err != nil {
		return Ref{}, fmt.Errorf("vault: %w", err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	bp := v.bufPool.Get().(*[]byte)
	n, err := io.CopyBuffer(io.MultiWriter(f, h), r, *bp)
	v.bufPool.Put(bp)
	if err != nil {
		return Ref{}, fmt.Errorf("vault: writing object: %w", err)
	}
	ref := Ref{Hash: hex.EncodeToString(h.Sum(nil)), Size: n}
	if want != "" && want != ref.Hash {
		return Ref{}, fmt.Errorf("vault: content hashes to %s, expected %s", ref.Hash, want)
	}
	dst := v.path(ref.Hash)
	if v.Has(ref.Hash) {
		f.Close()
		os.Remove(f.Name()) // already stored: content addressing deduplicates
		done = true
		return ref, nil
	}
	if !v.noSync {
		if err := f.Sync(); err != nil {
			return Ref{}, fmt.Errorf("vault: syncing object %s: %w", ref.Hash, err)
		}
	}
	if err := f.Close(); err != nil {
		return Ref{}, fmt.Errorf("vault: writing object %s: %w", ref.Hash, err)
	}
	shard, err := v.shard(ref.Hash)
	if err != nil {
		return Ref{}, err
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return Ref{}, fmt.Errorf("vault: storing object %s: %w", ref.Hash, err)
	}
	done = true
	if !v.noSync {
		// The new name must survive a crash before anyone records it.
		if err := shard.Sync(); err != nil {
			return Ref{}, fmt.Errorf("vault: syncing object %s: %w", ref.Hash, err)
		}
	}
	return ref, nil
}

func (v *Vault) putSmall(data []byte, want string) (Ref, error) {
	sum := sha256.Sum256(data)
	ref := Ref{Hash: hex.EncodeToString(sum[:]), Size: int64(len(data))}
	if want != "" && want != ref.Hash {
		return Ref{}, fmt.Errorf("vault: content hashes to %s, expected %s", ref.Hash, want)
	}
	if err := v.packs.put(sum, data); err != nil {
		return Ref{}, err
	}
	return ref, nil
}

// shard returns the open directory that holds objects starting like hash,
// creating it on first use. The directories stay open for fsync.
func (v *Vault) shard(hash string) (*os.File, error) {
	if d, ok := v.shards.Load(hash[:2]); ok {
		return d.(*os.File), nil
	}
	p := filepath.Join(v.dir, hash[:2])
	if err := os.MkdirAll(p, 0o755); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	d, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	if prev, loaded := v.shards.LoadOrStore(hash[:2], d); loaded {
		d.Close()
		return prev.(*os.File), nil
	}
	return d, nil
}

// Close releases the directories the vault keeps open.
func (v *Vault) Close() error {
	if v.packs != nil {
		v.packs.close()
	}
	if v.zstd != nil {
		v.zstd.Close()
	}
	v.shards.Range(func(k, d any) bool {
		d.(*os.File).Close()
		v.shards.Delete(k)
		return true
	})
	return nil
}

// PutFile stores a file's content.
func (v *Vault) PutFile(path string) (Ref, error) {
	f, err := os.Open(path)
	if err != nil {
		return Ref{}, fmt.Errorf("vault: %w", err)
	}
	defer f.Close()
	return v.Put(f, "")
}

// Hasher returns a new hash of the kind that names objects.
func Hasher() hash.Hash { return sha256.New() }

// CopyTo materializes an object as the file dst (mode perm), by hard link
// when link is true and the filesystem allows it, otherwise by copying.
func (v *Vault) CopyTo(hash, dst string, perm fs.FileMode, link bool) error {
	src, err := v.Path(hash)
	if err != nil {
		return err
	}
	if link {
		if err := os.Link(src, dst); err == nil {
			return nil
		}
	}
	in, err := v.Open(hash)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	bp := v.bufPool.Get().(*[]byte)
	_, err = io.CopyBuffer(out, in, *bp)
	v.bufPool.Put(bp)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// Remove deletes an object (for caches and collection). Packed objects stay
// until packs are collected.
func (v *Vault) Remove(hash string) error {
	if !ValidHash(hash) {
		return fmt.Errorf("vault: invalid object name %q", hash)
	}
	err := os.Remove(v.path(hash))
	if errors.Is(err, fs.ErrNotExist) {
		err = os.Remove(v.path(hash) + compressedSuffix)
	}
	return err
}

// Dir returns the vault's directory, for messages.
func (v *Vault) Dir() string { return strings.TrimSuffix(v.dir, string(filepath.Separator)+"objects") }

// compressedSuffix marks an object stored compressed, in the storage object
// format.
const compressedSuffix = ".z"

// openCompressed opens an object stored compressed: its plain content,
// decoded in memory (such objects are at most MaxCompressed bytes) after
// its header and checksum are verified.
func (v *Vault) openCompressed(hash string) (*Object, error) {
	b, err := os.ReadFile(v.path(hash) + compressedSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("vault: object %s: %w", hash, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	plain, err := decodeStored(hash, b)
	if err != nil {
		return nil, err
	}
	return &Object{SectionReader: io.NewSectionReader(bytes.NewReader(plain), 0, int64(len(plain))), name: hash}, nil
}

// decodeStored undoes the filters of an object in the storage format.
func decodeStored(hash string, b []byte) ([]byte, error) {
	r := bytes.NewReader(b)
	h, err := storage.ReadHeader(r)
	if err != nil {
		return nil, fmt.Errorf("vault: object %s: %w", hash, errors.Join(ErrCorrupt, err))
	}
	if h.Stored != int64(r.Len()) || h.Plain > MaxCompressed {
		return nil, fmt.Errorf("vault: object %s: %w: header lengths %d/%d for %d stored bytes", hash, ErrCorrupt, h.Plain, h.Stored, r.Len())
	}
	payload, err := io.ReadAll(storage.PayloadReader(r, h))
	if err != nil {
		return nil, fmt.Errorf("vault: object %s: %w", hash, errors.Join(ErrCorrupt, err))
	}
	for i := len(h.Filters) - 1; i >= 0; i-- {
		if h.Filters[i] != storage.FilterZstd {
			return nil, fmt.Errorf("vault: object %s: stored with filter %s, which this vault cannot undo", hash, h.Filters[i])
		}
		z, err := zstdDecoder()
		if err != nil {
			return nil, err
		}
		if payload, err = z.Decode(context.Background(), hash, payload); err != nil {
			return nil, fmt.Errorf("vault: object %s: %w", hash, errors.Join(ErrCorrupt, err))
		}
	}
	if int64(len(payload)) != h.Plain {
		return nil, fmt.Errorf("vault: object %s: %w: %d plain bytes, header says %d", hash, ErrCorrupt, len(payload), h.Plain)
	}
	return payload, nil
}

var zstdDecoder = sync.OnceValues(filter.NewZstd)

// putCompressed stores an object held in memory, compressed if that saves
// space, written once: temporary file, fsync, rename, directory fsync.
func (v *Vault) putCompressed(b []byte, want string) (Ref, error) {
	sum := sha256.Sum256(b)
	ref := Ref{Hash: hex.EncodeToString(sum[:]), Size: int64(len(b))}
	if want != "" && want != ref.Hash {
		return Ref{}, fmt.Errorf("vault: content hashes to %s, expected %s", ref.Hash, want)
	}
	if v.Has(ref.Hash) {
		return ref, nil
	}
	data, dst := b, v.path(ref.Hash)
	if out, applied, err := v.zstd.Encode(context.Background(), ref.Hash, b); err == nil && applied {
		data, dst = storage.Encode([]storage.Filter{storage.FilterZstd}, ref.Size, out), dst+compressedSuffix
	}
	f, err := os.CreateTemp(v.tmp, "put-*")
	if err != nil {
		return Ref{}, fmt.Errorf("vault: %w", err)
	}
	_, err = f.Write(data)
	if err == nil && !v.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	var shard *os.File
	if err == nil {
		shard, err = v.shard(ref.Hash)
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		os.Remove(f.Name())
		return Ref{}, fmt.Errorf("vault: storing object %s: %w", ref.Hash, err)
	}
	if !v.noSync {
		if err := shard.Sync(); err != nil {
			return Ref{}, fmt.Errorf("vault: syncing object %s: %w", ref.Hash, err)
		}
	}
	return ref, nil
}
