package federation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/worker"
)

// TestNewRefusesPeers: two peers of one name, a peer named as this server
// and a name that is no server's are refused, each naming the peer; the
// peers accepted are listed as configured, not yet contacted.
func TestNewRefusesPeers(t *testing.T) {
	home := newFakeHome(t, "home")
	quiet := slog.New(slog.DiscardHandler)
	cases := []struct {
		name  string
		peers []PeerConfig
		want  []string // in the error
	}{
		{"twice", []PeerConfig{{Name: "pa", URL: "https://a1"}, {Name: "pb", URL: "https://b"}, {Name: "pa", URL: "https://a2"}},
			[]string{`peer "pa"`, "twice", "https://a1", "https://a2"}},
		{"itself", []PeerConfig{{Name: "home", URL: "https://h"}}, []string{`peer "home"`, "own name"}},
		{"invalid", []PeerConfig{{Name: "Bad_Name", URL: "https://x"}}, []string{`peer "Bad_Name"`, "not a server name"}},
		{"empty", []PeerConfig{{Name: "", URL: "https://x"}}, []string{`peer ""`, "not a server name"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := New(Config{Home: home, Peers: c.peers, Log: quiet})
			if err == nil {
				t.Fatalf("New accepted peers %+v: %+v", c.peers, f.Peers())
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}

	f, err := New(Config{Home: home, Peers: []PeerConfig{{Name: "pb", URL: "https://b"}, {Name: "pa", URL: "https://a"}}, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range f.Peers() {
		got = append(got, p.Name+" "+p.URL+" "+p.State)
		if p.LastContact != nil {
			t.Errorf("peer %s contacted at %v before any contact", p.Name, p.LastContact)
		}
	}
	if want := []string{"pb https://b unknown", "pa https://a unknown"}; !slices.Equal(got, want) {
		t.Errorf("peers %q, want %q", got, want)
	}
	if f.Name() != "home" || f.Instance() == "" || f.Header() != "home "+f.Instance() {
		t.Errorf("name %q, instance %q, header %q", f.Name(), f.Instance(), f.Header())
	}
	if !f.Self(f.Header()) || f.Self("home other-instance") {
		t.Errorf("Self(%q) = %v, Self(another instance) = %v", f.Header(), f.Self(f.Header()), f.Self("home other-instance"))
	}
}

// TestVerify: a peer's worker's request is accepted only from the peer's
// instance; one of a server that is not a peer, one of a worker of a
// borrower's borrower, or of this server itself is refused.
func TestVerify(t *testing.T) {
	home := newFakeHome(t, "home")
	pb := newFakePeer(t, "pb")
	f := newFed(t, home, pb)
	contactAll(f)
	ctx := context.Background()

	for _, c := range []struct {
		worker, header string
		want           error
		says           string
	}{
		{"w", "", nil, ""}, // an own worker: nothing to check
		{"pb/w", "pb inst-pb", nil, ""},
		{"zz/w", "zz inst-zz", ErrNotPeer, `"zz"`},
		{"pb/a/w", "pb inst-pb", ErrLoop, "not lent on"},
		{"home/w", "home inst-home", ErrLoop, "itself"},
		{"pb/w", "", ErrNotPeer, api.PeerHeader},
		{"pb/w", "pc inst-pb", ErrNotPeer, api.PeerHeader},
		{"pb/w", "pb", ErrNotPeer, api.PeerHeader},
		{"pb/w", "pb inst-impostor", ErrNotPeer, "two servers share the name pb"},
	} {
		err := f.Verify(ctx, c.worker, c.header)
		switch {
		case c.want == nil && err != nil:
			t.Errorf("Verify(%q, %q): %v", c.worker, c.header, err)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("Verify(%q, %q) = %v, want %v", c.worker, c.header, err, c.want)
		case c.want != nil && !strings.Contains(err.Error(), c.says):
			t.Errorf("Verify(%q, %q) = %q, does not say %q", c.worker, c.header, err, c.says)
		}
	}

	// The impostor's request asked the peer who it is, without saying who
	// asks: the peer would check that in turn.
	calls := pb.snapshot()
	if want := []bool{true, false}; !slices.Equal(calls.hellos, want) {
		t.Errorf("hellos (identify) %v, want %v: the contact, then one for the request of another instance", calls.hellos, want)
	}

	// The peer restarted: its new instance is asked for and accepted.
	pb.set(func(p *fakePeer) { p.hello.Instance = "inst-pb-2" })
	if err := f.Verify(ctx, "pb/w", "pb inst-pb-2"); err != nil {
		t.Errorf("a request of the restarted peer: %v", err)
	}
	if err := f.Verify(ctx, "pb/w", "pb inst-pb"); !errors.Is(err, ErrNotPeer) {
		t.Errorf("a request of the peer's former instance: %v, want ErrNotPeer", err)
	}

	// A peer that does not answer cannot be told from an impostor: the
	// request fails as this server's own trouble (ErrPeer, 502), not as a
	// refusal of the requester.
	pb.set(func(p *fakePeer) { p.helloErr = errors.New("connection refused") })
	if err := f.Verify(ctx, "pb/w", "pb inst-pb-3"); !errors.Is(err, ErrPeer) || errors.Is(err, ErrNotPeer) || !strings.Contains(err.Error(), "cannot reach server pb") {
		t.Errorf("a request while the peer is unreachable: %v, want ErrPeer saying it cannot reach pb", err)
	}
	// Nor does the check change what the listing says of the peer.
	if st := f.Peers()[0].State; st != api.PeerUp {
		t.Errorf("after a failed check the peer is %s; the check changes no state", st)
	}
}

// TestContactStates: a contact records what the peer says of itself, and
// refuses a peer that answers under another name or as this server.
func TestContactStates(t *testing.T) {
	for _, c := range []struct {
		name  string
		hello api.PeerHello
		err   error
		state string
		says  []string
	}{
		{"up", api.PeerHello{Name: "pa", Instance: "i-1", Idle: 2, Workers: 3, Ready: 5, Backends: map[string][]string{"builtin": {"1"}}},
			nil, api.PeerUp, nil},
		{"another name", api.PeerHello{Name: "other", Instance: "i-1"}, nil, api.PeerRefused, []string{`"other"`, `"pa"`}},
		{"this server", api.PeerHello{Name: "home", Instance: "i-1"}, nil, api.PeerRefused, []string{"this server itself"}},
		{"denied", api.PeerHello{}, fmt.Errorf("%w: token of no peer", worker.ErrDenied), api.PeerRefused,
			[]string{"refuses this server", "token of no peer"}},
		{"unreachable", api.PeerHello{}, errors.New("dial tcp: connection refused"), api.PeerUnreachable,
			[]string{"connection refused"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pa := newFakePeer(t, "pa")
			pa.hello, pa.helloErr = c.hello, c.err
			f := newFed(t, newFakeHome(t, "home"), pa)
			contactAll(f)
			p := peerInfo(t, f, "pa")
			if p.State != c.state {
				t.Fatalf("state %q (%s), want %q", p.State, p.Error, c.state)
			}
			if f.peers["pa"].up() != (c.state == api.PeerUp) {
				t.Errorf("up() = %v in state %s", f.peers["pa"].up(), p.State)
			}
			for _, w := range c.says {
				if !strings.Contains(p.Error, w) {
					t.Errorf("error %q does not say %q", p.Error, w)
				}
			}
			switch {
			case c.state == api.PeerUp:
				if p.Error != "" || p.LastContact == nil || p.Idle != 2 || p.Workers != 3 || p.Ready != 5 || len(p.Backends["builtin"]) != 1 {
					t.Errorf("peer up listed as %+v", p)
				}
			case c.err != nil && p.LastContact != nil:
				t.Errorf("a peer that did not answer listed with a contact at %v", p.LastContact)
			}
		})
	}
}

// TestRunContacts: Run contacts every peer at once and again every Contact
// interval, saying who asks, and ends with its context.
func TestRunContacts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pa, pb := newFakePeer(t, "pa"), newFakePeer(t, "pb")
		home := newFakeHome(t, "home")
		f, err := New(Config{Home: home, Contact: time.Second, Log: slog.New(slog.DiscardHandler),
			Peers: []PeerConfig{{Name: "pa", URL: "https://a", Peer: pa}, {Name: "pb", URL: "https://b", Peer: pb}}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.Run(ctx) }()
		synctest.Wait()
		if s := peerInfo(t, f, "pa").State + " " + peerInfo(t, f, "pb").State; s != "up up" {
			t.Fatalf("after the first contact: %s", s)
		}

		pa.set(func(p *fakePeer) { p.helloErr = errors.New("connection refused") })
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if p := peerInfo(t, f, "pa"); p.State != api.PeerUnreachable {
			t.Errorf("pa after it stopped answering: %s", p.State)
		}
		for _, p := range []*fakePeer{pa, pb} {
			if h := p.snapshot().hellos; !slices.Equal(h, []bool{true, true}) {
				t.Errorf("peer %s asked (identify) %v in 1.5 s, want [true true]", p.name, h)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestHelloCountsWaitingWorkers: what this server tells its peers counts
// the tasks its own waiting workers ask for, and the farm's own status.
func TestHelloCountsWaitingWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		home := newFakeHome(t, "home")
		home.status = Status{Workers: 4, Ready: 0, Backends: map[string][]string{"builtin": {"1"}}}
		f := newFed(t, home, newFakePeer(t, "pa"))
		ctx, cancel := context.WithCancel(context.Background())
		c1 := claimAsync(ctx, f.Work(), api.ClaimRequest{Worker: "w1", Max: 3, WaitMS: 60_000})
		c2 := claimAsync(ctx, f.Work(), api.ClaimRequest{Worker: "w2", Max: 1, WaitMS: 60_000})
		synctest.Wait()
		h := f.Hello()
		if h.Name != "home" || h.Instance != "inst-home" || h.Version != "test" || h.Idle != 4 || h.Workers != 4 || len(h.Backends["builtin"]) != 1 {
			t.Errorf("hello with two workers waiting for 3 and 1 tasks: %+v", h)
		}
		cancel()
		<-c1
		<-c2
		if h := f.Hello(); h.Idle != 0 {
			t.Errorf("idle %d once the claims returned", h.Idle)
		}
	})
}
