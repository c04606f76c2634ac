package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
)

// TestKill9TwentyTimes kills the server with SIGKILL at 20 random moments of
// a 401-frame job with dependencies, while a remote worker claims and
// reports, a client keeps submitting small jobs and another keeps
// downloading the bundle, and restarts it each time on the same data
// directory. At the end: every frame of every acknowledged job is done
// once with its output intact, no frame done before a crash was leased or
// completed again, no acknowledged submission is missing, job ids were never
// reused, and the vault holds no damaged object.
//
// What the kills hit does not depend on the machine's speed: kill k comes
// 0-0.5 s after k/21 of the job's first 400 frames are done, and frame 401
// waits for a gate file the test creates only after the last restart, so
// the kills are spread over the job and it cannot finish before the last.
func TestKill9TwentyTimes(t *testing.T) {
	const kills, frames, lines = 20, 401, 500
	const gateFrame = frames // renders only once the test opens the gate
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("kill moments seeded with %d", seed)

	data := t.TempDir()
	renders := filepath.Join(t.TempDir(), "renders.log") // each render appends its job, frame and scratch directory (which names its lease's epoch)
	gate := filepath.Join(t.TempDir(), "gate")           // frame 401 renders once it exists
	// Each output holds its frame number on `lines` lines (a few KB), so an
	// output cut short or swapped shows. wait is shell run before the output
	// is written.
	backendXML := func(prefix, wait string) string {
		return fmt.Sprintf(`<backend name="command">
    <program>sh</program><arg>-c</arg>
    <arg>echo %s-{frame} {dir} >> %s; %s sleep 0.05; yes {frame} | head -n %d > %s-{frame:04}.txt</arg>
  </backend>`, prefix, renders, wait, lines, prefix)
	}
	mainPkg := writeJob(t, fmt.Sprintf(`<distrenjob version="1">
  <name>crash</name>
  %s
  <frames>
    <range first="1" last="300"/>
    <range first="301" last="400"><depends offset="-300"/></range>
    <frame id="%d"/>
  </frames>
  <outputs><output>f-*.txt</output></outputs>
</distrenjob>`, backendXML("f", fmt.Sprintf("[ {frame} -ne %d ] || until [ -e %s ]; do sleep 0.05; done;", gateFrame, gate)), gateFrame), nil)
	smallPkg := writeJob(t, fmt.Sprintf(`<distrenjob version="1">
  <name>small</name>
  %s
  <frames><range first="1" last="3"/></frames>
  <outputs><output>s-*.txt</output></outputs>
</distrenjob>`, backendXML("s", "")), map[string]string{"input.bin": strings.Repeat("input ", 20000)})

	port := freePort(t)
	url := "http://127.0.0.1:" + port
	serveArgs := []string{"--listen", "127.0.0.1:" + port, "--data", data, "--name", "crashy", "--workers", "1", "--lease", "2s"}
	srv, _ := serve(t, serveArgs...)
	mainURL := strings.TrimSpace(run(t, 0, "submit", mainPkg, "--server", url))
	start(t, "worker", "--server", url, "--slots", "3", "--dir", t.TempDir(), "--name", "survivor")

	// The background load: submissions and bundle downloads, counted when
	// in flight at a kill.
	var (
		mu           sync.Mutex
		acknowledged []string // job URLs submit printed
		stop         = make(chan struct{})
		wg           sync.WaitGroup
		uploading    atomic.Int32
		downloading  atomic.Int32
		downloads    atomic.Int32
	)
	// repeat runs once until stop closes, counted in flight while it runs,
	// pausing after a failure (the server is down).
	repeat := func(inFlight *atomic.Int32, once func() error) {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				inFlight.Add(1)
				err := once()
				inFlight.Add(-1)
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	repeat(&uploading, func() error {
		out, err := exec.Command(bin, "submit", smallPkg, "--server", url, "--quiet").Output()
		if err == nil {
			mu.Lock()
			acknowledged = append(acknowledged, strings.TrimSpace(string(out)))
			mu.Unlock()
		}
		return err
	})
	repeat(&downloading, func() error {
		resp, err := http.Get(url + "/v1/jobs/" + path(mainURL) + "/result")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err = io.Copy(io.Discard, resp.Body); err == nil && resp.StatusCode == 200 {
			downloads.Add(1)
		}
		return err
	})

	// A snapshot is what the server said was done just before a kill, and
	// how long the render log was after it said so.
	type snapshot struct {
		done   map[int64]api.Frame
		logLen int
	}
	// snap takes a snapshot once at least want frames are done, asking
	// until the server has got that far.
	snap := func(k, want int) snapshot {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			fs, err := getFrames(url, path(mainURL))
			if err == nil {
				s := snapshot{done: map[int64]api.Frame{}}
				for _, f := range fs {
					if f.State == api.StateDone {
						s.done[f.ID] = f
					}
				}
				s.logLen = logLength(t, renders)
				if len(s.done) >= want {
					return s
				}
				err = fmt.Errorf("%d frames done", len(s.done))
			}
			if time.Now().After(deadline) {
				t.Fatalf("before kill %d: want %d of the job's frames done, still %v after 2 minutes", k, want, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var snaps []snapshot
	for k := 1; k <= kills; k++ {
		snap(k, k*(frames-1)/(kills+1))
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		s := snap(k, 0)
		snaps = append(snaps, s)
		t.Logf("kill %d: %d frames done, %d submissions acknowledged, uploads in flight %d, downloads in flight %d",
			k, len(s.done), len(acknowledgedCopy(&mu, &acknowledged)), uploading.Load(), downloading.Load())
		srv.kill()
		srv, _ = serve(t, serveArgs...)
	}
	close(stop)
	wg.Wait()
	for i, s := range snaps {
		if f, done := s.done[gateFrame]; done {
			t.Fatalf("frame %d was done before kill %d, before its gate opened: %+v", gateFrame, i+1, f)
		}
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	// Everything finishes on the last server.
	jobs := append([]string{mainURL}, acknowledged...)
	for _, j := range jobs {
		run(t, 0, "status", j, "--watch", "--interval", "200ms", "--server", url)
	}
	log, err := os.ReadFile(renders)
	if err != nil {
		t.Fatal(err)
	}

	// No frame done before a kill was leased again, nor changed. A worker
	// may still start a render under a lease it took before the frame was
	// done elsewhere (it learns the lease is gone at its next heartbeat);
	// that lease's epoch is below the one that completed the frame, so
	// below every epoch the frame was rendered under before the kill. A
	// lease given after the frame was done would have a higher one.
	type logged struct {
		key   string // f-N
		epoch uint64
		end   int // offset of the end of its line
	}
	var entries []logged
	for off := 0; off < len(log); {
		n := bytes.IndexByte(log[off:], '\n')
		if n < 0 {
			break
		}
		f := strings.Fields(string(log[off : off+n]))
		if len(f) != 2 || (render{dir: f[1]}).epoch() == 0 {
			t.Fatalf("render log line %q: want a frame and a scratch directory naming its epoch", log[off:off+n])
		}
		entries = append(entries, logged{f[0], render{dir: f[1]}.epoch(), off + n + 1})
		off += n + 1
	}
	stale := map[int]bool{} // entries of renders under a stale lease
	now := map[int64]api.Frame{}
	fs, err := getFrames(url, path(mainURL))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		now[f.ID] = f
	}
	for i, s := range snaps {
		before := map[string]uint64{} // frame → highest epoch rendered under before the kill
		for _, e := range entries {
			if e.end <= s.logLen {
				before[e.key] = max(before[e.key], e.epoch)
			}
		}
		for k, e := range entries {
			var id int64
			if e.end <= s.logLen || !strings.HasPrefix(e.key, "f-") {
				continue
			} else if _, err := fmt.Sscanf(e.key, "f-%d", &id); err != nil {
				t.Fatalf("render log: %q: %v", e.key, err)
			}
			if _, done := s.done[id]; !done {
				continue
			}
			if e.epoch > before[e.key] {
				t.Errorf("frame %d was done before kill %d and was leased again after it (epoch %d; before the kill it was rendered under epochs up to %d)",
					id, i+1, e.epoch, before[e.key])
			} else {
				stale[k] = true
			}
		}
		for id, f := range s.done {
			if n := now[id]; n.Output != f.Output || n.State != api.StateDone {
				t.Errorf("frame %d changed after kill %d: before %+v, now %+v", id, i+1, f, n)
			}
		}
	}
	rendered := map[string]int{}
	for _, e := range entries {
		rendered[e.key]++
	}
	again := 0
	for i := 1; i < gateFrame; i++ {
		again += max(rendered[fmt.Sprintf("f-%d", i)]-1, 0)
	}

	// Every acknowledged job is there, done, with each output once and intact.
	checkBundle(t, url, mainURL, "f", frames, lines)
	seen := map[string]bool{}
	for _, j := range acknowledged {
		if seen[j] {
			t.Errorf("two submissions were acknowledged as %s", j)
		}
		seen[j] = true
		checkBundle(t, url, j, "s", 3, lines)
	}
	var list []api.Job
	getJSON(t, url+"/v1/jobs", &list)
	ids := map[int64]bool{}
	for _, j := range list {
		if ids[j.ID] {
			t.Errorf("job id %d is listed twice", j.ID)
		}
		ids[j.ID] = true
	}
	for _, j := range jobs {
		id, _ := strconv.ParseInt(path(j), 10, 64)
		if !ids[id] {
			t.Errorf("acknowledged job %s is missing after the crashes", j)
		}
	}
	// Job ids are never reused: the next one is above every id ever listed
	// (a job acknowledged to nobody before a kill still used its id).
	next := strings.TrimSpace(run(t, 0, "submit", smallPkg, "--server", url))
	nextID, _ := strconv.ParseInt(path(next), 10, 64)
	for id := range ids {
		if id >= nextID {
			t.Errorf("job %s after the crashes reuses or precedes id %d", next, id)
		}
	}
	srv.kill()
	out := run(t, 0, "vault", "check", "--data", data)
	t.Logf("vault check after %d kills: %s", kills, strings.TrimSpace(out))
	t.Logf("survived %d kills; %d frames of the main job and %d acknowledged submissions (%d frames) checked; %d renders of frames 1-%d repeated (leases lost in a crash), %d of them started after the frame was done under a stale lease; frame %d started %d times (a crash takes its lease); %d whole bundle downloads",
		kills, frames, len(acknowledged), 3*len(acknowledged), again, gateFrame-1, len(stale), gateFrame, rendered[fmt.Sprintf("f-%d", gateFrame)], downloads.Load())
}

// path returns the job id of a distren://server/job URL.
func path(jobURL string) string { return jobURL[strings.LastIndex(jobURL, "/")+1:] }

func acknowledgedCopy(mu *sync.Mutex, s *[]string) []string {
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), *s...)
}

// freePort returns a loopback port free at the time of asking, so that a
// server can be restarted at the same address.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func logLength(t *testing.T, name string) int {
	t.Helper()
	fi, err := os.Stat(name)
	if os.IsNotExist(err) {
		return 0
	} else if err != nil {
		t.Fatal(err)
	}
	return int(fi.Size())
}

func getFrames(url, job string) ([]api.Frame, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url + "/v1/jobs/" + job + "/frames")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("frames of job %s: %s", job, resp.Status)
	}
	var fs []api.Frame
	return fs, json.NewDecoder(resp.Body).Decode(&fs)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// checkBundle downloads a job's bundle and checks it holds prefix-NNNN.txt
// for frames 1..n once each, each its frame number on `lines` lines.
func checkBundle(t *testing.T, url, jobURL, prefix string, n, lines int) {
	t.Helper()
	job, _ := status(t, url, jobURL)
	if job.State != api.JobDone {
		t.Errorf("%s is %s: %+v", jobURL, job.State, job)
	}
	var bundle bytes.Buffer
	cmd := exec.Command(bin, "fetch", jobURL, "--server", url, "-o", "-")
	cmd.Stdout = &bundle
	if err := cmd.Run(); err != nil {
		t.Fatalf("fetch %s: %v", jobURL, err)
	}
	seen := map[string]int{}
	tr := tar.NewReader(&bundle)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("bundle of %s: %v", jobURL, err)
		}
		var b bytes.Buffer
		b.ReadFrom(tr)
		seen[h.Name]++
		num := strings.TrimLeft(strings.TrimSuffix(strings.TrimPrefix(h.Name, prefix+"-"), ".txt"), "0")
		if want := strings.Repeat(num+"\n", lines); b.String() != want {
			t.Errorf("%s of %s holds %d bytes, not %d lines of %q", h.Name, jobURL, b.Len(), lines, num)
		}
	}
	for i := 1; i <= n; i++ {
		if c := seen[fmt.Sprintf("%s-%04d.txt", prefix, i)]; c != 1 {
			t.Errorf("%s: frame %d output present %d times", jobURL, i, c)
		}
	}
}
