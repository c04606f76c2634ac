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

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/storage"
)

// Small objects — a frame's output tarball is often a few kilobytes — are
// appended to pack files on the local disk instead of getting a module
// object each: creating, renaming and fsyncing a file per object costs far
// more than the object. Concurrent writers share one fsync (group commit,
// as the session does with SQLite).
//
// A pack is a sequence of records:
//
//	"DVP2" | length uint32 | SHA-256 (32 bytes) | sealed | CRC-32C uint32
//
// where the hash names the object (of its plain content), sealed is the
// object in the storage object format — through the same filters as the
// vault's other objects, so encryption at rest covers packs too — and the
// CRC covers length, hash and sealed bytes. At open, packs are scanned to
// rebuild the index; a torn record at the end of the newest pack (a crash
// mid-append) is cut off. Nothing after it was ever acknowledged.
//
// Packs are numbered in the order they were started, with gaps where
// compaction removed one; appends go to the highest. Compaction (Sweep)
// copies a pack's live records to the newest pack, makes them durable, and
// only then removes the old pack: after a crash between the two, a record
// is in both, and either copy serves.

const (
	packMagic   = "DVP2"
	packHeader  = 4 + 4 + 32
	packTrailer = 4
	packRoll    = 256 << 20 // start a new pack beyond this size
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type packLoc struct {
	pack int
	off  int64 // of the sealed bytes
	size int64 // of the sealed bytes
}

type packs struct {
	dir    string
	noSync bool
	rollAt int64 // packRoll, smaller in tests

	mu    sync.RWMutex // guards what follows, and appends; readers share it
	index map[[32]byte]packLoc
	files map[int]*os.File // by pack number
	last  int              // the pack appended to
	size  int64            // of the last pack
	// writing counts, by pack, the records appended but not yet indexed
	// (being made durable): compaction leaves such a pack alone.
	writing map[int]int

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
	var nums []int
	for _, e := range ents {
		var n int
		if _, err := fmt.Sscanf(e.Name(), "pack-%06d", &n); err == nil && e.Name() == packName(n) {
			nums = append(nums, n)
		} else if strings.HasPrefix(e.Name(), "pack-") {
			return nil, fmt.Errorf("vault: %s: %s is not a pack name (pack-NNNNNN)", dir, e.Name())
		}
	}
	sort.Ints(nums)
	p := &packs{dir: dir, noSync: noSync, rollAt: packRoll, index: map[[32]byte]packLoc{}, files: map[int]*os.File{}, writing: map[int]int{}, last: -1}
	for i, n := range nums {
		f, err := os.OpenFile(filepath.Join(dir, packName(n)), os.O_RDWR, 0)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("vault: %w", err)
		}
		p.files[n] = f
		end := p.scan(n, f)
		if i == len(nums)-1 {
			// Cut off a torn tail so that appends continue from a record boundary.
			if err := f.Truncate(end); err != nil {
				p.close()
				return nil, fmt.Errorf("vault: %s: %w", packName(n), err)
			}
			p.last, p.size = n, end
		}
	}
	if p.last < 0 {
		if err := p.roll(); err != nil {
			return nil, err
		}
	}
	p.synced, p.syncOf = p.size, p.last
	return p, nil
}

// scan indexes one pack and returns the end of its last whole record.
func (p *packs) scan(n int, f *os.File) int64 {
	var off int64
	eachRecord(f, func(h [32]byte, recOff int64, sealed []byte, ok bool) bool {
		if !ok {
			return false
		}
		p.index[h] = packLoc{pack: n, off: recOff + packHeader, size: int64(len(sealed))}
		off = recOff + packHeader + int64(len(sealed)) + packTrailer
		return true
	})
	return off
}

// eachRecord reads a pack's records in order, calling fn with each: its
// name, offset and sealed bytes (valid until fn returns). A record that is
// not whole — torn, bad magic, bad CRC — is passed with ok false and ends
// the scan, as it does when fn returns false.
func eachRecord(f io.ReaderAt, fn func(h [32]byte, off int64, sealed []byte, ok bool) bool) {
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, 1<<62), 1<<20)
	var off int64
	hdr := make([]byte, packHeader)
	var buf []byte
	for {
		_, err := io.ReadFull(r, hdr)
		if err == io.EOF {
			return
		}
		var h [32]byte
		copy(h[:], hdr[8:40])
		if err != nil || string(hdr[:4]) != packMagic {
			fn(h, off, nil, false)
			return
		}
		size := int64(binary.LittleEndian.Uint32(hdr[4:8]))
		if size > 2*MaxWhole {
			fn(h, off, nil, false)
			return
		}
		if int64(cap(buf)) < size+packTrailer {
			buf = make([]byte, size+packTrailer)
		}
		buf = buf[:size+packTrailer]
		if _, err := io.ReadFull(r, buf); err != nil {
			fn(h, off, nil, false)
			return
		}
		crc := crc32.Update(crc32.Checksum(hdr[4:], castagnoli), castagnoli, buf[:size])
		if crc != binary.LittleEndian.Uint32(buf[size:]) {
			fn(h, off, nil, false)
			return
		}
		if !fn(h, off, buf[:size], true) {
			return
		}
		off += packHeader + size + packTrailer
	}
}

// roll starts a new pack file. Called with mu held (or before use).
func (p *packs) roll() error {
	n := p.last + 1
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
	p.files[n] = f
	p.last, p.size = n, 0
	return nil
}

func (p *packs) has(h [32]byte) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	_, ok := p.index[h]
	return ok
}

// put appends an object's sealed form and returns once it is durable.
func (p *packs) put(h [32]byte, sealed []byte) error {
	rec := record(h, sealed)
	p.mu.Lock()
	if _, ok := p.index[h]; ok {
		p.mu.Unlock()
		return nil
	}
	n, off, err := p.appendLocked(rec)
	if err == nil {
		p.writing[n]++
	}
	p.mu.Unlock()
	if err != nil {
		return err
	}
	err = p.syncTo(n, off+int64(len(rec)))
	p.mu.Lock()
	if p.writing[n]--; p.writing[n] == 0 {
		delete(p.writing, n)
	}
	if err == nil {
		p.index[h] = packLoc{pack: n, off: off + packHeader, size: int64(len(sealed))}
	}
	p.mu.Unlock()
	return err
}

// record frames an object's sealed form as a pack record.
func record(h [32]byte, sealed []byte) []byte {
	rec := make([]byte, packHeader+len(sealed)+packTrailer)
	copy(rec, packMagic)
	binary.LittleEndian.PutUint32(rec[4:8], uint32(len(sealed)))
	copy(rec[8:40], h[:])
	copy(rec[packHeader:], sealed)
	binary.LittleEndian.PutUint32(rec[packHeader+len(sealed):], crc32.Checksum(rec[4:packHeader+len(sealed)], castagnoli))
	return rec
}

// appendLocked writes a record at the end of the last pack, rolling to a
// new one when it is full, and returns where. The record is not durable
// yet.
func (p *packs) appendLocked(rec []byte) (int, int64, error) {
	if p.size > 0 && p.size+int64(len(rec)) > p.rollAt {
		if err := p.rollLocked(); err != nil {
			return 0, 0, err
		}
	}
	n, off := p.last, p.size
	if _, err := p.files[n].WriteAt(rec, off); err != nil {
		// Nothing points past p.size; the next append overwrites the remains.
		return 0, 0, fmt.Errorf("vault: appending to %s: %w", packName(n), err)
	}
	p.size += int64(len(rec))
	return n, off, nil
}

// rollLocked makes the last pack durable (sync only follows the last) and
// starts a new one; called with mu held.
func (p *packs) rollLocked() error {
	if err := p.syncLast(); err != nil {
		return err
	}
	return p.roll()
}

// syncLast makes the last pack durable; called with mu held.
func (p *packs) syncLast() error {
	if p.noSync {
		return nil
	}
	if err := p.files[p.last].Sync(); err != nil {
		return fmt.Errorf("vault: syncing %s: %w", packName(p.last), err)
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
	p.mu.RLock()
	last, size := p.last, p.size
	f := p.files[n]
	p.mu.RUnlock()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("vault: syncing %s: %w", packName(n), err)
	}
	if last == n {
		p.syncOf, p.synced = n, size
	} else {
		p.syncOf, p.synced = last, 0 // n was full and synced at roll
	}
	return nil
}

// read returns a copy of a packed object's sealed bytes.
func (p *packs) read(h [32]byte) ([]byte, bool, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	l, ok := p.index[h]
	if !ok {
		return nil, false, nil
	}
	b := make([]byte, l.size)
	if _, err := p.files[l.pack].ReadAt(b, l.off); err != nil {
		return nil, true, fmt.Errorf("reading %s at offset %d: %w", packName(l.pack), l.off, err)
	}
	return b, true, nil
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
	if !cdc.ValidHash(hash) {
		return h, fmt.Errorf("vault: invalid object name %q: %w", hash, ErrNotFound)
	}
	_, err := hex.Decode(h[:], []byte(hash))
	if err != nil {
		return h, errors.Join(ErrNotFound, err)
	}
	return h, nil
}
