package farm

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/distren/distren/internal/durl"
	"github.com/distren/distren/internal/store"
)

// TestServerName: the first start records the name given, or a new one of
// the host name and a random suffix; later starts get it back without a
// name, or with the same one, and a different one is refused with a
// message saying what to do. Each new data directory gets a name of its
// own; one used before names were recorded keeps "local".
func TestServerName(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	db := func() string { return filepath.Join(t.TempDir(), "state.db") }

	a := db()
	name, err := serverName(ctx, a, "", log)
	if err != nil || !durl.ValidServer(name) || !regexp.MustCompile(`-[a-z0-9]{4}$`).MatchString(name) || name == "local" {
		t.Fatalf("first start without a name: %q %v, want the host name and a random suffix", name, err)
	}
	for _, given := range []string{"", name} {
		if got, err := serverName(ctx, a, given, log); got != name || err != nil {
			t.Fatalf("restart with --name %q: %q %v, want %q", given, got, err, name)
		}
	}
	_, err = serverName(ctx, a, "other", log)
	if !errors.Is(err, ErrName) {
		t.Fatalf("restart with another name: %v, want ErrName", err)
	}
	for _, want := range []string{"--name other", `its server is "` + name + `"`, "--name " + name + ", or without --name", "data directory of its own"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %q does not say %q", err, want)
		}
	}
	if other, err := serverName(ctx, db(), "", log); err != nil || other == name {
		t.Errorf("another data directory: %q %v, want a name of its own (not %q)", other, err, name)
	}

	b := db()
	if got, err := serverName(ctx, b, "farm-b", log); got != "farm-b" || err != nil {
		t.Fatalf("first start with --name farm-b: %q %v", got, err)
	}
	if got, err := serverName(ctx, b, "", log); got != "farm-b" || err != nil {
		t.Fatalf("restart without --name: %q %v", got, err)
	}

	// A data directory a server ran on before names were recorded.
	c := db()
	st, err := store.OpenSQLite(c)
	if err != nil {
		t.Fatal(err)
	}
	tx, _ := st.Begin(ctx)
	tx.SetCounter("boot", 3)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if got, err := serverName(ctx, c, "", log); got != "local" || err != nil {
		t.Fatalf("a data directory of before: %q %v, want local", got, err)
	}
}

func TestNewName(t *testing.T) {
	for i := 0; i < 50; i++ {
		if n := newName(); !durl.ValidServer(n) {
			t.Fatalf("newName() = %q, not a valid server name", n)
		}
	}
}
