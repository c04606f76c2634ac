package worker

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// DefaultCacheBytes is the default byte limit of a worker's object cache.
const DefaultCacheBytes = 20 << 30

// cacheIndex keeps the worker's object cache within a byte limit: it knows
// each cached object's size and last use, evicts the least recently used
// first, and never evicts an object pinned by a task being prepared or
// rendered.
type cacheIndex struct {
	mu      sync.Mutex
	limit   int64
	used    int64
	entries map[string]*cacheEntry
	clock   func() time.Time
}

type cacheEntry struct {
	size int64
	last time.Time
	pins int
}

func newCacheIndex(limit int64) *cacheIndex {
	return &cacheIndex{limit: limit, entries: map[string]*cacheEntry{}, clock: time.Now}
}

// load indexes the objects already in the cache directory, their
// modification times standing for their last use.
func (c *cacheIndex) load(objects string) error {
	return filepath.WalkDir(objects, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		c.mu.Lock()
		c.add(d.Name(), info.Size(), info.ModTime())
		c.mu.Unlock()
		return nil
	})
}

func (c *cacheIndex) add(hash string, size int64, last time.Time) *cacheEntry {
	e := c.entries[hash]
	if e == nil {
		e = &cacheEntry{size: size}
		c.entries[hash] = e
		c.used += size
	}
	if last.After(e.last) {
		e.last = last
	}
	return e
}

// use records that a task uses an object of that size now and pins it
// until unpin.
func (c *cacheIndex) use(hash string, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.add(hash, size, c.clock()).pins++
}

// unpin releases objects pinned by use.
func (c *cacheIndex) unpin(hashes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range hashes {
		if e := c.entries[h]; e != nil && e.pins > 0 {
			e.pins--
		}
	}
}

// evict removes least recently used, unpinned objects until the cache is
// within its limit (or only pinned objects remain), and returns how many it
// removed. remove deletes an object from the disk.
func (c *cacheIndex) evict(remove func(hash string) error) int {
	c.mu.Lock()
	if c.used <= c.limit {
		c.mu.Unlock()
		return 0
	}
	type cand struct {
		hash string
		last time.Time
	}
	var cands []cand
	for h, e := range c.entries {
		if e.pins == 0 {
			cands = append(cands, cand{h, e.last})
		}
	}
	slices.SortFunc(cands, func(a, b cand) int { return a.last.Compare(b.last) })
	var victims []string
	over := c.used - c.limit
	for _, v := range cands {
		if over <= 0 {
			break
		}
		e := c.entries[v.hash]
		over -= e.size
		c.used -= e.size
		delete(c.entries, v.hash)
		victims = append(victims, v.hash)
	}
	c.mu.Unlock()
	n := 0
	for _, h := range victims {
		if err := remove(h); err == nil || errors.Is(err, fs.ErrNotExist) {
			n++
		}
	}
	return n
}

// usedBytes returns the bytes the cache holds, as indexed.
func (c *cacheIndex) usedBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}
