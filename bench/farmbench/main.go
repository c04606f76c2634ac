// Command farmbench measures distren end to end with real processes: a
// `distren serve` and `distren worker` processes on 127.0.0.1, driven over
// HTTP. It reports the figures of docs/PERFORMANCE.md:
//
//	throughput: frames per second for a job of near-zero-cost built-in frames
//	            through serve (no local slots) and remote workers, and the
//	            CPU time of each process per frame;
//	spawn:      a job of command frames each running `touch o{frame}` through
//	            serve and remote workers of one slot, against the process-spawn
//	            floor: shell loops running touch as many times, one loop per
//	            worker, at once, right before and right after each run;
//	submit:     time to upload, validate and persist a large job, and the
//	            server's peak RSS;
//	restart:    time from starting serve on a DATA directory holding that job
//	            half done to serving it.
//
// With -vs OTHER, the throughput and spawn cases measure both binaries, run
// by run in alternating order (A B, B A, ...), and print the ratios of each
// run's pair, so that two builds are compared on a shared, noisy machine.
//
// Usage:
//
//	go run ./bench/farmbench [-bin distren] [-vs distren-other] [-runs N]
//	    [-case all|throughput,spawn,submit,restart] [-frames N] [-spawn-frames N] [-big N]
//	    [-pprof DIR]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/jobpkg"
)

func main() {
	bin := flag.String("bin", "", "distren binary (default: build ./cmd/distren into a temporary directory)")
	vs := flag.String("vs", "", "a second distren binary measured against -bin, run by run (throughput and spawn)")
	runs := flag.Int("runs", 1, "runs of each binary (throughput and spawn)")
	which := flag.String("case", "all", "comma-separated cases: throughput, spawn, submit, restart; or all")
	frames := flag.Int("frames", 10000, "frames of the throughput job")
	spawnFrames := flag.Int("spawn-frames", 2000, "frames of the spawn job (two workers of one slot)")
	big := flag.Int("big", 100000, "frames of the submit/restart job")
	workers := flag.Int("workers", 2, "remote worker processes")
	slots := flag.Int("slots", 2, "slots per worker (throughput)")
	prefetch := flag.Int("prefetch", 0, "frames each worker claims ahead of its slots (0: the worker's default)")
	pprofDir := flag.String("pprof", "", "write a CPU profile of serve during each throughput and spawn run into this directory")
	pprofSeconds := flag.Int("pprof-seconds", 20, "length of each -pprof profile: longer than a run, so that it covers all of it")
	flag.Parse()
	o := options{bin: *bin, vs: *vs, runs: *runs, frames: *frames, spawnFrames: *spawnFrames, big: *big,
		workers: *workers, slots: *slots, prefetch: *prefetch, pprofDir: *pprofDir, pprofSeconds: *pprofSeconds}
	cases, err := parseCases(*which)
	if err == nil {
		err = run(o, cases)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "farmbench:", err)
		os.Exit(1)
	}
}

type options struct {
	bin, vs                  string
	runs                     int
	frames, spawnFrames, big int
	workers, slots, prefetch int
	pprofDir                 string
	pprofSeconds             int
}

// parseCases reads -case: a comma-separated list of cases, or all.
func parseCases(s string) (map[string]bool, error) {
	cases := map[string]bool{}
	for c := range strings.SplitSeq(s, ",") {
		switch c = strings.TrimSpace(c); c {
		case "all":
			for _, k := range []string{"throughput", "spawn", "submit", "restart"} {
				cases[k] = true
			}
		case "throughput", "spawn", "submit", "restart":
			cases[c] = true
		default:
			return nil, fmt.Errorf("unknown case %q: want throughput, spawn, submit, restart or all", c)
		}
	}
	return cases, nil
}

func run(o options, cases map[string]bool) error {
	tmp, err := os.MkdirTemp("", "farmbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.bin == "" {
		o.bin = filepath.Join(tmp, "distren")
		cmd := exec.Command("go", "build", "-o", o.bin, "./cmd/distren")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building distren: %w", err)
		}
	}
	if o.pprofDir != "" {
		if err := os.MkdirAll(o.pprofDir, 0o755); err != nil {
			return err
		}
	}
	fmt.Printf("# farmbench: %s/%s, %d CPUs, %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))
	bins := []string{o.bin}
	if o.vs != "" {
		bins = append(bins, o.vs)
		fmt.Printf("# A = %s\n# B = %s\n", o.bin, o.vs)
	}
	b := &bench{bin: o.bin, tmp: tmp, workers: o.workers, slots: o.slots, prefetch: o.prefetch, pprofDir: o.pprofDir, pprofSeconds: o.pprofSeconds}
	if cases["throughput"] {
		if err := b.compare("throughput", bins, o.runs, func(bin, tag string) (result, error) {
			return b.throughput(bin, tag, o.frames, o.slots)
		}); err != nil {
			return fmt.Errorf("throughput: %w", err)
		}
	}
	if cases["spawn"] {
		if err := b.compare("spawn", bins, o.runs, func(bin, tag string) (result, error) {
			return b.spawn(bin, tag, o.spawnFrames)
		}); err != nil {
			return fmt.Errorf("spawn: %w", err)
		}
	}
	if cases["submit"] || cases["restart"] {
		if err := b.submitAndRestart(o.big, cases["restart"]); err != nil {
			return fmt.Errorf("submit/restart: %w", err)
		}
	}
	return nil
}

// result is one measured run of a farm case.
type result struct {
	frames int
	wall   time.Duration // from the upload to the last frame recorded done
	floor  time.Duration // spawn: the shell loops' wall time, measured next to this run
	server cpu           // serve's CPU time over the run
	worker cpu           // the workers' CPU time over the run (children: the programs they ran)
}

func (r result) perSecond() float64 { return float64(r.frames) / r.wall.Seconds() }

// perFrame returns d per frame, in milliseconds.
func (r result) perFrame(d time.Duration) float64 { return ms(d) / float64(r.frames) }

func (r result) String() string {
	s := fmt.Sprintf("%d frames in %.2fs: %.0f frames/s; CPU per frame: serve %.3f ms, workers %.3f ms",
		r.frames, r.wall.Seconds(), r.perSecond(), r.perFrame(r.server.self), r.perFrame(r.worker.self))
	if r.worker.children > 0 {
		s += fmt.Sprintf(", programs %.3f ms", r.perFrame(r.worker.children))
	}
	if r.floor > 0 {
		s += fmt.Sprintf("; floor %.2fs, %.2fx the floor", r.floor.Seconds(), r.wall.Seconds()/r.floor.Seconds())
	}
	return s
}

// compare measures each binary runs times, alternating which goes first in
// each run (measure gets the binary and a tag naming the binary and the run
// for its profile), and prints every result, then for two binaries each run's
// ratios B/A and their medians.
func (b *bench) compare(name string, bins []string, runs int, measure func(bin, tag string) (result, error)) error {
	res := make([][]result, len(bins))
	for r := range runs {
		order := make([]int, len(bins))
		for i := range order {
			order[i] = i
			if r%2 == 1 {
				order[i] = len(bins) - 1 - i
			}
		}
		for _, i := range order {
			x, err := measure(bins[i], fmt.Sprintf("%s-%d", tag(i, len(bins)), r+1))
			if err != nil {
				return fmt.Errorf("%s: %w", bins[i], err)
			}
			res[i] = append(res[i], x)
			fmt.Printf("%s: run %d %s: %v\n", name, r+1, label(i, len(bins)), x)
		}
	}
	for i := range bins {
		fmt.Printf("%s: median %s: %s\n", name, label(i, len(bins)), medians(res[i]))
	}
	if len(bins) == 2 {
		fmt.Printf("%s: B/A per run: %s\n", name, ratios(res[0], res[1]))
	}
	return nil
}

// tag names the profiles of binary i of n: A, B, or "run" for one binary.
func tag(i, n int) string {
	if n == 1 {
		return "run"
	}
	return label(i, n)
}

func label(i, n int) string {
	if n == 1 {
		return "-"
	}
	return string(rune('A' + i))
}

// medians summarizes runs by the median of each figure.
func medians(rs []result) string {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return median(v)
	}
	s := fmt.Sprintf("%.0f frames/s; CPU per frame: serve %.3f ms, workers %.3f ms",
		pick(result.perSecond), pick(func(r result) float64 { return r.perFrame(r.server.self) }),
		pick(func(r result) float64 { return r.perFrame(r.worker.self) }))
	if rs[0].worker.children > 0 {
		s += fmt.Sprintf(", programs %.3f ms", pick(func(r result) float64 { return r.perFrame(r.worker.children) }))
	}
	if rs[0].floor > 0 {
		s += fmt.Sprintf("; %.2fx the floor", pick(func(r result) float64 { return r.wall.Seconds() / r.floor.Seconds() }))
	}
	return s
}

// ratios gives, run by run, B's figures over A's: wall time, and serve's
// CPU per frame; then their medians.
func ratios(a, b []result) string {
	var wall, srv []float64
	var parts []string
	for i := range min(len(a), len(b)) {
		w := b[i].wall.Seconds() / a[i].wall.Seconds()
		c := float64(b[i].server.self) / float64(a[i].server.self)
		wall, srv = append(wall, w), append(srv, c)
		parts = append(parts, fmt.Sprintf("wall %.2f serve-CPU %.2f", w, c))
	}
	return fmt.Sprintf("%s (median: wall %.2f, serve CPU %.2f)", strings.Join(parts, "; "), median(wall), median(srv))
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

type bench struct {
	bin, tmp      string
	workers       int
	slots         int // of the workers of submit/restart
	prefetch      int
	pprofDir      string
	pprofSeconds  int
	seq           int
	started       []*exec.Cmd
	serverStarted time.Time
}

func (b *bench) dir(name string) string {
	b.seq++
	d := filepath.Join(b.tmp, fmt.Sprintf("%s-%d", name, b.seq))
	if err := os.MkdirAll(d, 0o755); err != nil {
		panic(err)
	}
	return d
}

// serve starts a server of b.bin with no local slots and returns its URL
// once it logs that it is serving.
func (b *bench) serve(data string) (*exec.Cmd, string, error) {
	cmd, url, _, err := b.serveBin(b.bin, data, false)
	return cmd, url, err
}

// serveBin starts a server of bin with no local slots and returns its URL,
// and with debug the URL of its debug endpoints, once it logs them.
func (b *bench) serveBin(bin, data string, debug bool) (cmd *exec.Cmd, url, debugURL string, err error) {
	args := []string{"serve", "--data", data, "--listen", "127.0.0.1:0", "--name", "bench", "--workers", "0"}
	if debug {
		args = append(args, "--debug-addr", "127.0.0.1:0")
	}
	cmd = exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", "", err
	}
	b.serverStarted = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, "", "", err
	}
	b.started = append(b.started, cmd)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, " url="); i >= 0 {
			u := strings.Fields(line[i+5:])[0]
			switch {
			case strings.Contains(line, "msg=serving"):
				url = u
			case strings.Contains(line, `msg="debug endpoints"`):
				debugURL = u
			}
		}
		if url != "" && (!debug || debugURL != "") {
			go io.Copy(io.Discard, stderr)
			return cmd, url, debugURL, nil
		}
	}
	cmd.Wait()
	return nil, "", "", fmt.Errorf("server exited before serving")
}

func (b *bench) startWorkers(url string) error {
	_, err := b.startWorkersBin(b.bin, url, b.slots)
	return err
}

// startWorkersBin starts b.workers workers of bin with slots each.
func (b *bench) startWorkersBin(bin, url string, slots int) ([]*exec.Cmd, error) {
	var cmds []*exec.Cmd
	for i := range b.workers {
		cmd := exec.Command(bin, "worker", "--server", url, "--slots", strconv.Itoa(slots),
			"--prefetch", strconv.Itoa(b.prefetch), "--dir", b.dir("worker"), "--name", fmt.Sprintf("bench-w%d", i))
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			return cmds, err
		}
		b.started = append(b.started, cmd)
		cmds = append(cmds, cmd)
	}
	return cmds, nil
}

func (b *bench) stopAll() {
	for _, c := range b.started {
		c.Process.Signal(syscall.SIGKILL)
		c.Wait()
	}
	b.started = nil
}

// The backends of the benchmark jobs, with the outputs they write.
const (
	builtinFrame = `<backend name="builtin"><width>1</width><height>1</height><samples>1</samples><output>f-{frame}.png</output></backend>
<outputs><output>*.png</output></outputs>`
	touchFrame = `<backend name="command"><program>touch</program><arg>o{frame}</arg></backend>
<outputs><output>o*</output></outputs>`
)

// writeJob writes a package of n built-in frames of 1x1 pixels. explicit
// lists every frame as its own <frame> element, every tenth depending on the
// one before; otherwise one <range> holds them all.
func (b *bench) writeJob(n int, explicit bool) (string, error) {
	return b.writePackage(jobXML(builtinFrame, n, explicit))
}

// jobXML returns a job of n frames of backend (a <backend> element and
// the job's <outputs>), as described at writeJob.
func jobXML(backend string, n int, explicit bool) string {
	var sb strings.Builder
	sb.WriteString("<distrenjob version=\"1\"><name>bench</name><retries>0</retries>\n")
	sb.WriteString(backend)
	sb.WriteString("<frames>\n")
	if explicit {
		for i := 1; i <= n; i++ {
			if i%10 == 0 {
				fmt.Fprintf(&sb, "<frame id=\"%d\"><depends on=\"%d\"/></frame>\n", i, i-1)
			} else {
				fmt.Fprintf(&sb, "<frame id=\"%d\"/>\n", i)
			}
		}
	} else {
		fmt.Fprintf(&sb, "<range first=\"1\" last=\"%d\"/>\n", n)
	}
	sb.WriteString("</frames></distrenjob>\n")
	return sb.String()
}

func (b *bench) writePackage(manifest string) (string, error) {
	dir := b.dir("job")
	return dir, os.WriteFile(filepath.Join(dir, "distrenjob.xml"), []byte(manifest), 0o644)
}

func submit(ctx context.Context, c *client.Client, dir string) (api.Submitted, time.Duration, error) {
	rc, size, err := jobpkg.Open(dir)
	if err != nil {
		return api.Submitted{}, 0, err
	}
	defer rc.Close()
	t0 := time.Now()
	sub, err := c.Submit(ctx, rc, size)
	return sub, time.Since(t0), err
}

// waitDone polls the job until at least want frames are done.
func waitDone(ctx context.Context, c *client.Client, id int64, want int, poll time.Duration) (api.Job, error) {
	for {
		j, err := c.Job(ctx, id)
		if err != nil {
			return j, err
		}
		if j.Counts[api.StateFailed] > 0 {
			return j, fmt.Errorf("job %d: %d frames failed: %s", id, j.Counts[api.StateFailed], j.Error)
		}
		if j.Counts[api.StateDone] >= want {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, fmt.Errorf("job %d: %d of %d frames done: %w", id, j.Counts[api.StateDone], want, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// throughput renders a job of n built-in frames of 1x1 pixels through a
// server of bin and b.workers workers of slots each.
func (b *bench) throughput(bin, tag string, n, slots int) (result, error) {
	return b.farm(bin, "throughput-"+tag, jobXML(builtinFrame, n, false), n, slots)
}

// spawn renders a job of n command frames running touch through a server
// of bin and b.workers workers of one slot, and measures the floor right
// before and right after it: b.workers shell loops, at once, running touch
// n/b.workers times each. The floor is the mean of the two, so that a
// change of the machine's load during the run weighs on both sides.
func (b *bench) spawn(bin, tag string, n int) (result, error) {
	before, err := b.spawnFloor(n)
	if err != nil {
		return result{}, fmt.Errorf("the shell loops: %w", err)
	}
	r, err := b.farm(bin, "spawn-"+tag, jobXML(touchFrame, n, false), n, 1)
	if err != nil {
		return r, err
	}
	after, err := b.spawnFloor(n)
	if err != nil {
		return result{}, fmt.Errorf("the shell loops: %w", err)
	}
	r.floor = (before + after) / 2
	return r, nil
}

// spawnFloor runs b.workers shell loops at once, each running touch
// n/b.workers times in a directory of its own, and returns their wall time.
func (b *bench) spawnFloor(n int) (time.Duration, error) {
	loop := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do i=$((i+1)); touch o$i; done`, n/b.workers)
	cmds := make([]*exec.Cmd, b.workers)
	t0 := time.Now()
	for i := range cmds {
		cmds[i] = exec.Command("sh", "-c", loop)
		cmds[i].Dir = b.dir("loop")
		if err := cmds[i].Start(); err != nil {
			return 0, err
		}
	}
	var errs []error
	for _, c := range cmds {
		errs = append(errs, c.Wait())
	}
	return time.Since(t0), errors.Join(errs...)
}

// farm starts a server of bin and its workers, submits the job of n frames
// that manifest describes and returns the time until all are done, and the
// CPU time serve and the workers spent meanwhile. With b.pprofDir, serve's
// CPU profile over the run goes to b.pprofDir/NAME.pprof (e.g.
// throughput-A-1.pprof).
func (b *bench) farm(bin, name, manifest string, n, slots int) (result, error) {
	defer b.stopAll()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	srv, url, debugURL, err := b.serveBin(bin, b.dir("data"), b.pprofDir != "")
	if err != nil {
		return result{}, err
	}
	c, err := client.New(url)
	if err != nil {
		return result{}, err
	}
	workers, err := b.startWorkersBin(bin, url, slots)
	if err != nil {
		return result{}, err
	}
	dir, err := b.writePackage(manifest)
	if err != nil {
		return result{}, err
	}
	// The clock starts once every worker has fingerprinted its backends
	// (running their programs) and asked for work.
	if err := waitWorkers(ctx, c, len(workers)); err != nil {
		return result{}, err
	}
	var profiled chan error
	if debugURL != "" {
		profiled = make(chan error, 1)
		go func() {
			profiled <- fetch(ctx, fmt.Sprintf("%sprofile?seconds=%d", debugURL, b.pprofSeconds), filepath.Join(b.pprofDir, name+".pprof"))
		}()
	}
	srv0, err := procCPU(srv.Process.Pid)
	if err != nil {
		return result{}, err
	}
	w0, err := sumCPU(workers)
	if err != nil {
		return result{}, err
	}
	t0 := time.Now()
	sub, _, err := submit(ctx, c, dir)
	if err != nil {
		return result{}, err
	}
	if _, err := waitDone(ctx, c, sub.ID, n, 10*time.Millisecond); err != nil {
		return result{}, err
	}
	r := result{frames: n, wall: time.Since(t0)}
	srv1, err := procCPU(srv.Process.Pid)
	if err != nil {
		return result{}, err
	}
	w1, err := sumCPU(workers)
	if err != nil {
		return result{}, err
	}
	r.server, r.worker = srv1.sub(srv0), w1.sub(w0)
	if profiled != nil {
		if err := <-profiled; err != nil {
			return r, fmt.Errorf("profiling serve: %w", err)
		}
	}
	return r, nil
}

// waitWorkers polls the server until it knows n workers.
func waitWorkers(ctx context.Context, c *client.Client, n int) error {
	for {
		ws, err := c.Workers(ctx)
		if err != nil {
			return err
		}
		if len(ws) >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d workers connected: %w", len(ws), n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// fetch writes what GET url answers into file.
func fetch(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cpu is the CPU time (user and system) of a process, and of its children
// that it waited for.
type cpu struct{ self, children time.Duration }

func (c cpu) sub(d cpu) cpu { return cpu{c.self - d.self, c.children - d.children} }

// userHZ is the unit of the times of /proc/PID/stat (USER_HZ, 100 on Linux).
const userHZ = 100

// procCPU reads the CPU time of a running process from /proc/PID/stat.
func procCPU(pid int) (cpu, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpu{}, err
	}
	return parseStat(string(b))
}

// parseStat reads utime, stime, cutime and cstime from the text of
// /proc/PID/stat: fields 14 to 17, counted after the command name in
// parentheses, which may itself hold spaces and parentheses.
func parseStat(stat string) (cpu, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return cpu{}, errors.New("/proc/PID/stat: no command name")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3, the state
	if len(f) < 15 {
		return cpu{}, fmt.Errorf("/proc/PID/stat: %d fields after the command name", len(f))
	}
	var t [4]int64
	for k := range t {
		v, err := strconv.ParseInt(f[11+k], 10, 64)
		if err != nil {
			return cpu{}, fmt.Errorf("/proc/PID/stat field %d: %w", 14+k, err)
		}
		t[k] = v
	}
	tick := time.Second / userHZ
	return cpu{self: time.Duration(t[0]+t[1]) * tick, children: time.Duration(t[2]+t[3]) * tick}, nil
}

func sumCPU(cmds []*exec.Cmd) (cpu, error) {
	var s cpu
	for _, c := range cmds {
		x, err := procCPU(c.Process.Pid)
		if err != nil {
			return s, err
		}
		s.self += x.self
		s.children += x.children
	}
	return s, nil
}

func (b *bench) submitAndRestart(n int, restart bool) error {
	defer b.stopAll()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	data := b.dir("data")
	srv, url, err := b.serve(data)
	if err != nil {
		return err
	}
	c, err := client.New(url)
	if err != nil {
		return err
	}
	before, _ := rss(srv.Process.Pid)
	for _, explicit := range []bool{false, true} {
		dir, err := b.writeJob(n, explicit)
		if err != nil {
			return err
		}
		form := "one <range>"
		if explicit {
			form = "one <frame> element each"
		}
		sub, took, err := submit(ctx, c, dir)
		if err != nil {
			return err
		}
		peak, _ := rss(srv.Process.Pid)
		fmt.Printf("submit: %d frames (%s): %.0fms to upload, validate and persist; server peak RSS %.0f MiB (%.0f MiB before the first job)\n",
			n, form, ms(took), mib(peak), mib(before))
		if !explicit {
			// Only the explicit job is rendered for the restart figure.
			if _, err := c.Cancel(ctx, sub.ID); err != nil {
				return err
			}
			continue
		}
		if !restart {
			continue
		}
		// Render half of the explicit job, then kill everything.
		if err := b.startWorkers(url); err != nil {
			return err
		}
		if _, err := waitDone(ctx, c, sub.ID, n/2, 50*time.Millisecond); err != nil {
			return err
		}
		b.stopAll()
		t0 := time.Now()
		_, url2, err := b.serve(data)
		if err != nil {
			return err
		}
		logged := time.Since(t0)
		c2, err := client.New(url2)
		if err != nil {
			return err
		}
		j, err := c2.Job(ctx, sub.ID)
		if err != nil {
			return err
		}
		answered := time.Since(t0)
		fmt.Printf("restart: job of %d frames with %d done (and a canceled job of %d frames): %.0fms from exec to listening, %.0fms to the first answer about the job\n",
			n, j.Counts[api.StateDone], n, ms(logged), ms(answered))
		if j.Counts[api.StateDone] < n/2 {
			return errors.New("restart lost completed frames")
		}
	}
	return nil
}

// rss returns the peak resident set (VmHWM) of a process, in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b int64) float64        { return float64(b) / (1 << 20) }
