package session

import (
	"fmt"
	"strings"
	"testing"

	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/store"
)

// BenchmarkClaim measures one claim of one frame through the dispatcher —
// and the release that gives it back, so that every iteration finds the
// same state — against the frames the session holds: a job of stored
// frames, all done but the ready ones, rebuilt from the store as at a
// restart.
func BenchmarkClaim(b *testing.B) {
	for _, stored := range []int{1_000, 100_000, 1_000_000} {
		for _, ready := range []int{1, 1_000} {
			b.Run(fmt.Sprintf("stored=%d/ready=%d", stored, ready), func(b *testing.B) {
				s := benchSession(b, stored, ready)
				req := ClaimRequest{Worker: "w", Max: 1, Backends: builtinOnly}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					ls, err := s.Claim(ctx, req)
					if err != nil || len(ls) != 1 {
						b.Fatalf("claim: %v, %v", ls, err)
					}
					if err := s.Release(ctx, "w", ls[0].Job, ls[0].Frame, ls[0].Epoch); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// benchSession opens a session on a store holding one job of stored
// frames, the first stored-ready of them done.
func benchSession(b *testing.B, stored, ready int) *Session {
	b.Helper()
	st := store.NewMem()
	s, err := Open(ctx, st, Options{Name: "farm", LeaseTTL: ttl})
	if err != nil {
		b.Fatal(err)
	}
	raw := fmt.Sprintf(`<distrenjob version="1"><name>t</name><backend name="builtin"/>
<frames><range first="1" last="%d"/></frames><outputs><output>*.png</output></outputs></distrenjob>`, stored)
	m, err := manifest.Parse(strings.NewReader(raw), "bench.xml", manifest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	sub, err := s.Submit(ctx, Submission{Manifest: m, Raw: []byte(raw)})
	if err != nil {
		b.Fatal(err)
	}
	id := sub.ID
	s.Close()
	tx, err := st.Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	out := fmt.Sprintf("%064d", 0)
	for f := range int64(stored - ready) {
		if err := tx.PutFrame(&store.Frame{Job: id, ID: f + 1, State: store.FrameDone, Attempts: 1, Worker: "w", Output: out, Size: 1}); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	if s, err = Open(ctx, st, Options{Name: "farm", LeaseTTL: ttl}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	if j, _ := s.Job(id); j.Counts[StateDone] != stored-ready || j.Counts[StateReady] != ready {
		b.Fatalf("job = %+v", j)
	}
	return s
}
