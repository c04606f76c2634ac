package e2e

import (
	"bytes"
	"fmt"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestRenderStoresObjectsOnce: `distren render` keeps each object once, in
// its vault: its local slots read the inputs and the outputs a frame
// depends on (the contact sheet of examples/orbit reads the 48 frames
// before it) where the vault holds them, so the worker's cache holds no
// object afterwards, and the 49 images arrive all the same.
func TestRenderStoresObjectsOnce(t *testing.T) {
	data, out := filepath.Join(t.TempDir(), "data"), filepath.Join(t.TempDir(), "out")
	run(t, 0, "render", "--data", data, "-o", out, "-q", "../examples/orbit")

	var cached []string
	err := filepath.WalkDir(filepath.Join(data, "worker", "cache"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			cached = append(cached, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cached) != 0 {
		t.Errorf("the worker's cache holds %d files, want none: %v", len(cached), cached)
	}

	want := []string{"contact-sheet.png"}
	for f := 1; f <= 48; f++ {
		want = append(want, fmt.Sprintf("orbit-%04d.png", f))
	}
	pngs, _ := filepath.Glob(filepath.Join(out, "*.png"))
	if len(pngs) != len(want) {
		t.Errorf("%d images in the output directory, want %d: %v", len(pngs), len(want), pngs)
	}
	for _, name := range want {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
