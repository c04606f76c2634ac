package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestLoad runs the load test briefly: the real binary, 500 simulated
// workers for a few seconds. Latencies are only logged: nothing here
// depends on how fast the machine is.
func TestLoad(t *testing.T) {
	o := defaults()
	o.duration = 8 * time.Second
	o.jobFrames = 1000
	o.grace = time.Second
	o.drainLimit = 2 * time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := run(ctx, o)
	if rep != nil {
		var b strings.Builder
		rep.print(&b)
		t.Log("\n" + b.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		t.Error(p)
	}
	if rep.Errors != 0 {
		t.Errorf("%d requests failed", rep.Errors)
	}
	if rep.Jobs < 2 {
		t.Errorf("%d jobs submitted: jobs were not added as the queue drained", rep.Jobs)
	}
	if rep.FramesSubmitted != int64(rep.Jobs*o.jobFrames) || rep.FramesDone != rep.FramesSubmitted {
		t.Errorf("%d jobs of %d frames: %d frames submitted, %d done exactly once", rep.Jobs, o.jobFrames, rep.FramesSubmitted, rep.FramesDone)
	}
	// One frame per claim, one attempt per frame: as many leases as frames.
	if rep.Claims != rep.FramesSubmitted {
		t.Errorf("%d claims answered with a lease for %d frames", rep.Claims, rep.FramesSubmitted)
	}
	if rep.Heartbeats == 0 {
		t.Error("no heartbeat was sent")
	}
	// Every worker held a connection, and so a server goroutine, at once.
	if rep.Peak.Goroutines < rep.Before.Goroutines+o.workers {
		t.Errorf("server goroutines peaked at %d, %d before the load: the %d workers were not connected at once",
			rep.Peak.Goroutines, rep.Before.Goroutines, o.workers)
	}
	if rep.After.Goroutines > rep.Before.Goroutines+o.margin {
		t.Errorf("server goroutines: %d after the load, %d before", rep.After.Goroutines, rep.Before.Goroutines)
	}
	if rep.After.Heap > rep.Before.Heap+o.heapMargin {
		t.Errorf("server live heap: %d bytes after the load, %d before", rep.After.Heap, rep.Before.Heap)
	}
}

func TestLogValue(t *testing.T) {
	line := `time=2026-11-23T14:28:42.347Z level=INFO msg="debug endpoints" url=http://127.0.0.1:43335/debug/pprof/ data="/tmp/a b"`
	for key, want := range map[string]string{
		"msg":   "debug endpoints",
		"url":   "http://127.0.0.1:43335/debug/pprof/",
		"data":  "/tmp/a b",
		"level": "INFO",
		"name":  "",
	} {
		if got := logValue(line, key); got != want {
			t.Errorf("logValue(%s) = %q, want %q", key, got, want)
		}
	}
}

func TestParseProfiles(t *testing.T) {
	n, err := parseGoroutines([]byte("goroutine profile: total 1515\n1 @ 0x1 0x2\n"))
	if err != nil || n != 1515 {
		t.Errorf("parseGoroutines = %d, %v", n, err)
	}
	if _, err := parseGoroutines([]byte("<html>not a profile</html>")); err == nil {
		t.Error("parseGoroutines accepted something that is not a goroutine profile")
	}
	heap := "heap profile: 6: 16778272 [8: 29361184] @ heap/1048576\n\n# runtime.MemStats\n# Alloc = 17242776\n# HeapAlloc = 524824\n# HeapSys = 33062912\n"
	if v, err := memStat([]byte(heap), "HeapAlloc"); err != nil || v != 524824 {
		t.Errorf("memStat(HeapAlloc) = %d, %v", v, err)
	}
	if _, err := memStat([]byte(heap), "HeapInuse"); err == nil {
		t.Error("memStat found a field the profile lacks")
	}
}
