//go:build unix

package cdc

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestBuildTreeRefusesFIFO(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{"scene.pov": []byte("x")})
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	_, err := BuildTree(openRoot(t, dir), newChunker(t, small), func(Chunk) error { return nil })
	if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "pipe: is a named pipe") {
		t.Errorf("got %v, want ErrNotRegular naming the pipe", err)
	}
}
