package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/distren/distren/internal/api"
)

// newProxy starts a toxiproxy, in this process, listening on a free port of
// 127.0.0.1 and forwarding to the server at serverURL.
func newProxy(t *testing.T, serverURL string) *toxiproxy.Proxy {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	// The toxics log through zerolog's global logger; the test reads the
	// farm's logs, not the proxy's.
	zerolog.SetGlobalLevel(zerolog.Disabled)
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "distren", "127.0.0.1:0", u.Host)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// addToxic adds a toxic to every connection of the proxy, present and future.
// stream is upstream (workers to server) or downstream.
func addToxic(t *testing.T, p *toxiproxy.Proxy, name, typ, stream, attributes string) {
	t.Helper()
	spec := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, typ, stream, attributes)
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
		t.Fatalf("toxic %s: %v", spec, err)
	}
}

func removeToxic(t *testing.T, p *toxiproxy.Proxy, name string) {
	t.Helper()
	if err := p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		t.Fatalf("removing toxic %s: %v", name, err)
	}
}

// partitionJob is a job of 150 frames, 121..150 each depending on the frame
// 30 before it. Each render appends "start F PID DIR" and "done F PID DIR"
// to the render log and writes f-FFFF.txt: its first line "F PID DIR"
// repeated up to 4 KiB, or 1 MiB for the two frames that wait at a gate
// (gates/slow, gates/stall) for the phase that needs a large upload.
// Frames 71..110 wait at gates/more, opened after the slow link, and
// 111..150 at gates/heal, opened when the link heals: however fast the
// machine, the phases cannot use up the frames that the next ones and the
// healed farm need.
// An expired lease counts as an attempt but not against <retries> (the job
// keeps the default of 2): the link's trouble alone must not fail a frame,
// though a frame may lose its lease more than once in a phase (re-leased to
// a claim sent before the stall).
func partitionJob(renders, gates string, slow, stall int64) string {
	return fmt.Sprintf(`<distrenjob version="1">
  <name>partitions</name>
  <backend name="command">
    <program>sh</program><arg>-c</arg>
    <arg>echo "start {frame} $$ {dir}" >> %[1]s; g=; if [ {frame} -gt 110 ]; then g=heal; elif [ {frame} -gt 70 ]; then g=more; fi; if [ -n "$g" ]; then while [ ! -e %[2]s/$g ]; do sleep 0.05; done; fi; size=4096; case {frame} in %[3]d) size=1048576; while [ ! -e %[2]s/slow ]; do sleep 0.05; done;; %[4]d) size=1048576; while [ ! -e %[2]s/stall ]; do sleep 0.05; done;; *) sleep 0.2;; esac; yes "{frame} $$ {dir}" | head -c $size > f-{frame:04}.txt; echo "done {frame} $$ {dir}" >> %[1]s</arg>
  </backend>
  <frames>
    <range first="1" last="120"/>
    <range first="121" last="150"><depends offset="-30"/></range>
  </frames>
  <outputs><output>f-*.txt</output></outputs>
</distrenjob>`, renders, gates, slow, stall)
}

// TestPartitions runs a job on two remote workers that reach the server
// through a toxiproxy, and puts the link through four phases while the job
// runs: latency; a slow link on which an upload takes longer than the lease;
// a cut longer than the lease, so that every lease expires; and a stall in
// the middle of a large upload, longer than the lease. Then the link heals
// and nothing else is done: the job must complete by itself, with every
// frame completed once and its output, from one of its renders, intact in
// the bundle. Frames are rendered again only where a lease expired.
func TestPartitions(t *testing.T) {
	const (
		frames     = 150
		slowFrame  = 10 // uploads 1 MiB on the slow link
		stallFrame = 11 // its 1 MiB upload is stalled
		lease      = "2s"
	)
	tmp := t.TempDir()
	renders, gates := filepath.Join(tmp, "renders.log"), filepath.Join(tmp, "gates")
	if err := os.Mkdir(gates, 0o755); err != nil {
		t.Fatal(err)
	}
	_, srvURL := serve(t, "--data", t.TempDir(), "--name", "parts", "--workers", "0", "--lease", lease)
	c := apiClient(t, srvURL)
	px := newProxy(t, srvURL)
	proxyURL := "http://" + px.Listen
	dirs := map[string]string{"w1": t.TempDir(), "w2": t.TempDir()}
	workers := map[string]*proc{}
	for _, name := range []string{"w1", "w2"} {
		workers[name] = start(t, "worker", "--server", proxyURL, "--slots", "2", "--dir", dirs[name], "--name", name)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for name, w := range workers {
				t.Logf("%s's log ends with:\n%s", name, tail(w.log.String(), 40))
			}
		}
	})
	waitWorkers(t, srvURL, "w1", "w2")
	job := jobID(t, strings.TrimSpace(run(t, 0, "submit", writeJob(t, partitionJob(renders, gates, slowFrame, stallFrame), nil), "--server", srvURL)))

	counts := func() map[string]int { return jobOf(t, c, job).Counts }
	waitDone := func(what string, n int) {
		t.Helper()
		waitFor(t, what, func() bool { return counts()[api.StateDone] >= n })
	}
	noLease := func(what string) {
		t.Helper()
		waitFor(t, what, func() bool { return counts()[api.StateRunning] == 0 })
	}
	began := time.Now()
	phase := func(name string) {
		t.Logf("%5.1fs phase %s: %d frames done", time.Since(began).Seconds(), name, counts()[api.StateDone])
	}

	waitDone("the first frames", 5)

	// 1. Latency, 200 ms ± 50 each way: work goes on.
	phase("latency")
	addToxic(t, px, "latency_up", "latency", "upstream", `{"latency":200,"jitter":50}`)
	addToxic(t, px, "latency_down", "latency", "downstream", `{"latency":200,"jitter":50}`)
	waitDone("frames done under latency", counts()[api.StateDone]+15)
	removeToxic(t, px, "latency_up")
	removeToxic(t, px, "latency_down")

	// 2. A slow link, 200 KB/s per connection towards the server: the
	// slow frame's 1 MiB upload takes longer than a lease, which its
	// worker keeps alive meanwhile.
	phase("slow link")
	addToxic(t, px, "slow", "bandwidth", "upstream", `{"rate":200}`)
	openGate(t, gates, "slow")
	waitFor(t, fmt.Sprintf("frame %d, uploaded on the slow link", slowFrame), func() bool {
		return frameOf(t, c, job, slowFrame).State == api.StateDone
	})
	removeToxic(t, px, "slow")
	openGate(t, gates, "more")

	// 3. A cut: the proxy refuses connections and drops those it had,
	// until every lease has expired.
	phase("cut")
	px.Stop()
	noLease("every lease to expire while the link is cut")
	if err := px.Start(); err != nil { // on the same port
		t.Fatal(err)
	}
	waitDone("frames done after the cut", counts()[api.StateDone]+10)

	// 4. A stall: on a slow link again, the stall frame renders and starts
	// its upload, then nothing more reaches the server (toxiproxy keeps the
	// connections and drops what they carry) until every lease has expired.
	phase("stall")
	addToxic(t, px, "slow", "bandwidth", "upstream", `{"rate":100}`)
	openGate(t, gates, "stall")
	stalled := waitRender(t, renders, fmt.Sprintf("frame %d to render", stallFrame), func(r render) bool {
		return r.event == "done" && r.frame == stallFrame
	})
	addToxic(t, px, "stall", "timeout", "upstream", `{"timeout":0}`)
	phase("stalled")
	noLease("every lease to expire while the link is stalled")
	if f := frameOf(t, c, job, stallFrame); f.State == api.StateDone {
		t.Fatalf("frame %d was completed although its upload was stalled: %+v", stallFrame, f)
	}

	// Heal, and leave the farm to itself. (Removing the timeout toxic
	// closes the connections it stalled, whose data it dropped. The
	// bandwidth toxic goes first: behind a closed stall it would hold each
	// link's removal for 5 s.)
	removeToxic(t, px, "slow")
	removeToxic(t, px, "stall")
	healedAt := len(readRenders(t, renders))
	left := frames - counts()[api.StateDone]
	phase("healed")
	if left < 40 { // frames 111..150 wait for this gate
		t.Fatalf("only %d frames were left when the link healed, but 40 wait for it to heal", left)
	}
	openGate(t, gates, "heal")
	waitJobDone(t, c, job)
	phase("done")

	// The server's view: every frame done, its output files numbered once.
	fs, err := c.Frames(context.Background(), job, "")
	if err != nil {
		t.Fatal(err)
	}
	attempts := map[int64]int{}
	for _, f := range fs {
		attempts[f.ID] = f.Attempts
		if f.State != api.StateDone || f.Attempts < 1 {
			t.Errorf("frame %d: %s after %d attempts", f.ID, f.State, f.Attempts)
		}
	}
	if len(fs) != frames {
		t.Errorf("the job has %d frames, want %d", len(fs), frames)
	}
	outputs := outputsPerFrame(t, c, job)

	// The renders: each lease rendered ends in one attempt (completed,
	// or expired), so a frame has no more leases rendered than attempts.
	epochs := map[int64]map[uint64]bool{} // frame → epochs of its renders
	finished := map[string]render{}       // "F PID DIR" → its finished render
	var started, ended int
	after := map[string]int{} // renders started after the heal, by worker
	for i, r := range readRenders(t, renders) {
		if epochs[r.frame] == nil {
			epochs[r.frame] = map[uint64]bool{}
		}
		switch r.event {
		case "start":
			started++
			epochs[r.frame][r.epoch()] = true
			for name, dir := range dirs {
				if i >= healedAt && r.by(dir) {
					after[name]++
				}
			}
		case "done":
			ended++
			finished[fmt.Sprintf("%d %d %s", r.frame, r.pid, r.dir)] = r
		}
	}
	rerendered, maxAttempts := 0, 0
	for f := int64(1); f <= frames; f++ {
		if n := len(epochs[f]); n > attempts[f] {
			t.Errorf("frame %d was rendered under %d leases but has %d attempts", f, n, attempts[f])
		} else if n > 1 {
			rerendered++
		}
		maxAttempts = max(maxAttempts, attempts[f])
		if outputs[f] != 1 {
			t.Errorf("frame %d has %d output files numbered, want 1", f, outputs[f])
		}
	}
	for name, n := range after {
		t.Logf("%s started %d renders after the link healed", name, n)
	}
	for name := range dirs {
		if after[name] == 0 {
			t.Errorf("%s rendered nothing after the link healed", name)
		}
	}

	// The bundle: every output once, intact, the output of one finished
	// render of its frame.
	files := bundleFiles(t, c, job)
	if len(files) != frames {
		t.Errorf("the bundle holds %d files, want %d", len(files), frames)
	}
	final := map[int64]render{}
	for f := int64(1); f <= frames; f++ {
		name := fmt.Sprintf("f-%04d.txt", f)
		b, ok := files[name]
		if !ok {
			t.Errorf("%s is missing from the bundle", name)
			continue
		}
		first, _, _ := strings.Cut(string(b), "\n")
		r, ok := finished[first]
		if !ok || r.frame != f {
			t.Errorf("%s begins %q: not a finished render of frame %d", name, first, f)
			continue
		}
		final[f] = r
		size := 4096
		if f == slowFrame || f == stallFrame {
			size = 1 << 20
		}
		if want := strings.Repeat(first+"\n", size/len(first)+1)[:size]; string(b) != want {
			t.Errorf("%s is damaged: %d bytes, want %d", name, len(b), size)
		}
	}

	// The slow upload kept its lease: one render, one attempt.
	if n := len(epochs[slowFrame]); n != 1 || attempts[slowFrame] != 1 {
		t.Errorf("frame %d, uploaded on the slow link: %d renders, %d attempts; want 1 and 1", slowFrame, n, attempts[slowFrame])
	}
	// The stalled upload was refused once its lease had expired; the frame
	// was rendered again and that render's output is the one kept.
	if final[stallFrame].epoch() == stalled.epoch() {
		t.Errorf("frame %d completed by the upload that was stalled past its lease (epoch %d)", stallFrame, stalled.epoch())
	}
	var owner string
	for name, dir := range dirs {
		if stalled.by(dir) {
			owner = name
		}
	}
	refused := fmt.Sprintf(`msg="result refused: lease no longer held" job=%d frame=%d`, job, stallFrame)
	waitFor(t, owner+" to give up the stalled upload", func() bool { return strings.Contains(workers[owner].log.String(), refused) })

	refusals := 0
	for _, w := range workers {
		refusals += strings.Count(w.log.String(), `msg="result refused`)
	}
	t.Logf("%d renders started, %d finished, for %d frames; %d frames rendered under more than one lease; at most %d attempts for a frame; %d results refused",
		started, ended, frames, rerendered, maxAttempts, refusals)
}

func openGate(t *testing.T, gates, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(gates, name), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
