package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Identity is who a request comes from: the token it carries.
type Identity struct {
	ID   string // the token's id
	Name string // the token's name
	Role Role
}

// GuardOptions configure a Guard.
type GuardOptions struct {
	// Required turns authentication on even while the store holds no valid
	// token; then only minted tokens (the local slots') are accepted.
	Required bool
	// CacheTTL is how long a token read from the store is trusted before it
	// is read again: the delay before a revocation takes effect on a
	// running server, and before a first token turns authentication on
	// (default 2 s; negative: read the store on every request).
	CacheTTL time.Duration
	Log      *slog.Logger
	now      func() time.Time // tests
}

// Guard checks the tokens of a running server. Authentication is on from
// the start if the store holds a valid token or it is Required, and turns
// on (within CacheTTL) when a first token is created; once on, it stays on
// until the process ends, also if every token is revoked.
type Guard struct {
	store *Store
	opt   GuardOptions
	on    atomic.Bool

	mu      sync.Mutex
	checked time.Time         // when the store was last asked whether it holds a valid token
	cache   map[string]cached // by token id: stored tokens recently read
	minted  map[string]record // by token id: tokens that exist in memory only
	workers map[string]string // worker name → id of the token that uses it
}

type cached struct {
	record
	read time.Time
}

// NewGuard returns the guard of the tokens in store.
func NewGuard(ctx context.Context, store *Store, o GuardOptions) (*Guard, error) {
	if o.CacheTTL == 0 {
		o.CacheTTL = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.now == nil {
		o.now = time.Now
	}
	g := &Guard{store: store, opt: o, cache: map[string]cached{}, minted: map[string]record{}, workers: map[string]string{}}
	n, err := store.Valid(ctx)
	if err != nil {
		return nil, fmt.Errorf("token store %s: %w", store.Path(), err)
	}
	g.on.Store(o.Required || n > 0)
	g.checked = o.now()
	return g, nil
}

// Enabled reports whether requests must carry a token. While it is off, the
// store is asked at most once per CacheTTL whether a token was created.
func (g *Guard) Enabled(ctx context.Context) bool {
	if g.on.Load() {
		return true
	}
	now := g.opt.now()
	g.mu.Lock()
	due := now.Sub(g.checked) >= g.opt.CacheTTL
	if due {
		g.checked = now
	}
	g.mu.Unlock()
	if !due {
		return false
	}
	n, err := g.store.Valid(ctx)
	if err != nil {
		g.opt.Log.Error("reading the token store", "path", g.store.Path(), "err", err)
		return false // as it was; asked again after CacheTTL
	}
	if n > 0 && !g.on.Swap(true) {
		g.opt.Log.Info("authentication on: the token store holds a token; requests must carry one from now on", "path", g.store.Path())
	}
	return g.on.Load()
}

// Mint makes a token that exists in this process's memory only, never in
// the store: the local slots' credential.
func (g *Guard) Mint(name string, role Role) (text string, id Identity) {
	tid, secret, text := newToken()
	r := record{Token: Token{ID: tid, Name: name, Role: role, Created: g.opt.now()}, hash: hashSecret(secret)}
	g.mu.Lock()
	g.minted[tid] = r
	g.mu.Unlock()
	return text, Identity{ID: tid, Name: name, Role: role}
}

// Check returns whose token text is. It fails with ErrNoToken, ErrInvalid
// or ErrRevoked for a token to refuse, with another error if the store
// cannot be read.
func (g *Guard) Check(ctx context.Context, text string) (Identity, error) {
	if text == "" {
		return Identity{}, ErrNoToken
	}
	id, secret, ok := split(text)
	if !ok {
		return Identity{}, fmt.Errorf("%w: not a distren token (dtk_...)", ErrInvalid)
	}
	r, found, err := g.record(ctx, id)
	if err != nil {
		return Identity{}, err
	}
	h := hashSecret(secret)
	if !found || subtle.ConstantTimeCompare(h[:], r.hash[:]) != 1 {
		return Identity{}, ErrInvalid
	}
	if !r.Active() {
		return Identity{}, fmt.Errorf("%w: token %q (id %s) was revoked at %s", ErrRevoked, r.Name, r.ID, r.Revoked.Format(time.RFC3339))
	}
	return Identity{ID: r.ID, Name: r.Name, Role: r.Role}, nil
}

// record returns the token with that id, from memory if it was minted or
// read within CacheTTL, else from the store.
func (g *Guard) record(ctx context.Context, id string) (record, bool, error) {
	now := g.opt.now()
	g.mu.Lock()
	if r, ok := g.minted[id]; ok {
		g.mu.Unlock()
		return r, true, nil
	}
	c, ok := g.cache[id]
	g.mu.Unlock()
	if ok && now.Sub(c.read) < g.opt.CacheTTL {
		return c.record, true, nil
	}
	r, err := g.store.lookup(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, fmt.Errorf("token store %s: %w", g.store.Path(), err)
	}
	if g.opt.CacheTTL > 0 {
		g.mu.Lock()
		g.cache[id] = cached{record: r, read: now}
		g.mu.Unlock()
	}
	return r, true, nil
}

// BindWorker makes the token id the owner of the worker name, or checks
// that it is: the first token to use a worker name owns it, and another
// token using it is refused with ErrWorkerTaken — so that a worker cannot
// heartbeat, complete or fail the frames leased to another token's worker,
// whatever it guesses of their names and epochs. A name whose owner has
// been revoked passes to the next token that uses it. Bindings live in
// memory: leases do not outlive the server either.
func (g *Guard) BindWorker(ctx context.Context, name string, id Identity) error {
	g.mu.Lock()
	owner, bound := g.workers[name]
	if !bound || owner == id.ID {
		g.workers[name] = id.ID
		g.mu.Unlock()
		return nil
	}
	g.mu.Unlock()
	r, found, err := g.record(ctx, owner)
	if err != nil {
		return err
	}
	if found && r.Active() {
		return fmt.Errorf("worker %q: %w (token %q); give this worker another name, or revoke the other token",
			name, ErrWorkerTaken, r.Name)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if cur := g.workers[name]; cur != owner && cur != id.ID {
		return fmt.Errorf("worker %q: %w", name, ErrWorkerTaken) // taken over meanwhile by a third token
	}
	g.workers[name] = id.ID
	g.opt.Log.Info("worker name passes to another token: its owner was revoked", "worker", name, "token", id.Name, "revoked", r.Name)
	return nil
}

// ReserveWorker makes the worker name the server's own, for its local
// slots, which call the farm in process and present no token: a token that
// uses the name is refused with ErrWorkerTaken, as if another token owned
// it — one that lives in this process's memory, whose text nobody holds.
func (g *Guard) ReserveWorker(ctx context.Context, name string) error {
	_, id := g.Mint(name, RoleWorker)
	return g.BindWorker(ctx, name, id)
}

type ctxKey struct{}

// NewContext returns ctx carrying the identity of the request's token.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity NewContext put in ctx, if any.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}
