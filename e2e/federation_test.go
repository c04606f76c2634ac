package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
)

// farmOf is a server of a federation test: its name, URL, process.
type farmOf struct {
	name, url, data string
	p               *proc
}

// federate starts servers on ports chosen beforehand, so that each can
// name the others as peers at start: peers[name] lists the servers it
// names (NAME, or NAME=URL to reach it some other way); args[name] are its
// other flags; ports, if set, are the ports to listen on.
func federate(t *testing.T, names []string, peers map[string][]string, args map[string][]string, ports ...map[string]string) map[string]*farmOf {
	t.Helper()
	out := map[string]*farmOf{}
	for _, n := range names {
		port := freePort(t)
		if len(ports) > 0 && ports[0][n] != "" {
			port = ports[0][n]
		}
		out[n] = &farmOf{name: n, url: "http://127.0.0.1:" + port, data: filepath.Join(t.TempDir(), "data")}
	}
	for _, n := range names {
		a := []string{"serve", "--data", out[n].data, "--name", n, "--listen", strings.TrimPrefix(out[n].url, "http://")}
		for _, p := range peers[n] {
			name, url, given := strings.Cut(p, "=")
			if !given {
				url = out[p].url
			}
			a = append(a, "--peer", name+"="+url)
		}
		a = append(a, args[n]...)
		out[n].p = start(t, a...)
	}
	for _, n := range names {
		waitFor(t, "server "+n+" to serve", func() bool {
			select {
			case <-out[n].p.done:
				t.Fatalf("server %s exited: %s", n, out[n].p.log)
			default:
			}
			return strings.Contains(out[n].p.log.String(), "msg=serving")
		})
	}
	return out
}

// gateDirs returns a render log and a gates directory for gatedJob.
func gateDirs(t *testing.T) (renders, gates string) {
	t.Helper()
	dir := t.TempDir()
	renders, gates = filepath.Join(dir, "renders.log"), filepath.Join(dir, "gates")
	if err := os.Mkdir(gates, 0o755); err != nil {
		t.Fatal(err)
	}
	return renders, gates
}

// lenderAndTwo starts fa, with no slots and the lease given, and its two
// peers fb and fc with the slots given, and waits until all are up.
func lenderAndTwo(t *testing.T, lease string, slotsB, slotsC int) map[string]*farmOf {
	t.Helper()
	fs := federate(t, []string{"fa", "fb", "fc"},
		map[string][]string{"fa": {"fb", "fc"}, "fb": {"fa"}, "fc": {"fa"}},
		map[string][]string{"fa": {"--workers", "0", "--lease", lease}, "fb": {"--workers", fmt.Sprint(slotsB)}, "fc": {"--workers", fmt.Sprint(slotsC)}})
	for _, n := range []string{"fa", "fb", "fc"} {
		waitPeersUp(t, fs[n])
	}
	return fs
}

// peersOf returns a server's peers as `distren peers --json` lists them.
func peersOf(t *testing.T, url string) map[string]api.Peer {
	t.Helper()
	var ps []api.Peer
	if err := json.Unmarshal([]byte(run(t, 0, "peers", "--server", url, "--json")), &ps); err != nil {
		t.Fatal(err)
	}
	out := map[string]api.Peer{}
	for _, p := range ps {
		out[p.Name] = p
	}
	return out
}

// waitPeersUp waits until every peer of the server is up.
func waitPeersUp(t *testing.T, f *farmOf) {
	t.Helper()
	waitFor(t, "the peers of "+f.name+" to be up", func() bool {
		for _, p := range peersOf(t, f.url) {
			if p.State != api.PeerUp {
				return false
			}
		}
		return true
	})
}

// numbersJob is a command job of frames 1..n, each sleeping a little and
// writing n-FFFF.txt with its frame number: the same bytes wherever it runs.
func numbersJob(n int, sleep string) string {
	return fmt.Sprintf(`<distrenjob version="1">
  <name>numbers</name>
  <backend name="command">
    <program>sh</program><arg>-c</arg><arg>sleep %s; echo "frame {frame} of %d" > n-{frame:04}.txt</arg>
  </backend>
  <frames><range first="1" last="%d"/></frames>
  <outputs><output>n-*.txt</output></outputs>
</distrenjob>`, sleep, n, n)
}

// TestFederationLends: a job submitted to a server with no workers at all
// completes through its two peers; the lender's status shows, for every
// frame, the peer and the worker that rendered it; the bundle is complete
// and the same as `distren render`'s; the peers list what they lent and
// borrowed.
func TestFederationLends(t *testing.T) {
	fs := lenderAndTwo(t, "30s", 1, 1)
	a := fs["fa"]
	pkg := writeJob(t, numbersJob(60, "0.1"), nil)
	jobURL := strings.TrimSpace(run(t, 0, "submit", pkg, "--server", a.url))
	if !strings.HasPrefix(jobURL, "distren://fa/") {
		t.Fatalf("job URL %q: the job is the lender's", jobURL)
	}
	c := apiClient(t, a.url)
	id := jobID(t, jobURL)
	waitJobDone(t, c, id)

	var st struct {
		Frames []api.Frame `json:"frames"`
	}
	if err := json.Unmarshal([]byte(run(t, 0, "status", jobURL, "--server", a.url, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	by := map[string]int{}
	for _, f := range st.Frames {
		if f.State != api.StateDone {
			t.Errorf("frame %d is %s", f.ID, f.State)
		}
		want := f.Server + "-local"
		if (f.Server != "fb" && f.Server != "fc") || f.Worker != want {
			t.Errorf("frame %d: server %q worker %q; want fb or fc, and its local slots", f.ID, f.Server, f.Worker)
		}
		by[f.Server]++
	}
	if len(st.Frames) != 60 || by["fb"] == 0 || by["fc"] == 0 {
		t.Errorf("%d frames, by server %v: want 60, some on each peer", len(st.Frames), by)
	}

	got := bundleFiles(t, c, id)
	local := filepath.Join(t.TempDir(), "out")
	run(t, 0, "render", pkg, "-o", local, "--workers", "2")
	want := readDir(t, local)
	if len(got) != 60 || len(want) != 60 {
		t.Errorf("bundle holds %d files, render wrote %d; want 60", len(got), len(want))
	}
	for name, b := range want {
		if !bytes.Equal(got[name], b) {
			t.Errorf("%s: bundle has %q, render wrote %q", name, got[name], b)
		}
	}

	lent := 0
	for _, p := range peersOf(t, a.url) {
		lent += int(p.LentDone)
		if p.Lent != 0 {
			t.Errorf("peer %s still holds %d frames of a finished job", p.Name, p.Lent)
		}
	}
	borrowed := peersOf(t, fs["fb"].url)["fa"].BorrowedDone + peersOf(t, fs["fc"].url)["fa"].BorrowedDone
	if lent != 60 || borrowed != 60 {
		t.Errorf("lent %d, borrowed %d frames; want 60 and 60", lent, borrowed)
	}
	// The job stays the lender's: the peers have none.
	for _, n := range []string{"fb", "fc"} {
		if js, err := apiClient(t, fs[n].url).Jobs(context.Background()); err != nil || len(js) != 0 {
			t.Errorf("%s lists jobs %v (%v); want none", n, js, err)
		}
	}
}

// TestFederationPeerKilled: a peer killed with SIGKILL while it renders
// borrowed frames loses them back to the lender within a lease; the other
// peer renders them, and every frame is completed once.
func TestFederationPeerKilled(t *testing.T) {
	renders, gates := gateDirs(t)
	fs := lenderAndTwo(t, "3s", 2, 1)
	a := fs["fa"]
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("fc's log ends with:\n%s", tail(fs["fc"].p.log.String(), 40))
			t.Logf("fa's log ends with:\n%s", tail(fs["fa"].p.log.String(), 20))
		}
	})
	jobURL := strings.TrimSpace(run(t, 0, "submit", writeJob(t, gatedJob(renders, gates, 12), nil), "--server", a.url))
	c := apiClient(t, a.url)
	id := jobID(t, jobURL)

	// fb starts frames, then dies with them.
	var onB []int64
	waitFor(t, "fb to render two frames", func() bool {
		onB = onB[:0]
		for f := int64(1); f <= 12; f++ {
			if fr := frameOf(t, c, id, f); fr.State == api.StateRunning && fr.Server == "fb" {
				onB = append(onB, f)
			}
		}
		return len(onB) >= 2
	})
	// status shows a lent frame's worker with its server.
	if out := run(t, 0, "status", jobURL, "--server", a.url); !strings.Contains(out, "fb/fb-local") {
		t.Errorf("status of the lender does not show fb/fb-local rendering:\n%s", out)
	}
	fs["fb"].p.kill()
	openGates(t, gates, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
	waitJobDone(t, c, id)

	for _, f := range onB {
		fr := frameOf(t, c, id, f)
		if fr.Server != "fc" || fr.Lost < 1 {
			t.Errorf("frame %d, lost with fb: done by %q, lost %d times; want fc, at least once", f, fr.Server, fr.Lost)
		}
	}
	files := bundleFiles(t, c, id)
	if len(files) != 12 {
		t.Errorf("bundle holds %d files, want 12", len(files))
	}
	for f, n := range outputsPerFrame(t, c, id) {
		if n != 1 {
			t.Errorf("frame %d completed with %d output files numbered; want 1", f, n)
		}
	}
	done := map[int64]int{}
	for _, r := range readRenders(t, renders) {
		if r.event == "done" {
			done[r.frame]++
		}
	}
	for f := int64(1); f <= 12; f++ {
		content := string(files[fmt.Sprintf("f-%04d.txt", f)])
		if !strings.HasPrefix(content, fmt.Sprintf("%d ", f)) {
			t.Errorf("frame %d's output %q", f, content)
		}
		if done[f] != 1 {
			t.Errorf("frame %d rendered to its end %d times; want once (the gates opened after fb died)", f, done[f])
		}
	}
}

// TestFederationRefusals: a peer presenting a wrong token, two servers of
// the same name, and a server named as its own peer are refused, each
// with a message that says what is wrong; none of them gets a frame.
func TestFederationRefusals(t *testing.T) {
	// fa requires tokens: fb presents one that is not fa's.
	dataA := filepath.Join(t.TempDir(), "data")
	run(t, 0, "token", "create", "--data", dataA, "--name", "fb", "--role", "peer")
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("dtk_0123456789abcdef_0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	portA := freePort(t)
	urlA := "http://127.0.0.1:" + portA
	pa := start(t, "serve", "--data", dataA, "--name", "fa", "--listen", "127.0.0.1:"+portA, "--workers", "0")
	waitFor(t, "fa to serve", func() bool { return strings.Contains(pa.log.String(), "msg=serving") })
	_, urlB := serve(t, "--data", filepath.Join(t.TempDir(), "data"), "--name", "fb", "--workers", "1",
		"--peer", "fa="+urlA, "--peer-token-file", "fa="+wrong)
	waitFor(t, "fb to find fa refusing it", func() bool {
		p := peersOf(t, urlB)["fa"]
		return p.State == api.PeerRefused
	})
	if p := peersOf(t, urlB)["fa"]; !strings.Contains(p.Error, "refuses this server") || !strings.Contains(p.Error, "401") && !strings.Contains(p.Error, "token") {
		t.Errorf("fb's view of fa: %+v", p)
	}

	// Two servers named fd: fc names the one at urlD; the other is refused.
	fs := federate(t, []string{"fc", "fd"}, map[string][]string{"fc": {"fd"}, "fd": {"fc"}}, map[string][]string{"fc": {"--workers", "0"}})
	waitPeersUp(t, fs["fc"])
	_, urlD2 := serve(t, "--data", filepath.Join(t.TempDir(), "data"), "--name", "fd", "--workers", "1", "--peer", "fc="+fs["fc"].url)
	waitFor(t, "the second fd to be refused", func() bool { return peersOf(t, urlD2)["fc"].State == api.PeerRefused })
	if p := peersOf(t, urlD2)["fc"]; !strings.Contains(p.Error, "two servers share the name fd") {
		t.Errorf("the second fd's view of fc: %+v", p)
	}
	// Its workers' claims are refused too, with the same reason.
	c2, err := client.New(fs["fc"].url, client.WithHeader(api.PeerHeader, "fd 0000"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c2.Claim(context.Background(), api.ClaimRequest{Worker: "fd/w", Max: 1})
	if !client.IsStatus(err, 403) || !strings.Contains(err.Error(), "two servers share the name fd") {
		t.Errorf("a claim of the second fd: %v; want 403 naming the duplicate", err)
	}
	// A claim for a worker of a server that borrows from fd: a loop.
	_, err = c2.Claim(context.Background(), api.ClaimRequest{Worker: "fd/fe/w", Max: 1})
	if !client.IsStatus(err, 400) || !strings.Contains(err.Error(), "lending loop") {
		t.Errorf("a claim passed on: %v; want 400, lending loop", err)
	}

	// A peer whose URL is the server's own.
	portG := freePort(t)
	pg := start(t, "serve", "--data", filepath.Join(t.TempDir(), "data"), "--name", "fg", "--listen", "127.0.0.1:"+portG,
		"--workers", "0", "--peer", "fh=http://127.0.0.1:"+portG)
	waitFor(t, "fg to serve", func() bool { return strings.Contains(pg.log.String(), "msg=serving") })
	waitFor(t, "fg to refuse itself as a peer", func() bool {
		return peersOf(t, "http://127.0.0.1:"+portG)["fh"].State == api.PeerRefused
	})
	if p := peersOf(t, "http://127.0.0.1:"+portG)["fh"]; !strings.Contains(p.Error, "this server itself") {
		t.Errorf("fg's view of itself as fh: %+v", p)
	}
	// A duplicate --peer and a peer named as the server are usage errors.
	if msg := runStderr(t, 2, "serve", "--data", t.TempDir(), "--name", "fx", "--listen", "127.0.0.1:0", "--peer", "fy=http://127.0.0.1:1", "--peer", "fy=http://127.0.0.1:2"); !strings.Contains(msg, "--peer fy given twice") {
		t.Errorf("duplicate --peer: %s", msg)
	}
	if msg := runStderr(t, 1, "serve", "--data", t.TempDir(), "--name", "fx", "--listen", "127.0.0.1:0", "--peer", "fx=http://127.0.0.1:1"); !strings.Contains(msg, "this server's own name") {
		t.Errorf("a peer named as the server: %s", msg)
	}
}

// TestFederationLenderRestarts: a lender killed with SIGKILL while its
// peers render frames it lent, and started again, lends those frames
// again; the reports of the renders begun before the kill are refused
// (their leases are of the dead incarnation), and every frame is
// completed once.
func TestFederationLenderRestarts(t *testing.T) {
	renders, gates := gateDirs(t)
	fs := lenderAndTwo(t, "3s", 1, 1)
	a := fs["fa"]
	jobURL := strings.TrimSpace(run(t, 0, "submit", writeJob(t, gatedJob(renders, gates, 8), nil), "--server", a.url))
	id := jobID(t, jobURL)
	c := apiClient(t, a.url)
	waitFor(t, "both peers to render a frame", func() bool {
		fr, err := c.Frames(context.Background(), id, "")
		if err != nil {
			t.Fatal(err)
		}
		running := map[string]int{}
		for _, f := range fr {
			if f.State == api.StateRunning {
				running[f.Server]++
			}
		}
		return running["fb"] > 0 && running["fc"] > 0
	})
	before := readRenders(t, renders)
	a.p.kill()
	args := a.p.cmd.Args[1:]
	a.p = start(t, args...)
	waitFor(t, "fa to serve again", func() bool { return strings.Contains(a.p.log.String(), "msg=serving") })
	openGates(t, gates, 1, 2, 3, 4, 5, 6, 7, 8)
	waitJobDone(t, c, id)

	for f, n := range outputsPerFrame(t, c, id) {
		if n != 1 {
			t.Errorf("frame %d completed with %d output files numbered; want 1", f, n)
		}
	}
	files := bundleFiles(t, c, id)
	if len(files) != 8 {
		t.Errorf("bundle holds %d files, want 8", len(files))
	}
	// The renders running at the kill finished, but their results were
	// refused: each of those frames' output is from a later render.
	for _, r := range before {
		if r.event != "start" {
			continue
		}
		out := string(files[fmt.Sprintf("f-%04d.txt", r.frame)])
		if strings.Contains(out, r.dir) {
			t.Errorf("frame %d's output %q is from the render under the dead lender's lease (%s)", r.frame, out, r.dir)
		}
	}
}

// TestFederationPartition: the link between a lender and one of its peers
// is cut while the peer renders frames it borrowed; the lender's leases
// run out, the other peer renders the frames, and when the link heals the
// cut-off peer's results are refused: no frame is completed twice.
func TestFederationPartition(t *testing.T) {
	renders, gates := gateDirs(t)
	ports := map[string]string{"fa": freePort(t), "fb": freePort(t)}
	toA := newProxy(t, "http://127.0.0.1:"+ports["fa"]) // fb's requests to fa
	toB := newProxy(t, "http://127.0.0.1:"+ports["fb"]) // fa's requests to fb
	fs := federate(t, []string{"fa", "fb", "fc"},
		map[string][]string{"fa": {"fb=http://" + toB.Listen, "fc"}, "fb": {"fa=http://" + toA.Listen}, "fc": {"fa"}},
		map[string][]string{"fa": {"--workers", "0", "--lease", "2s"}, "fb": {"--workers", "2"}, "fc": {"--workers", "1"}}, ports)
	a := fs["fa"]
	waitPeersUp(t, a)
	waitPeersUp(t, fs["fb"])
	waitPeersUp(t, fs["fc"])
	id := jobID(t, strings.TrimSpace(run(t, 0, "submit", writeJob(t, gatedJob(renders, gates, 10), nil), "--server", a.url)))
	c := apiClient(t, a.url)
	var cut []int64
	waitFor(t, "fb to render frames", func() bool {
		cut = cut[:0]
		for f := int64(1); f <= 10; f++ {
			if fr := frameOf(t, c, id, f); fr.State == api.StateRunning && fr.Server == "fb" {
				cut = append(cut, f)
			}
		}
		return len(cut) >= 2
	})
	// The link is cut both ways: nothing passes, nothing is closed.
	for _, px := range []*toxiproxy.Proxy{toA, toB} {
		addToxic(t, px, "cut_up", "timeout", "upstream", `{"timeout":0}`)
		addToxic(t, px, "cut_down", "timeout", "downstream", `{"timeout":0}`)
	}
	openGates(t, gates, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	waitJobDone(t, c, id)
	for _, f := range cut {
		if fr := frameOf(t, c, id, f); fr.Server != "fc" || fr.Lost < 1 {
			t.Errorf("frame %d, cut off on fb: done by %q, lost %d times; want fc, at least once", f, fr.Server, fr.Lost)
		}
	}
	// fb rendered its frames to the end meanwhile; once the link heals it
	// reports them, and they are refused.
	waitFor(t, "fb to finish the frames it was cut off with", func() bool {
		n := 0
		for _, r := range readRenders(t, renders) {
			if r.event == "done" && r.by(fs["fb"].data) && slices.Contains(cut, r.frame) {
				n++
			}
		}
		return n >= len(cut)
	})
	for _, px := range []*toxiproxy.Proxy{toA, toB} {
		removeToxic(t, px, "cut_up")
		removeToxic(t, px, "cut_down")
	}
	waitFor(t, "fb to report what it rendered while cut off", func() bool {
		return peersOf(t, fs["fb"].url)["fa"].Borrowed == 0 && strings.Contains(fs["fb"].p.log.String(), "lease no longer held")
	})
	for f, n := range outputsPerFrame(t, c, id) {
		if n != 1 {
			t.Errorf("frame %d completed with %d output files numbered; want 1", f, n)
		}
	}
	files := bundleFiles(t, c, id)
	for _, f := range cut {
		if out := string(files[fmt.Sprintf("f-%04d.txt", f)]); !strings.Contains(out, fs["fc"].data+string(filepath.Separator)) {
			t.Errorf("frame %d's output %q is not fc's render", f, out)
		}
	}
}

// TestFederationOwnWorkFirst: a server whose slot renders a frame it
// borrowed, with another borrowed frame claimed ahead, gets a job of its
// own: the frame claimed ahead goes back to the lender unrendered, and the
// server's own frames take the slot as soon as it is free.
func TestFederationOwnWorkFirst(t *testing.T) {
	renders, gates := gateDirs(t)
	fs := federate(t, []string{"fa", "fb"}, map[string][]string{"fa": {"fb"}, "fb": {"fa"}},
		map[string][]string{"fa": {"--workers", "0", "--lease", "6s"}, "fb": {"--workers", "1"}})
	a, b := fs["fa"], fs["fb"]
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("fb's log ends with:\n%s", tail(b.p.log.String(), 30))
		}
	})
	waitPeersUp(t, a)
	waitPeersUp(t, b)
	lent := jobID(t, strings.TrimSpace(run(t, 0, "submit", writeJob(t, gatedJob(renders, gates, 6), nil), "--server", a.url)))
	ca, cb := apiClient(t, a.url), apiClient(t, b.url)
	var first int64
	waitFor(t, "fb to render one borrowed frame and hold another", func() bool {
		starts := readRenders(t, renders)
		running := 0
		for f := int64(1); f <= 6; f++ {
			if frameOf(t, ca, lent, f).State == api.StateRunning {
				running++
			}
		}
		if len(starts) > 0 {
			first = starts[0].frame
		}
		return len(starts) == 1 && running == 2
	})
	ownJob := fmt.Sprintf(`<distrenjob version="1"><name>own</name>
  <backend name="command"><program>sh</program><arg>-c</arg><arg>echo "own {frame} $$ {dir}" >> %s; echo {frame} > o-{frame}</arg></backend>
  <frames><range first="1" last="2"/></frames><outputs><output>o-*</output></outputs></distrenjob>`, renders)
	own := jobID(t, strings.TrimSpace(run(t, 0, "submit", writeJob(t, ownJob, nil), "--server", b.url)))
	waitFor(t, "fb to give back the frame it held ahead", func() bool {
		return peersOf(t, b.url)["fa"].GivenBack >= 1
	})
	openGates(t, gates, first)
	waitJobDone(t, cb, own)
	owned := 0
	for _, r := range readRenders(t, renders) {
		switch {
		case r.event == "own":
			owned++
		case r.event == "start" && r.frame != first && owned < 2:
			t.Errorf("fb began frame %d of fa's job before the frames of its own job", r.frame)
		}
	}
	if fr := frameOf(t, ca, lent, first); fr.State != api.StateDone || fr.Server != "fb" {
		t.Errorf("the frame fb was rendering: %+v", fr)
	}
}

// TestFederationRemoteDependency: a frame of a job on fa that depends on
// a frame of a job on fb waits until that frame is done there, then has
// its output in its scratch directory; a frame depending on a frame that
// fails on fb fails with fb's message; a server that is not a peer is
// refused at submission.
func TestFederationRemoteDependency(t *testing.T) {
	renders, gates := gateDirs(t)
	// Two slots each: fb's frame 2 must not wait behind its frame 1, held
	// at its gate, and fa's slots may borrow that frame, one is left for
	// fa's own.
	fs := federate(t, []string{"fa", "fb"}, map[string][]string{"fa": {"fb"}, "fb": {"fa"}},
		map[string][]string{"fa": {"--workers", "2"}, "fb": {"--workers", "2"}})
	a, b := fs["fa"], fs["fb"]
	waitPeersUp(t, a)
	waitPeersUp(t, b)
	// fb's job: frame 1 waits at its gate, then writes f-0001.txt; frame 2
	// fails until gates/fixed exists.
	producer := fmt.Sprintf(`<distrenjob version="1"><name>producer</name><retries>0</retries>
  <backend name="command"><program>sh</program><arg>-c</arg>
    <arg>if [ {frame} = 2 ] &amp;&amp; [ ! -e %[2]s/fixed ]; then echo "no scene for frame 2" >&amp;2; exit 3; fi; echo "start {frame} $$ {dir}" >> %[1]s; while [ ! -e %[2]s/{frame} ]; do sleep 0.05; done; echo "made on fb" > f-{frame:04}.txt</arg>
  </backend>
  <frames><range first="1" last="2"/></frames><outputs><output>f-*.txt</output></outputs></distrenjob>`, renders, gates)
	bJob := jobID(t, strings.TrimSpace(run(t, 0, "submit", writeJob(t, producer, nil), "--server", b.url)))
	consumer := fmt.Sprintf(`<distrenjob version="1"><name>consumer</name><retries>0</retries>
  <backend name="command"><program>sh</program><arg>-c</arg><arg>cat f-0001.txt > c-{frame}.txt; echo "and used on fa" >> c-{frame}.txt</arg></backend>
  <frames>
    <frame id="1"><depends on="distren://fb/%[1]d/frame/1"/></frame>
    <frame id="2"><depends on="distren://fb/%[1]d/frame/2"/></frame>
    <frame id="3"/>
  </frames>
  <outputs><output>c-*.txt</output></outputs></distrenjob>`, bJob)
	ca := apiClient(t, a.url)
	aJob := jobID(t, strings.TrimSpace(run(t, 0, "submit", writeJob(t, consumer, nil), "--server", a.url)))

	// Frame 3 depends on nothing and is done; frame 2 fails with fb's
	// message; frame 1 waits for fb's frame 1, held at its gate.
	t.Cleanup(func() {
		if t.Failed() {
			fr, _ := ca.Frames(context.Background(), aJob, "")
			t.Logf("fa's frames: %+v", fr)
			t.Logf("fa's log ends with:\n%s", tail(a.p.log.String(), 30))
		}
	})
	waitFor(t, "frames 2 and 3 of fa's job to end", func() bool {
		return frameOf(t, ca, aJob, 3).State == api.StateDone && frameOf(t, ca, aJob, 2).State == api.StateFailed
	})
	want := fmt.Sprintf("depends on distren://fb/%d/frame/2, which failed: ", bJob)
	if f := frameOf(t, ca, aJob, 2); !strings.HasPrefix(f.Error, want) || !strings.Contains(f.Error, "no scene for frame 2") {
		t.Errorf("frame 2: %q, want %q… naming fb's error", f.Error, want)
	}
	waitRender(t, renders, "fb's frame 1 to start", func(r render) bool { return r.frame == 1 })
	if f := frameOf(t, ca, aJob, 1); f.State != api.StateWaiting {
		t.Errorf("frame 1, whose dependency on fb is not done: %s", f.State)
	}
	openGates(t, gates, 1)
	waitFor(t, "fa's frame 1 to end", func() bool { return frameOf(t, ca, aJob, 1).State == api.StateDone })
	files := bundleFiles(t, ca, aJob)
	if got := string(files["c-1.txt"]); got != "made on fb\nand used on fa\n" {
		t.Errorf("fa's frame 1 wrote %q: want fb's output and its own line", got)
	}

	// fb's frame 2 is fixed and retried there; a retry of fa's job asks
	// fb again, and fa's frame 2 runs.
	openGates(t, gates, 2)
	if err := os.WriteFile(filepath.Join(gates, "fixed"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, 0, "retry", fmt.Sprint(bJob), "--server", b.url)
	waitFor(t, "fb's frame 2 to be done", func() bool { return frameOf(t, apiClient(t, b.url), bJob, 2).State == api.StateDone })
	run(t, 0, "retry", fmt.Sprint(aJob), "--server", a.url)
	waitJobDone(t, ca, aJob)

	// A server that is not a peer.
	bad := strings.ReplaceAll(consumer, "distren://fb/", "distren://fz/")
	msg := runStderr(t, 5, "submit", writeJob(t, bad, nil), "--server", a.url)
	if !strings.Contains(msg, `server "fz" is neither this server (fa) nor one of its peers (its peers are fb)`) {
		t.Errorf("a dependency on a server that is not a peer: %s", msg)
	}
}
