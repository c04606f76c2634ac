package federation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/worker"
)

// peer is a configured peer and what is known of it.
type peer struct {
	name, url string
	c         Peer

	lentDone, borrowedDone counter
	givenBack              counter // borrowed frames given back unrendered: own work came first
	contacting             atomic.Bool

	mu       sync.Mutex
	verified string // the instance that last answered a check of a request (Verify)
	state    string
	err      string
	hello    api.PeerHello
	contact  time.Time // last answer
}

// known reports whether inst is the peer's instance as last seen.
func (p *peer) known(inst string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return inst == p.verified || (p.state == api.PeerUp && inst == p.hello.Instance)
}

// verify records the instance that answered a check: the peer's current
// one, which replaces the one its last contact answered.
func (p *peer) verify(inst string) {
	p.mu.Lock()
	p.verified = inst
	p.hello.Instance = inst
	p.mu.Unlock()
}

// errText is why the last contact failed.
func (p *peer) errText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// up reports whether the peer answered as itself at the last contact.
func (p *peer) up() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == api.PeerUp
}

func (p *peer) info(lent, borrowed int) api.Peer {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := api.Peer{Name: p.name, URL: p.url, State: p.state, Error: p.err, Idle: p.hello.Idle, Workers: p.hello.Workers,
		Backends: p.hello.Backends, Ready: p.hello.Ready, Lent: lent, Borrowed: borrowed,
		LentDone: p.lentDone.Load(), BorrowedDone: p.borrowedDone.Load(), GivenBack: p.givenBack.Load()}
	if !p.contact.IsZero() {
		t := p.contact.UTC()
		out.LastContact = &t
	}
	return out
}

// refused marks the peer as refusing this server, until the next contact
// says otherwise.
func (p *peer) refused(msg string) {
	p.mu.Lock()
	p.state, p.err = api.PeerRefused, msg
	p.mu.Unlock()
}

// contact asks the peer how it is and checks that it is the server it is
// configured as.
func (f *Federation) contact(ctx context.Context, p *peer, identify bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	h, err := p.c.Hello(ctx, identify)
	state, msg := api.PeerUp, ""
	switch {
	case errors.Is(err, worker.ErrDenied):
		state, msg = api.PeerRefused, fmt.Sprintf("refuses this server (a token of role peer named %s, created there, given with serve --peer-token-file %s=FILE, and --peer %s=URL there, make them peers): %v", f.name, p.name, f.name, err)
	case err != nil:
		state, msg = api.PeerUnreachable, err.Error()
	case h.Name == f.name:
		state, msg = api.PeerRefused, fmt.Sprintf("%s answers as server %s, this server itself: a server is not its own peer (lending loop)", p.url, h.Name)
	case h.Name != p.name:
		state, msg = api.PeerRefused, fmt.Sprintf("%s answers as server %q, not %q: fix --peer %s=URL", p.url, h.Name, p.name, p.name)
	}
	p.mu.Lock()
	was := p.state
	p.state, p.err = state, msg
	if err == nil {
		p.contact = time.Now()
		p.hello = h
	}
	p.mu.Unlock()
	if state != was {
		if state == api.PeerUp {
			f.mu.Lock()
			close(f.upCh)
			f.upCh = make(chan struct{})
			f.mu.Unlock()
			f.log.Info("peer up", "peer", p.name, "url", p.url, "instance", h.Instance)
		} else {
			f.log.Warn("peer "+state, "peer", p.name, "url", p.url, "err", msg)
		}
	}
}

// NewInstance returns a random instance id: a process's, told its peers.
func NewInstance() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
