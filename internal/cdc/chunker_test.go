package cdc

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

// randData returns n pseudo-random bytes, the same for a seed on every run.
func randData(seed uint64, n int) []byte {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

// small cuts fast, for tests that push many bytes through slow readers.
var small = Options{MinSize: 2 << 10, AvgSize: 8 << 10, MaxSize: 64 << 10}

func newChunker(t testing.TB, o Options) *Chunker {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type rec struct {
	Hash   [32]byte
	Offset int64
	Size   int
}

// split returns the chunks of r, checking the invariants every split must
// hold: contiguous offsets, hashes matching the data, sizes within bounds.
func split(t testing.TB, c *Chunker, r io.Reader) ([]rec, []byte) {
	t.Helper()
	var out []rec
	var all []byte
	err := c.Split(r, func(ch Chunk) error {
		if ch.Size != len(ch.Data) || ch.Size == 0 {
			t.Fatalf("chunk at %d: Size %d, len(Data) %d", ch.Offset, ch.Size, len(ch.Data))
		}
		if ch.Offset != int64(len(all)) {
			t.Fatalf("chunk offset %d, want %d", ch.Offset, len(all))
		}
		if ch.Hash != sha256.Sum256(ch.Data) {
			t.Fatalf("chunk at %d: hash is not the SHA-256 of its data", ch.Offset)
		}
		out = append(out, rec{ch.Hash, ch.Offset, ch.Size})
		all = append(all, ch.Data...)
		return nil
	})
	if err != nil {
		t.Fatalf("Split: %v", err)
	}
	o := c.Options()
	for i, ch := range out {
		if ch.Size > o.MaxSize || (ch.Size < o.MinSize && i != len(out)-1) {
			t.Errorf("chunk %d of %d has size %d, outside %d..%d", i, len(out), ch.Size, o.MinSize, o.MaxSize)
		}
	}
	return out, all
}

func hashes(rs []rec) [][32]byte {
	out := make([][32]byte, len(rs))
	for i, r := range rs {
		out[i] = r.Hash
	}
	return out
}

func TestSplitReassemblesInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		n    int
	}{
		{"default/24MiB", Options{}, 24 << 20},
		{"default/below-min", Options{}, 1000},
		{"default/exactly-min", Options{}, DefaultMinSize},
		{"small/1MiB", small, 1 << 20},
		{"small/odd", small, 3*small.MaxSize + 17},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := randData(1, tc.n)
			rs, all := split(t, newChunker(t, tc.opts), bytes.NewReader(data))
			if !bytes.Equal(all, data) {
				t.Fatal("concatenated chunks differ from the input")
			}
			if len(rs) == 0 {
				t.Fatal("no chunks")
			}
		})
	}
}

func TestSplitEmpty(t *testing.T) {
	c := newChunker(t, Options{})
	err := c.Split(strings.NewReader(""), func(ch Chunk) error {
		t.Errorf("chunk %+v from an empty input", ch)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAverageSize(t *testing.T) {
	data := randData(2, 48<<20)
	rs, _ := split(t, newChunker(t, Options{}), bytes.NewReader(data))
	avg := len(data) / len(rs)
	t.Logf("48 MiB random: %d chunks, average %d KiB", len(rs), avg>>10)
	if avg < 512<<10 || avg > 2<<20 {
		t.Errorf("average chunk size %d, want about 1 MiB", avg)
	}
}

// TestLowEntropy: with no content to cut on, chunks are MaxSize.
func TestLowEntropy(t *testing.T) {
	data := make([]byte, 10<<20+5)
	rs, _ := split(t, newChunker(t, Options{}), bytes.NewReader(data))
	for i, r := range rs[:len(rs)-1] {
		if r.Size != DefaultMaxSize {
			t.Errorf("chunk %d of zeros has size %d, want %d", i, r.Size, DefaultMaxSize)
		}
	}
}

// oddReader returns reads of varying odd sizes.
type oddReader struct {
	r io.Reader
	i int
}

func (o *oddReader) Read(p []byte) (int, error) {
	sizes := []int{1, 7, 4093, 13, 65537, 3}
	n := sizes[o.i%len(sizes)]
	o.i++
	return o.r.Read(p[:min(n, len(p))])
}

// TestSplitDeterministic: boundaries depend on the bytes alone, not on the
// run, the chunker instance or how the reader delivers them.
func TestSplitDeterministic(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		n    int
	}{
		{"small", small, 1 << 20},
		{"default", Options{}, 8 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := randData(3, tc.n)
			c := newChunker(t, tc.opts)
			want, _ := split(t, c, bytes.NewReader(data))
			readers := map[string]func() io.Reader{
				"again":      func() io.Reader { return bytes.NewReader(data) },
				"other":      func() io.Reader { return bytes.NewReader(data) }, // with a new Chunker
				"odd":        func() io.Reader { return &oddReader{r: bytes.NewReader(data)} },
				"half":       func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
				"data+EOF":   func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) },
				"one-byte":   func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) },
				"multi":      func() io.Reader { return io.MultiReader(bytes.NewReader(data[:12345]), bytes.NewReader(data[12345:])) },
				"no-WriteTo": func() io.Reader { return struct{ io.Reader }{bytes.NewReader(data)} },
			}
			for name, mk := range readers {
				if name == "one-byte" && tc.n > 1<<20 {
					continue // slow under -race; "small" covers it
				}
				cc := c
				if name == "other" {
					cc = newChunker(t, tc.opts)
				}
				got, all := split(t, cc, mk())
				if !slices.Equal(got, want) {
					t.Errorf("%s: %d chunks differ from the first split's %d", name, len(got), len(want))
				}
				if !bytes.Equal(all, data) {
					t.Errorf("%s: concatenated chunks differ from the input", name)
				}
			}
		})
	}
}

// TestEditsChangeOnlyNearbyChunks: the content-defined property that
// deduplication relies on.
func TestEditsChangeOnlyNearbyChunks(t *testing.T) {
	data := randData(4, 24<<20)
	c := newChunker(t, Options{})
	base := hashes(must(split(t, c, bytes.NewReader(data))))
	if len(base) < 10 {
		t.Fatalf("only %d chunks", len(base))
	}
	edit := func(at, del int, ins []byte) []byte {
		return slices.Concat(data[:at], ins, data[at+del:])
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"insert 100 bytes at 1000", edit(1000, 0, randData(5, 100))},
		{"insert 1 byte at 0", edit(0, 0, []byte{42})},
		{"delete 10 bytes at 5000", edit(5000, 10, nil)},
		{"overwrite 4 KiB at 16 MiB", edit(16<<20, 4096, randData(6, 4096))},
		{"insert 1 KiB at 20 MiB", edit(20<<20, 0, randData(7, 1024))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := hashes(must(split(t, c, bytes.NewReader(tc.data))))
			// Count the chunks only in the old list and only in the new one.
			in := func(h [32]byte, l [][32]byte) bool { return slices.Contains(l, h) }
			var lost, added int
			for _, h := range base {
				if !in(h, got) {
					lost++
				}
			}
			for _, h := range got {
				if !in(h, base) {
					added++
				}
			}
			t.Logf("%d chunks: %d replaced by %d", len(base), lost, added)
			if lost == 0 || lost > 2 || added > 2 {
				t.Errorf("edit replaced %d chunks by %d, want 1 or 2", lost, added)
			}
		})
	}
	// An edit near the start leaves every chunk after the first ones alone,
	// in the same order.
	got := hashes(must(split(t, c, bytes.NewReader(edit(1000, 0, randData(5, 100))))))
	k := 0
	for k < len(got) && !slices.Contains(base, got[k]) {
		k++
	}
	j := slices.Index(base, got[k])
	if k > 2 || j > 2 || !slices.Equal(got[k:], base[j:]) {
		t.Errorf("after an insertion near the start, chunks %d.. differ from the original's %d..", k, j)
	}
}

func must[T, U any](a T, _ U) T { return a }

func TestSplitErrors(t *testing.T) {
	c := newChunker(t, small)
	data := randData(8, 200<<10)

	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom))
	err := c.Split(r, func(Chunk) error { return nil })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "offset") {
		t.Errorf("read error: got %v, want it wrapped with the offset", err)
	}

	stop := errors.New("stop")
	calls := 0
	err = c.Split(bytes.NewReader(data), func(Chunk) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("callback error: got %v after %d calls, want it unchanged after 1", err, calls)
	}

	// The chunker is still usable after both.
	if _, all := split(t, c, bytes.NewReader(data)); !bytes.Equal(all, data) {
		t.Error("split after errors differs from the input")
	}
}

func TestOptions(t *testing.T) {
	c := newChunker(t, Options{})
	if got, want := c.Options(), (Options{DefaultMinSize, DefaultAvgSize, DefaultMaxSize}); got != want {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	for _, o := range []Options{
		{MinSize: 256 << 10, AvgSize: 1000 << 10, MaxSize: 4 << 20}, // not a power of two
		{MinSize: 1 << 20, AvgSize: 1 << 20, MaxSize: 4 << 20},      // min = avg
		{MinSize: 32, AvgSize: 1 << 10, MaxSize: 4 << 10},           // min too small
		{MinSize: 256 << 10, AvgSize: 1 << 20, MaxSize: 1 << 20},    // max = avg
		{MinSize: 256 << 10, AvgSize: 1 << 20, MaxSize: 65 << 20},   // max too large
		{MinSize: -1, AvgSize: 1 << 20, MaxSize: 4 << 20},
	} {
		if _, err := New(o); !errors.Is(err, ErrOptions) {
			t.Errorf("New(%+v): %v, want ErrOptions", o, err)
		}
	}
}

// TestConcurrentSplit shares one Chunker between goroutines (run with -race).
func TestConcurrentSplit(t *testing.T) {
	c := newChunker(t, small)
	inputs := make([][]byte, 6)
	want := make([][]rec, len(inputs))
	for i := range inputs {
		inputs[i] = randData(uint64(10+i), 512<<10+i*1000)
		want[i], _ = split(t, c, bytes.NewReader(inputs[i]))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for k := range 3 * len(inputs) {
				i := (g + k) % len(inputs)
				var got []rec
				err := c.Split(bytes.NewReader(inputs[i]), func(ch Chunk) error {
					got = append(got, rec{ch.Hash, ch.Offset, ch.Size})
					return nil
				})
				if err != nil || !slices.Equal(got, want[i]) {
					t.Errorf("goroutine %d, input %d: %v, %d chunks, want %d", g, i, err, len(got), len(want[i]))
				}
			}
		})
	}
	wg.Wait()
}

// TestGolden pins the boundaries. If it fails, the library, its Gear table
// or the options changed: every stored chunk stops matching what clients
// cut, and deduplication against the existing vault is lost. Update the
// constants only on purpose.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   Options
		n      int
		chunks int
		digest string // SHA-256 over the chunks' offsets, sizes and hashes
	}{
		{"default", Options{}, 16 << 20, 15, "429bd9ac5f54e0c76f6dec89685c8bbd589d230c06251392cf704caf0f61d605"},
		{"small", small, 1 << 20, 116, "2c9c2c995f9833924cb77c01ca900b4a0814611be2fae7b530dc068fa52803be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, _ := split(t, newChunker(t, tc.opts), bytes.NewReader(randData(99, tc.n)))
			h := sha256.New()
			for _, r := range rs {
				fmt.Fprintf(h, "%d %d %x\n", r.Offset, r.Size, r.Hash)
			}
			if got := hex.EncodeToString(h.Sum(nil)); len(rs) != tc.chunks || got != tc.digest {
				t.Errorf("%d chunks, digest %s; want %d, %s", len(rs), got, tc.chunks, tc.digest)
			}
		})
	}
}
