// Command fedbench measures federation (docs/federation.md) with real
// servers on 127.0.0.1, side by side in one run:
//
//   - speedup: a job of -frames command frames that sleep -sleep each (the
//     CPU stays idle: the machine may have few cores), rendered by one
//     server with one slot, and submitted to the first of three federated
//     servers with one slot each; runs alternate, -runs of each, and the
//     ratio of the medians is reported.
//   - bytes: a job whose package holds an input of -input bytes and whose
//     -lent frames each write a small output, submitted to a server with no
//     slots whose one peer renders them all. Every byte between the two
//     servers passes through counting proxies: the first lent frame brings
//     the package, every later one should move only its output, its lease
//     and its report.
//   - overhead: frames that do nothing (`true`), rendered by one server
//     with one slot, and by the same server with no slots borrowing them
//     all from a peer with one slot: the difference per frame is what
//     lending costs.
//
// Usage: go run ./bench/fedbench -bin /tmp/distren [-case speedup,bytes,overhead]
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/jobpkg"
)

type bench struct {
	bin     string
	tmp     string
	started []*exec.Cmd
}

func main() {
	bin := flag.String("bin", "", "the distren binary (required)")
	cases := flag.String("case", "speedup,bytes,overhead", "which measurements")
	frames := flag.Int("frames", 300, "speedup: frames of the job")
	sleep := flag.Duration("sleep", 200*time.Millisecond, "speedup: what each frame sleeps")
	runs := flag.Int("runs", 2, "speedup and overhead: runs of each side")
	input := flag.Int64("input", 8<<20, "bytes: size of the job's input file")
	lent := flag.Int("lent", 50, "bytes: frames of the job")
	empty := flag.Int("empty", 300, "overhead: frames of the job")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "fedbench: -bin is required")
		os.Exit(2)
	}
	tmp, err := os.MkdirTemp("", "fedbench-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(tmp)
	b := &bench{bin: *bin, tmp: tmp}
	defer b.stopAll()
	fmt.Printf("fedbench: %s, %d cores\n", *bin, numCPU())
	for _, c := range strings.Split(*cases, ",") {
		switch c {
		case "speedup":
			err = b.speedup(*frames, *sleep, *runs)
		case "bytes":
			err = b.bytes(*input, *lent)
		case "overhead":
			err = b.overhead(*empty, *runs)
		default:
			err = fmt.Errorf("unknown case %q", c)
		}
		if err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "fedbench:", err)
	os.Exit(1)
}

func numCPU() int {
	out, _ := exec.Command("nproc").Output()
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// server is a serve process of the benchmark.
type server struct {
	name, url string
}

// freePort returns a loopback port free when asked.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p, nil
}

// serve starts a server named name listening on port with slots local
// slots and the peers given (NAME=URL), and waits until it serves.
func (b *bench) serve(name, port string, slots int, peers ...string) (server, error) {
	data, err := os.MkdirTemp(b.tmp, name+"-")
	if err != nil {
		return server{}, err
	}
	args := []string{"serve", "--data", data, "--name", name, "--listen", "127.0.0.1:" + port, "--workers", strconv.Itoa(slots)}
	for _, p := range peers {
		args = append(args, "--peer", p)
	}
	cmd := exec.Command(b.bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return server{}, err
	}
	if err := cmd.Start(); err != nil {
		return server{}, err
	}
	b.started = append(b.started, cmd)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "msg=serving") {
			go io.Copy(io.Discard, stderr)
			return server{name, "http://127.0.0.1:" + port}, nil
		}
	}
	cmd.Wait()
	return server{}, fmt.Errorf("server %s exited before serving", name)
}

func (b *bench) stopAll() {
	for _, c := range b.started {
		c.Process.Signal(syscall.SIGKILL)
		c.Wait()
	}
	b.started = nil
}

// waitPeersUp waits until every peer of the server is up.
func waitPeersUp(ctx context.Context, url string) error {
	c, err := client.New(url)
	if err != nil {
		return err
	}
	for {
		ps, err := c.Peers(ctx)
		up := err == nil
		for _, p := range ps {
			up = up && p.State == api.PeerUp
		}
		if up {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("peers of %s not up: %v %+v", url, err, ps)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// run submits the package to url and waits until every frame is done; it
// returns the time from the submission to the last frame.
func run(ctx context.Context, url, pkg string, frames int) (time.Duration, error) {
	c, err := client.New(url)
	if err != nil {
		return 0, err
	}
	rc, size, err := jobpkg.Open(pkg)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	t0 := time.Now()
	sub, err := c.Submit(ctx, rc, size)
	if err != nil {
		return 0, err
	}
	for {
		j, err := c.Job(ctx, sub.ID)
		if err != nil {
			return 0, err
		}
		if j.Counts[api.StateFailed]+j.Counts[api.StateCanceled] > 0 {
			return 0, fmt.Errorf("job %s: %s", sub.URL, j.Error)
		}
		if j.Counts[api.StateDone] == frames {
			return time.Since(t0), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// pkg writes a package of a command job of n frames running script, with
// the files given.
func (b *bench) pkg(n int, script string, files map[string][]byte) (string, error) {
	dir, err := os.MkdirTemp(b.tmp, "job-")
	if err != nil {
		return "", err
	}
	var in strings.Builder
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return "", err
		}
		fmt.Fprintf(&in, "<file>%s</file>", name)
	}
	inputs := ""
	if in.Len() > 0 {
		inputs = "<inputs>" + in.String() + "</inputs>"
	}
	m := fmt.Sprintf(`<distrenjob version="1"><name>fedbench</name><retries>0</retries>
<backend name="command"><program>sh</program><arg>-c</arg><arg>%s</arg></backend>%s
<frames><range first="1" last="%d"/></frames><outputs><output>o-*</output></outputs></distrenjob>`, script, inputs, n)
	return dir, os.WriteFile(filepath.Join(dir, "distrenjob.xml"), []byte(m), 0o644)
}

// alone renders the package of n frames on one server with one slot.
func (b *bench) alone(ctx context.Context, pkg string, n int) (time.Duration, error) {
	defer b.stopAll()
	p, err := freePort()
	if err != nil {
		return 0, err
	}
	s, err := b.serve("one", p, 1)
	if err != nil {
		return 0, err
	}
	return run(ctx, s.url, pkg, n)
}

// federated renders the package of n frames submitted to server fa, with
// lender slots, whose peers (each naming fa) have the slots given.
func (b *bench) federated(ctx context.Context, pkg string, n, lender int, peers ...int) (time.Duration, error) {
	defer b.stopAll()
	names := []string{"fa", "fb", "fc", "fd", "fe"}[:len(peers)+1]
	ports := make([]string, len(names))
	for i := range ports {
		var err error
		if ports[i], err = freePort(); err != nil {
			return 0, err
		}
	}
	url := func(i int) string { return "http://127.0.0.1:" + ports[i] }
	var others []string
	for i := 1; i < len(names); i++ {
		others = append(others, names[i]+"="+url(i))
	}
	if _, err := b.serve("fa", ports[0], lender, others...); err != nil {
		return 0, err
	}
	for i, slots := range peers {
		if _, err := b.serve(names[i+1], ports[i+1], slots, "fa="+url(0)); err != nil {
			return 0, err
		}
	}
	for i := range names {
		if err := waitPeersUp(ctx, url(i)); err != nil {
			return 0, err
		}
	}
	return run(ctx, url(0), pkg, n)
}

// speedup: one server with one slot against three federated servers with
// one slot each, runs alternating.
func (b *bench) speedup(n int, sleep time.Duration, runs int) error {
	pkg, err := b.pkg(n, fmt.Sprintf("sleep %.3f; echo {frame} > o-{frame}", sleep.Seconds()), nil)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var one, three []time.Duration
	for r := range runs {
		d1, err := b.alone(ctx, pkg, n)
		if err != nil {
			return err
		}
		d3, err := b.federated(ctx, pkg, n, 1, 1, 1)
		if err != nil {
			return err
		}
		one, three = append(one, d1), append(three, d3)
		fmt.Printf("speedup run %d: one server %.2f s, three federated %.2f s (%.3f×)\n", r+1, d1.Seconds(), d3.Seconds(), d3.Seconds()/d1.Seconds())
	}
	m1, m3 := median(one), median(three)
	fmt.Printf("speedup: %d frames sleeping %s: one server, one slot: %.2f s; three federated servers, one slot each: %.2f s; ratio %.3f (median of %d runs each; floor %.2f s and %.2f s)\n",
		n, sleep, m1.Seconds(), m3.Seconds(), m3.Seconds()/m1.Seconds(), runs, (time.Duration(n) * sleep).Seconds(), (time.Duration(n) * sleep / 3).Seconds())
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// proxy forwards connections to target and counts the bytes each way.
type proxy struct {
	ln       net.Listener
	up, down atomic.Int64 // bytes towards target, bytes back
}

func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				t, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer t.Close()
				done := make(chan struct{})
				go func() { io.Copy(t, counting{c, &p.up}); t.(*net.TCPConn).CloseWrite(); close(done) }()
				io.Copy(c, counting{t, &p.down})
				<-done
			}()
		}
	}()
	return p, nil
}

// counting counts the bytes read through it as they pass: connections
// stay open between requests.
type counting struct {
	r io.Reader
	n *atomic.Int64
}

func (c counting) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (p *proxy) url() string          { return "http://" + p.ln.Addr().String() }
func (p *proxy) total() int64         { return p.up.Load() + p.down.Load() }
func (p *proxy) close()               { p.ln.Close() }
func kib(n int64) float64             { return float64(n) / 1024 }
func perFrame(n int64, f int) float64 { return kib(n) / float64(f) }

// bytes: what crosses between a lender with no slots and its one peer.
func (b *bench) bytes(input int64, n int) error {
	data := make([]byte, input)
	rand.Read(data)
	// Each frame reads the input (so it must be there) and writes 1 KiB.
	pkg, err := b.pkg(n, "cmp -s input.bin input.bin &amp;&amp; printf %01024d {frame} > o-{frame}",
		map[string][]byte{"input.bin": data})
	if err != nil {
		return err
	}
	pa, err := freePort()
	if err != nil {
		return err
	}
	pb, err := freePort()
	if err != nil {
		return err
	}
	toA, err := newProxy("127.0.0.1:" + pa) // the borrower's requests to the lender
	if err != nil {
		return err
	}
	defer toA.close()
	toB, err := newProxy("127.0.0.1:" + pb) // the lender's (pulling outputs, contacts)
	if err != nil {
		return err
	}
	defer toB.close()
	a, err := b.serve("fa", pa, 0, "fb="+toB.url())
	if err != nil {
		return err
	}
	if _, err := b.serve("fb", pb, 1, "fa="+toA.url()); err != nil {
		return err
	}
	ctx := context.Background()
	if err := waitPeersUp(ctx, a.url); err != nil {
		return err
	}
	if err := waitPeersUp(ctx, "http://127.0.0.1:"+pb); err != nil {
		return err
	}
	// The first frame alone, then the rest: a gate would need the
	// package to change, so the job of one frame goes first.
	before := toA.total() + toB.total()
	one, err := b.pkg(1, "cmp -s input.bin input.bin &amp;&amp; printf %01024d 1 > o-1", map[string][]byte{"input.bin": data})
	if err != nil {
		return err
	}
	if _, err := run(ctx, a.url, one, 1); err != nil {
		return err
	}
	first := toA.total() + toB.total() - before
	mid := toA.total() + toB.total()
	if _, err := run(ctx, a.url, pkg, n); err != nil {
		return err
	}
	rest := toA.total() + toB.total() - mid
	c, err := client.New(a.url)
	if err != nil {
		return err
	}
	fs, err := c.Frames(ctx, 2, "")
	if err != nil {
		return err
	}
	var out int64
	for _, f := range fs {
		out += f.Size
	}
	b.stopAll()
	fmt.Printf("bytes: input %.0f KiB; the first lent frame of a job with it moved %.1f KiB between the servers; then a job of %d frames of the same input moved %.1f KiB, %.2f KiB per frame, of which its output tarball %.2f KiB\n",
		kib(input), kib(first), n, kib(rest), perFrame(rest, n), perFrame(out, len(fs)))
	return nil
}

// overhead: empty frames rendered on their own server against borrowed
// from a peer, one slot either way.
func (b *bench) overhead(n, runs int) error {
	pkg, err := b.pkg(n, "echo {frame} > o-{frame}", nil)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var local, lent []time.Duration
	for r := range runs {
		dl, err := b.alone(ctx, pkg, n)
		if err != nil {
			return err
		}
		db, err := b.federated(ctx, pkg, n, 0, 1)
		if err != nil {
			return err
		}
		local, lent = append(local, dl), append(lent, db)
		fmt.Printf("overhead run %d: local %.2f s, lent %.2f s\n", r+1, dl.Seconds(), db.Seconds())
	}
	ml, mb := median(local), median(lent)
	fmt.Printf("overhead: %d frames of echo, one slot: on its own server %.2f ms per frame, lent to a peer %.2f ms per frame; lending costs %.2f ms per frame (median of %d runs each)\n",
		n, float64(ml.Microseconds())/1000/float64(n), float64(mb.Microseconds())/1000/float64(n), float64((mb-ml).Microseconds())/1000/float64(n), runs)
	return nil
}
