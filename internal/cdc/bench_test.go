package cdc

import (
	"bytes"
	"crypto/sha256"
	"sync"
	"testing"
)

// benchData is 64 MiB of random bytes, shared by the benchmarks.
var benchData = sync.OnceValue(func() []byte { return randData(42, 64<<20) })

// BenchmarkSplit measures content-defined chunking alone: finding the
// boundaries, without hashing the chunks.
func BenchmarkSplit(b *testing.B) {
	data := benchData()
	c := newChunker(b, Options{})
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := c.cut(bytes.NewReader(data), func(_ int64, d []byte) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n), "chunks/op")
	}
}

// BenchmarkSHA256 hashes the same data in 1 MiB pieces, for comparison: the
// other half of what ingest costs.
func BenchmarkSHA256(b *testing.B) {
	data := benchData()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		for off := 0; off < len(data); off += 1 << 20 {
			_ = sha256.Sum256(data[off : off+1<<20])
		}
	}
}

// BenchmarkSplitAndHash measures Split: chunking and hashing every chunk,
// what ingest costs before any storage.
func BenchmarkSplitAndHash(b *testing.B) {
	data := benchData()
	c := newChunker(b, Options{})
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Split(bytes.NewReader(data), func(Chunk) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
