package store

import (
	"context"
	"path/filepath"
	"testing"
)

// TestServerName: a new store has no name and was not used; the first name
// recorded stays, a second is not recorded over it, and it survives a
// reopen. A store a server ran on before names were recorded says so.
func TestServerName(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	if name, used, err := s.ServerName(ctx); name != "" || used || err != nil {
		t.Fatalf("a new store: %q %v %v", name, used, err)
	}
	if got, err := s.RecordServerName(ctx, "farm-a"); got != "farm-a" || err != nil {
		t.Fatalf("recording farm-a: %q %v", got, err)
	}
	if got, err := s.RecordServerName(ctx, "farm-b"); got != "farm-a" || err != nil {
		t.Fatalf("recording farm-b after farm-a: %q %v, want farm-a kept", got, err)
	}
	s.Close()
	if s, err = OpenSQLite(path); err != nil {
		t.Fatal(err)
	}
	if name, used, err := s.ServerName(ctx); name != "farm-a" || !used || err != nil {
		t.Fatalf("after a reopen: %q %v %v", name, used, err)
	}
	s.Close()

	// A store used before names were recorded: a server started on it.
	old, err := OpenSQLite(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	tx, _ := old.Begin(ctx)
	if err := tx.SetCounter("boot", 1); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if name, used, err := old.ServerName(ctx); name != "" || !used || err != nil {
		t.Fatalf("a store used before: %q %v %v", name, used, err)
	}
}
