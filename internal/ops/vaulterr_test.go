package ops_test

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/ops/opstest"
	"github.com/distren/distren/internal/storage"
	"github.com/distren/distren/internal/storage/storagetest"
	"github.com/distren/distren/internal/vault"
)

// TestFailingVaultIsNotMissing: when the vault cannot tell whether it
// holds a chunk, the operations fail with its error; they never report the
// chunk missing (a client would upload it again, a tree would be refused
// as incomplete).
func TestFailingVaultIsNotMissing(t *testing.T) {
	fs, err := storage.NewFS(t.TempDir(), storage.FSOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	mod := storagetest.NewFaulty(fs)
	p := opstest.NewParts(t, "ops", vault.Options{Module: mod})
	f := p.Ops(ops.Config{})
	held := strings.Repeat("ab", 32)
	missing, err := f.MissingChunks(ctx, []string{held})
	if err != nil || len(missing) != 1 {
		t.Fatalf("a sound vault: missing %v, %v", missing, err)
	}
	mod.Inject(storagetest.Fault{Op: "stat", Err: syscall.EIO})
	missing, err = f.MissingChunks(ctx, []string{held})
	if !errors.Is(err, syscall.EIO) || len(missing) != 0 || ops.KindOf(err) == ops.Conflict {
		t.Errorf("a failing vault: missing %v, %v; want the I/O error and nothing reported missing", missing, err)
	}
}
