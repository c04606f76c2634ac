package vault

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSweepKeepsLiveAndRecentObjects(t *testing.T) {
	dir := t.TempDir()
	v, err := Open(dir, Options{Compress: true, SmallObjects: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	put := func(b []byte) Ref {
		r, err := v.Put(bg, bytes.NewReader(b), "")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	live := put(random(5000))
	dead := put(random(6000))
	deadText := put(bytes.Repeat([]byte("compressible "), 1000))
	recent := put(random(7000))
	small := put(random(100)) // packed, in the newest pack: compacted away too
	liveBig := put(random(9 << 20))
	deadBig := put(random(9 << 20))
	cutoff := time.Now()

	// A sweep right after start removes nothing: objects stored before the
	// process started count as touched at its start.
	isLive := func(h string) bool { return h == live.Hash || h == liveBig.Hash }
	res, err := v.Sweep(context.Background(), isLive, cutoff.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if res.Objects != 0 || res.Kept == 0 {
		t.Fatalf("a sweep within the grace period after start: %+v, want nothing removed", res)
	}

	// An hour later: only what was touched since is kept.
	v.opened = v.opened.Add(-2 * time.Hour)
	v.rmu.Lock()
	for h := range v.recent {
		v.recent[h] = v.recent[h].Add(-2 * time.Hour)
	}
	v.rmu.Unlock()
	v.Touch(bg, recent.Hash) // a client was just told the server has it
	bigParts, _ := v.index(bg, deadBig.Hash)
	res, err = v.Sweep(context.Background(), isLive, cutoff)
	if err != nil {
		t.Fatal(err)
	}
	if want := 4 + len(bigParts); res.Objects != want || res.Kept != 1 {
		t.Errorf("swept %+v, want %d removed (dead, deadText, small, deadBig's index and chunks) and 1 kept (recent)", res, want)
	}
	for _, c := range []struct {
		r    Ref
		want bool
	}{{live, true}, {dead, false}, {deadText, false}, {recent, true}, {small, false}, {liveBig, true}, {deadBig, false}} {
		if has(t, v, c.r.Hash) != c.want {
			t.Errorf("after the sweep, Has(%s) = %v, want %v", c.r.Hash[:8], !c.want, c.want)
		}
	}
	for _, p := range bigParts {
		if has(t, v, hexOf(p.Hash)) {
			t.Errorf("a chunk of the dead large object survived")
		}
	}
	if got := read(t, v, liveBig.Hash); len(got) != 9<<20 {
		t.Errorf("the live large object reads back %d bytes", len(got))
	}
}

// TestPacksAreCompacted: packs that are mostly unreferenced, the newest
// among them, are rewritten with their live records and removed; the live
// records read back, also after reopening.
func TestPacksAreCompacted(t *testing.T) {
	dir := t.TempDir()
	v, err := Open(dir, Options{SmallObjects: 1 << 10, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	v.packs.rollAt = 4000
	want := map[string]string{}
	var all []Ref
	for i := range 200 {
		s := fmt.Sprintf("frame %d output %x", i, random(100))
		r, err := v.Put(bg, bytes.NewReader([]byte(s)), "")
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, r)
		if i%10 == 0 {
			want[r.Hash] = s
		}
	}
	before := packFiles(t, v, dir)
	v.opened = v.opened.Add(-2 * time.Hour)
	v.rmu.Lock()
	clear(v.recent)
	v.rmu.Unlock()
	res, err := v.Sweep(context.Background(), func(h string) bool { _, ok := want[h]; return ok }, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	after := packFiles(t, v, dir)
	if res.Packs != len(before) || len(after) > 2 {
		t.Errorf("compaction %+v left %d of %d packs; want every pack compacted", res, len(after), len(before))
	}
	if res.Objects < 150 {
		t.Errorf("%d packed objects removed; want most of the 180 unreferenced", res.Objects)
	}
	check := func(v *Vault) {
		for h, s := range want {
			if got := read(t, v, h); got != s {
				t.Fatalf("live record %s read back as %q", h[:8], got)
			}
		}
	}
	check(v)
	// New records go on after compaction, and everything survives a reopen.
	r, err := v.Put(bg, bytes.NewReader([]byte("after compaction")), "")
	if err != nil {
		t.Fatal(err)
	}
	want[r.Hash] = "after compaction"
	v.Close()
	v, err = Open(dir, Options{SmallObjects: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	check(v)
	gone := 0
	for _, r := range all {
		if _, ok := want[r.Hash]; !ok && !has(t, v, r.Hash) {
			gone++
		}
	}
	if gone != res.Objects {
		t.Errorf("%d unreferenced records gone after reopening, the sweep said %d", gone, res.Objects)
	}
	for _, p := range before {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still there after compaction", p)
		}
	}
	if idx, _ := filepath.Glob(filepath.Join(dir, "objects", "packs", "*.idx")); len(idx) != len(packFiles(t, v, dir))-1 {
		t.Errorf("%d pack indexes on the module, want one per sealed pack: %v", len(idx), idx)
	}
}

// TestTouchForgets: what Touch remembers beyond the grace period is
// forgotten as it goes, so memory stays bounded when nothing sweeps.
func TestTouchForgets(t *testing.T) {
	v, err := Open(t.TempDir(), Options{Grace: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for i := range 20_000 {
		v.Touch(bg, fmt.Sprintf("%064x", i))
	}
	if n := len(v.recent); n > minPrune {
		t.Errorf("Touch remembers %d objects after 20,000 touches with a 1 ns grace; want at most %d", n, minPrune)
	}
}

// TestPackBeingWrittenIsNotCompacted: a pack with a record appended but not
// yet indexed (a Put making it durable) is left to the next collection,
// which compacts it.
func TestPackBeingWrittenIsNotCompacted(t *testing.T) {
	v, err := Open(t.TempDir(), Options{SmallObjects: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	r, err := v.Put(bg, bytes.NewReader([]byte("unreferenced")), "")
	if err != nil {
		t.Fatal(err)
	}
	v.opened = v.opened.Add(-2 * time.Hour)
	v.rmu.Lock()
	clear(v.recent)
	v.rmu.Unlock()
	dead := func(string) bool { return false }
	v.packs.mu.Lock()
	v.packs.writing[v.packs.last]++
	v.packs.mu.Unlock()
	if res, err := v.Sweep(context.Background(), dead, time.Now().Add(-time.Hour)); err != nil || res.Packs != 0 || !has(t, v, r.Hash) {
		t.Fatalf("sweep while the pack is written: %+v %v, object kept: %v", res, err, has(t, v, r.Hash))
	}
	v.packs.mu.Lock()
	delete(v.packs.writing, v.packs.last)
	v.packs.mu.Unlock()
	if res, err := v.Sweep(context.Background(), dead, time.Now().Add(-time.Hour)); err != nil || res.Packs != 1 || has(t, v, r.Hash) {
		t.Fatalf("next sweep: %+v %v, object kept: %v", res, err, has(t, v, r.Hash))
	}
}
