package filter_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distren/distren/internal/storage"
	"github.com/distren/distren/internal/storage/filter"
)

// starts counts the lines a starts file has: one per process started.
func starts(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return 0
	} else if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// One process per direction serves every object, from many writers.
func TestCommandStartsOnce(t *testing.T) {
	dir := t.TempDir()
	encStarts, decStarts := filepath.Join(dir, "enc"), filepath.Join(dir, "dec")
	cmd := newXOR(t, []string{"-key", "secret", "-starts", encStarts}, []string{"-key", "secret", "-starts", decStarts}, filter.CommandOptions{})
	fs := newFS(t)
	m := open(t, fs, []filter.Filter{newZstd(t), cmd}, filter.Options{Workers: 4})
	const n = 60
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				b := text(1000 + i)
				name := fmt.Sprintf("o/%d", i)
				if err := m.Put(ctx, name, bytes.NewReader(b), int64(len(b))); err != nil {
					t.Error(err)
					return
				}
				if got, err := get(m, name); err != nil || !bytes.Equal(got, b) {
					t.Errorf("%s: %d bytes, %v", name, len(got), err)
				}
			}
		})
	}
	wg.Wait()
	// Stored XORed: the text is not there in the clear.
	h := header(t, fs, "o/1")
	if fmt.Sprint(h.Filters) != "[zstd command]" {
		t.Errorf("o/1 header lists %v", h.Filters)
	}
	if e, d := starts(t, encStarts), starts(t, decStarts); e != 1 || d != 1 {
		t.Errorf("%d encoding and %d decoding processes started for %d objects; want 1 each", e, d, n)
	}
}

// A program that dies fails the objects outstanding with its standard
// error, and is started again for the next.
func TestCommandRestart(t *testing.T) {
	dir := t.TempDir()
	encStarts := filepath.Join(dir, "enc")
	cmd := newXOR(t, []string{"-die-after", "3", "-starts", encStarts}, nil, filter.CommandOptions{RestartDelay: 10 * time.Millisecond})
	m := open(t, newFS(t), []filter.Filter{cmd}, filter.Options{Workers: 1})
	for i := range 3 {
		put(t, m, fmt.Sprintf("ok/%d", i), []byte("fine"))
	}
	err := m.Put(ctx, "doomed", strings.NewReader("x"), 1)
	if err == nil || !strings.Contains(err.Error(), "told to die after 3 frames") || !strings.Contains(err.Error(), "doomed") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("put through a dying program: %v; want its standard error and exit status, naming the object", err)
	}
	put(t, m, "after", []byte("restarted"))
	if got, err := get(m, "after"); err != nil || string(got) != "restarted" {
		t.Errorf("after the restart: %q, %v", got, err)
	}
	if n := starts(t, encStarts); n != 2 {
		t.Errorf("encoding program started %d times, want 2", n)
	}
}

// A program that does not answer is killed after the timeout.
func TestCommandTimeout(t *testing.T) {
	c, err := filter.NewCommand([]string{"sleep", "60"}, []string{"cat"}, filter.CommandOptions{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, _, err = c.Encode(ctx, "x", []byte("hello"))
	if err == nil || !strings.Contains(err.Error(), "no response within") {
		t.Errorf("encode through a silent program: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
	// A canceled request returns at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := c.Encode(cctx, "x", []byte("hello")); err == nil {
		t.Error("encode with a canceled context succeeded")
	}
}

func TestCommandMissingProgram(t *testing.T) {
	_, err := filter.NewCommand([]string{"/nonexistent/filter-program"}, []string{"cat"}, filter.CommandOptions{})
	if err == nil || !strings.Contains(err.Error(), "filter-program") {
		t.Errorf("missing program: %v", err)
	}
	if _, err := filter.NewCommand(nil, []string{"cat"}, filter.CommandOptions{}); err == nil {
		t.Error("no program accepted")
	}
}

// The command filter round-trips directly, empty frames included, and
// its ID is the command filter's.
func TestCommandFrames(t *testing.T) {
	c := newXOR(t, nil, nil, filter.CommandOptions{})
	if c.ID() != storage.FilterCommand {
		t.Errorf("ID %v", c.ID())
	}
	for _, in := range [][]byte{nil, []byte("a"), random(3 << 20)} {
		enc, ok, err := c.Encode(ctx, "n", in)
		if err != nil || !ok || len(enc) != len(in) || (len(in) > 0 && bytes.Equal(enc, in)) {
			t.Fatalf("encode %d bytes: %d bytes, %v, %v", len(in), len(enc), ok, err)
		}
		dec, err := c.Decode(ctx, "n", enc)
		if err != nil || !bytes.Equal(dec, in) {
			t.Errorf("decode %d bytes: %d bytes, %v", len(in), len(dec), err)
		}
	}
}
