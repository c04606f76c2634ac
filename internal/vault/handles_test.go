package vault

import (
	"bytes"
	"crypto/rand"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOpenFilesArePooled: readers of one object share its file, and no more
// than MaxOpen object files are open at once however many readers there
// are; the readers beyond it wait and then finish.
func TestOpenFilesArePooled(t *testing.T) {
	v, err := Open(t.TempDir(), Options{MaxOpen: 4})
	if err != nil {
		t.Fatal(err)
	}
	var refs []Ref
	for range 20 {
		b := make([]byte, 8192)
		rand.Read(b)
		r, err := v.Put(bg, bytes.NewReader(b), "")
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, r)
	}
	// 50 readers of one object: one file.
	var same []*Object
	for range 50 {
		o, err := v.Open(bg, refs[0].Hash)
		if err != nil {
			t.Fatal(err)
		}
		same = append(same, o)
	}
	if n := v.OpenFiles(); n != 1 {
		t.Errorf("50 readers of one object hold %d files", n)
	}
	for _, o := range same {
		if b, _ := io.ReadAll(o); len(b) != 8192 {
			t.Errorf("a shared reader read %d bytes", len(b))
		}
		o.Close()
	}
	// 40 concurrent slow readers of 20 objects: at most 4 files at once.
	var peak atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			o, err := v.Open(bg, refs[i%20].Hash)
			if err != nil {
				t.Error(err)
				return
			}
			if n := int64(v.OpenFiles()); n > peak.Load() {
				peak.Store(n)
			}
			time.Sleep(5 * time.Millisecond)
			b, _ := io.ReadAll(o.Verified())
			o.Close()
			if len(b) != 8192 {
				t.Errorf("reader %d read %d bytes", i, len(b))
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 4 || p == 0 {
		t.Errorf("peak open files %d, want 1..4", p)
	}
	if n := v.OpenFiles(); n != 0 {
		t.Errorf("%d files open after every reader closed", n)
	}
}
