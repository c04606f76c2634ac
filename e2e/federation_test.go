package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
)

// farmOf is a server of a federation test: its name, URL, process.
type farmOf struct {
	name, url string
	p         *proc
}

// federate starts servers on ports chosen beforehand, so that each can
// name the others as peers at start: peers[name] lists the servers it
// names; args[name] are its other flags.
func federate(t *testing.T, names []string, peers map[string][]string, args map[string][]string) map[string]*farmOf {
	t.Helper()
	out := map[string]*farmOf{}
	for _, n := range names {
		out[n] = &farmOf{name: n, url: "http://127.0.0.1:" + freePort(t)}
	}
	for _, n := range names {
		a := []string{"serve", "--data", filepath.Join(t.TempDir(), "data"), "--name", n, "--listen", strings.TrimPrefix(out[n].url, "http://")}
		for _, p := range peers[n] {
			url := out[p].url
			if out[p] == nil {
				url = p // a URL given as it is
			}
			a = append(a, "--peer", fmt.Sprintf("%s=%s", p, url))
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
	fs := federate(t, []string{"fa", "fb", "fc"},
		map[string][]string{"fa": {"fb", "fc"}, "fb": {"fa"}, "fc": {"fa"}},
		map[string][]string{"fa": {"--workers", "0"}, "fb": {"--workers", "1"}, "fc": {"--workers", "1"}})
	a := fs["fa"]
	waitPeersUp(t, a)
	waitPeersUp(t, fs["fb"])
	waitPeersUp(t, fs["fc"])
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
	dir := t.TempDir()
	renders, gates := filepath.Join(dir, "renders.log"), filepath.Join(dir, "gates")
	if err := os.Mkdir(gates, 0o755); err != nil {
		t.Fatal(err)
	}
	fs := federate(t, []string{"fa", "fb", "fc"},
		map[string][]string{"fa": {"fb", "fc"}, "fb": {"fa"}, "fc": {"fa"}},
		map[string][]string{"fa": {"--workers", "0", "--lease", "3s"}, "fb": {"--workers", "2"}, "fc": {"--workers", "1"}})
	a := fs["fa"]
	waitPeersUp(t, a)
	waitPeersUp(t, fs["fb"])
	waitPeersUp(t, fs["fc"])
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
