package worker

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestCacheEvictsLeastRecentlyUsedNeverPinned(t *testing.T) {
	c := newCacheIndex(300)
	now := time.Unix(1000, 0)
	c.clock = func() time.Time { now = now.Add(time.Second); return now }
	for i := range 5 {
		c.use(fmt.Sprint("h", i), 100) // h0 oldest ... h4 newest
	}
	c.unpin([]string{"h0", "h1", "h3", "h4"}) // h2 still in use
	c.use("h1", 100)                          // h1 used again: now newest
	c.unpin([]string{"h1"})
	var removed []string
	n := c.evict(func(h string) error { removed = append(removed, h); return nil })
	// 500 bytes, limit 300: two go, oldest first, skipping pinned h2.
	if n != 2 || !slices.Equal(removed, []string{"h0", "h3"}) {
		t.Errorf("evicted %v, want h0 and h3", removed)
	}
	if c.usedBytes() != 300 {
		t.Errorf("used %d bytes after eviction", c.usedBytes())
	}
	// Everything pinned: nothing can go, even over the limit.
	for _, h := range []string{"h1", "h2", "h4", "h5"} {
		c.use(h, 100)
	}
	removed = nil
	if n := c.evict(func(h string) error { removed = append(removed, h); return nil }); n != 0 {
		t.Errorf("evicted pinned objects %v", removed)
	}
}

func TestCacheIndexLoadsWhatIsOnDisk(t *testing.T) {
	dir := t.TempDir()
	for i, age := range []time.Duration{3 * time.Hour, time.Hour, 2 * time.Hour} {
		p := filepath.Join(dir, "ab", fmt.Sprintf("ab%02d", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, make([]byte, 10*(i+1)), 0o644)
		os.Chtimes(p, time.Now().Add(-age), time.Now().Add(-age))
	}
	c := newCacheIndex(35)
	if err := c.load(dir); err != nil {
		t.Fatal(err)
	}
	if c.usedBytes() != 60 {
		t.Fatalf("indexed %d bytes, want 60", c.usedBytes())
	}
	var removed []string
	c.evict(func(h string) error { removed = append(removed, h); return nil })
	if !slices.Equal(removed, []string{"ab00", "ab02"}) {
		t.Errorf("evicted %v, want the two oldest (ab00, then ab02)", removed)
	}
}
