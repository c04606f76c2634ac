// Command loadtest drives one distren server with many simulated workers and
// checks that it stays correct and returns to where it started.
//
// The server runs as its own process (`distren serve --workers 0`, with
// --debug-addr so that its goroutines can be counted), so that its resident
// set and goroutines are measured without the load generator's. Each
// simulated worker is a goroutine with its own name and its own HTTP
// connection (its own internal/client.Client) speaking the real protocol:
// claim (a long-poll), now and then a heartbeat, then the frame's output
// tarball — a few bytes, as a real worker reports a tiny frame. Nothing is
// rendered.
//
// Jobs of built-in frames, each tenth frame depending on the nine before it,
// are submitted as the queue drains for the duration; then the submitted
// frames drain, every job is checked (every frame done, in one attempt,
// reported done exactly once) and deleted, the workers hang up, and once the
// server has settled (a garbage collection run, goroutines back down) it is
// measured again.
//
// Usage:
//
//	go run ./bench/loadtest [-bin distren] [-data DIR] [-workers 500] [-duration 3m] [-frames 20000]
//
// It prints a report and exits 1 if a request failed, a frame is missing or
// was done twice, the server logged a warning or an error, or the server's
// goroutines or live heap after settling exceed the baseline by more than
// -margin and -heap-margin.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/distren/distren/internal/client"
)

func main() {
	o := defaults()
	flag.StringVar(&o.bin, "bin", "", "distren binary (default: build ./cmd/distren into a temporary directory)")
	flag.StringVar(&o.data, "data", "", "the server's data directory, new or empty (default: a temporary directory, removed afterwards)")
	flag.IntVar(&o.workers, "workers", o.workers, "simulated workers")
	flag.DurationVar(&o.duration, "duration", o.duration, "how long jobs are submitted; the submitted frames then drain")
	flag.IntVar(&o.jobFrames, "frames", o.jobFrames, "frames per job (a multiple of 10: every tenth frame depends on the nine before it)")
	flag.IntVar(&o.maxClaim, "max", o.maxClaim, "frames asked for per claim")
	flag.DurationVar(&o.wait, "wait", o.wait, "how long a claim waits on the server for a frame (wait_ms)")
	flag.IntVar(&o.heartbeat, "heartbeat", o.heartbeat, "send a heartbeat before a worker's first frame and every n-th after, before its output (0: never)")
	flag.DurationVar(&o.render, "render", o.render, "simulated render time of a frame")
	flag.IntVar(&o.margin, "margin", o.margin, "server goroutines above the baseline tolerated after the load")
	flag.Int64Var(&o.heapMargin, "heap-margin", o.heapMargin, "bytes of server live heap above the baseline tolerated after the load")
	flag.DurationVar(&o.grace, "gc-grace", o.grace, "the server's --gc-grace: how long after the load its garbage collection may remove the deleted jobs' objects")
	flag.DurationVar(&o.drainLimit, "drain-limit", o.drainLimit, "longest wait for the submitted frames to finish after -duration")
	flag.StringVar(&o.profiles, "profiles", "", "save the server's heap profiles (before, after) and goroutine dump (after) in this directory")
	flag.Parse()
	o.progress = os.Stderr
	if o.jobFrames < 10 || o.jobFrames%10 != 0 || o.workers < 1 {
		fmt.Fprintln(os.Stderr, "loadtest: -frames must be a positive multiple of 10 and -workers at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o)
	if rep != nil {
		rep.print(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
	if len(rep.Problems) > 0 {
		os.Exit(1)
	}
}

// options configure a run.
type options struct {
	bin        string        // distren binary; "" builds it
	data       string        // the server's data directory; "" a temporary one
	workers    int           // simulated workers
	duration   time.Duration // jobs are submitted this long; then they drain
	jobFrames  int           // frames per job, a multiple of 10
	maxClaim   int           // frames per claim
	wait       time.Duration // claim long-poll
	heartbeat  int           // a heartbeat for every n-th frame (0: none)
	render     time.Duration // simulated render time
	margin     int           // goroutines above the baseline tolerated after settling
	heapMargin int64         // live heap above the baseline tolerated after settling
	grace      time.Duration // the server's --gc-grace
	drainLimit time.Duration // longest drain after duration
	progress   io.Writer     // a line every 10 s while loading, if set
	profiles   string        // directory for the server's profiles, if set
}

func defaults() options {
	return options{workers: 500, duration: 3 * time.Minute, jobFrames: 20000, maxClaim: 1, wait: 30 * time.Second,
		heartbeat: 10, margin: 5, heapMargin: 16 << 20, grace: 3 * time.Second, drainLimit: 3 * time.Minute}
}

// warmFrames and warmWorkers make the warm-up job, run before the baseline.
const (
	warmFrames  = 100
	warmWorkers = 4
)

// run starts a server, loads it and measures it. The error reports a run
// that could not be made (no binary, no server); Problems in the report
// what the run found wrong.
func run(ctx context.Context, o options) (*report, error) {
	tmp, err := os.MkdirTemp("", "distren-loadtest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if o.bin == "" {
		o.bin = filepath.Join(tmp, "distren")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", o.bin, "github.com/distren/distren/cmd/distren")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("building distren: %w", err)
		}
	}
	if o.data == "" {
		o.data = filepath.Join(tmp, "data")
	} else if ents, err := os.ReadDir(o.data); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("data directory %s is not empty: the baseline must be a new server's", o.data)
	}
	rep := &report{Workers: o.workers, JobFrames: o.jobFrames, Options: o, LoadAvg: loadavg(),
		Started: time.Now().UTC(), CPUs: runtime.NumCPU()}

	srv, err := startServer(ctx, o)
	if err != nil {
		return nil, err
	}
	defer srv.kill()
	if o.progress != nil {
		fmt.Fprintf(o.progress, "server: pid %d, API %s, profiles %s/debug/pprof/\n", srv.pid, srv.url, srv.debug)
	}
	admin, err := client.New(srv.url)
	if err != nil {
		return nil, err
	}

	// Warm-up: a small job through a few workers, who then hang up.
	warm := newLoad(o, admin, srv.exited, warmWorkers, warmFrames, 0)
	if err := warm.run(ctx); err != nil {
		return rep, fmt.Errorf("warm-up: %w", err)
	}
	rep.Errors += warm.errs.n.Load()
	rep.ErrorSamples = append(rep.ErrorSamples, warm.errs.samples()...)
	rep.Problems = append(rep.Problems, warm.problems.list()...)

	// Baseline.
	before, err := srv.settle(ctx, admin, o.grace, -1)
	if err != nil {
		return rep, fmt.Errorf("baseline: %w", err)
	}
	rep.Before = before
	if err := srv.saveProfiles(ctx, o.profiles, "before"); err != nil {
		return rep, err
	}

	// Load.
	l := newLoad(o, admin, srv.exited, o.workers, o.jobFrames, o.duration)
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan sample, 1)
	go func() { sampled <- srv.sampleUntil(sctx, time.Second, l, o.progress) }()
	err = l.run(ctx)
	stopSampling()
	peak := <-sampled
	if err != nil {
		return rep, err
	}
	l.fill(rep)
	rep.Peak = peak
	rep.Peak.RSS = max(peak.RSS, peak.HWM)

	// After: the server settles back.
	after, err := srv.settle(ctx, admin, o.grace, before.Goroutines+o.margin)
	if err != nil {
		return rep, fmt.Errorf("after the load: %w", err)
	}
	rep.After = after
	if err := srv.saveProfiles(ctx, o.profiles, "after"); err != nil {
		return rep, err
	}
	if after.Goroutines > before.Goroutines+o.margin {
		dump := filepath.Join(os.TempDir(), fmt.Sprintf("loadtest-goroutines-%d.txt", os.Getpid()))
		if b, err := srv.debugGet(ctx, "/debug/pprof/goroutine?debug=1"); err == nil {
			os.WriteFile(dump, b, 0o644)
		}
		rep.Problems = append(rep.Problems, fmt.Sprintf("server goroutines: %d after settling, %d before the load (margin %d): a leak? (dump in %s)",
			after.Goroutines, before.Goroutines, o.margin, dump))
	}
	if after.Heap > before.Heap+o.heapMargin {
		rep.Problems = append(rep.Problems, fmt.Sprintf("server live heap: %.1f MiB after settling, %.1f MiB before the load (margin %.1f MiB): a leak? (-profiles DIR saves the heap profiles)",
			mib(after.Heap), mib(before.Heap), mib(o.heapMargin)))
	}

	// The server stops in order and cleanly.
	if err := srv.stop(30 * time.Second); err != nil {
		rep.Problems = append(rep.Problems, err.Error())
	}
	for _, line := range srv.logProblems() {
		rep.Problems = append(rep.Problems, "server log: "+line)
	}
	if rep.Errors > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d requests failed", rep.Errors))
	}
	if rep.FramesDone != rep.FramesSubmitted {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d frames submitted, %d done exactly once", rep.FramesSubmitted, rep.FramesDone))
	}
	return rep, nil
}

// stats summarize latencies.
type stats struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

func summarize(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	slices.Sort(ds)
	at := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	return stats{N: len(ds), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ds[len(ds)-1]}
}

func (s stats) String() string {
	if s.N == 0 {
		return "none"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (%d)", round(s.P50), round(s.P90), round(s.P99), round(s.Max), s.N)
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// report is what a run measured and found.
type report struct {
	Options         options
	Started         time.Time
	CPUs            int
	LoadAvg         string // at the start
	Workers         int
	Duration, Drain time.Duration
	Jobs, JobFrames int
	FramesSubmitted int64
	FramesDone      int64 // done on the server, in one attempt, reported by exactly one worker
	Claims          int64 // claims answered with a lease
	EmptyClaims     int64 // long-polls answered with none
	Heartbeats      int64
	ClaimLat        stats
	EmptyLat        stats
	HeartbeatLat    stats
	OutputLat       stats
	Errors          int64
	ErrorSamples    []string
	Before, After   sample // settled
	Peak            sample // during the load; CPU: used during the load
	Problems        []string
}

func (r *report) print(w io.Writer) {
	el := r.Duration + r.Drain
	per := func(n int64) float64 {
		if el <= 0 {
			return 0
		}
		return float64(n) / el.Seconds()
	}
	o := r.Options
	fmt.Fprintf(w, "# distren load test, %s/%s, %d CPUs, load average %s at the start, %s\n",
		runtime.GOOS, runtime.GOARCH, r.CPUs, r.LoadAvg, r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "workers:            %d simulated (own connection each; claim max %d, wait %s; heartbeat every %d frames; render %s)\n",
		r.Workers, o.maxClaim, o.wait, o.heartbeat, o.render)
	fmt.Fprintf(w, "time:               %s submitting, then %s until every frame was done and checked\n", round(r.Duration), round(r.Drain))
	fmt.Fprintf(w, "jobs:               %d of %d frames (every tenth frame depends on the nine before it), after a warm-up job of %d\n",
		r.Jobs, r.JobFrames, warmFrames)
	fmt.Fprintf(w, "claims:             %d with a lease (%.0f/s), %d empty long-polls\n", r.Claims, per(r.Claims), r.EmptyClaims)
	fmt.Fprintf(w, "frames:             %d submitted, %d done exactly once (%.0f/s)\n", r.FramesSubmitted, r.FramesDone, per(r.FramesDone))
	fmt.Fprintf(w, "claim latency:      %s\n", r.ClaimLat)
	fmt.Fprintf(w, "empty long-polls:   %s\n", r.EmptyLat)
	fmt.Fprintf(w, "heartbeat latency:  %s\n", r.HeartbeatLat)
	fmt.Fprintf(w, "output latency:     %s\n", r.OutputLat)
	fmt.Fprintf(w, "errors:             %d\n", r.Errors)
	for _, e := range r.ErrorSamples {
		fmt.Fprintf(w, "  %s\n", e)
	}
	fmt.Fprintf(w, "server RSS:         before %.1f MiB, peak %.1f MiB, after %.1f MiB\n", mib(r.Before.RSS), mib(r.Peak.RSS), mib(r.After.RSS))
	fmt.Fprintf(w, "server live heap:   before %.1f MiB, after %.1f MiB (HeapAlloc after two collections)\n", mib(r.Before.Heap), mib(r.After.Heap))
	fmt.Fprintf(w, "server goroutines:  before %d, peak %d, after %d (margin %d)\n", r.Before.Goroutines, r.Peak.Goroutines, r.After.Goroutines, o.margin)
	if r.Duration+r.Drain > 0 {
		fmt.Fprintf(w, "server CPU:         %.2f cores on average while loaded\n", r.Peak.CPU.Seconds()/el.Seconds())
	}
	if gc := r.After.GC; gc != nil {
		fmt.Fprintf(w, "garbage collection: %d objects (%.1f MiB) removed after the load, %d kept\n", gc.Objects, mib(gc.Bytes), gc.Kept)
	}
	if len(r.Problems) == 0 {
		fmt.Fprintln(w, "result:             PASS")
		return
	}
	fmt.Fprintln(w, "result:             FAIL")
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  %s\n", p)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
