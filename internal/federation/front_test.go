package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/worker"
)

// TestBorrowFromPeers: an own worker's claim with nothing here asks every
// peer that is up, as SERVER/WORKER, for what the worker asks; the first
// frames lent are returned marked with their lender, and those a second
// peer lends later are given back to it unattempted.
func TestBorrowFromPeers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		home := newFakeHome(t, "home")
		pa, pb, pc := newFakePeer(t, "pa"), newFakePeer(t, "pb"), newFakePeer(t, "pc")
		pc.helloErr = errors.New("connection refused")
		f := newFed(t, home, pa, pb, pc)
		contactAll(f)

		la := api.Lease{Job: 7, Frame: 1, Epoch: 3, TTLMS: 30_000, Deps: []api.DepOutput{{Job: 7, Frame: 0, Output: "dep-out", Size: 4}}}
		lb := api.Lease{Job: 9, Frame: 4, Epoch: 2, TTLMS: 30_000}
		relA, relB := make(chan struct{}), make(chan struct{})
		pa.script(claimAnswer{release: relA, resp: api.ClaimResponse{Leases: []api.Lease{la}}})
		pb.script(claimAnswer{release: relB, resp: api.ClaimResponse{Leases: []api.Lease{lb}}})
		pa.blobs["dep-out"] = []byte("deps")

		req := api.ClaimRequest{Worker: "w", Max: 2, WaitMS: 30_000, Backends: builtin}
		c := claimAsync(context.Background(), f.Work(), req)
		synctest.Wait()
		if r, ok := answered(c); ok {
			t.Fatalf("the claim returned %+v before any peer answered", r)
		}
		for _, p := range []*fakePeer{pa, pb} {
			cs := p.snapshot().claims
			if len(cs) != 1 {
				t.Fatalf("peer %s asked %d times, want once", p.name, len(cs))
			}
			if got := cs[0]; got.Worker != "home/w" || got.Max != 2 || got.WaitMS <= 0 || got.WaitMS > 30_000 || !reflect.DeepEqual(got.Backends, builtin) {
				t.Errorf("peer %s asked %+v, want worker home/w, max 2, a wait of at most 30 s, backends %v", p.name, got, builtin)
			}
		}
		if n := len(pc.snapshot().claims); n != 0 {
			t.Errorf("peer pc, unreachable, asked %d times", n)
		}

		close(relA)
		synctest.Wait()
		r, ok := answered(c)
		if !ok {
			t.Fatal("the claim still waits once a peer lent frames")
		}
		want := la
		want.Server = "pa"
		if r.err != nil || !reflect.DeepEqual(r.r.Leases, []api.Lease{want}) {
			t.Fatalf("claim: %v %+v, want %+v", r.err, r.r, want)
		}
		if p := peerInfo(t, f, "pa"); p.Borrowed != 1 {
			t.Errorf("borrowed from pa: %d, want 1", p.Borrowed)
		}

		close(relB)
		synctest.Wait()
		wantBack := []failure{{api.LeaseRef{Job: 9, Frame: 4, Epoch: 2}, api.Failure{Worker: "home/w", Epoch: 2, NotRun: true}}}
		if got := pb.snapshot().fails; !reflect.DeepEqual(got, wantBack) {
			t.Errorf("given back to pb: %+v, want %+v", got, wantBack)
		}
		if got := pa.snapshot().fails; len(got) != 0 {
			t.Errorf("given back to pa, whose frame the worker holds: %+v", got)
		}
		if a, b := peerInfo(t, f, "pa"), peerInfo(t, f, "pb"); a.Borrowed != 1 || b.Borrowed != 0 {
			t.Errorf("borrowed from pa %d (want 1), from pb %d (want 0)", a.Borrowed, b.Borrowed)
		}

		// The output of the borrowed frame's dependency is fetched from its
		// lender.
		rc, err := f.Work().Blob(context.Background(), "dep-out")
		if err != nil {
			t.Fatalf("the dependency's output: %v", err)
		}
		if b := readAll(t, rc); b != "deps" || pa.snapshot().blobGets["dep-out"] != 1 {
			t.Errorf("the dependency's output %q, fetched from pa %d times", b, pa.snapshot().blobGets["dep-out"])
		}
	})
}

// TestBorrowTwoAnswersAtOnce: two peers lend frames before the claim takes
// either answer; it returns one, and the other goes back to its lender
// under the worker's name there.
func TestBorrowTwoAnswersAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		home := newFakeHome(t, "home")
		pa, pb := newFakePeer(t, "pa"), newFakePeer(t, "pb")
		f := newFed(t, home, pa, pb)
		contactAll(f)
		la := api.Lease{Job: 7, Frame: 1, Epoch: 3, TTLMS: 30_000}
		lb := api.Lease{Job: 9, Frame: 4, Epoch: 2, TTLMS: 30_000}
		rel := make(chan struct{})
		pa.script(claimAnswer{release: rel, resp: api.ClaimResponse{Leases: []api.Lease{la}}})
		pb.script(claimAnswer{release: rel, resp: api.ClaimResponse{Leases: []api.Lease{lb}}})

		c := claimAsync(context.Background(), f.Work(), api.ClaimRequest{Worker: "w", Max: 1, WaitMS: 30_000, Backends: builtin})
		synctest.Wait()
		// The claim is held trying frames of its own (none it can take)
		// while both peers answer.
		trying, retry := make(chan struct{}), make(chan struct{})
		home.setHold(func(context.Context, api.ClaimRequest) error {
			close(trying)
			<-retry
			return nil
		})
		home.offer(frameFor("blender", 1, 1))
		<-trying
		close(rel)
		synctest.Wait()
		close(retry)
		synctest.Wait()

		r, ok := answered(c)
		if !ok || r.err != nil || len(r.r.Leases) != 1 {
			t.Fatalf("claim: %+v (answered %v), want one lease", r, ok)
		}
		got := r.r.Leases[0]
		back, kept := pb, pa
		wantBack := lb
		if got.Server == "pb" {
			back, kept, wantBack = pa, pb, la
		}
		if got.Server != kept.name || got.Job == wantBack.Job {
			t.Fatalf("claim returned %+v", got)
		}
		want := []failure{{api.LeaseRef{Job: wantBack.Job, Frame: wantBack.Frame, Epoch: wantBack.Epoch},
			api.Failure{Worker: "home/w", Epoch: wantBack.Epoch, NotRun: true}}}
		if fails := back.snapshot().fails; !reflect.DeepEqual(fails, want) {
			t.Errorf("given back to %s: %+v, want %+v", back.name, fails, want)
		}
		if fails := kept.snapshot().fails; len(fails) != 0 {
			t.Errorf("given back to %s, whose frame the worker holds: %+v", kept.name, fails)
		}
		if a, b := peerInfo(t, f, kept.name), peerInfo(t, f, back.name); a.Borrowed != 1 || b.Borrowed != 0 {
			t.Errorf("borrowed from %s %d (want 1), from %s %d (want 0)", kept.name, a.Borrowed, back.name, b.Borrowed)
		}
	})
}

// TestBorrowYieldsToLocalFrames: frames of this server's own that become
// ready while a claim waits for its peers are what it returns; the frames
// a peer lends afterwards are given back.
func TestBorrowYieldsToLocalFrames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		home := newFakeHome(t, "home")
		pa := newFakePeer(t, "pa")
		f := newFed(t, home, pa)
		contactAll(f)
		la := api.Lease{Job: 7, Frame: 1, Epoch: 3, TTLMS: 30_000}
		rel := make(chan struct{})
		pa.script(claimAnswer{release: rel, resp: api.ClaimResponse{Leases: []api.Lease{la}}})

		c := claimAsync(context.Background(), f.Work(), api.ClaimRequest{Worker: "w", Max: 1, WaitMS: 30_000, Backends: builtin})
		synctest.Wait()
		if n := len(pa.snapshot().claims); n != 1 {
			t.Fatalf("pa asked %d times, want once", n)
		}
		home.offer(frameFor("builtin", 1, 5))
		synctest.Wait()
		r, ok := answered(c)
		if !ok {
			t.Fatal("the claim still waits with a frame of its own ready")
		}
		if r.err != nil || !reflect.DeepEqual(r.r.Leases, []api.Lease{frameFor("builtin", 1, 5).lease}) {
			t.Fatalf("claim: %v %+v, want the local frame 1/5", r.err, r.r)
		}

		close(rel)
		synctest.Wait()
		want := []failure{{api.LeaseRef{Job: 7, Frame: 1, Epoch: 3}, api.Failure{Worker: "home/w", Epoch: 3, NotRun: true}}}
		if got := pa.snapshot().fails; !reflect.DeepEqual(got, want) {
			t.Errorf("given back to pa: %+v, want %+v", got, want)
		}
		if p := peerInfo(t, f, "pa"); p.Borrowed != 0 {
			t.Errorf("borrowed from pa: %d, want 0", p.Borrowed)
		}
	})
}

// TestBorrowEnds: a claim that no peer lends to returns nothing at its
// wait; a peer that refuses this server's claims is marked refused, and
// the own worker is not told: it is not the worker's credential.
func TestBorrowEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		home := newFakeHome(t, "home")
		pa, pb := newFakePeer(t, "pa"), newFakePeer(t, "pb")
		pb.script(claimAnswer{err: fmt.Errorf("%w: no token of role peer for home", worker.ErrDenied)})
		f := newFed(t, home, pa, pb)
		contactAll(f)

		start := time.Now()
		r, err := f.Work().Claim(context.Background(), api.ClaimRequest{Worker: "w", Max: 1, WaitMS: 10_000, Backends: builtin})
		if err != nil || len(r.Leases) != 0 || time.Since(start) != 10*time.Second {
			t.Errorf("claim: %v %+v after %v, want nothing after 10 s", err, r, time.Since(start))
		}
		if p := peerInfo(t, f, "pb"); p.State != api.PeerRefused || !strings.Contains(p.Error, "refuses to lend") {
			t.Errorf("pb, refusing, listed %s: %s", p.State, p.Error)
		}
		if p := peerInfo(t, f, "pa"); p.State != api.PeerUp {
			t.Errorf("pa listed %s: %s", p.State, p.Error)
		}
		synctest.Wait() // the requests to the peers ended with the claim

		// A claim that does not wait asks no peer.
		r, err = f.Work().Claim(context.Background(), api.ClaimRequest{Worker: "w", Max: 1, Backends: builtin})
		if err != nil || len(r.Leases) != 0 || len(pa.snapshot().claims) != 1 {
			t.Errorf("a claim without a wait: %v %+v, pa asked %d times in all, want once", err, r, len(pa.snapshot().claims))
		}
	})
}

// TestHeartbeatSplit: a heartbeat extends the worker's own leases here and
// its borrowed ones at their lenders, as SERVER/WORKER; a lender's stop is
// returned with the lender's name, a lender that fails stops nothing, and
// a lease of a server that is no peer is stopped.
func TestHeartbeatSplit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		home := newFakeHome(t, "home")
		home.hbStop = []api.LeaseRef{{Job: 1, Frame: 2, Epoch: 1}}
		pa, pb := newFakePeer(t, "pa"), newFakePeer(t, "pb")
		pa.hbStop = []api.LeaseRef{{Job: 7, Frame: 1, Epoch: 3}}
		pb.hbErr = errors.New("connection refused")
		f := newFed(t, home, pa, pb)
		for _, k := range []borrowKey{{"pa", 7, 1, 3}, {"pa", 7, 2, 3}, {"pb", 9, 4, 1}} {
			f.lend(k, loan{worker: "w", ttl: 10 * time.Second, seen: time.Now()})
		}

		ref := func(server string, job, frame int64, epoch uint64) api.LeaseRef {
			return api.LeaseRef{Server: server, Job: job, Frame: frame, Epoch: epoch}
		}
		ownA := api.LeaseProgress{LeaseRef: ref("", 1, 2, 1), Progress: 0.5}
		ownB := api.LeaseProgress{LeaseRef: ref("home", 1, 3, 1)}
		a1 := api.LeaseProgress{LeaseRef: ref("pa", 7, 1, 3), Progress: 0.25}
		a2 := api.LeaseProgress{LeaseRef: ref("pa", 7, 2, 3)}
		b1 := api.LeaseProgress{LeaseRef: ref("pb", 9, 4, 1)}
		z1 := api.LeaseProgress{LeaseRef: ref("zz", 3, 3, 3)}
		time.Sleep(8 * time.Second)
		resp, err := f.Work().Heartbeat(context.Background(), api.Heartbeat{Worker: "w", Leases: []api.LeaseProgress{ownA, a1, ownB, a2, b1, z1}})
		if err != nil {
			t.Fatalf("heartbeat: %v", err)
		}

		if got, want := home.snapshot().heartbeats, []api.Heartbeat{{Worker: "w", Leases: []api.LeaseProgress{ownA, ownB}}}; !reflect.DeepEqual(got, want) {
			t.Errorf("home's heartbeats %+v, want %+v", got, want)
		}
		unmarked := func(ls ...api.LeaseProgress) []api.LeaseProgress {
			for i := range ls {
				ls[i].Server = ""
			}
			return ls
		}
		if got, want := pa.snapshot().heartbeats, []api.Heartbeat{{Worker: "home/w", Leases: unmarked(a1, a2)}}; !reflect.DeepEqual(got, want) {
			t.Errorf("pa's heartbeats %+v, want %+v", got, want)
		}
		if got, want := pb.snapshot().heartbeats, []api.Heartbeat{{Worker: "home/w", Leases: unmarked(b1)}}; !reflect.DeepEqual(got, want) {
			t.Errorf("pb's heartbeats %+v, want %+v", got, want)
		}
		stop := slices.Clone(resp.Stop)
		slices.SortFunc(stop, func(x, y api.LeaseRef) int { return strings.Compare(fmt.Sprint(x), fmt.Sprint(y)) })
		if want := []api.LeaseRef{ref("", 1, 2, 1), ref("pa", 7, 1, 3), ref("zz", 3, 3, 3)}; !reflect.DeepEqual(stop, want) {
			t.Errorf("stop %+v, want %+v", stop, want)
		}

		// The lease pa stopped is no longer held; the one pa extended is
		// held past its first TTL; pb's, not extended, ran out.
		time.Sleep(8 * time.Second)
		if a, b := peerInfo(t, f, "pa"), peerInfo(t, f, "pb"); a.Borrowed != 1 || b.Borrowed != 0 {
			t.Errorf("16 s on, borrowed from pa %d (want 1), from pb %d (want 0)", a.Borrowed, b.Borrowed)
		}
	})
}

// TestReportsOfBorrowedFrames: a borrowed frame's output is kept here and
// its lender told where, under the worker's name on this server; a lender
// that says the lease moved on is ErrStale to the worker, one that fails
// is this server's failure. A failure goes to the lender as well.
func TestReportsOfBorrowedFrames(t *testing.T) {
	home := newFakeHome(t, "home")
	pa := newFakePeer(t, "pa")
	f := newFed(t, home, pa)
	ctx := context.Background()
	fr := f.Work()
	ref := api.LeaseRef{Server: "pa", Job: 7, Frame: 1, Epoch: 3}
	f.lend(borrowKey{"pa", 7, 1, 3}, loan{worker: "w", ttl: time.Hour, seen: time.Now()})

	const tarball = "output tarball"
	if err := fr.Complete(ctx, "w", ref, 1500*time.Millisecond, strings.NewReader(tarball), int64(len(tarball))); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	hash := hashOf([]byte(tarball))
	if b, ok := home.object(hash); !ok || string(b) != tarball {
		t.Errorf("the output kept here: %q (%v)", b, ok)
	}
	want := []lentCall{{7, 1, api.PeerOutput{Worker: "home/w", Epoch: 3, Output: hash, Size: int64(len(tarball)), RenderMS: 1500}}}
	if got := pa.snapshot().lents; !reflect.DeepEqual(got, want) {
		t.Errorf("lender told %+v, want %+v", got, want)
	}
	if got := home.snapshot().completes; len(got) != 0 {
		t.Errorf("a borrowed frame completed here: %+v", got)
	}
	if p := peerInfo(t, f, "pa"); p.BorrowedDone != 1 || p.Borrowed != 0 {
		t.Errorf("pa: borrowed done %d (want 1), borrowed %d (want 0)", p.BorrowedDone, p.Borrowed)
	}

	pa.set(func(p *fakePeer) { p.lentErr = fmt.Errorf("%w: frame 1 is at epoch 4", worker.ErrStale) })
	err := fr.Complete(ctx, "w", ref, time.Second, strings.NewReader(tarball), -1)
	if !errors.Is(err, worker.ErrStale) || errors.Is(err, ErrPeer) {
		t.Errorf("a report the lender finds stale: %v, want ErrStale", err)
	}
	pa.set(func(p *fakePeer) { p.lentErr = errors.New("connection reset") })
	ref5 := ref
	ref5.Epoch = 5
	f.lend(borrowKey{"pa", 7, 1, 5}, loan{worker: "w", ttl: time.Hour, seen: time.Now()})
	err = fr.Complete(ctx, "w", ref5, time.Second, strings.NewReader(tarball), -1)
	if !errors.Is(err, ErrPeer) || errors.Is(err, worker.ErrStale) {
		t.Errorf("a report the lender did not take: %v, want ErrPeer", err)
	}
	if p := peerInfo(t, f, "pa"); p.BorrowedDone != 1 || p.Borrowed != 1 {
		t.Errorf("pa: borrowed done %d (want 1), borrowed %d (want 1: the report may be tried again)", p.BorrowedDone, p.Borrowed)
	}
	keeps := len(home.snapshot().keeps)
	err = fr.Complete(ctx, "w", api.LeaseRef{Server: "zz", Job: 1, Frame: 1, Epoch: 1}, time.Second, strings.NewReader(tarball), -1)
	if !errors.Is(err, worker.ErrRejected) || len(home.snapshot().keeps) != keeps {
		t.Errorf("a report of a frame of a server that is no peer: %v, kept %d objects more", err, len(home.snapshot().keeps)-keeps)
	}

	fl := api.Failure{Worker: "w", Epoch: 3, Error: "renderer crashed", JobError: true}
	if err := fr.Fail(ctx, api.LeaseRef{Server: "pa", Job: 7, Frame: 2, Epoch: 3}, fl); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	wantFail := []failure{{api.LeaseRef{Job: 7, Frame: 2, Epoch: 3}, api.Failure{Worker: "home/w", Epoch: 3, Error: "renderer crashed", JobError: true}}}
	if got := pa.snapshot().fails; !reflect.DeepEqual(got, wantFail) {
		t.Errorf("failures told pa %+v, want %+v", got, wantFail)
	}
	pa.set(func(p *fakePeer) { p.failErr = fmt.Errorf("%w: frame 2 moved on", worker.ErrStale) })
	if err := fr.Fail(ctx, api.LeaseRef{Server: "pa", Job: 7, Frame: 2, Epoch: 3}, fl); !errors.Is(err, worker.ErrStale) {
		t.Errorf("a failure the lender finds stale: %v, want ErrStale", err)
	}
	if err := fr.Fail(ctx, api.LeaseRef{Server: "zz", Job: 7, Frame: 2, Epoch: 3}, fl); !errors.Is(err, worker.ErrRejected) {
		t.Errorf("a failure of a frame of a server that is no peer: %v, want ErrRejected", err)
	}

	// The worker's own frames are reported here, under its own name.
	if err := fr.Fail(ctx, api.LeaseRef{Job: 1, Frame: 1, Epoch: 1}, fl); err != nil {
		t.Fatal(err)
	}
	if err := fr.Complete(ctx, "w", api.LeaseRef{Server: "home", Job: 1, Frame: 2, Epoch: 1}, time.Second, strings.NewReader("own"), 3); err != nil {
		t.Fatal(err)
	}
	calls := home.snapshot()
	if len(calls.fails) != 1 || calls.fails[0].f.Worker != "w" || len(calls.completes) != 1 || calls.completes[0].worker != "w" || calls.completes[0].body != "own" {
		t.Errorf("own reports: fails %+v, completes %+v", calls.fails, calls.completes)
	}
}

// TestObjectsOfPeers: the inputs of a peer's job and the outputs its
// frames depend on are fetched from that peer once, into the vault here,
// however many ask at once; a peer's own request fetches nothing.
func TestObjectsOfPeers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		home := newFakeHome(t, "home")
		home.specs[1] = api.JobSpec{ID: 1, Manifest: "own"}
		home.objects["c0"] = []byte("here")
		pa := newFakePeer(t, "pa")
		js := api.JobSpec{ID: 7, Manifest: "manifest", Inputs: []api.InputFile{
			{Path: "scene.blend", Size: 12, Chunks: []api.ChunkRef{{Hash: "c0", Size: 4}, {Hash: "c1", Size: 4}, {Hash: "c2", Size: 4}}},
			{Path: "old.txt", Size: 3, Hash: "whole"},
		}}
		pa.specs[7] = js
		for h, b := range map[string]string{"c0": "here", "c1": "aaaa", "c2": "bbbb", "whole": "old", "other": "xx"} {
			pa.blobs[h] = []byte(b)
		}
		f := newFed(t, home, pa)
		ctx := context.Background()
		fr := f.Work()

		if got, err := fr.Spec(ctx, "pa", 7); err != nil || !reflect.DeepEqual(got, js) {
			t.Fatalf("spec of pa's job: %v %+v", err, got)
		}
		if got := pa.snapshot().specGets; !slices.Equal(got, []int64{7}) {
			t.Errorf("pa asked for specs %v", got)
		}
		for _, server := range []string{"", "home"} {
			if got, err := fr.Spec(ctx, server, 1); err != nil || got.Manifest != "own" {
				t.Errorf("spec of an own job (server %q): %v %+v", server, err, got)
			}
		}
		if _, err := fr.Spec(ctx, "zz", 7); !errors.Is(err, worker.ErrRejected) {
			t.Errorf("spec of a job of a server that is no peer: %v, want ErrRejected", err)
		}

		for range 2 {
			rc, err := fr.Blob(ctx, "c1")
			if err != nil {
				t.Fatalf("c1: %v", err)
			}
			if b := readAll(t, rc); b != "aaaa" {
				t.Errorf("c1 reads %q", b)
			}
		}
		if rc, err := fr.Blob(ctx, "c0"); err != nil || readAll(t, rc) != "here" {
			t.Errorf("c0, held here: %v", err)
		}
		gets := pa.snapshot().blobGets
		if gets["c1"] != 1 || gets["c0"] != 0 {
			t.Errorf("fetched from pa: %v, want c1 once and c0 never", gets)
		}

		// Three slots open c2 at once: one fetch.
		gate := make(chan struct{})
		pa.set(func(p *fakePeer) { p.blobGate = gate })
		type opened struct {
			body string
			size int64
			err  error
		}
		res := make(chan opened, 3)
		for range 3 {
			go func() {
				rc, n, err := fr.(worker.LocalObjects).OpenObject(ctx, "c2")
				if err != nil {
					res <- opened{err: err}
					return
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				res <- opened{string(b), n, err}
			}()
		}
		synctest.Wait()
		if n := pa.snapshot().blobGets["c2"]; n != 1 {
			t.Errorf("c2 asked of pa %d times while three slots wait, want once", n)
		}
		close(gate)
		for range 3 {
			if o := <-res; o.err != nil || o.body != "bbbb" || o.size != 4 {
				t.Errorf("c2 opened: %+v", o)
			}
		}
		if n := pa.snapshot().blobGets["c2"]; n != 1 {
			t.Errorf("c2 fetched %d times, want once", n)
		}
		if n := count(home.snapshot().keeps, "c2"); n != 1 {
			t.Errorf("c2 kept %d times, want once", n)
		}

		// A peer's request is served from the vault here alone.
		if _, err := fr.Blob(FromPeer(ctx), "whole"); !errors.Is(err, worker.ErrRejected) {
			t.Errorf("a peer's request of an object this server lacks: %v, want ErrRejected", err)
		}
		if _, _, err := fr.(worker.LocalObjects).OpenObject(FromPeer(ctx), "whole"); !errors.Is(err, worker.ErrRejected) {
			t.Errorf("a peer's open of an object this server lacks: %v, want ErrRejected", err)
		}
		if n := pa.snapshot().blobGets["whole"]; n != 0 {
			t.Errorf("a peer's request fetched from pa %d times", n)
		}
		if rc, err := fr.Blob(ctx, "whole"); err != nil || readAll(t, rc) != "old" {
			t.Errorf("a file stored whole, for an own worker: %v", err)
		}
		// An object no spec or lease named is nobody's to fetch.
		if _, err := fr.Blob(ctx, "other"); !errors.Is(err, worker.ErrRejected) || pa.snapshot().blobGets["other"] != 0 {
			t.Errorf("an object of no spec: %v, fetched %d times", err, pa.snapshot().blobGets["other"])
		}
	})
}

func readAll(t *testing.T, rc io.ReadCloser) string {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func count(ss []string, s string) int {
	n := 0
	for _, x := range ss {
		if x == s {
			n++
		}
	}
	return n
}
