package ops_test

import (
	"bytes"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/ops/opstest"
	"github.com/distren/distren/internal/session"
	"github.com/distren/distren/internal/vault"
)

// BenchmarkAcceptOutput measures the server's own work for one frame, with
// no transport: claim it, accept its output (a tar of one small PNG-sized
// file: checked, indexed, stored in a pack) and record it
// done (one store transaction and its commit). Frames complete in
// parallel (-cpu sets how many at once), so commits are shared
// as they are in a farm. cpu-ns/frame is the process's CPU time (user and
// system) per frame: the figure to hold against serve's CPU per frame end to
// end (docs/PERFORMANCE.md), which adds HTTP.
func BenchmarkAcceptOutput(b *testing.B) {
	p := opstest.NewParts(b, "bench", vault.Options{SmallObjects: 64 << 10})
	f := p.Ops(ops.Config{})
	frames := max(b.N, 1)
	manifest := fmt.Sprintf(`<distrenjob version="1"><name>bench</name><backend name="builtin"/>
<frames><range first="1" last="%d"/></frames><outputs><output>*.png</output></outputs></distrenjob>`, frames)
	pkg := opstest.TarOf(b, map[string]string{"distrenjob.xml": manifest})
	sub, err := f.SubmitTar(ctx, bytes.NewReader(pkg), -1)
	if err != nil {
		b.Fatal(err)
	}
	png := strings.Repeat("p", 70)
	cpu0 := cpuTime(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := fmt.Sprintf("w%p", pb)
		for pb.Next() {
			ls, err := p.Session.Claim(ctx, session.ClaimRequest{Worker: w, Max: 1, Backends: map[string]string{"builtin": "1"}})
			if err != nil || len(ls) != 1 {
				b.Errorf("claim: %v %v", ls, err)
				return
			}
			l := ls[0]
			out := opstest.TarOf(b, map[string]string{fmt.Sprintf("f-%d.png", l.Frame): png})
			rep := ops.Report{Worker: w, Job: sub.ID, Frame: l.Frame, Epoch: l.Epoch}
			if err := f.AcceptOutput(ctx, rep, time.Microsecond, bytes.NewReader(out)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/frame")
}

// cpuTime is the process's CPU time so far (user and system).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
