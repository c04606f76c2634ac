package worker

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/backend"
)

// cpuTime is the CPU the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScratch is the file-system work of a built-in frame's task on a
// worker: its scratch directory and home, the output file, and the
// directories' release. "reuse" is the worker's (a spare pair renamed into
// place, emptied and renamed back); "mkdir" makes both directories and
// removes them, as a worker did before it kept spare pairs. Reported:
// cpu-ns/op of the whole process (getrusage).
func BenchmarkScratch(b *testing.B) {
	out := []byte("\x89PNG\r\n\x1a\n a small frame")
	b.Run("reuse", func(b *testing.B) {
		w, err := New(Config{Dir: b.TempDir(), Slots: 2, Backends: backend.Registry{}})
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		start := cpuTime()
		for i := range b.N {
			tk := &task{leases: []api.Lease{{Job: 1, Frame: int64(i + 1), Epoch: 1}}, ctx: ctx, cancel: cancel}
			if err := w.scratch(tk); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(tk.dir, "frame.png"), out, 0o644); err != nil {
				b.Fatal(err)
			}
			w.recycle(tk.dir, tk.home)
		}
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	})
	b.Run("mkdir", func(b *testing.B) {
		scr := b.TempDir()
		start := cpuTime()
		for i := range b.N {
			dir := filepath.Join(scr, "1-"+strconv.Itoa(i+1)+"-1")
			if err := os.Mkdir(dir, scratchPerm); err != nil {
				b.Fatal(err)
			}
			if err := os.Mkdir(dir+".home", homePerm); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "frame.png"), out, 0o644); err != nil {
				b.Fatal(err)
			}
			os.RemoveAll(dir)
			os.RemoveAll(dir + ".home")
		}
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	})
}
