package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
)

// server is the distren serve process under load.
type server struct {
	cmd    *exec.Cmd
	pid    int
	url    string // the API
	debug  string // the debug listener, http://host:port
	hc     *http.Client
	exited chan struct{}
	err    error // of Wait, once exited

	mu       sync.Mutex
	tail     []string // the log's last lines
	problems []string // its warnings and errors
}

// startServer starts distren serve and waits for its API and debug
// listeners to be announced in its log.
func startServer(ctx context.Context, o options) (*server, error) {
	cmd := exec.Command(o.bin, "serve", "--data", o.data, "--listen", "127.0.0.1:0", "--workers", "0", "--name", "loadtest",
		"--debug-addr", "127.0.0.1:0", "--gc-interval", "0", "--gc-grace", o.grace.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // stopped by us, not by the terminal's ^C
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s serve: %w", o.bin, err)
	}
	s := &server{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{}), hc: &http.Client{Timeout: time.Minute}}
	urls := make(chan [2]string, 1)
	go func() {
		var api, debug string
		announced := false
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.logged(line)
			switch {
			case strings.Contains(line, "msg=serving "):
				api = logValue(line, "url")
			case strings.Contains(line, `msg="debug endpoints"`):
				debug = strings.TrimSuffix(logValue(line, "url"), "/debug/pprof/")
			}
			if api != "" && debug != "" && !announced {
				urls <- [2]string{api, debug}
				announced = true
			}
		}
		io.Copy(io.Discard, stderr) // a line too long for the scanner
		s.err = cmd.Wait()
		close(s.exited)
	}()
	select {
	case u := <-urls:
		s.url, s.debug = u[0], u[1]
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("distren serve exited before serving (%v):\n%s", s.err, s.logTail())
	case <-time.After(time.Minute):
		s.kill()
		return nil, fmt.Errorf("distren serve did not announce its listeners within a minute:\n%s", s.logTail())
	case <-ctx.Done():
		s.kill()
		return nil, ctx.Err()
	}
}

// logValue returns the value of key in a log/slog text line.
func logValue(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		if u, err := strconv.QuotedPrefix(v); err == nil {
			v, _ = strconv.Unquote(u)
			return v
		}
	}
	v, _, _ = strings.Cut(v, " ")
	return v
}

func (s *server) logged(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tail) == 50 {
		s.tail = s.tail[1:]
	}
	s.tail = append(s.tail, line)
	if strings.Contains(line, " level=WARN ") || strings.Contains(line, " level=ERROR ") ||
		strings.HasPrefix(line, "WARNING: DATA RACE") || strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") {
		if len(s.problems) < 20 {
			s.problems = append(s.problems, line)
		}
	}
}

func (s *server) logTail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.tail, "\n")
}

func (s *server) logProblems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.problems)
}

// stop asks the server to stop (SIGTERM) and waits for it to exit cleanly.
func (s *server) stop(limit time.Duration) error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		if s.err != nil {
			return fmt.Errorf("distren serve stopped with %v", s.err)
		}
		return nil
	case <-time.After(limit):
		s.kill()
		return fmt.Errorf("distren serve did not stop within %s of SIGTERM", limit)
	}
}

func (s *server) kill() {
	select {
	case <-s.exited:
	default:
		s.cmd.Process.Kill()
		<-s.exited
	}
}

func (s *server) debugGet(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", s.debug+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("debug endpoint: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("debug endpoint %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("debug endpoint %s: %s", path, resp.Status)
	}
	return b, nil
}

// saveProfiles saves the server's heap profile and goroutine dump in dir,
// named after when.
func (s *server) saveProfiles(ctx context.Context, dir, when string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, path := range map[string]string{"heap-" + when + ".pb.gz": "/debug/pprof/heap?gc=1",
		"goroutines-" + when + ".txt": "/debug/pprof/goroutine?debug=1"} {
		b, err := s.debugGet(ctx, path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// goroutines counts the server's goroutines.
func (s *server) goroutines(ctx context.Context) (int, error) {
	b, err := s.debugGet(ctx, "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	return parseGoroutines(b)
}

// parseGoroutines reads the total from a goroutine profile in text form.
func parseGoroutines(b []byte) (int, error) {
	first, _, _ := bytes.Cut(b, []byte("\n"))
	v, ok := strings.CutPrefix(string(first), "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("goroutine profile: unexpected first line %q", first)
	}
	return strconv.Atoi(strings.TrimSpace(v))
}

// heap returns the server's live heap (HeapAlloc) after two garbage
// collections: what sync.Pools held at the first is gone at the second.
func (s *server) heap(ctx context.Context) (int64, error) {
	if _, err := s.debugGet(ctx, "/debug/pprof/heap?gc=1"); err != nil {
		return 0, err
	}
	b, err := s.debugGet(ctx, "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return 0, err
	}
	return memStat(b, "HeapAlloc")
}

// memStat reads a runtime.MemStats field from a heap profile in text form.
func memStat(b []byte, name string) (int64, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "# "+name+" = "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("heap profile: no %s", name)
}

// procStatus reads a field of /proc/PID/status in bytes (VmRSS, VmHWM).
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// cpuTime reads the process's user and system time from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ut+st) * (time.Second / 100), nil // USER_HZ is 100 on Linux
}

// sample is the server measured at one time.
type sample struct {
	RSS        int64 // VmRSS
	HWM        int64 // VmHWM, the peak so far
	Heap       int64 // live heap after a collection (settled samples only)
	Goroutines int
	CPU        time.Duration // user+system so far
	GC         *api.GCResult // the collection run before a settled sample
}

// measure takes a sample.
func (s *server) measure(ctx context.Context) (sample, error) {
	var m sample
	var err error
	if m.Goroutines, err = s.goroutines(ctx); err != nil {
		return m, err
	}
	if m.RSS, err = procStatus(s.pid, "VmRSS"); err != nil {
		return m, err
	}
	if m.HWM, err = procStatus(s.pid, "VmHWM"); err != nil {
		return m, err
	}
	m.CPU, err = cpuTime(s.pid)
	return m, err
}

// sampleUntil samples the server every period until ctx ends and returns
// the peaks (and the CPU time used meanwhile), printing progress every 10 s.
func (s *server) sampleUntil(ctx context.Context, period time.Duration, l *load, progress io.Writer) sample {
	var peak sample
	start := time.Now()
	cpu0, _ := cpuTime(s.pid)
	t := time.NewTicker(period)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			cpu, _ := cpuTime(s.pid)
			peak.CPU = cpu - cpu0
			return peak
		case <-t.C:
		}
		m, err := s.measure(ctx)
		if err != nil {
			continue // ended meanwhile, or the debug listener busy: the next sample counts
		}
		peak.RSS, peak.HWM = max(peak.RSS, m.RSS), max(peak.HWM, m.HWM)
		peak.Goroutines = max(peak.Goroutines, m.Goroutines)
		if progress != nil && time.Since(last) >= 10*time.Second {
			last = time.Now()
			fmt.Fprintf(progress, "%4.0fs: %d claims, %d empty, %d errors, server RSS %.0f MiB, %d goroutines\n",
				time.Since(start).Seconds(), l.claims.Load(), l.empty.Load(), l.errs.n.Load(), mib(m.RSS), m.Goroutines)
		}
	}
}

// settle waits for the server to come back to rest: grace after the last
// write, a garbage collection (POST /v1/gc), goroutines down to target
// (or, with target < 0, unchanged for a second), then samples it.
func (s *server) settle(ctx context.Context, admin *client.Client, grace time.Duration, target int) (sample, error) {
	sleep(ctx, grace+500*time.Millisecond)
	gc, err := admin.GC(ctx)
	if err != nil {
		return sample{}, fmt.Errorf("garbage collection: %w", err)
	}
	prev, same := -1, 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		n, err := s.goroutines(ctx)
		if err != nil {
			return sample{}, err
		}
		if target >= 0 && n <= target {
			break
		}
		if n == prev {
			same++
		} else {
			prev, same = n, 0
		}
		if target < 0 && same >= 4 {
			break
		}
		sleep(ctx, 250*time.Millisecond)
	}
	m, err := s.measure(ctx)
	if err != nil {
		return m, err
	}
	if m.Heap, err = s.heap(ctx); err != nil {
		return m, err
	}
	if m.RSS, err = procStatus(s.pid, "VmRSS"); err != nil { // after the heap profile's collection
		return m, err
	}
	m.GC = &gc
	return m, ctx.Err()
}
