package vault

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/distren/distren/internal/storage"
)

// Small objects — a frame's output tarball is often a few kilobytes — are
// appended to pack files instead of getting a file each: creating, renaming
// and fsyncing a file per object costs far more than the object. Concurrent
// writers share one fsync (group commit, as the session does with SQLite).
//
// A pack is a sequence of records:
//
//	"DVP1" | length uint32 | SHA-256 (32 bytes) | content | CRC-32C uint32
//
// the CRC covering length, hash and content. At open, packs are scanned to
// rebuild the index; a torn record at the end of the newest pack (a crash
// mid-append) is cut off. Nothing after it was ever acknowledged.

const (
	packMagic   = "DVP1"
	packHeader  = 4 + 4 + 32
	packTrailer = 4
	packRoll    = 256 << 20 // start a new pack beyond this size
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type packLoc struct {
	pack int
	off  int64 // of the content
	size int64
}

type packs struct {
	dir    string
	noSync bool
	rollAt int64 // packRoll, smaller in tests

	mu    sync.Mutex // guards what follows, and appends
	index map[[32]byte]packLoc
	files []*os.File // by pack number; the last is appended to
	size  int64      // of the last pack

	syncMu sync.Mutex // one fsync at a time; waiters share the next
	synced int64      // bytes of the last pack known durable
	syncOf int        // the pack synced refers to
}

func packName(n int) string { return fmt.Sprintf("pack-%06d", n) }

// openPacks scans dir's packs, rebuilding the index.
func openPacks(dir string, noSync bool) (*packs, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "pack-") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	p := &packs{dir: dir, noSync: noSync, rollAt: packRoll, index: map[[32]byte]packLoc{}}
	for i, name := range names {
		if name != packName(i) {
			p.close()
			return nil, fmt.Errorf("vault: %s: pack files are not numbered 0..%d (found %s)", dir, len(names)-1, name)
		}
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("vault: %w", err)
		}
		p.files = append(p.files, f)
		end, err := p.scan(i, f)
		if err != nil {
			p.close()
			return nil, err
		}
		if i == len(names)-1 {
			// Cut off a torn tail so that appends continue from a record boundary.
			if err := f.Truncate(end); err != nil {
				p.close()
				return nil, fmt.Errorf("vault: %s: %w", name, err)
			}
			p.size = end
		}
	}
	if len(p.files) == 0 {
		if err := p.roll(); err != nil {
			return nil, err
		}
	}
	p.synced, p.syncOf = p.size, len(p.files)-1
	return p, nil
}

// scan indexes one pack and returns the end of its last whole record.
func (p *packs) scan(n int, f *os.File) (int64, error) {
	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	hdr := make([]byte, packHeader)
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return off, nil // end, or a torn header
		}
		size := int64(binary.LittleEndian.Uint32(hdr[4:8]))
		if string(hdr[:4]) != packMagic {
			return off, nil
		}
		if int64(cap(buf)) < size+packTrailer {
			buf = make([]byte, size+packTrailer)
		}
		buf = buf[:size+packTrailer]
		if _, err := io.ReadFull(r, buf); err != nil {
			return off, nil // torn content
		}
		crc := crc32.Update(crc32.Checksum(hdr[4:], castagnoli), castagnoli, buf[:size])
		if crc != binary.LittleEndian.Uint32(buf[size:]) {
			return off, nil
		}
		var h [32]byte
		copy(h[:], hdr[8:])
		p.index[h] = packLoc{pack: n, off: off + packHeader, size: size}
		off += packHeader + size + packTrailer
	}
}

// roll starts a new pack file. Called with mu held (or before use).
func (p *packs) roll() error {
	n := len(p.files)
	f, err := os.OpenFile(filepath.Join(p.dir, packName(n)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	if !p.noSync {
		if err := storage.SyncDir(p.dir); err != nil {
			f.Close()
			return err
		}
	}
	p.files = append(p.files, f)
	p.size = 0
	return nil
}

func (p *packs) has(h [32]byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.index[h]
	return ok
}

// put appends an object and returns once it is durable.
func (p *packs) put(h [32]byte, data []byte) error {
	rec := make([]byte, packHeader+len(data)+packTrailer)
	copy(rec, packMagic)
	binary.LittleEndian.PutUint32(rec[4:8], uint32(len(data)))
	copy(rec[8:40], h[:])
	copy(rec[packHeader:], data)
	binary.LittleEndian.PutUint32(rec[packHeader+len(data):], crc32.Checksum(rec[4:packHeader+len(data)], castagnoli))

	p.mu.Lock()
	if _, ok := p.index[h]; ok {
		p.mu.Unlock()
		return nil
	}
	if p.size > 0 && p.size+int64(len(rec)) > p.rollAt {
		// Make the full pack durable before moving on: sync only follows the last.
		if err := p.syncLast(); err != nil {
			p.mu.Unlock()
			return err
		}
		if err := p.roll(); err != nil {
			p.mu.Unlock()
			return err
		}
	}
	n, off := len(p.files)-1, p.size
	f := p.files[n]
	if _, err := f.WriteAt(rec, off); err != nil {
		// Nothing points past p.size; the next append overwrites the remains.
		p.mu.Unlock()
		return fmt.Errorf("vault: appending to %s: %w", packName(n), err)
	}
	p.size += int64(len(rec))
	end := p.size
	p.mu.Unlock()

	if err := p.syncTo(n, end); err != nil {
		return err
	}
	p.mu.Lock()
	p.index[h] = packLoc{pack: n, off: off + packHeader, size: int64(len(data))}
	p.mu.Unlock()
	return nil
}

// syncLast makes the last pack durable; called with mu held.
func (p *packs) syncLast() error {
	if p.noSync {
		return nil
	}
	if err := p.files[len(p.files)-1].Sync(); err != nil {
		return fmt.Errorf("vault: syncing %s: %w", packName(len(p.files)-1), err)
	}
	return nil
}

// syncTo returns when pack n is durable up to end. Whoever holds syncMu
// fsyncs everything appended so far, so writers that queued behind it find
// their bytes already durable.
func (p *packs) syncTo(n int, end int64) error {
	if p.noSync {
		return nil
	}
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	if p.syncOf > n || (p.syncOf == n && p.synced >= end) {
		return nil
	}
	p.mu.Lock()
	last, size := len(p.files)-1, p.size
	f := p.files[n]
	p.mu.Unlock()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("vault: syncing %s: %w", packName(n), err)
	}
	if last == n {
		p.syncOf, p.synced = n, size
	} else {
		p.syncOf, p.synced = n+1, 0 // n was full and synced at roll
	}
	return nil
}

// open returns a reader of a packed object.
func (p *packs) open(h [32]byte) (*io.SectionReader, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.index[h]
	if !ok {
		return nil, false
	}
	return io.NewSectionReader(p.files[l.pack], l.off, l.size), true
}

func (p *packs) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.files {
		f.Close()
	}
	p.files = nil
}

func rawHash(hash string) ([32]byte, error) {
	var h [32]byte
	if !ValidHash(hash) {
		return h, fmt.Errorf("vault: invalid object name %q: %w", hash, ErrNotFound)
	}
	_, err := hex.Decode(h[:], []byte(hash))
	if err != nil {
		return h, errors.Join(ErrNotFound, err)
	}
	return h, nil
}
