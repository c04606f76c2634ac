// Package auth owns who may call a distren server: the API tokens, kept in
// their own SQLite file (DATA/auth.db, apart from state.db so that `distren
// token` can run beside a live server), with only a SHA-256 hash of each
// secret stored; the roles a token has and what each role may do; and the
// Guard that the server asks on every request — is authentication on, whose
// token is this, which worker names belong to it. docs/security.md describes
// it for users.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/distren/distren/internal/durl"
	"os"
	"regexp"
	"strings"
	"time"

	"modernc.org/sqlite" // the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// FileName is the token store's file in a server's data directory.
const FileName = "auth.db"

// Role is what a token may do.
type Role string

// The roles. What each may call is the server's route table; Roles.Allows
// says how a role is matched against it.
const (
	RoleClient Role = "client" // submit, cancel, retry, delete jobs, and read everything
	RoleWorker Role = "worker" // claim, heartbeat, report frames, and read what rendering needs
	RoleRead   Role = "read"   // GET requests only
	// RolePeer is another server's: its name is the peer's server name, and
	// it may act as that server's workers ("NAME/WORKER": claim, heartbeat,
	// report the frames this server lends it), read what rendering them
	// needs, and fetch outputs of frames lent to this server.
	RolePeer  Role = "peer"
	RoleAdmin Role = "admin" // everything, garbage collection included
)

// AllRoles lists the roles in the order the documentation gives them.
var AllRoles = []Role{RoleClient, RoleWorker, RoleRead, RolePeer, RoleAdmin}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	for _, r := range AllRoles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("role %q: want one of client, worker, read, peer, admin", s)
}

// Roles is a set of roles: who may call a route.
type Roles uint8

// The members of a Roles set. Public routes need no token at all.
const (
	Client Roles = 1 << iota
	Worker
	Read
	Public
	Peer
)

// Allows reports whether a token of role r may call a route open to rs.
// An admin may call every route.
func (rs Roles) Allows(r Role) bool {
	switch r {
	case RoleAdmin:
		return true
	case RoleClient:
		return rs&(Client|Public) != 0
	case RoleWorker:
		return rs&(Worker|Public) != 0
	case RoleRead:
		return rs&(Read|Public) != 0
	case RolePeer:
		return rs&(Peer|Public) != 0
	}
	return false
}

// String names the roles in the set, admin always among them: "client,
// read or admin".
func (rs Roles) String() string {
	if rs&Public != 0 {
		return "none (public)"
	}
	var names []string
	for _, m := range []struct {
		bit  Roles
		role Role
	}{{Client, RoleClient}, {Worker, RoleWorker}, {Read, RoleRead}, {Peer, RolePeer}} {
		if rs&m.bit != 0 {
			names = append(names, string(m.role))
		}
	}
	names = append(names, string(RoleAdmin))
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// Token describes a stored token; its secret is never kept.
type Token struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	Created time.Time `json:"created"`
	Revoked time.Time `json:"revoked,omitzero"` // zero while the token is valid
}

// Active reports whether the token has not been revoked.
func (t Token) Active() bool { return t.Revoked.IsZero() }

// Errors of the store and the guard.
var (
	ErrNotFound = errors.New("no such token")
	ErrExists   = errors.New("a valid token already has this name")
	ErrNoToken  = errors.New("no token given: this server requires one")
	ErrInvalid  = errors.New("invalid token")
	ErrRevoked  = errors.New("token revoked")
	// ErrWorkerTaken refuses a worker name that another token uses.
	ErrWorkerTaken = errors.New("worker name in use by another token")
)

// Token text: "dtk_" + 12 hex digits of id + "_" + 64 hex digits of secret.
const (
	prefix    = "dtk_"
	idBytes   = 6
	keyBytes  = 32
	schemaVer = 1
)

var (
	tokenRE = regexp.MustCompile(`^dtk_([0-9a-f]{12})_([0-9a-f]{64})$`)
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// CheckName reports whether name may name a token.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("token name %q: want letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit)", name)
	}
	return nil
}

// split parses a token's text into its id and secret.
func split(token string) (id, secret string, ok bool) {
	m := tokenRE.FindStringSubmatch(token)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// hashSecret is what the store keeps of a secret.
func hashSecret(secret string) [sha256.Size]byte { return sha256.Sum256([]byte(secret)) }

// newToken returns a fresh token's id, secret and full text.
func newToken() (id, secret, text string) {
	b := make([]byte, idBytes+keyBytes)
	rand.Read(b) // never fails (crypto/rand)
	id, secret = hex.EncodeToString(b[:idBytes]), hex.EncodeToString(b[idBytes:])
	return id, secret, prefix + id + "_" + secret
}

// Store is the token store: one SQLite file.
type Store struct {
	db   *sql.DB
	path string
	get  *sql.Stmt
}

const schema = `
CREATE TABLE IF NOT EXISTS tokens (
	id      TEXT PRIMARY KEY,
	name    TEXT NOT NULL,
	role    TEXT NOT NULL,
	hash    BLOB NOT NULL,    -- SHA-256 of the secret; the secret itself is never stored
	created INTEGER NOT NULL, -- Unix nanoseconds
	revoked INTEGER           -- Unix nanoseconds; NULL while valid
);
CREATE UNIQUE INDEX IF NOT EXISTS tokens_valid_name ON tokens(name) WHERE revoked IS NULL;
`

// Open opens (creating it if needed, mode 0600) the token store at path.
func Open(path string) (*Store, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("token store: %w", err)
	}
	f.Close()
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("token store %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	if err := s.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("token store %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) init() error {
	var v int
	if err := s.db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		return err
	}
	if v > schemaVer {
		return fmt.Errorf("schema version %d is newer than this distren's (%d)", v, schemaVer)
	}
	if v < schemaVer {
		if _, err := s.db.Exec(schema + fmt.Sprintf("PRAGMA user_version = %d;", schemaVer)); err != nil {
			return err
		}
	}
	var err error
	s.get, err = s.db.Prepare("SELECT id, name, role, hash, created, revoked FROM tokens WHERE id = ?")
	return err
}

// Path returns the store's file.
func (s *Store) Path() string { return s.path }

// Close closes the store.
func (s *Store) Close() error {
	s.get.Close()
	return s.db.Close()
}

// Create makes a token and returns its text, the only time it exists
// outside the caller: the store keeps the secret's hash. Names are unique
// among valid tokens.
func (s *Store) Create(ctx context.Context, name string, role Role) (text string, t Token, err error) {
	if err := CheckName(name); err != nil {
		return "", t, err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return "", t, err
	}
	if role == RolePeer && !durl.ValidServer(name) {
		return "", t, fmt.Errorf("token name %q: a peer's token is named as the peer server is ([a-z0-9][a-z0-9-]*, at most 63 characters)", name)
	}
	id, secret, text := newToken()
	h := hashSecret(secret)
	t = Token{ID: id, Name: name, Role: role, Created: time.Now().UTC()}
	_, err = s.db.ExecContext(ctx, "INSERT INTO tokens (id, name, role, hash, created) VALUES (?, ?, ?, ?, ?)",
		id, name, string(role), h[:], t.Created.UnixNano())
	if err != nil {
		if se := (*sqlite.Error)(nil); errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
			return "", Token{}, fmt.Errorf("token name %q: %w (revoke it first, or pick another name)", name, ErrExists)
		}
		return "", Token{}, fmt.Errorf("creating token %q: %w", name, err)
	}
	return text, t, nil
}

// List returns every token, revoked ones included, oldest first.
func (s *Store) List(ctx context.Context) ([]Token, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT id, name, role, hash, created, revoked FROM tokens ORDER BY created, id")
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	defer rows.Close()
	var ts []Token
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("listing tokens: %w", err)
		}
		ts = append(ts, r.Token)
	}
	return ts, rows.Err()
}

// Revoke revokes the valid token whose name or id is ref.
func (s *Store) Revoke(ctx context.Context, ref string) (Token, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Token{}, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, "SELECT id, name, role, hash, created, revoked FROM tokens WHERE id = ? OR name = ? ORDER BY created DESC", ref, ref)
	if err != nil {
		return Token{}, err
	}
	var valid, revoked []Token
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			rows.Close()
			return Token{}, err
		}
		if r.Active() {
			valid = append(valid, r.Token)
		} else {
			revoked = append(revoked, r.Token)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Token{}, err
	}
	switch {
	case len(valid) > 1:
		return Token{}, fmt.Errorf("%q is the name of token %s and the id of token %s: revoke by id", ref, valid[0].ID, valid[1].ID)
	case len(valid) == 0 && len(revoked) > 0:
		return Token{}, fmt.Errorf("token %q (id %s) was already revoked at %s: %w", revoked[0].Name, revoked[0].ID,
			revoked[0].Revoked.Format(time.RFC3339), ErrRevoked)
	case len(valid) == 0:
		return Token{}, fmt.Errorf("%q: %w (distren token list shows them)", ref, ErrNotFound)
	}
	t := valid[0]
	t.Revoked = time.Now().UTC()
	if _, err := tx.ExecContext(ctx, "UPDATE tokens SET revoked = ? WHERE id = ?", t.Revoked.UnixNano(), t.ID); err != nil {
		return Token{}, err
	}
	return t, tx.Commit()
}

// Valid returns the number of tokens not revoked.
func (s *Store) Valid(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM tokens WHERE revoked IS NULL").Scan(&n)
	return n, err
}

// record is a stored token with its secret's hash.
type record struct {
	Token
	hash [sha256.Size]byte
}

// lookup returns the token with that id, revoked or not.
func (s *Store) lookup(ctx context.Context, id string) (record, error) {
	r, err := scan(s.get.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	return r, err
}

func scan(row interface{ Scan(...any) error }) (record, error) {
	var r record
	var role string
	var hash []byte
	var created int64
	var revoked sql.NullInt64
	if err := row.Scan(&r.ID, &r.Name, &role, &hash, &created, &revoked); err != nil {
		return r, err
	}
	if len(hash) != sha256.Size {
		return r, fmt.Errorf("token %s: stored hash has %d bytes", r.ID, len(hash))
	}
	r.Role, r.Created = Role(role), time.Unix(0, created).UTC()
	copy(r.hash[:], hash)
	if revoked.Valid {
		r.Revoked = time.Unix(0, revoked.Int64).UTC()
	}
	return r, nil
}
