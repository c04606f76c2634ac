package vault

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
)

// TestPutSizesAroundBuffers stores objects of the sizes where Put changes
// buffers (firstRead) and where it starts chunking (MaxWhole), and reads
// each back.
func TestPutSizesAroundBuffers(t *testing.T) {
	v, err := Open(t.TempDir(), Options{Compress: true, SmallObjects: 64 << 10, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, n := range []int{0, 1, firstRead - 1, firstRead, firstRead + 1, MaxWhole, MaxWhole + 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			data := random(n)
			sum := sha256.Sum256(data)
			ref, err := v.Put(bg, bytes.NewReader(data), hex.EncodeToString(sum[:]))
			if err != nil {
				t.Fatal(err)
			}
			if ref.Size != int64(n) {
				t.Fatalf("size %d, want %d", ref.Size, n)
			}
			if got := read(t, v, ref.Hash); got != string(data) {
				t.Fatalf("read back %d bytes that differ from the %d stored", len(got), n)
			}
		})
	}
}

// gatedReader blocks its first Read until the gate opens.
type gatedReader struct {
	entered *sync.WaitGroup
	gate    chan struct{}
	once    sync.Once
	r       io.Reader
}

func (g *gatedReader) Read(p []byte) (int, error) {
	g.once.Do(func() { g.entered.Done(); <-g.gate })
	return g.r.Read(p)
}

// TestConcurrentSmallPutsStaySmall checks that Puts of small objects in
// flight at once do not each hold a MaxWhole buffer: a server with hundreds
// of workers uploading tiny frame outputs would need gigabytes.
func TestConcurrentSmallPutsStaySmall(t *testing.T) {
	v, err := Open(t.TempDir(), Options{SmallObjects: 64 << 10, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	const n = 64
	var entered, done sync.WaitGroup
	gate := make(chan struct{})
	entered.Add(n)
	errs := make(chan error, n)
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range n {
		done.Go(func() {
			_, err := v.Put(bg, &gatedReader{entered: &entered, gate: gate, r: bytes.NewReader([]byte(fmt.Sprintf("output %d", i)))}, "")
			errs <- err
		})
	}
	entered.Wait() // every Put holds its buffer now
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	close(gate)
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got, limit := during.TotalAlloc-before.TotalAlloc, uint64(n*MaxWhole/4); got > limit {
		t.Errorf("%d small Puts in flight allocated %d MiB (limit %d MiB)", n, got>>20, limit>>20)
	}
}
