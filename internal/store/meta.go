package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The server's name, recorded in the state it names: every job URL
// (distren://NAME/ID) and every stored dependency on another server's frame
// depend on it, so it is recorded at the server's first start and checked
// at each (internal/farm).

// ServerName returns the server name recorded in the store, "" if none is.
// used reports whether the store was used before — a server started on it,
// or a job was stored — so that a store written before names were recorded
// can be told from a new one.
func (s *SQLite) ServerName(ctx context.Context) (name string, used bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'server_name'`).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		err = s.db.QueryRowContext(ctx,
			`SELECT EXISTS(SELECT 1 FROM counters) OR EXISTS(SELECT 1 FROM jobs)`).Scan(&used)
		if err != nil {
			return "", false, fmt.Errorf("reading the state database: %w", err)
		}
		return "", used, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading the server name: %w", err)
	}
	return name, true, nil
}

// RecordServerName records name as the server's name unless one is
// recorded already, and returns the name recorded: name, or the one another
// process recorded first.
func (s *SQLite) RecordServerName(ctx context.Context, name string) (string, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO meta(name, value) VALUES('server_name', ?) ON CONFLICT(name) DO NOTHING`, name); err != nil {
		return "", fmt.Errorf("recording the server name: %w", full(err))
	}
	var got string
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'server_name'`).Scan(&got); err != nil {
		return "", fmt.Errorf("reading the server name: %w", err)
	}
	return got, nil
}
