package storage_test

import (
	"testing"

	"github.com/distren/distren/internal/storage"
	"github.com/distren/distren/internal/storage/storagetest"
)

func TestFSConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Module {
		m, err := storage.NewFS(t.TempDir(), storage.FSOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return m
	})
}
