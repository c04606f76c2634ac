package auth

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// clock is a settable time for guards.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newGuard(t testing.TB, s *Store, o GuardOptions) (*Guard, *clock) {
	t.Helper()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	o.now = c.now
	g, err := NewGuard(context.Background(), s, o)
	if err != nil {
		t.Fatal(err)
	}
	return g, c
}

func create(t testing.TB, s *Store, name string, role Role) string {
	t.Helper()
	text, tok, err := s.Create(context.Background(), name, role)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Name != name || tok.Role != role || !tok.Active() || !strings.HasPrefix(text, "dtk_"+tok.ID+"_") {
		t.Fatalf("created %+v as %q", tok, text)
	}
	return text
}

// TestSecretNeverStored reads every byte of the store's files: the hashes
// are there, the secrets are not, in hex or raw.
func TestSecretNeverStored(t *testing.T) {
	s := openStore(t)
	var texts []string
	for _, n := range []string{"ci", "farm-1", "viewer"} {
		texts = append(texts, create(t, s, n, RoleClient))
	}
	if _, err := s.Revoke(context.Background(), "viewer"); err != nil {
		t.Fatal(err)
	}
	var all []byte
	files, _ := filepath.Glob(s.Path() + "*") // auth.db, auth.db-wal, auth.db-shm
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	for _, text := range texts {
		id, secret, ok := split(text)
		if !ok {
			t.Fatalf("token %q does not parse", text)
		}
		raw, _ := hex.DecodeString(secret)
		h := hashSecret(secret)
		switch {
		case bytes.Contains(all, []byte(secret)), bytes.Contains(all, []byte(strings.ToUpper(secret))):
			t.Errorf("the store's files hold token %s's secret in hex", id)
		case bytes.Contains(all, raw):
			t.Errorf("the store's files hold token %s's secret in binary", id)
		case !bytes.Contains(all, h[:]):
			t.Errorf("the store's files do not hold token %s's hash: the test reads the wrong files (%v)", id, files)
		case !bytes.Contains(all, []byte(id)):
			t.Errorf("the store's files do not hold token %s's id", id)
		}
	}
	if fi, err := os.Stat(s.Path()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, %v; want 0600", s.Path(), fi.Mode().Perm(), err)
	}
}

func TestCheck(t *testing.T) {
	s := openStore(t)
	g, _ := newGuard(t, s, GuardOptions{})
	ctx := context.Background()
	text := create(t, s, "ci", RoleClient)
	id, err := g.Check(ctx, text)
	if err != nil || id.Name != "ci" || id.Role != RoleClient {
		t.Fatalf("Check = %+v, %v", id, err)
	}
	tid, secret, _ := split(text)
	other := strings.Repeat("0", 64)
	if secret == other {
		other = strings.Repeat("1", 64)
	}
	for _, tc := range []struct {
		text string
		want error
	}{
		{"", ErrNoToken},
		{"Bearer " + text, ErrInvalid},
		{text + "0", ErrInvalid},
		{"dtk_" + tid + "_" + other, ErrInvalid},                   // the id of a token, another secret
		{"dtk_000000000000_" + secret, ErrInvalid},                 // the secret of a token, another id
		{"dtk_" + tid + "_" + strings.ToUpper(secret), ErrInvalid}, // tokens are lower case
	} {
		if _, err := g.Check(ctx, tc.text); !errors.Is(err, tc.want) {
			t.Errorf("Check(%q) = %v, want %v", tc.text, err, tc.want)
		}
	}
}

// TestRevoke: a revoked token is refused once the guard's cache has
// expired (at once without a cache); names and ids both revoke.
func TestRevoke(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	cachedG, clk := newGuard(t, s, GuardOptions{CacheTTL: 2 * time.Second})
	uncachedG, _ := newGuard(t, s, GuardOptions{CacheTTL: -1})
	a := create(t, s, "a", RoleWorker)
	b := create(t, s, "b", RoleRead)
	for _, g := range []*Guard{cachedG, uncachedG} {
		if _, err := g.Check(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if tok, err := s.Revoke(ctx, "a"); err != nil || tok.Name != "a" || tok.Active() {
		t.Fatalf("Revoke(a) = %+v, %v", tok, err)
	}
	if _, err := uncachedG.Check(ctx, a); !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("uncached guard, revoked token: %v", err)
	}
	if _, err := cachedG.Check(ctx, a); err != nil {
		t.Errorf("cached guard within its TTL: %v; the cache does not work", err)
	}
	clk.add(2 * time.Second)
	if _, err := cachedG.Check(ctx, a); !errors.Is(err, ErrRevoked) {
		t.Errorf("cached guard after its TTL, revoked token: %v", err)
	}

	bid, _, _ := split(b)
	if tok, err := s.Revoke(ctx, bid); err != nil || tok.Name != "b" {
		t.Fatalf("Revoke by id = %+v, %v", tok, err)
	}
	if _, err := s.Revoke(ctx, "b"); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoking twice: %v", err)
	}
	if _, err := s.Revoke(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking an unknown name: %v", err)
	}
	ts, err := s.List(ctx)
	if err != nil || len(ts) != 2 || ts[0].Active() || ts[1].Active() {
		t.Errorf("List = %+v, %v; want a and b, revoked", ts, err)
	}
}

func TestNames(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	create(t, s, "ci", RoleClient)
	if _, _, err := s.Create(ctx, "ci", RoleAdmin); !errors.Is(err, ErrExists) {
		t.Errorf("a second valid token named ci: %v", err)
	}
	if _, err := s.Revoke(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	create(t, s, "ci", RoleAdmin) // the name is free again
	for _, bad := range []string{"", "-x", "a b", "a/b", strings.Repeat("x", 65)} {
		if _, _, err := s.Create(ctx, bad, RoleClient); err == nil {
			t.Errorf("Create(%q) succeeded", bad)
		}
	}
	if _, _, err := s.Create(ctx, "x", Role("root")); err == nil {
		t.Error("Create with role root succeeded")
	}
	// A peer's token is named as the peer server is.
	if _, _, err := s.Create(ctx, "Farm_B", RolePeer); err == nil || !strings.Contains(err.Error(), "named as the peer server is") {
		t.Errorf("Create of a peer token named %q: %v", "Farm_B", err)
	}
	if _, tok, err := s.Create(ctx, "farm-b", RolePeer); err != nil || tok.Role != RolePeer {
		t.Errorf("Create of peer token farm-b: %+v, %v", tok, err)
	}
}

// TestRoles is the role table: what each role may call.
func TestRoles(t *testing.T) {
	for _, tc := range []struct {
		rs                              Roles
		client, worker, read, peer, adm bool
	}{
		{0, false, false, false, false, true},
		{Client, true, false, false, false, true},
		{Worker, false, true, false, false, true},
		{Read, false, false, true, false, true},
		{Peer, false, false, false, true, true},
		{Client | Read, true, false, true, false, true},
		{Worker | Peer, false, true, false, true, true},
		{Client | Worker | Read, true, true, true, false, true},
		{Public, true, true, true, true, true},
	} {
		got := []bool{tc.rs.Allows(RoleClient), tc.rs.Allows(RoleWorker), tc.rs.Allows(RoleRead), tc.rs.Allows(RolePeer), tc.rs.Allows(RoleAdmin)}
		want := []bool{tc.client, tc.worker, tc.read, tc.peer, tc.adm}
		for i, r := range AllRoles {
			if got[i] != want[i] {
				t.Errorf("%s allows %s: %v, want %v", tc.rs, r, got[i], want[i])
			}
		}
		if tc.rs.Allows(Role("root")) {
			t.Errorf("%s allows an unknown role", tc.rs)
		}
	}
	if got := (Client | Read).String(); got != "client, read or admin" {
		t.Errorf("String = %q", got)
	}
	for _, r := range AllRoles {
		if p, err := ParseRole(string(r)); err != nil || p != r {
			t.Errorf("ParseRole(%s) = %v, %v", r, p, err)
		}
	}
	if _, err := ParseRole("Admin"); err == nil {
		t.Error("ParseRole(Admin) succeeded")
	}
}

// TestEnabled: off with no token, on once one is created (after the
// cache's TTL), and on for good even when every token is revoked.
func TestEnabled(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	g, clk := newGuard(t, s, GuardOptions{})
	if g.Enabled(ctx) {
		t.Fatal("enabled with no token")
	}
	text, _ := g.Mint("local", RoleWorker)
	if id, err := g.Check(ctx, text); err != nil || id.Role != RoleWorker {
		t.Fatalf("minted token: %+v, %v", id, err)
	}
	if ts, _ := s.List(ctx); len(ts) != 0 || g.Enabled(ctx) {
		t.Fatalf("a minted token was stored (%v) or turned authentication on", ts)
	}
	create(t, s, "ci", RoleClient)
	clk.add(2 * time.Second)
	if !g.Enabled(ctx) {
		t.Fatal("not enabled after a token was created")
	}
	if _, err := s.Revoke(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Minute)
	if !g.Enabled(ctx) {
		t.Error("disabled by revoking the last token")
	}
	if _, err := g.Check(ctx, text); err != nil {
		t.Errorf("minted token after the store changed: %v", err)
	}

	req, _ := newGuard(t, openStore(t), GuardOptions{Required: true})
	if !req.Enabled(ctx) {
		t.Error("Required guard not enabled")
	}
	on, _ := newGuard(t, s, GuardOptions{}) // a revoked token does not turn it on at start
	if on.Enabled(ctx) {
		t.Error("enabled at start by a revoked token only")
	}
}

// TestReserveWorker: the local slots' name, reserved for the server's own
// process, is refused to every token.
func TestReserveWorker(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	g, _ := newGuard(t, s, GuardOptions{})
	if err := g.ReserveWorker(ctx, "farm-local"); err != nil {
		t.Fatal(err)
	}
	w, _ := g.Check(ctx, create(t, s, "w", RoleWorker))
	if err := g.BindWorker(ctx, "farm-local", w); !errors.Is(err, ErrWorkerTaken) {
		t.Errorf("a token acting as the local slots: %v", err)
	}
	if err := g.BindWorker(ctx, "other", w); err != nil {
		t.Errorf("a name of its own: %v", err)
	}
}

// TestBindWorker: a worker name belongs to the first token to use it, until
// that token is revoked.
func TestBindWorker(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	g, clk := newGuard(t, s, GuardOptions{})
	a, _ := g.Check(ctx, create(t, s, "a", RoleWorker))
	b, _ := g.Check(ctx, create(t, s, "b", RoleWorker))
	_, local := g.Mint("local", RoleWorker)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(g.BindWorker(ctx, "w1", a))
	must(g.BindWorker(ctx, "w1", a))
	must(g.BindWorker(ctx, "w2", b))
	must(g.BindWorker(ctx, "local-local", local))
	for _, tc := range []struct {
		name string
		id   Identity
	}{{"w1", b}, {"w2", a}, {"local-local", a}} {
		if err := g.BindWorker(ctx, tc.name, tc.id); !errors.Is(err, ErrWorkerTaken) {
			t.Errorf("token %s using worker %s: %v, want ErrWorkerTaken", tc.id.Name, tc.name, err)
		}
	}
	if _, err := s.Revoke(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Second)
	must(g.BindWorker(ctx, "w1", b)) // a is revoked: b takes w1 over
	if err := g.BindWorker(ctx, "w1", a); !errors.Is(err, ErrWorkerTaken) {
		t.Errorf("the revoked owner using its name again: %v", err)
	}
}

func TestReopen(t *testing.T) {
	p := filepath.Join(t.TempDir(), FileName)
	s, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	text, _, err := s.Create(context.Background(), "ci", RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(p); err != nil {
		t.Fatal(err)
	}
	g, _ := newGuard(t, s, GuardOptions{})
	if id, err := g.Check(context.Background(), text); err != nil || id.Name != "ci" {
		t.Errorf("token after reopening: %+v, %v", id, err)
	}
	if _, err := s.db.Exec("PRAGMA user_version = 2"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("opening a store of a newer schema: %v", err)
	}
}

// BenchmarkCheck measures what authentication adds to a request: with the
// guard's cache, and reading the store every time.
func BenchmarkCheck(b *testing.B) {
	for _, bc := range []struct {
		name string
		ttl  time.Duration
	}{{"cached", time.Hour}, {"store", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			s := openStore(b)
			for i := range 50 {
				create(b, s, "t"+string(rune('a'+i%26))+string(rune('a'+i/26)), RoleWorker)
			}
			text := create(b, s, "bench", RoleWorker)
			g, err := NewGuard(context.Background(), s, GuardOptions{CacheTTL: bc.ttl})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := g.Check(context.Background(), text); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
