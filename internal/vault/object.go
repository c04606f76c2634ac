package vault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/storage"
)

// Object is an open object: read it, seek in it, or read at offsets. Its
// bytes are verified before they are handed over. An Object is for one
// goroutine at a time. Its reads use the context it was opened with.
type Object struct {
	ctx  context.Context
	v    *Vault
	name string
	size int64
	off  int64 // of Read and Seek

	whole []byte  // the content of an object stored whole
	held  *handle // the decoded object held, released by Close or the next chunk
	parts []part  // of a chunked object
	cur   int     // the part held, -1 if none
}

type part struct {
	hash string
	off  int64
	size int64
}

// handle is a decoded object held for any number of readers.
type handle struct {
	ready chan struct{} // closed once data or err is set
	data  []byte
	err   error
	refs  int
}

// Open opens an object for reading: ErrNotFound if the vault does not hold
// it. The object's reads (of a chunked object's chunks, as they are
// reached) use ctx.
func (v *Vault) Open(ctx context.Context, hash string) (*Object, error) {
	if !cdc.ValidHash(hash) {
		return nil, fmt.Errorf("vault: invalid object name %q: %w", hash, ErrNotFound)
	}
	hd, err := v.acquire(ctx, hash)
	if err == nil {
		return &Object{ctx: ctx, v: v, name: hash, size: int64(len(hd.data)), whole: hd.data, held: hd, cur: -1}, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	parts, err := v.index(ctx, hash)
	if err != nil {
		return nil, err
	}
	o := &Object{ctx: ctx, v: v, name: hash, parts: make([]part, len(parts)), cur: -1}
	for i, p := range parts {
		o.parts[i] = part{hash: hex.EncodeToString(p.Hash[:]), off: o.size, size: p.Size}
		o.size += p.Size
	}
	return o, nil
}

// index reads the chunk list of a chunked object.
func (v *Vault) index(ctx context.Context, hash string) ([]cdc.ChunkRef, error) {
	rc, err := v.mod.Get(ctx, indexName(hash))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("vault: object %s: %w", hash, ErrNotFound)
	}
	if err != nil {
		return nil, v.readError(hash, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, v.readError(hash, err)
	}
	parts, err := decodeIndex(b)
	if err != nil {
		return nil, fmt.Errorf("vault: object %s: %w", hash, err)
	}
	return parts, nil
}

// readError names the object, and says it is damaged when the module found
// it so.
func (v *Vault) readError(hash string, err error) error {
	if errors.Is(err, storage.ErrCorrupt) {
		return fmt.Errorf("vault: object %s: %w", hash, errors.Join(ErrCorrupt, err))
	}
	return fmt.Errorf("vault: object %s: %w", hash, err)
}

// unseal decodes a pack record and checks its content against its name.
func (v *Vault) unseal(ctx context.Context, hash string, sealed []byte) ([]byte, error) {
	data, err := v.mod.Unseal(ctx, wholeName(hash), sealed)
	if err != nil && ctx.Err() != nil { // a filter stopped, not a damaged record
		return nil, fmt.Errorf("vault: object %s: %w", hash, err)
	}
	if err != nil {
		return nil, fmt.Errorf("vault: object %s: %w", hash, errors.Join(ErrCorrupt, err))
	}
	return data, verify(hash, data)
}

// verify checks that data hashes to the object's name.
func verify(hash string, data []byte) error {
	if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != hash {
		return fmt.Errorf("vault: object %s: %w (its %d bytes hash to %x)", hash, ErrCorrupt, len(data), got)
	}
	return nil
}

// acquire returns the decoded content of an object stored whole, reading
// and verifying it if no reader holds it, after waiting for a free slot.
func (v *Vault) acquire(ctx context.Context, hash string) (*handle, error) {
	for attempt := 1; ; attempt++ {
		h, err := v.acquireOnce(ctx, hash)
		// A reader whose context ended failed the readers waiting for the
		// same object: those whose context goes on try again.
		if err != nil && ctx.Err() == nil && attempt < 4 && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			continue
		}
		return h, err
	}
}

func (v *Vault) acquireOnce(ctx context.Context, hash string) (*handle, error) {
	v.hmu.Lock()
	if h := v.handles[hash]; h != nil {
		h.refs++
		v.hmu.Unlock()
		select {
		case <-h.ready:
		case <-ctx.Done():
			go func() { <-h.ready; v.release(hash, h) }()
			return nil, fmt.Errorf("vault: object %s: %w", hash, ctx.Err())
		}
		if h.err != nil {
			v.release(hash, h)
			return nil, h.err
		}
		return h, nil
	}
	h := &handle{ready: make(chan struct{}), refs: 1}
	v.handles[hash] = h
	v.hmu.Unlock()

	slot := false
	select {
	case v.slots <- struct{}{}:
		slot = true
		h.data, h.err = v.load(ctx, hash)
	case <-ctx.Done():
		h.err = fmt.Errorf("vault: object %s: waiting for a reader to close: %w", hash, ctx.Err())
	}
	if h.err != nil {
		if slot {
			<-v.slots
		}
		v.hmu.Lock()
		delete(v.handles, hash) // the next reader tries again
		v.hmu.Unlock()
	}
	close(h.ready)
	if h.err != nil {
		return nil, h.err
	}
	return h, nil
}

// load reads and verifies an object stored whole, in a pack or on the
// module.
func (v *Vault) load(ctx context.Context, hash string) ([]byte, error) {
	if v.packs != nil {
		h, err := rawHash(hash)
		if err != nil {
			return nil, err
		}
		if sealed, ok, err := v.packs.read(ctx, h); err != nil {
			return nil, v.readError(hash, err) // the disk or the module failing, not the record
		} else if ok {
			return v.unseal(ctx, hash, sealed)
		}
	}
	data, sum, known, err := v.mod.GetContent(ctx, wholeName(hash))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("vault: object %s: %w", hash, errors.Join(ErrNotFound, err))
	}
	if err != nil {
		return nil, v.readError(hash, err)
	}
	if known { // the header's checksum, verified, is the content's
		if hex.EncodeToString(sum[:]) != hash {
			return nil, fmt.Errorf("vault: object %s: %w (its %d bytes hash to %x)", hash, ErrCorrupt, len(data), sum)
		}
		return data, nil
	}
	return data, verify(hash, data)
}

func (v *Vault) release(hash string, h *handle) {
	v.hmu.Lock()
	defer v.hmu.Unlock()
	if h.refs--; h.refs == 0 && v.handles[hash] == h && h.err == nil {
		delete(v.handles, hash)
		<-v.slots
	}
}

// OpenFiles returns how many decoded objects are held for readers.
func (v *Vault) OpenFiles() int { return len(v.slots) }

// Size returns the object's size.
func (o *Object) Size() int64 { return o.size }

// ReadAt implements io.ReaderAt.
func (o *Object) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("vault: object %s: negative offset", o.name)
	}
	n := 0
	for len(p) > 0 && off < o.size {
		data, start, err := o.at(off)
		if err != nil {
			return n, err
		}
		c := copy(p, data[off-start:])
		o.v.bytesOut.Add(int64(c))
		n, p, off = n+c, p[c:], off+int64(c)
	}
	if len(p) > 0 {
		return n, io.EOF
	}
	return n, nil
}

// at returns the decoded piece holding offset off, and the offset it starts
// at.
func (o *Object) at(off int64) ([]byte, int64, error) {
	if o.parts == nil {
		return o.whole, 0, nil
	}
	i := sort.Search(len(o.parts), func(i int) bool { return o.parts[i].off+o.parts[i].size > off })
	if i != o.cur {
		if o.held != nil {
			o.v.release(o.parts[o.cur].hash, o.held)
			o.held, o.cur = nil, -1
		}
		h, err := o.v.acquire(o.ctx, o.parts[i].hash)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				err = fmt.Errorf("vault: object %s: chunk %d of %d: %w", o.name, i+1, len(o.parts), errors.Join(ErrCorrupt, err))
			}
			return nil, 0, err
		}
		if int64(len(h.data)) != o.parts[i].size {
			o.v.release(o.parts[i].hash, h)
			return nil, 0, fmt.Errorf("vault: object %s: %w: chunk %s is %d bytes, its index says %d", o.name, ErrCorrupt, o.parts[i].hash, len(h.data), o.parts[i].size)
		}
		o.held, o.cur = h, i
	}
	return o.held.data, o.parts[i].off, nil
}

// Read implements io.Reader.
func (o *Object) Read(p []byte) (int, error) {
	if o.off >= o.size {
		return 0, io.EOF
	}
	n, err := o.ReadAt(p, o.off)
	o.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Seek implements io.Seeker.
func (o *Object) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += o.off
	case io.SeekEnd:
		offset += o.size
	default:
		return 0, fmt.Errorf("vault: object %s: invalid whence %d", o.name, whence)
	}
	if offset < 0 {
		return 0, fmt.Errorf("vault: object %s: seek to a negative offset", o.name)
	}
	o.off = offset
	return offset, nil
}

// Verified returns a reader of the object's content from its start. Every
// read of the vault is verified — a piece is handed over only after it
// hashes to its name — so it fails with ErrCorrupt rather than return a
// damaged object's bytes.
func (o *Object) Verified() io.Reader { return io.NewSectionReader(o, 0, o.size) }

// Close releases the object.
func (o *Object) Close() error {
	if o.held != nil {
		name := o.name
		if o.parts != nil {
			name = o.parts[o.cur].hash
		}
		o.v.release(name, o.held)
		o.held = nil
	}
	return nil
}
