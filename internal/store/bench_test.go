package store

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPutFrameBatch measures what the session writes for a batch of
// frame completions in one transaction — per frame its row, its output file
// and the job's next file number — and the durable commit, on a database
// file in WAL mode with full synchronous commits. One op is one frame.
// Besides the wall time, which includes waiting for fsync, it reports the
// process's CPU time per frame (cpu-ns/frame), the figure the server's CPU
// budget is about. sync=off runs the same with SQLite's synchronous=OFF, to
// show the cost of the statements and the commit without the disk's, which
// on a shared disk varies more than they do.
func BenchmarkPutFrameBatch(b *testing.B) {
	for _, sync := range []string{"full", "off"} {
		for _, batch := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("sync=%s/batch=%d", sync, batch), func(b *testing.B) {
				benchmarkPutFrameBatch(b, sync, batch)
			})
		}
	}
}

func benchmarkPutFrameBatch(b *testing.B, sync string, batch int) {
	s, err := OpenSQLite(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if sync == "off" {
		// The database has one connection: the pragma holds for every transaction.
		if _, err := s.db.ExecContext(ctx, `PRAGMA synchronous = OFF`); err != nil {
			b.Fatal(err)
		}
	}
	job := Job{ID: 1, Name: "bench", Submitted: time.Unix(1700000000, 0).UTC(), Manifest: []byte("<m/>"), Inputs: []byte("[]"), NextFile: 1}
	tx, err := s.Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := tx.AddJob(&job); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for n := 0; n < b.N; {
		tx, err := s.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for k := 0; k < batch && n < b.N; k++ {
			n++
			f := Frame{Job: 1, ID: int64(n), State: FrameDone, Attempts: 1, Worker: "w1",
				Output: "b3e0c442a0dd8ff1f7f4ba9e7c1be4d6f4bbbd1b2d1b8c5f96a2d7e1f4c3b2a1", Size: 2048,
				Render: time.Millisecond, Finished: now}
			if err := tx.PutFrame(&f); err != nil {
				b.Fatal(err)
			}
			if err := tx.PutFiles([]File{{Job: 1, N: job.NextFile, Frame: f.ID, Path: fmt.Sprintf("f-%d.png", n), Size: 70, Tar: f.Output}}); err != nil {
				b.Fatal(err)
			}
			job.NextFile++
			if err := tx.UpdateJob(&job); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/frame")
}

// cpuTime returns the user and system CPU time of this process.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
