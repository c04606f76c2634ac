package client

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/distren/distren/internal/cdc"
)

func TestChunkIndexSkipsUnchangedFiles(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("scene one\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.txt"), []byte("scene two\n"), 0o644)
	ch, _ := cdc.New(cdc.Options{})
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	build := func() (cdc.Tree, int) {
		idx := OpenChunkIndex(dir)
		read := 0
		infos := map[string]fs.FileInfo{}
		reuse := func(p string, info fs.FileInfo) ([]cdc.ChunkRef, bool) {
			infos[p] = info
			return idx.reuse(p, info)
		}
		tree, err := cdc.BuildTreeReusing(root.FS(), ch, func(cdc.Chunk) error { read++; return nil }, reuse)
		if err != nil {
			t.Fatal(err)
		}
		idx.save(infos, tree)
		return tree, read
	}
	hash := func(tr cdc.Tree) [32]byte {
		h, err := tr.Hash()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	first, read := build()
	if read != 2 {
		t.Fatalf("first build read %d chunks, want 2", read)
	}
	if again, read := build(); read != 0 || hash(again) != hash(first) {
		t.Errorf("unchanged: read %d chunks, same tree %v", read, hash(again) == hash(first))
	}
	// Same size and modification time, other content: the change time tells.
	info, _ := os.Stat(filepath.Join(dir, "b.txt"))
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(filepath.Join(dir, "b.txt"), []byte("scene TWO\n"), 0o644)
	os.Chtimes(filepath.Join(dir, "b.txt"), info.ModTime(), info.ModTime())
	changed, read := build()
	if read != 1 || hash(changed) == hash(first) {
		t.Errorf("one file changed in place: read %d chunks, tree changed %v", read, hash(changed) != hash(first))
	}
}
