package scheduler

import (
	"fmt"
	"testing"
)

// BenchmarkClaim measures one claim of one frame — and the release that
// gives it back, so that every iteration finds the same state — against
// the frames the scheduler holds: stored frames in all (done ones, plus the
// ready ones), in one job or spread over 1,000 jobs of which all but the
// last are done, and the ready frames among them.
func BenchmarkClaim(b *testing.B) {
	for _, jobs := range []int{1, 1000} {
		for _, stored := range []int{1_000, 100_000, 1_000_000} {
			for _, ready := range []int{1, 1_000, 100_000} {
				if ready > stored/jobs {
					continue
				}
				b.Run(fmt.Sprintf("jobs=%d/stored=%d/ready=%d", jobs, stored, ready), func(b *testing.B) {
					s := benchState(b, jobs, stored/jobs, ready)
					b.ReportAllocs()
					b.ResetTimer()
					for b.Loop() {
						gs := s.Claim(t0, "w", nil, 1)
						if len(gs) != 1 {
							b.Fatalf("claimed %d frames", len(gs))
						}
						s.Release(gs[0].Job, gs[0].Idx)
					}
				})
			}
		}
	}
}

// benchState holds jobs jobs of perJob frames each, every frame done but
// the last ready ones of the last job, and one worker with the builtin
// backend that has claimed once (so finished jobs have left the queue, as
// they do after any claim).
func benchState(b *testing.B, jobs, perJob, ready int) *Scheduler {
	b.Helper()
	s := New(Options{Name: "farm", LeaseTTL: ttl, BlocklistAfter: 3})
	m := parse(b, manifestXML("", fmt.Sprintf(`<range first="1" last="%d"/>`, perJob)))
	for k := range jobs {
		j := NewJob(int64(k+1), m)
		done := perJob
		if k == jobs-1 {
			done -= ready
		}
		for i := range done {
			j.SetState(int32(i), Done)
		}
		if err := s.Submit(j); err != nil {
			b.Fatal(err)
		}
	}
	gs := s.Claim(t0, "w", builtin, 1)
	if len(gs) != 1 {
		b.Fatalf("claimed %d frames", len(gs))
	}
	s.Release(gs[0].Job, gs[0].Idx)
	return s
}
