package farm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/distren/distren/internal/store"
)

// ErrName refuses to serve a data directory under a name other than the one
// recorded at its first start.
var ErrName = errors.New("the data directory belongs to a server of another name")

// serverName returns the name the server of the state database at db runs
// under, and records it at the first start. The name is part of every job
// URL, so it never changes: given (Config.Name) must be the name recorded,
// or empty. At the first start the name recorded is given, or if none is, a
// new one, unique to this data directory (the host name and a random
// suffix, newName) — except for a data directory used before names were
// recorded, which keeps the default of then, "local".
func serverName(ctx context.Context, db, given string, log *slog.Logger) (string, error) {
	st, err := store.OpenSQLite(db)
	if err != nil {
		return "", err
	}
	defer st.Close()
	recorded, used, err := st.ServerName(ctx)
	if err != nil {
		return "", err
	}
	if recorded == "" {
		name, why := given, "given"
		switch {
		case name != "":
		case used:
			name, why = "local", "the default before names were recorded, which its jobs' URLs name"
		default:
			name, why = newName(), "chosen for this data directory"
		}
		if recorded, err = st.RecordServerName(ctx, name); err != nil {
			return "", err
		}
		if recorded == name {
			log.Info("server name recorded: it stays this data directory's", "name", name, "why", why)
		}
	}
	if given != "" && given != recorded {
		return "", fmt.Errorf("--name %s: %w: its server is %q (recorded at its first start; its jobs are distren://%s/...), and a name never changes. "+
			"Start it with --name %s, or without --name; to run a server named %s, give it a data directory of its own (--data)",
			given, ErrName, recorded, recorded, recorded, given)
	}
	return recorded, nil
}

// newName returns a server name for a new data directory: the first label
// of the host name, made to fit [a-z0-9][a-z0-9-]* ("distren" if nothing of
// it does), a dash and four random letters and digits, e.g. "render01-k3f9".
func newName() string {
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(strings.ToLower(host), ".")
	var b strings.Builder
	for _, r := range host {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	base := strings.Trim(b.String(), "-")
	if len(base) > 40 {
		base = strings.TrimRight(base[:40], "-")
	}
	if base == "" {
		base = "distren"
	}
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	suffix := make([]byte, 4)
	rand.Read(suffix)
	for i, c := range suffix {
		suffix[i] = letters[int(c)%len(letters)]
	}
	return base + "-" + string(suffix)
}
