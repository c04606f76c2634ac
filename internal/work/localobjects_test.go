package work

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distren/distren/internal/ops"
	"github.com/distren/distren/internal/ops/opstest"
	"github.com/distren/distren/internal/vault"
	"github.com/distren/distren/internal/worker"
)

// TestSlotsOpenObject: the slots read an object where the vault holds it,
// with its size; an object the vault lacks is rejected, as the API's 404
// is; a damaged one fails to read rather than hand over its bytes.
func TestSlotsOpenObject(t *testing.T) {
	ctx := context.Background()
	p := opstest.NewParts(t, "objects", vault.Options{SmallObjects: 1024})
	s := New(p.Ops(ops.Config{}), time.Millisecond)
	put := func() ([]byte, string) {
		b := make([]byte, 100_000)
		rand.Read(b)
		ref, err := p.Vault.Put(context.Background(), bytes.NewReader(b), "")
		if err != nil {
			t.Fatal(err)
		}
		return b, ref.Hash
	}

	b, h := put()
	rc, size, err := s.OpenObject(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, b) || size != int64(len(b)) {
		t.Errorf("read %d bytes (size %d, err %v), want the %d stored", len(got), size, err, len(b))
	}

	if _, _, err := s.OpenObject(ctx, strings.Repeat("ab", 32)); !errors.Is(err, worker.ErrRejected) {
		t.Errorf("an object the vault lacks: %v, want ErrRejected", err)
	}

	// A damaged object, and one the disk cannot read (a directory where
	// its file was): reads fail, naming the object and not where the
	// vault keeps it.
	for _, damage := range []func(path string) error{
		func(path string) error {
			f, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			f[len(f)/2] ^= 1
			return os.WriteFile(path, f, 0o644)
		},
		func(path string) error {
			if err := os.Remove(path); err != nil {
				return err
			}
			return os.Mkdir(path, 0o755)
		},
	} {
		_, h := put()
		damaged := 0
		err = filepath.WalkDir(p.Vault.Dir(), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.Contains(d.Name(), h) {
				return err
			}
			damaged++
			return damage(path)
		})
		if err != nil || damaged != 1 {
			t.Fatalf("damaging object %s: %d files, %v", h, damaged, err)
		}
		rc, _, err = s.OpenObject(ctx, h)
		if err == nil {
			_, err = io.ReadAll(rc)
			rc.Close()
		}
		if err == nil || !strings.Contains(err.Error(), h) || strings.Contains(err.Error(), filepath.Dir(p.Vault.Dir())) {
			t.Errorf("a damaged object: %v, want an error naming it and no server directory", err)
		}
	}
}
