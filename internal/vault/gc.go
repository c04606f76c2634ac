package vault

import (
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/storage"
)

// SweepResult counts what Sweep removed.
type SweepResult struct {
	Objects int
	Bytes   int64 // stored bytes freed
	Kept    int   // unreferenced objects kept because they are recent
	Packs   int   // pack files compacted away
}

// objectOf returns the object a module name stands for, and whether the
// name is its index; "" for a name that is no object's.
func objectOf(name string) (hash string, isIndex bool) {
	n, isIndex := strings.CutSuffix(name, indexSuffix)
	if len(n) != 67 || n[2] != '/' || !cdc.ValidHash(n[3:]) || n[:2] != n[3:5] {
		return "", false
	}
	return n[3:], isIndex
}

// Sweep removes the objects that live does not name, with the chunks of
// their indexes, unless they were written or touched after cutoff: a
// recent unreferenced object may belong to an upload whose job is not
// submitted yet. Objects stored before this process started count as
// touched when it started, so a restart never lets a sweep remove an
// upload in progress. Indexes are removed before chunks, so an index never
// outlives a chunk it names. Packs whose records are at least half
// unreferenced are compacted: their live records are copied to the newest
// pack (a new one, if the newest is being compacted) and the pack file is
// removed.
//
// A Put that runs while Sweep does may find an object already stored,
// not write it again, and see Sweep remove it: the caller must not rely on
// such a Put. The server records what an upload stored only with no sweep
// running, and stores it again from its copy if a sweep overlapped the
// upload (internal/ops gc.go).
func (v *Vault) Sweep(ctx context.Context, live func(hash string) bool, cutoff time.Time) (SweepResult, error) {
	var res SweepResult
	v.rmu.Lock()
	v.forgetLocked(cutoff)
	recent := make(map[string]bool, len(v.recent))
	for h := range v.recent {
		recent[h] = true
	}
	v.rmu.Unlock()
	young := !v.opened.Before(cutoff)
	keep := func(hash string) bool { return live(hash) || recent[hash] }
	kept := func(hash string) bool { // an unreferenced object kept for now
		if recent[hash] || young {
			res.Kept++
			return true
		}
		return false
	}

	remove := func(i storage.Info) error {
		if err := v.raw.Delete(ctx, i.Name); err != nil {
			return err
		}
		res.Objects++
		res.Bytes += i.Size
		return nil
	}
	// Indexes first: those kept keep their chunks, the others go now.
	chunks := map[string]bool{}
	err := v.raw.List(ctx, "", func(i storage.Info) error {
		hash, isIndex := objectOf(i.Name)
		if !isIndex {
			return nil
		}
		if live(hash) || kept(hash) {
			parts, err := v.index(ctx, hash)
			if err != nil {
				return fmt.Errorf("reading the chunks of %s: %w (nothing is removed while an index cannot be read)", hash, err)
			}
			for _, p := range parts {
				chunks[hex.EncodeToString(p.Hash[:])] = true
			}
			return nil
		}
		return remove(i)
	})
	if err != nil {
		return res, fmt.Errorf("vault sweep: %w", err)
	}
	err = v.raw.List(ctx, "", func(i storage.Info) error {
		hash, isIndex := objectOf(i.Name)
		if hash == "" || isIndex || live(hash) || chunks[hash] || kept(hash) {
			return nil
		}
		return remove(i)
	})
	if err != nil {
		return res, fmt.Errorf("vault sweep: %w", err)
	}
	if v.packs != nil && !young {
		err := v.packs.compact(ctx, func(h [32]byte) bool {
			s := hex.EncodeToString(h[:])
			return keep(s) || chunks[s]
		}, &res)
		if err != nil {
			return res, fmt.Errorf("vault sweep: %w", err)
		}
	}
	return res, nil
}

// compact rewrites the packs whose records are at least half unreferenced
// (by bytes): the live records are appended to the open pack and made
// durable, then the old pack is deleted from the module, then its index.
// The open pack qualifies too — otherwise what was deleted would stay
// indexed in memory until it filled — by sealing it first; so do local
// packs not sealed yet.
func (p *packs) compact(ctx context.Context, live func([32]byte) bool, res *SweepResult) error {
	p.mu.RLock()
	type stat struct{ live, dead int64 }
	stats := map[int]*stat{}
	for h, l := range p.index {
		s := stats[l.pack]
		if s == nil {
			s = &stat{}
			stats[l.pack] = s
		}
		if live(h) {
			s.live += l.size
		} else {
			s.dead += l.size
		}
	}
	p.mu.RUnlock()
	for n, s := range stats {
		if s.dead == 0 || s.dead < s.live {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		p.mu.Lock()
		var err error
		busy := p.writing[n] > 0 // records of it are being appended: next time
		if !busy && n == p.last {
			err = p.rollLocked()
		}
		p.mu.Unlock()
		if err != nil {
			return err
		}
		if busy {
			continue
		}
		if err := p.seal(ctx, n); err != nil {
			return err
		}
		if err := p.compactOne(ctx, n, live, res); err != nil {
			return err
		}
	}
	if res.Packs > 0 {
		// A new index rather than the old one with its entries deleted: a
		// Go map keeps its size at its largest.
		p.mu.Lock()
		index := make(map[[32]byte]packLoc, len(p.index))
		for h, l := range p.index {
			index[h] = l
		}
		p.index = index
		p.mu.Unlock()
	}
	return nil
}

// compactOne copies the live records of sealed pack n to the open pack,
// reading the pack once, and deletes it.
func (p *packs) compactOne(ctx context.Context, n int, live func([32]byte) bool, res *SweepResult) error {
	p.mu.RLock()
	_, sealed := p.remote[n]
	p.mu.RUnlock()
	if !sealed {
		return nil // compacted meanwhile
	}
	rc, err := p.mod.Get(ctx, packObject(n))
	if err != nil {
		return err
	}
	moved := map[[32]byte]packLoc{}
	var lastPack int
	var end int64
	var appendErr error
	err = eachRecord(rc, func(h [32]byte, off int64, sealed []byte, ok bool) bool {
		if !ok {
			return false
		}
		p.mu.RLock()
		l, indexed := p.index[h]
		p.mu.RUnlock()
		if !indexed || l.pack != n || !live(h) {
			return true
		}
		rec := record(h, sealed)
		p.mu.Lock()
		to, at, err := p.appendLocked(rec)
		p.mu.Unlock()
		if err != nil {
			appendErr = err
			return false
		}
		moved[h] = packLoc{pack: to, off: at + packHeader, size: int64(len(sealed))}
		lastPack, end = to, at+int64(len(rec))
		return true
	})
	rc.Close()
	if err = cmp.Or(appendErr, err); err != nil {
		return fmt.Errorf("compacting %s: %w", packObject(n), err)
	}
	if len(moved) > 0 {
		if err := p.syncTo(lastPack, end); err != nil {
			return err
		}
	}
	p.mu.Lock()
	for h, l := range moved {
		p.index[h] = l
	}
	var drop int
	var freed int64
	for h, l := range p.index {
		if l.pack == n { // unreferenced, or a record the pack no longer holds whole
			delete(p.index, h)
			drop++
			freed += packHeader + l.size + packTrailer
		}
	}
	delete(p.remote, n)
	p.mu.Unlock()
	if err := p.mod.Delete(ctx, packObject(n)); err != nil {
		return fmt.Errorf("removing compacted %s: %w", packObject(n), err)
	}
	if err := p.mod.Delete(ctx, packIndexObject(n)); err != nil {
		return fmt.Errorf("removing the index of compacted %s: %w", packObject(n), err)
	}
	res.Packs++
	res.Objects += drop
	res.Bytes += freed
	return nil
}
