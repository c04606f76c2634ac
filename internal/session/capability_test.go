package session

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/store"
)

// mkjobXML builds a submission from a whole manifest.
func mkjobXML(t *testing.T, raw string) Submission {
	t.Helper()
	m, err := manifest.Parse(strings.NewReader(raw), "test.xml", manifest.Options{})
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	return Submission{Manifest: m, Raw: []byte(raw)}
}

func claimWith(t *testing.T, s *Session, w string, n int, backends map[string]string) []Lease {
	t.Helper()
	ls, err := s.Claim(ctx, ClaimRequest{Worker: w, Max: n, Backends: backends})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return ls
}

func openChunking(t *testing.T) *Session {
	t.Helper()
	s, err := Open(ctx, store.NewMem(), Options{Name: "farm", LeaseTTL: ttl, Chunks: func(b string) bool { return b == "povray" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestFramesGoToCapableWorkers: frames go only to workers that have their
// backend in the version asked for, and a job nobody can run says so.
func TestFramesGoToCapableWorkers(t *testing.T) {
	s := openChunking(t)
	id := submit(t, s, mkjobXML(t, `<distrenjob version="1"><name>pov</name>
<backend name="povray" version="3.7"><scene>a.pov</scene></backend>
<frames><range first="1" last="3"/>
<frame id="4"><depends first="1" last="3"/><backend name="ffmpeg"/></frame></frames>
<outputs><output>*</output></outputs></distrenjob>`))
	if w := jobOf(t, s, id).Waiting; !strings.Contains(w, "none is connected") {
		t.Errorf("with no worker: waiting %q", w)
	}
	if ls := claimWith(t, s, "builtin-only", 8, builtinOnly); len(ls) != 0 {
		t.Fatalf("a worker without povray got %v", frames(ls))
	}
	if ls := claimWith(t, s, "old-povray", 8, map[string]string{"povray": "3.6.1"}); len(ls) != 0 {
		t.Fatalf("a worker with POV-Ray 3.6 got %v", frames(ls))
	}
	if w := jobOf(t, s, id).Waiting; !strings.Contains(w, "3 ready frames need povray 3.7") || !strings.Contains(w, "2 connected workers") {
		t.Errorf("waiting %q", w)
	}
	ls := claimWith(t, s, "pov", 8, map[string]string{"povray": "3.7.0.10"})
	if fmt.Sprint(frames(ls)) != "[1 2 3]" {
		t.Fatalf("the POV-Ray worker got %v", frames(ls))
	}
	if w := jobOf(t, s, id).Waiting; w != "" {
		t.Errorf("nothing ready, yet waiting %q", w)
	}
	for _, l := range ls {
		complete(t, s, "pov", l)
	}
	if ls := claimWith(t, s, "pov", 8, map[string]string{"povray": "3.7.0.10"}); len(ls) != 0 {
		t.Fatalf("the ffmpeg frame went to a worker without ffmpeg")
	}
	if w := jobOf(t, s, id).Waiting; !strings.Contains(w, "1 ready frames need ffmpeg") {
		t.Errorf("waiting %q", w)
	}
	if ls := claimWith(t, s, "enc", 8, map[string]string{"ffmpeg": "5.1.9"}); fmt.Sprint(frames(ls)) != "[4]" {
		t.Fatalf("the ffmpeg worker got %v", frames(ls))
	}
	var names []string
	for _, w := range s.WorkerList() {
		names = append(names, fmt.Sprintf("%s:%d", w.Name, len(w.Backends)))
	}
	if fmt.Sprint(names) != "[builtin-only:1 enc:1 old-povray:1 pov:1]" {
		t.Errorf("workers %v", names)
	}
}

const chunkJob = `<distrenjob version="1"><name>pov</name><chunk>4</chunk>
<backend name="povray"><scene>a.pov</scene></backend>
<frames><range first="1" last="10"/><frame id="12"/><frame id="13"/>
<frame id="14"><backend name="povray"><scene>b.pov</scene></backend></frame>
<frame id="15"><backend name="builtin"/></frame></frames>
<outputs><output>*</output></outputs></distrenjob>`

// TestChunks: consecutive frames with the same backend element are leased
// together, Max counts tasks, and a chunk that fails partly retries only the
// rest.
func TestChunks(t *testing.T) {
	s := openChunking(t)
	id := submit(t, s, mkjobXML(t, chunkJob))
	pov := map[string]string{"povray": "3.7", "builtin": "1"}
	ls := claimWith(t, s, "a", 2, pov)
	if fmt.Sprint(frames(ls)) != "[1 2 3 4 5 6 7 8]" {
		t.Fatalf("two tasks of 4: got %v", frames(ls))
	}
	if ls[0].Chunk == 0 || ls[0].Chunk != ls[3].Chunk || ls[4].Chunk == ls[0].Chunk || ls[4].Chunk != ls[7].Chunk {
		t.Errorf("chunk ids %v", chunks(ls))
	}
	rest := claimWith(t, s, "b", 10, pov)
	// 9-10 (12 does not follow 10), 12-13 (14 has its own backend element), 14, 15 (builtin: no chunks).
	if fmt.Sprint(frames(rest)) != "[9 10 12 13 14 15]" {
		t.Fatalf("got %v", frames(rest))
	}
	c := chunks(rest)
	if c[0] == 0 || c[0] != c[1] || c[2] == 0 || c[2] != c[3] || c[2] == c[0] || c[4] != 0 || c[5] != 0 {
		t.Errorf("chunk ids %v", c)
	}
	// The first chunk completes frames 1 and 2, then fails: 3 and 4 are retried together.
	complete(t, s, "a", ls[0])
	complete(t, s, "a", ls[1])
	for _, l := range ls[2:4] {
		if err := s.Fail(ctx, "a", l.Job, l.Frame, l.Epoch, "povray crashed", false); err != nil {
			t.Fatal(err)
		}
	}
	again := claimWith(t, s, "b", 1, pov)
	if fmt.Sprint(frames(again)) != "[3 4]" || again[0].Chunk == 0 || again[0].Chunk != again[1].Chunk {
		t.Fatalf("retry got %v (chunks %v)", frames(again), chunks(again))
	}
	if st := state(t, s, id, 1); st != StateDone {
		t.Errorf("frame 1 is %s", st)
	}
}

func chunks(ls []Lease) []uint64 {
	var out []uint64
	for _, l := range ls {
		out = append(out, l.Chunk)
	}
	return out
}

// TestJobErrorFailsAtOnce: a failure blamed on the job is not retried and
// does not count against the worker; a machine error is retried.
func TestJobErrorFailsAtOnce(t *testing.T) {
	s := open(t, store.NewMem())
	id := submit(t, s, mkjob(t, "<retries>5</retries>", `<frame id="1"/>`))
	other := submit(t, s, mkjob(t, "<retries>5</retries>", `<frame id="1"/>`))
	ls := claim(t, s, "w", 2)
	if err := s.Fail(ctx, "w", id, 1, ls[0].Epoch, "Parse Error: no matching }", true); err != nil {
		t.Fatal(err)
	}
	if st := state(t, s, id, 1); st != StateFailed {
		t.Errorf("frame 1 is %s after a job error, want failed", st)
	}
	if n := s.jobs[id].failures["w"]; n != 0 {
		t.Errorf("a job error counted %d failures against the worker", n)
	}
	if err := s.Fail(ctx, "w", other, 1, ls[1].Epoch, "worker out of memory", false); err != nil {
		t.Fatal(err)
	}
	if st := state(t, s, other, 1); st != StateReady {
		t.Errorf("frame 1 of job %d is %s after a machine error, want ready", other, st)
	}
}

func jobOf(t *testing.T, s *Session, id int64) Job {
	t.Helper()
	j, err := s.Job(id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestReleaseCountsNoAttempt: frames of a chunk after the one that failed
// are given back unattempted and form the next chunk without it.
func TestReleaseCountsNoAttempt(t *testing.T) {
	s := openChunking(t)
	id := submit(t, s, mkjobXML(t, strings.Replace(chunkJob, "<chunk>4</chunk>", "<chunk>4</chunk><retries>0</retries>", 1)))
	pov := map[string]string{"povray": "3.7", "builtin": "1"}
	ls := claimWith(t, s, "a", 1, pov) // frames 1-4
	complete(t, s, "a", ls[0])
	if err := s.Fail(ctx, "a", id, 2, ls[1].Epoch, "out of memory in frame 2", false); err != nil {
		t.Fatal(err)
	}
	for _, l := range ls[2:] {
		if err := s.Release(ctx, "a", id, l.Frame, l.Epoch); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Release(ctx, "a", id, 3, ls[2].Epoch); !errors.Is(err, ErrStaleLease) {
		t.Errorf("a second release of the same lease: %v, want ErrStaleLease", err)
	}
	fs, err := s.Frames(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fs[1].State != StateFailed || fs[2].State != StateReady || fs[2].Attempts != 0 || fs[3].Attempts != 0 {
		t.Errorf("frames 2-4: %+v", fs[1:4])
	}
	again := claimWith(t, s, "a", 1, pov)
	if fmt.Sprint(frames(again)) != "[3 4 5 6]" {
		t.Errorf("next chunk %v, want 3-6", frames(again))
	}
}
