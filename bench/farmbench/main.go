// Command farmbench measures distren end to end with real processes: a
// `distren serve` and `distren worker` processes on 127.0.0.1, driven over
// HTTP. It reports the figures of docs/PERFORMANCE.md:
//
//	throughput: frames per second for a job of near-zero-cost built-in frames
//	            through serve (no local slots) and remote workers;
//	submit:     time to upload, validate and persist a large job, and the
//	            server's peak RSS;
//	restart:    time from starting serve on a DATA directory holding that job
//	            half done to serving it.
//
// Usage:
//
//	go run ./bench/farmbench [-bin distren] [-case all|throughput|submit|restart] [-frames N] [-big N]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
	which := flag.String("case", "all", "throughput, submit, restart or all")
	frames := flag.Int("frames", 10000, "frames of the throughput job")
	big := flag.Int("big", 100000, "frames of the submit/restart job")
	workers := flag.Int("workers", 2, "remote worker processes")
	slots := flag.Int("slots", 2, "slots per worker")
	prefetch := flag.Int("prefetch", 0, "frames each worker claims ahead of its slots (0: the worker's default, --slots)")
	flag.Parse()
	if err := run(*bin, *which, *frames, *big, *workers, *slots, *prefetch); err != nil {
		fmt.Fprintln(os.Stderr, "farmbench:", err)
		os.Exit(1)
	}
}

func run(bin, which string, frames, big, workers, slots, prefetch int) error {
	tmp, err := os.MkdirTemp("", "farmbench-")
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
	fmt.Printf("# farmbench: %s/%s, %d CPUs, %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))
	b := &bench{bin: bin, tmp: tmp, workers: workers, slots: slots, prefetch: prefetch}
	if which == "all" || which == "throughput" {
		if err := b.throughput(frames); err != nil {
			return fmt.Errorf("throughput: %w", err)
		}
	}
	if which == "all" || which == "submit" || which == "restart" {
		if err := b.submitAndRestart(big, which != "submit"); err != nil {
			return fmt.Errorf("submit/restart: %w", err)
		}
	}
	return nil
}

type bench struct {
	bin, tmp      string
	workers       int
	slots         int
	prefetch      int
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

// serve starts a server with no local slots and returns its URL once it
// logs that it is serving.
func (b *bench) serve(data string) (*exec.Cmd, string, error) {
	cmd := exec.Command(b.bin, "serve", "--data", data, "--listen", "127.0.0.1:0", "--name", "bench", "--workers", "0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	b.serverStarted = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	b.started = append(b.started, cmd)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, " url="); i >= 0 && strings.Contains(line, "msg=serving") {
			url := strings.Fields(line[i+5:])[0]
			go io.Copy(io.Discard, stderr)
			return cmd, url, nil
		}
	}
	cmd.Wait()
	return nil, "", fmt.Errorf("server exited before serving")
}

func (b *bench) startWorkers(url string) error {
	for i := range b.workers {
		cmd := exec.Command(b.bin, "worker", "--server", url, "--slots", strconv.Itoa(b.slots),
			"--prefetch", strconv.Itoa(b.prefetch), "--dir", b.dir("worker"), "--name", fmt.Sprintf("bench-w%d", i))
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			return err
		}
		b.started = append(b.started, cmd)
	}
	return nil
}

func (b *bench) stopAll() {
	for _, c := range b.started {
		c.Process.Signal(syscall.SIGKILL)
		c.Wait()
	}
	b.started = nil
}

// writeJob writes a package of n built-in frames of 1x1 pixels. explicit
// lists every frame as its own <frame> element, every tenth depending on the
// one before; otherwise one <range> holds them all.
func (b *bench) writeJob(n int, explicit bool) (string, error) {
	dir := b.dir("job")
	var sb strings.Builder
	sb.WriteString(`<distrenjob version="1"><name>bench</name><retries>0</retries>
<backend name="builtin"><width>1</width><height>1</height><samples>1</samples><output>f-{frame}.png</output></backend>
<outputs><output>*.png</output></outputs><frames>
`)
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
	return dir, os.WriteFile(filepath.Join(dir, "distrenjob.xml"), []byte(sb.String()), 0o644)
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

func (b *bench) throughput(n int) error {
	defer b.stopAll()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	_, url, err := b.serve(b.dir("data"))
	if err != nil {
		return err
	}
	c, err := client.New(url)
	if err != nil {
		return err
	}
	if err := b.startWorkers(url); err != nil {
		return err
	}
	dir, err := b.writeJob(n, false)
	if err != nil {
		return err
	}
	t0 := time.Now()
	sub, took, err := submit(ctx, c, dir)
	if err != nil {
		return err
	}
	if _, err := waitDone(ctx, c, sub.ID, n, 20*time.Millisecond); err != nil {
		return err
	}
	el := time.Since(t0)
	fmt.Printf("throughput: %d frames, %d workers x %d slots (prefetch %d): %.2fs from submit to done (submit %.0fms): %.0f frames/s\n",
		n, b.workers, b.slots, b.prefetch, el.Seconds(), ms(took), float64(n)/el.Seconds())
	return nil
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
