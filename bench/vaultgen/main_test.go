package main

import (
	"bytes"
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distren/distren/internal/manifest"
)

// sums returns the SHA-256 of every file under dir, by relative path.
func sums(t *testing.T, dir string) (map[string][32]byte, int64) {
	t.Helper()
	out := map[string][32]byte{}
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = sha256.Sum256(b)
		if rel != "distrenjob.xml" {
			total += int64(len(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, total
}

func TestGenerateIsDeterministic(t *testing.T) {
	const size = 96 << 20
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	if err := runGenerate(a, size, 3, 2, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := runGenerate(b, size, 3, 1, io.Discard); err != nil {
		t.Fatal(err)
	}
	sa, total := sums(t, a)
	sb, _ := sums(t, b)
	if total != size {
		t.Errorf("files hold %d bytes, want %d", total, size)
	}
	if len(sa) != len(sb) || len(sa) < 30 {
		t.Fatalf("%d and %d files", len(sa), len(sb))
	}
	for p, h := range sa {
		if sb[p] != h {
			t.Errorf("%s differs between two runs", p)
		}
	}
	if err := runGenerate(a, size, 3, 2, io.Discard); err == nil {
		t.Error("generating into a non-empty directory succeeded")
	}

	f, err := os.Open(filepath.Join(a, "distrenjob.xml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := manifest.Parse(f, "distrenjob.xml", manifest.Options{}); err != nil {
		t.Errorf("manifest: %v", err)
	}

	// Edit 10% of the files: about that many change, the rest do not.
	var log bytes.Buffer
	if err := runEdit(b, 10, 4096, 5, &log); err != nil {
		t.Fatal(err)
	}
	se, _ := sums(t, b)
	changed := 0
	for p, h := range sa {
		if se[p] != h {
			changed++
		}
	}
	if want := (len(sa) - 1 + 5) / 10; changed != want {
		t.Errorf("edit changed %d files, want %d:\n%s", changed, want, log.String())
	}
	if !strings.Contains(log.String(), "edited ") {
		t.Errorf("edit log: %s", log.String())
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"2GiB": 2 << 30, "2G": 2 << 30, "512MiB": 512 << 20, "100MB": 100e6, "1.5KiB": 1536, "4096": 4096, "7b": 7} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1MiB", "12XB", "1e30"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
		}
	}
}
