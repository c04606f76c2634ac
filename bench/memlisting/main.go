// Command memlisting measures what a large job costs a server in memory:
// it starts a real `distren serve --workers 0` on 127.0.0.1, reads the
// server's VmRSS and VmHWM from /proc/<pid>/status idle, submits one job of
// -frames built-in frames (a 300-byte manifest with one <range>), reads them
// again once the submission has settled, then runs -listers concurrent full
// listings of the job's frames (GET /v1/jobs/1/frames, unpaged, each read to
// the end and its frames counted) while sampling VmRSS every few
// milliseconds. It prints the figures of docs/PERFORMANCE.md, "Memory",
// and the server's live heap (from its --debug-addr endpoints, after a
// forced collection) idle and with the job.
//
// Usage:
//
//	go run ./bench/memlisting [-bin distren] [-frames 1000000] [-listers 8] [-rounds 2] [-paged] [-render]
//
// -paged lists through the typed client, which follows the pages
// (?after=&limit=) instead of reading one streamed response; -render has a
// worker render every frame first, so that the frames held and listed are
// done ones.
package main

import (
	"bufio"
	"bytes"
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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/jobpkg"
)

func main() {
	bin := flag.String("bin", "", "distren binary (default: build ./cmd/distren into a temporary directory)")
	frames := flag.Int("frames", 1_000_000, "frames of the job")
	listers := flag.Int("listers", 8, "concurrent full listings of the job's frames")
	rounds := flag.Int("rounds", 2, "times the concurrent listings are run, one after the other")
	paged := flag.Bool("paged", false, "list through the typed client, following the pages, instead of one streamed GET")
	settle := flag.Duration("settle", 3*time.Second, "wait after the submission before measuring the listings")
	extra := flag.String("serve-args", "", "more arguments for distren serve, space-separated")
	render := flag.Bool("render", false, "render every frame first (one `distren worker --slots 2`), so that the frames listed are done")
	flag.Parse()
	if err := run(*bin, *frames, *listers, *rounds, *paged, *render, *settle, strings.Fields(*extra)); err != nil {
		fmt.Fprintln(os.Stderr, "memlisting:", err)
		os.Exit(1)
	}
}

func run(bin string, frames, listers, rounds int, paged, render bool, settle time.Duration, extra []string) error {
	tmp, err := os.MkdirTemp("", "memlisting-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if bin == "" {
		bin = filepath.Join(tmp, "distren")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/distren")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building distren: %w", err)
		}
	}
	fmt.Printf("# memlisting: %s/%s, %d CPUs, %s, %d frames, %d listers, paged=%v, render=%v\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339), frames, listers, paged, render)
	srv, url, debug, err := serve(bin, filepath.Join(tmp, "data"), extra)
	if err != nil {
		return err
	}
	defer func() {
		srv.Process.Signal(syscall.SIGKILL)
		srv.Wait()
	}()
	pid := srv.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	c, err := client.New(url)
	if err != nil {
		return err
	}

	idle, err := readMem(pid)
	if err != nil {
		return err
	}
	idleHeap, err := liveHeap(ctx, debug)
	if err != nil {
		return err
	}
	fmt.Printf("idle:            VmRSS %6.0f MiB  VmHWM %6.0f MiB  live heap %.0f MiB\n", mib(idle.rss), mib(idle.hwm), mib(idleHeap))

	dir := filepath.Join(tmp, "job")
	if err := writeJob(dir, frames); err != nil {
		return err
	}
	rc, size, err := jobpkg.Open(dir)
	if err != nil {
		return err
	}
	t0 := time.Now()
	sub, err := c.Submit(ctx, rc, size)
	rc.Close()
	if err != nil {
		return fmt.Errorf("submitting: %w", err)
	}
	took := time.Since(t0)
	if render {
		t1 := time.Now()
		if err := renderAll(ctx, bin, url, filepath.Join(tmp, "worker"), c, sub.ID, sub.Frames); err != nil {
			return err
		}
		fmt.Printf("rendered %d frames in %.0f s\n", sub.Frames, time.Since(t1).Seconds())
	}
	time.Sleep(settle)
	held, err := readMem(pid)
	if err != nil {
		return err
	}
	state := "not yet rendered"
	if render {
		state = "all done"
	}
	fmt.Printf("job of %d frames, %s (submitted in %.0f ms, then %s):\n", sub.Frames, state, ms(took), settle)
	fmt.Printf("                 VmRSS %6.0f MiB  VmHWM %6.0f MiB\n", mib(held.rss), mib(held.hwm))
	if live, err := liveHeap(ctx, debug); err != nil {
		return err
	} else {
		fmt.Printf("                 live heap after a forced GC %.0f MiB (%.0f bytes per frame over idle's %.0f MiB)\n",
			mib(live), float64(live-idleHeap)/float64(sub.Frames), mib(idleHeap))
	}

	for round := 1; round <= rounds; round++ {
		before, err := readMem(pid)
		if err != nil {
			return err
		}
		stop := make(chan struct{})
		peak := make(chan int64)
		go func() { // sample VmRSS until the listings end
			var top int64
			t := time.NewTicker(5 * time.Millisecond)
			defer t.Stop()
			for {
				if m, err := readMem(pid); err == nil && m.rss > top {
					top = m.rss
				}
				select {
				case <-stop:
					peak <- top
					return
				case <-t.C:
				}
			}
		}()
		var wg sync.WaitGroup
		errs := make([]error, listers)
		counts := make([]int, listers)
		durs := make([]time.Duration, listers)
		t1 := time.Now()
		for i := range listers {
			wg.Go(func() {
				t := time.Now()
				if paged {
					counts[i], errs[i] = listPaged(ctx, c, sub.ID)
				} else {
					counts[i], errs[i] = listStreamed(ctx, url, sub.ID)
				}
				durs[i] = time.Since(t)
			})
		}
		wg.Wait()
		wall := time.Since(t1)
		close(stop)
		top := <-peak
		after, err := readMem(pid)
		if err != nil {
			return err
		}
		for i, err := range errs {
			if err != nil {
				return fmt.Errorf("listing %d: %w", i, err)
			}
			if counts[i] != sub.Frames {
				return fmt.Errorf("listing %d: %d frames, want %d", i, counts[i], sub.Frames)
			}
		}
		var slowest time.Duration
		for _, d := range durs {
			slowest = max(slowest, d)
		}
		fmt.Printf("round %d: %d concurrent listings of %d frames each, %.1f s wall (slowest %.1f s):\n",
			round, listers, sub.Frames, wall.Seconds(), slowest.Seconds())
		fmt.Printf("  before         VmRSS %6.0f MiB  VmHWM %6.0f MiB\n", mib(before.rss), mib(before.hwm))
		fmt.Printf("  peak sampled   VmRSS %6.0f MiB  (+%.0f MiB over before)\n", mib(top), mib(top-before.rss))
		fmt.Printf("  after          VmRSS %6.0f MiB  VmHWM %6.0f MiB  (VmHWM +%.0f MiB over before)\n",
			mib(after.rss), mib(after.hwm), mib(after.hwm-before.hwm))
	}
	return nil
}

// listStreamed reads one unpaged listing to its end, counting its frames
// (the "id" keys of the array's elements) without decoding them.
func listStreamed(ctx context.Context, url string, job int64) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/v1/jobs/%d/frames", url, job), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("%s: %s", resp.Status, b)
	}
	// A key cut by a read is found whole in the carried tail and the next
	// read; the tail is shorter than the key, so nothing is counted twice.
	key := []byte(`{"id":`)
	n := 0
	buf := make([]byte, 256<<10)
	var chunk []byte
	for {
		k, err := resp.Body.Read(buf)
		chunk = append(chunk, buf[:k]...)
		n += bytes.Count(chunk, key)
		tail := min(len(chunk), len(key)-1)
		chunk = append(chunk[:0], chunk[len(chunk)-tail:]...)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// listPaged lists the frames through the typed client, page by page.
func listPaged(ctx context.Context, c *client.Client, job int64) (int, error) {
	n := 0
	err := c.EachFrame(ctx, job, "", func(api.Frame) error {
		n++
		return nil
	})
	return n, err
}

// renderAll runs a worker until every frame of the job is done.
func renderAll(ctx context.Context, bin, url, dir string, c *client.Client, job int64, n int) error {
	w := exec.Command(bin, "worker", "--server", url, "--slots", "2", "--dir", dir, "--name", "memlisting")
	w.Stderr = io.Discard
	if err := w.Start(); err != nil {
		return err
	}
	defer func() {
		w.Process.Signal(syscall.SIGKILL)
		w.Wait()
	}()
	for {
		j, err := c.Job(ctx, job)
		if err != nil {
			return err
		}
		if j.Counts["failed"] > 0 {
			return fmt.Errorf("job %d: %d frames failed: %s", job, j.Counts["failed"], j.Error)
		}
		if j.Counts["done"] == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// serve starts the server, with its debug endpoints on, and returns its
// URL and that of the endpoints once it serves.
func serve(bin, data string, extra []string) (cmd *exec.Cmd, url, debug string, err error) {
	args := append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0", "--name", "bench", "--workers", "0",
		"--debug-addr", "127.0.0.1:0"}, extra...)
	cmd = exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", "", err
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, " url=")
		switch {
		case i < 0:
		case strings.Contains(line, "msg=serving"):
			url = strings.Fields(line[i+5:])[0]
		case strings.Contains(line, `msg="debug endpoints"`):
			debug = strings.Fields(line[i+5:])[0]
		}
		if url != "" && debug != "" {
			go io.Copy(io.Discard, stderr)
			return cmd, url, debug, nil
		}
	}
	cmd.Wait()
	return nil, "", "", errors.New("server exited before serving")
}

// liveHeap asks the server's debug endpoints for its heap in use right
// after a garbage collection (runtime.MemStats.HeapAlloc, ?gc=1).
func liveHeap(ctx context.Context, debug string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", debug+"heap?gc=1&debug=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%sheap: no HeapAlloc (%v)", debug, sc.Err())
}

// writeJob writes a package of n built-in frames in one <range>.
func writeJob(dir string, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	m := fmt.Sprintf(`<distrenjob version="1"><name>memlisting</name>
<backend name="builtin"><width>1</width><height>1</height><output>f-{frame}.png</output></backend>
<outputs><output>*.png</output></outputs>
<frames><range first="1" last="%d"/></frames></distrenjob>
`, n)
	return os.WriteFile(filepath.Join(dir, "distrenjob.xml"), []byte(m), 0o644)
}

type mem struct{ rss, hwm int64 }

// readMem reads VmRSS and VmHWM of a process from /proc.
func readMem(pid int) (mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return mem{}, err
	}
	var m mem
	for line := range strings.SplitSeq(string(b), "\n") {
		for _, f := range []struct {
			key string
			v   *int64
		}{{"VmRSS:", &m.rss}, {"VmHWM:", &m.hwm}} {
			if v, ok := strings.CutPrefix(line, f.key); ok {
				kb, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				if err != nil {
					return mem{}, fmt.Errorf("%s %q: %w", f.key, v, err)
				}
				*f.v = kb << 10
			}
		}
	}
	if m.rss == 0 || m.hwm == 0 {
		return mem{}, fmt.Errorf("/proc/%d/status: no VmRSS or VmHWM", pid)
	}
	return m, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b int64) float64        { return float64(b) / (1 << 20) }
