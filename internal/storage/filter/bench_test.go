package filter_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/distren/distren/internal/storage"
	"github.com/distren/distren/internal/storage/filter"
)

// BenchmarkPut writes 64 MiB in 1 MiB objects, half random (like
// textures), half scene text, onto the filesystem module (with fsync):
// through Put one at a time, each durable before the next; through 4
// concurrent Putters; and through Enqueue and one Sync.
func BenchmarkPut(b *testing.B) {
	const size, n = 1 << 20, 64
	objects := make([][]byte, n)
	for i := range objects {
		if i%2 == 0 {
			objects[i] = random(size)
		} else {
			objects[i] = text(size)
		}
	}
	for _, c := range []struct {
		name  string
		chain func(b *testing.B) []filter.Filter
	}{
		{"none", func(*testing.B) []filter.Filter { return nil }},
		{"zstd", func(b *testing.B) []filter.Filter { return []filter.Filter{newZstd(b)} }},
		{"zstd+aes", func(b *testing.B) []filter.Filter { return []filter.Filter{newZstd(b), newAES(b)} }},
	} {
		for _, mode := range []string{"put", "put4", "enqueue"} {
			b.Run(c.name+"/"+mode, func(b *testing.B) {
				fs := newFS(b)
				m := open(b, fs, c.chain(b), filter.Options{})
				b.SetBytes(size * n)
				for b.Loop() {
					switch mode {
					case "put":
						for i, o := range objects {
							if err := m.Put(ctx, fmt.Sprintf("o/%d", i), bytes.NewReader(o), size); err != nil {
								b.Fatal(err)
							}
						}
					case "put4":
						errs := make(chan error, n)
						for w := range 4 {
							go func() {
								for i := w; i < n; i += 4 {
									errs <- m.Put(ctx, fmt.Sprintf("o/%d", i), bytes.NewReader(objects[i]), size)
								}
							}()
						}
						for range n {
							if err := <-errs; err != nil {
								b.Fatal(err)
							}
						}
					case "enqueue":
						for i, o := range objects {
							if err := m.Enqueue(ctx, fmt.Sprintf("o/%d", i), bytes.NewReader(o), size); err != nil {
								b.Fatal(err)
							}
						}
						if err := m.Sync(ctx); err != nil {
							b.Fatal(err)
						}
					}
				}
				var stored int64
				fs.List(ctx, "", func(i storage.Info) error { stored += i.Size; return nil })
				b.ReportMetric(float64(stored)/(size*n), "stored/plain")
			})
		}
	}
}

// BenchmarkEncode measures the filters alone, on 1 MiB of text or random
// data, one goroutine.
func BenchmarkEncode(b *testing.B) {
	for _, data := range []struct {
		name string
		b    []byte
	}{{"text", text(1 << 20)}, {"random", random(1 << 20)}} {
		for _, c := range []struct {
			name string
			f    func(b *testing.B) filter.Filter
		}{
			{"zstd", func(b *testing.B) filter.Filter { return newZstd(b) }},
			{"aes", func(b *testing.B) filter.Filter { return newAES(b) }},
		} {
			b.Run(c.name+"/"+data.name, func(b *testing.B) {
				f := c.f(b)
				b.SetBytes(int64(len(data.b)))
				for b.Loop() {
					if _, _, err := f.Encode(ctx, "o/1", data.b); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
