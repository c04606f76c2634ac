package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"testing"
	"time"
)

func TestSweepKeepsLiveAndRecentObjects(t *testing.T) {
	v, err := Open(t.TempDir(), Options{Compress: true, SmallObjects: 1024})
	if err != nil {
		t.Fatal(err)
	}
	put := func(b []byte) Ref {
		r, err := v.Put(bytes.NewReader(b), "")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	random := func(n int) []byte { b := make([]byte, n); rand.Read(b); return b }
	live := put(random(5000))
	dead := put(random(6000))
	deadText := put(bytes.Repeat([]byte("compressible "), 1000)) // stored as .z
	recent := put(random(7000))
	small := put(random(100)) // packed
	old := time.Now().Add(-2 * time.Hour)
	for _, r := range []Ref{live, dead, recent} {
		p, _ := v.Path(r.Hash)
		os.Chtimes(p, old, old)
	}
	pz, _ := v.Path(deadText.Hash)
	os.Chtimes(pz+compressedSuffix, old, old)
	v.Touch(recent.Hash) // a client was just told the server has it

	res, err := v.Sweep(context.Background(), func(h string) bool { return h == live.Hash }, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if res.Objects != 2 || res.Kept != 1 {
		t.Errorf("swept %+v, want 2 removed (dead, deadText) and 1 kept (recent)", res)
	}
	for _, c := range []struct {
		r    Ref
		want bool
	}{{live, true}, {dead, false}, {deadText, false}, {recent, true}, {small, true}} {
		if v.Has(c.r.Hash) != c.want {
			t.Errorf("after the sweep, Has(%s) = %v, want %v", c.r.Hash[:8], !c.want, c.want)
		}
	}
}
