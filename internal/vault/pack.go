package vault

import (
	"bufio"
	"bytes"
	"context"
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
	"time"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/storage"
)

// Small objects — a frame's output tarball is often a few kilobytes — are
// kept in packs instead of getting a module object each: creating, renaming
// and fsyncing a file (or sending a request) per object costs far more than
// the object.
//
// A pack is a sequence of records:
//
//	"DVP2" | length uint32 | SHA-256 (32 bytes) | sealed | CRC-32C uint32
//
// where the hash names the object (of its plain content), sealed is the
// object in the storage object format — through the same filters as the
// vault's other objects, so encryption at rest covers packs too — and the
// CRC covers length, hash and sealed bytes.
//
// # The open pack and sealed packs
//
// Puts append to the open pack, a file on the local disk (DIR/packs), and
// share one fsync (group commit, as the session does with SQLite): a Put
// is durable when it returns. When the open pack reaches rollAt bytes, or
// has been open for Options.SealPacksAfter, it is synced and a new open
// pack started; the old one is then sealed in the background: stored whole
// as the module object "packs/pack-NNNNNN", then its index — the name,
// offset and length of every record — as "packs/pack-NNNNNN.idx", and only
// then removed from the local disk. Until then its records are read from
// the local file; after, with a ranged read (GetRange) of the module
// object. A pack whose upload fails stays local and is tried again at the
// next roll, tick or start, so the module holds every pack but the open one
// and those it could not take yet.
//
// At open, the indexes of the sealed packs are read from the module (a pack
// whose index is missing is scanned and its index written; an index whose
// pack is missing is removed), the local packs are scanned, and a torn
// record at the end of the newest local pack (a crash mid-append) is cut
// off: nothing after it was ever acknowledged. The newest local pack goes
// on as the open pack; other local packs — rolled before a crash, or the
// packs of a vault of the format before packs moved to the module — are
// sealed.
//
// Packs are numbered in the order they were started, with gaps where
// compaction removed one; appends go to the highest. Compaction (Sweep)
// copies a sealed pack's live records to the open pack, makes them durable,
// and only then deletes the pack and then its index: after a crash in
// between, a record is in both places, and either copy serves.

const (
	packMagic   = "DVP2"
	packHeader  = 4 + 4 + 32
	packTrailer = 4
	packRoll    = 16 << 20 // seal the open pack beyond this size

	// packPrefix is where sealed packs live on the module; it can name no
	// object (object names start with two hex digits and a '/').
	packPrefix = "packs/"
	packIdxExt = ".idx"

	// DefaultSealPacksAfter is how long a pack stays open at most.
	DefaultSealPacksAfter = 10 * time.Minute
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type packLoc struct {
	pack int
	off  int64 // of the sealed bytes
	size int64 // of the sealed bytes
}

type packs struct {
	dir    string
	mod    storage.Module // holds the sealed packs, below the filters
	noSync bool
	rollAt int64         // packRoll, smaller in tests
	maxAge time.Duration // how long a pack stays open

	mu     sync.RWMutex // guards what follows, and appends; readers share it
	index  map[[32]byte]packLoc
	local  map[int]*os.File // packs on the local disk, by number: the open one and those not sealed yet
	remote map[int]int64    // sealed packs on the module, and their sizes
	last   int              // the open pack
	size   int64            // of the open pack
	since  time.Time        // when the open pack got its first record
	// writing counts, by pack, the records appended but not yet indexed
	// (being made durable): compaction leaves such a pack alone.
	writing map[int]int

	syncMu sync.Mutex // one fsync at a time; waiters share the next
	synced int64      // bytes of the last pack known durable
	syncOf int        // the pack synced refers to

	sealMu  sync.Mutex    // one seal at a time
	started chan struct{} // tells the sealer an open pack got its first record
	bg      context.Context
	stop    context.CancelFunc // ends the background seals, at close
	running sync.WaitGroup
}

func packName(n int) string { return fmt.Sprintf("pack-%06d", n) }

func packObject(n int) string { return packPrefix + packName(n) }

func packIndexObject(n int) string { return packObject(n) + packIdxExt }

// parsePack returns the number of a pack's name (as on the local disk,
// without packPrefix), -1 for a name that is no pack's.
func parsePack(name string) int {
	var n int
	if _, err := fmt.Sscanf(name, "pack-%06d", &n); err == nil && name == packName(n) {
		return n
	}
	return -1
}

// openPacks reads the sealed packs' indexes from mod and scans the local
// packs in dir, rebuilding the index.
func openPacks(ctx context.Context, dir string, mod storage.Module, noSync bool, maxAge time.Duration) (*packs, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	var nums []int
	for _, e := range ents {
		if n := parsePack(e.Name()); n >= 0 {
			nums = append(nums, n)
		} else if strings.HasPrefix(e.Name(), "pack-") {
			return nil, fmt.Errorf("vault: %s: %s is not a pack name (pack-NNNNNN)", dir, e.Name())
		}
	}
	sort.Ints(nums)
	p := &packs{dir: dir, mod: mod, noSync: noSync, rollAt: packRoll, maxAge: maxAge,
		index: map[[32]byte]packLoc{}, local: map[int]*os.File{}, remote: map[int]int64{},
		writing: map[int]int{}, last: -1, started: make(chan struct{}, 1)}
	// Seals run in the background, beyond the call that opened the vault,
	// until close stops them.
	p.bg, p.stop = context.WithCancel(context.WithoutCancel(ctx))
	ok := false
	defer func() {
		if !ok {
			p.close()
		}
	}()
	if err := p.openSealed(ctx); err != nil {
		return nil, err
	}
	maxRemote := -1
	for n := range p.remote {
		maxRemote = max(maxRemote, n)
	}
	for i, n := range nums {
		f, err := os.OpenFile(filepath.Join(dir, packName(n)), os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		p.local[n] = f
		end := p.scan(n, f)
		if i == len(nums)-1 {
			// Cut off a torn tail so that appends continue from a record boundary.
			if err := f.Truncate(end); err != nil {
				return nil, fmt.Errorf("vault: %s: %w", packName(n), err)
			}
			if n > maxRemote && end < p.rollAt {
				p.last, p.size = n, end
			}
		}
	}
	if p.last < 0 {
		p.last = max(maxRemote, -1)
		if len(nums) > 0 {
			p.last = max(p.last, nums[len(nums)-1])
		}
		if err := p.roll(); err != nil {
			return nil, err
		}
	}
	p.synced, p.syncOf = p.size, p.last
	if p.size > 0 {
		p.since = time.Now()
	}
	p.running.Add(1)
	go p.sealer()
	p.kick()
	ok = true
	return p, nil
}

// openSealed reads the indexes of the packs on the module.
func (p *packs) openSealed(ctx context.Context) error {
	packsOn := map[int]int64{}
	idxs := map[int]bool{}
	err := p.mod.List(ctx, packPrefix, func(i storage.Info) error {
		base, isIdx := strings.CutSuffix(strings.TrimPrefix(i.Name, packPrefix), packIdxExt)
		n := parsePack(base)
		switch {
		case n < 0:
			return fmt.Errorf("%s on %s is not a pack's name (%spack-NNNNNN)", i.Name, p.mod, packPrefix)
		case isIdx:
			idxs[n] = true
		default:
			packsOn[n] = i.Size
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("vault: reading the packs: %w", err)
	}
	for n := range idxs {
		if _, ok := packsOn[n]; !ok { // its pack was compacted away
			if err := p.mod.Delete(ctx, packIndexObject(n)); err != nil {
				return fmt.Errorf("vault: %w", err)
			}
		}
	}
	for n, size := range packsOn {
		var locs []idxEntry
		var err error
		if idxs[n] {
			locs, err = p.readIndex(ctx, n)
		}
		if !idxs[n] || errors.Is(err, storage.ErrCorrupt) {
			// Sealed but not indexed (a crash between the two), or the
			// index is damaged: the pack itself says what it holds.
			if locs, err = p.scanSealed(ctx, n); err == nil {
				err = p.writeIndex(ctx, n, locs)
			}
		}
		if err != nil {
			return fmt.Errorf("vault: %w", err)
		}
		for _, e := range locs {
			p.index[e.hash] = packLoc{pack: n, off: e.off, size: e.size}
		}
		p.remote[n] = size
	}
	return nil
}

// idxEntry is a record of a pack, as its index object lists it.
type idxEntry struct {
	hash      [32]byte
	off, size int64 // of the sealed bytes
}

// Index objects of sealed packs:
//
//	"DVPI" | count uint32 | count × (SHA-256 32 bytes | offset uint64 | length uint32) | CRC-32C uint32
//
// little-endian, the CRC over everything before it.
const packIdxMagic = "DVPI"

func encodePackIndex(locs []idxEntry) []byte {
	b := make([]byte, 8, 8+44*len(locs)+4)
	copy(b, packIdxMagic)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(locs)))
	for _, e := range locs {
		b = append(b, e.hash[:]...)
		b = binary.LittleEndian.AppendUint64(b, uint64(e.off))
		b = binary.LittleEndian.AppendUint32(b, uint32(e.size))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodePackIndex(b []byte) ([]idxEntry, error) {
	if len(b) < 12 || string(b[:4]) != packIdxMagic {
		return nil, fmt.Errorf("%w: not a pack index", storage.ErrCorrupt)
	}
	n := int(binary.LittleEndian.Uint32(b[4:]))
	if len(b) != 8+44*n+4 || crc32.Checksum(b[:len(b)-4], castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, fmt.Errorf("%w: pack index of %d records is %d bytes or fails its checksum", storage.ErrCorrupt, n, len(b))
	}
	locs := make([]idxEntry, n)
	for i := range locs {
		e := b[8+44*i:]
		copy(locs[i].hash[:], e[:32])
		locs[i].off = int64(binary.LittleEndian.Uint64(e[32:]))
		locs[i].size = int64(binary.LittleEndian.Uint32(e[40:]))
	}
	return locs, nil
}

func (p *packs) readIndex(ctx context.Context, n int) ([]idxEntry, error) {
	rc, err := p.mod.Get(ctx, packIndexObject(n))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	locs, err := decodePackIndex(b)
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", packIndexObject(n), p.mod, err)
	}
	return locs, nil
}

func (p *packs) writeIndex(ctx context.Context, n int, locs []idxEntry) error {
	b := encodePackIndex(locs)
	return p.mod.Put(ctx, packIndexObject(n), bytes.NewReader(b), int64(len(b)))
}

// scanSealed lists the whole records of a pack on the module.
func (p *packs) scanSealed(ctx context.Context, n int) ([]idxEntry, error) {
	rc, err := p.mod.Get(ctx, packObject(n))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var locs []idxEntry
	err = eachRecord(rc, func(h [32]byte, off int64, sealed []byte, ok bool) bool {
		if ok {
			locs = append(locs, idxEntry{hash: h, off: off + packHeader, size: int64(len(sealed))})
		}
		return ok
	})
	return locs, err
}

// scan indexes one local pack and returns the end of its last whole record.
func (p *packs) scan(n int, f *os.File) int64 {
	var off int64
	eachRecord(io.NewSectionReader(f, 0, 1<<62), func(h [32]byte, recOff int64, sealed []byte, ok bool) bool {
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
// the scan, as it does when fn returns false. The error is one of reading
// r other than a short read.
func eachRecord(r io.Reader, fn func(h [32]byte, off int64, sealed []byte, ok bool) bool) error {
	br := bufio.NewReaderSize(r, 1<<20)
	var off int64
	hdr := make([]byte, packHeader)
	var buf []byte
	broken := func(err error) error {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		return err
	}
	for {
		_, err := io.ReadFull(br, hdr)
		if err == io.EOF {
			return nil
		}
		var h [32]byte
		copy(h[:], hdr[8:40])
		if err != nil || string(hdr[:4]) != packMagic {
			if err = broken(err); err == nil {
				fn(h, off, nil, false)
			}
			return err
		}
		size := int64(binary.LittleEndian.Uint32(hdr[4:8]))
		if size > 2*MaxWhole {
			fn(h, off, nil, false)
			return nil
		}
		if int64(cap(buf)) < size+packTrailer {
			buf = make([]byte, size+packTrailer)
		}
		buf = buf[:size+packTrailer]
		if _, err := io.ReadFull(br, buf); err != nil {
			if err = broken(err); err == nil {
				fn(h, off, nil, false)
			}
			return err
		}
		crc := crc32.Update(crc32.Checksum(hdr[4:], castagnoli), castagnoli, buf[:size])
		if crc != binary.LittleEndian.Uint32(buf[size:]) {
			fn(h, off, nil, false)
			return nil
		}
		if !fn(h, off, buf[:size], true) {
			return nil
		}
		off += packHeader + size + packTrailer
	}
}

// roll starts a new open pack after the last. Called with mu held (or
// before use).
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
	p.local[n] = f
	p.last, p.size, p.since = n, 0, time.Time{}
	return nil
}

func (p *packs) has(h [32]byte) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	_, ok := p.index[h]
	return ok
}

// put appends an object's sealed form and returns once it is durable.
func (p *packs) put(ctx context.Context, h [32]byte, sealed []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("vault: %w", err)
	}
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
	// Not canceled by ctx: the bytes are appended, and an fsync cannot be
	// interrupted.
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

// appendLocked writes a record at the end of the open pack, rolling to a
// new one when it is full, and returns where. The record is not durable
// yet.
func (p *packs) appendLocked(rec []byte) (int, int64, error) {
	if p.size > 0 && p.size+int64(len(rec)) > p.rollAt {
		if err := p.rollLocked(); err != nil {
			return 0, 0, err
		}
	}
	n, off := p.last, p.size
	if _, err := p.local[n].WriteAt(rec, off); err != nil {
		// Nothing points past p.size; the next append overwrites the remains.
		return 0, 0, fmt.Errorf("vault: appending to %s: %w", packName(n), err)
	}
	if p.size == 0 {
		p.since = time.Now()
		select {
		case p.started <- struct{}{}:
		default:
		}
	}
	p.size += int64(len(rec))
	return n, off, nil
}

// rollLocked makes the open pack durable (sync only follows the last),
// starts a new one and has the old one sealed; called with mu held.
func (p *packs) rollLocked() error {
	if err := p.syncLast(); err != nil {
		return err
	}
	if err := p.roll(); err != nil {
		return err
	}
	p.kick()
	return nil
}

// syncLast makes the open pack durable; called with mu held.
func (p *packs) syncLast() error {
	if p.noSync {
		return nil
	}
	if err := p.local[p.last].Sync(); err != nil {
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
	f := p.local[n]
	p.mu.RUnlock()
	if f == nil { // rolled, synced at roll, and sealed meanwhile
		return nil
	}
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

// kick has the sealer look for local packs to seal, without waiting.
func (p *packs) kick() {
	p.running.Add(1)
	go func() {
		defer p.running.Done()
		p.sealAll(p.bg) // what fails stays local, tried again at the next kick
	}()
}

// sealer rolls the open pack once it has been open for maxAge, so that
// small objects reach the module even when few are written.
func (p *packs) sealer() {
	defer p.running.Done()
	for p.sealWait() {
		p.mu.Lock()
		if p.local != nil && p.size > 0 && !p.since.IsZero() && time.Since(p.since) >= p.maxAge {
			p.rollLocked() // an error leaves the pack open: tried again next time
		}
		p.mu.Unlock()
		p.sealAll(p.bg)
	}
}

// sealWait waits until the open pack is due, and reports false once the
// packs close. An empty open pack is never due.
func (p *packs) sealWait() bool {
	for {
		p.mu.RLock()
		since := p.since
		p.mu.RUnlock()
		var due <-chan time.Time // nil, never ready, while the open pack is empty
		var t *time.Timer
		if !since.IsZero() {
			t = time.NewTimer(max(time.Until(since.Add(p.maxAge)), 0))
			due = t.C
		}
		select {
		case <-p.bg.Done():
			return false
		case <-p.started:
			if t != nil {
				t.Stop()
			}
		case <-due:
			return true
		}
	}
}

// sealAll seals every local pack but the open one.
func (p *packs) sealAll(ctx context.Context) error {
	p.mu.RLock()
	var nums []int
	for n := range p.local {
		if n != p.last {
			nums = append(nums, n)
		}
	}
	p.mu.RUnlock()
	sort.Ints(nums)
	var errs []error
	for _, n := range nums {
		errs = append(errs, p.seal(ctx, n))
	}
	return errors.Join(errs...)
}

// seal stores local pack n — not the open one — on the module with its
// index, then removes it from the local disk.
func (p *packs) seal(ctx context.Context, n int) error {
	p.sealMu.Lock()
	defer p.sealMu.Unlock()
	p.mu.RLock()
	f := p.local[n]
	open := n == p.last
	p.mu.RUnlock()
	if f == nil || open {
		return nil // sealed meanwhile, or still appended to
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("vault: sealing %s: %w", packName(n), err)
	}
	size := fi.Size()
	var locs []idxEntry
	err = eachRecord(io.NewSectionReader(f, 0, size), func(h [32]byte, off int64, sealed []byte, ok bool) bool {
		if ok {
			locs = append(locs, idxEntry{hash: h, off: off + packHeader, size: int64(len(sealed))})
		}
		return ok
	})
	if err == nil {
		// The whole file, damage included (Check reports it on the module).
		err = p.mod.Put(ctx, packObject(n), io.NewSectionReader(f, 0, size), size)
	}
	if err == nil {
		err = p.writeIndex(ctx, n, locs)
	}
	if err != nil {
		return fmt.Errorf("vault: sealing %s: %w", packName(n), err)
	}
	p.mu.Lock()
	p.remote[n] = size
	delete(p.local, n)
	p.mu.Unlock()
	f.Close()
	if err := os.Remove(filepath.Join(p.dir, packName(n))); err != nil {
		return fmt.Errorf("vault: removing sealed %s: %w", packName(n), err)
	}
	// Not synced: should the removal be lost in a crash, the pack is sealed
	// again at the next start, which changes nothing.
	return nil
}

// read returns a copy of a packed object's sealed bytes.
func (p *packs) read(ctx context.Context, h [32]byte) ([]byte, bool, error) {
	for attempt := 0; ; attempt++ {
		p.mu.RLock()
		l, ok := p.index[h]
		if !ok {
			p.mu.RUnlock()
			return nil, false, nil
		}
		if f := p.local[l.pack]; f != nil {
			defer p.mu.RUnlock()
			b := make([]byte, l.size)
			if _, err := f.ReadAt(b, l.off); err != nil {
				return nil, true, fmt.Errorf("reading %s at offset %d: %w", packName(l.pack), l.off, err)
			}
			return b, true, nil
		}
		p.mu.RUnlock()
		b, err := p.readSealed(ctx, l)
		if errors.Is(err, storage.ErrNotFound) && attempt < 3 {
			p.mu.RLock()
			now, ok := p.index[h]
			p.mu.RUnlock()
			if !ok || now != l {
				continue // compacted meanwhile: read it where it is now
			}
		}
		return b, true, err
	}
}

// readSealed reads a record's sealed bytes from a pack on the module.
func (p *packs) readSealed(ctx context.Context, l packLoc) ([]byte, error) {
	rc, err := p.mod.GetRange(ctx, packObject(l.pack), l.off, l.size)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, l.size)
	if _, err := io.ReadFull(rc, b); err == io.ErrUnexpectedEOF || err == io.EOF {
		return nil, fmt.Errorf("%w: %s ends before its record at offset %d", storage.ErrCorrupt, packObject(l.pack), l.off)
	} else if err != nil {
		return nil, err
	}
	return b, nil
}

// close stops the background seals, and closes the local packs. A seal
// stopped halfway is done again at the next start.
func (p *packs) close() {
	p.stop()
	p.running.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.local {
		f.Close()
	}
	p.local = nil
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
