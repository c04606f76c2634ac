package filter_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/distren/distren/internal/storage"
	"github.com/distren/distren/internal/storage/filter"
	"github.com/distren/distren/internal/storage/storagetest"
)

var ctx = context.Background()

// xorfilter is the test filter program, built once by TestMain.
var xorfilter string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "filter-test")
	if err != nil {
		panic(err)
	}
	xorfilter = filepath.Join(dir, "xorfilter")
	cmd := exec.Command("go", "build", "-o", xorfilter, "./testdata/xorfilter")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the test filter program: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newFS(t testing.TB) *storage.FS {
	t.Helper()
	m, err := storage.NewFS(t.TempDir(), storage.FSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// open returns a pipeline on under, closed when the test ends.
func open(t testing.TB, under storage.Module, chain []filter.Filter, opt filter.Options) *filter.Module {
	t.Helper()
	m, err := filter.New(under, chain, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m
}

func writeKey(t testing.TB, content []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vault.key")
	if err := os.WriteFile(p, content, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

func random(n int) []byte { b := make([]byte, n); rand.Read(b); return b }

func newZstd(t testing.TB) *filter.Zstd {
	t.Helper()
	z, err := filter.NewZstd()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { z.Close() })
	return z
}

func newAES(t testing.TB) *filter.AESGCM {
	t.Helper()
	a, err := filter.NewAESGCM(writeKey(t, random(32), 0o600))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// newXOR returns a command filter running xorfilter with args; starts
// files count its processes.
func newXOR(t testing.TB, encArgs, decArgs []string, opt filter.CommandOptions) *filter.Command {
	t.Helper()
	c, err := filter.NewCommand(append([]string{xorfilter}, encArgs...), append([]string{xorfilter}, decArgs...), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing the command filter: %v", err)
		}
	})
	return c
}

// chains are the filter chains the tests run, made fresh for each test.
var chains = []struct {
	name string
	make func(t testing.TB) []filter.Filter
}{
	{"none", func(t testing.TB) []filter.Filter { return nil }},
	{"zstd", func(t testing.TB) []filter.Filter { return []filter.Filter{newZstd(t)} }},
	{"zstd+aes", func(t testing.TB) []filter.Filter { return []filter.Filter{newZstd(t), newAES(t)} }},
	{"command", func(t testing.TB) []filter.Filter {
		return []filter.Filter{newXOR(t, []string{"-key", "k1"}, []string{"-key", "k1"}, filter.CommandOptions{})}
	}},
}

func TestConformance(t *testing.T) {
	for _, c := range chains {
		t.Run(c.name, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) storage.Module {
				return open(t, newFS(t), c.make(t), filter.Options{})
			})
		})
	}
	// Write-behind: every Put returns once queued, so the suite's reads
	// meet objects still in the pipeline.
	t.Run("enqueue", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Module {
			m := open(t, newFS(t), []filter.Filter{newZstd(t), newAES(t)}, filter.Options{})
			return writeBehind{m}
		})
	})
}

// writeBehind puts with Enqueue.
type writeBehind struct{ *filter.Module }

func (w writeBehind) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	return w.Enqueue(ctx, name, r, size)
}

// text returns n bytes of compressible scene-like text.
func text(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "sphere { <%d, %d.%03d, %d>, %d texture { T_Stone%d } }\n", i%97, i%13, i*7%1000, i%31, i%5+1, i%24)
	}
	return b.Bytes()[:n]
}

// header returns the stored object's header, read from the module below.
func header(t *testing.T, under storage.Module, name string) storage.Header {
	t.Helper()
	rc, err := under.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h, err := storage.ReadHeader(rc)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(m storage.Module, name string) ([]byte, error) {
	rc, err := m.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func put(t *testing.T, m storage.Module, name string, b []byte) {
	t.Helper()
	if err := m.Put(ctx, name, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTripAndHeaders(t *testing.T) {
	const z, a = storage.FilterZstd, storage.FilterAESGCM
	for _, c := range []struct {
		chain              string
		text, random, none []storage.Filter // filters listed for each kind of content
	}{
		{"none", nil, nil, nil},
		{"zstd", []storage.Filter{z}, nil, nil},
		{"zstd+aes", []storage.Filter{z, a}, []storage.Filter{a}, []storage.Filter{a}},
		{"command", []storage.Filter{storage.FilterCommand}, []storage.Filter{storage.FilterCommand}, []storage.Filter{storage.FilterCommand}},
	} {
		t.Run(c.chain, func(t *testing.T) {
			var chain []filter.Filter
			for _, cc := range chains {
				if cc.name == c.chain {
					chain = cc.make(t)
				}
			}
			fs := newFS(t)
			m := open(t, fs, chain, filter.Options{})
			for _, o := range []struct {
				name    string
				content []byte
				filters []storage.Filter
			}{
				{"text", text(1 << 20), c.text},
				{"random", random(1 << 20), c.random},
				{"empty", nil, c.none},
				{"tiny", []byte("x"), c.none},
			} {
				put(t, m, o.name, o.content)
				got, err := get(m, o.name)
				if err != nil || !bytes.Equal(got, o.content) {
					t.Errorf("%s: read %d bytes (%v), wrote %d", o.name, len(got), err, len(o.content))
				}
				h := header(t, fs, o.name)
				if !slices.Equal(h.Filters, o.filters) || h.Plain != int64(len(o.content)) {
					t.Errorf("%s: header lists filters %v and %d plain bytes, want %v and %d", o.name, h.Filters, h.Plain, o.filters, len(o.content))
				}
				if info, err := m.Stat(ctx, o.name); err != nil || info.Size != int64(len(o.content)) {
					t.Errorf("%s: stat %+v, %v; want the plain size %d", o.name, info, err, len(o.content))
				}
				if o.name == "text" && c.text != nil && c.text[0] == z {
					if under, _ := fs.Stat(ctx, o.name); under.Size > int64(len(o.content))/2 {
						t.Errorf("text stored in %d bytes: not compressed", under.Size)
					}
				}
			}
		})
	}
}

// A module without zstd still reads what one with zstd wrote.
func TestDecodesZstdWithoutIt(t *testing.T) {
	fs := newFS(t)
	w := open(t, fs, []filter.Filter{newZstd(t)}, filter.Options{})
	want := text(100_000)
	put(t, w, "t", want)
	r := open(t, fs, nil, filter.Options{})
	if got, err := get(r, "t"); err != nil || !bytes.Equal(got, want) {
		t.Errorf("read %d bytes, %v", len(got), err)
	}
}

// A filter the reader lacks fails clearly.
func TestMissingFilter(t *testing.T) {
	fs := newFS(t)
	put(t, open(t, fs, []filter.Filter{newAES(t)}, filter.Options{}), "secret", []byte("s3cr3t"))
	_, err := get(open(t, fs, nil, filter.Options{}), "secret")
	if err == nil || !strings.Contains(err.Error(), "aes-256-gcm") || !strings.Contains(err.Error(), "secret") {
		t.Errorf("reading without the key: %v", err)
	}
}

func TestFlippedByte(t *testing.T) {
	for _, c := range chains {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			fs, err := storage.NewFS(dir, storage.FSOptions{})
			if err != nil {
				t.Fatal(err)
			}
			m := open(t, fs, c.make(t), filter.Options{})
			content := text(200_000)
			stored := filepath.Join(dir, "objects", "ab", "cd")
			put(t, m, "ab/cd", content)
			orig, err := os.ReadFile(stored)
			if err != nil {
				t.Fatal(err)
			}
			for _, at := range []int{0, 5, 7, 20, storage.HeaderSize(2) + 1, len(orig) / 2, len(orig) - 1} {
				b := bytes.Clone(orig)
				b[at] ^= 0x10
				if err := os.WriteFile(stored, b, 0o644); err != nil {
					t.Fatal(err)
				}
				got, err := get(m, "ab/cd")
				if !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), "ab/cd") {
					t.Errorf("byte %d of %d flipped: read %d bytes, %v; want ErrCorrupt naming the object", at, len(b), len(got), err)
				}
			}
			for _, n := range []int{len(orig) - 1, 10} {
				os.WriteFile(stored, orig[:n], 0o644)
				if _, err := get(m, "ab/cd"); !errors.Is(err, storage.ErrCorrupt) {
					t.Errorf("truncated to %d bytes: %v", n, err)
				}
			}
		})
	}
}

func TestWrongKeyAndSwappedObject(t *testing.T) {
	fs := newFS(t)
	keyA := writeKey(t, random(32), 0o600)
	a, err := filter.NewAESGCM(keyA)
	if err != nil {
		t.Fatal(err)
	}
	m := open(t, fs, []filter.Filter{newZstd(t), a}, filter.Options{})
	put(t, m, "one", text(50_000))
	put(t, m, "two", text(60_000))

	keyB := writeKey(t, random(32), 0o600)
	b, err := filter.NewAESGCM(keyB)
	if err != nil {
		t.Fatal(err)
	}
	_, err = get(open(t, fs, []filter.Filter{newZstd(t), b}, filter.Options{}), "one")
	if !errors.Is(err, filter.ErrWrongKey) || !strings.Contains(err.Error(), keyB) || !strings.Contains(err.Error(), "one") {
		t.Errorf("read with another key: %v; want ErrWrongKey naming the object and the key file", err)
	}

	// The stored bytes of "one" under the name "two": the checksum holds,
	// the name bound to the ciphertext does not.
	rc, _ := fs.Get(ctx, "one")
	stolen, _ := io.ReadAll(rc)
	rc.Close()
	put(t, fs, "two", stolen)
	if _, err := get(m, "two"); !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), "another name") {
		t.Errorf("an object moved to another name: %v; want ErrCorrupt", err)
	}
}

func TestKeyFile(t *testing.T) {
	key := random(32)
	hexKey := []byte(fmt.Sprintf("%x\n", key))
	for _, c := range []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    string // in the error; "" for success
	}{
		{"raw", key, 0o600, ""},
		{"hex", hexKey, 0o400, ""},
		{"group-readable", key, 0o640, "group or others"},
		{"world-readable", hexKey, 0o644, "chmod 600"},
		{"short", key[:16], 0o600, "16 bytes"},
		{"long", append(key, key...), 0o600, "64 bytes"},
		{"not-hex", bytes.Repeat([]byte("z"), 64), 0o600, "64 hexadecimal digits"},
		{"empty", nil, 0o600, "0 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := writeKey(t, c.content, c.mode)
			_, err := filter.NewAESGCM(file)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), file)):
				t.Errorf("error %v; want one naming %s and saying %q", err, file, c.want)
			}
		})
	}
	// The raw and hex forms are the same key.
	fs := newFS(t)
	raw, _ := filter.NewAESGCM(writeKey(t, key, 0o600))
	hx, _ := filter.NewAESGCM(writeKey(t, hexKey, 0o600))
	put(t, open(t, fs, []filter.Filter{raw}, filter.Options{}), "k", []byte("same key"))
	if got, err := get(open(t, fs, []filter.Filter{hx}, filter.Options{}), "k"); err != nil || string(got) != "same key" {
		t.Errorf("hex key reading what the raw key wrote: %q, %v", got, err)
	}
	if _, err := filter.NewAESGCM(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "none") {
		t.Errorf("missing key file: %v", err)
	}
}

// gated holds every Put on the module below until the gate opens (or its
// context ends), and says which Puts arrived.
type gated struct {
	storage.Module
	gate    chan struct{}
	arrived chan string
}

func newGated(m storage.Module) *gated {
	return &gated{Module: m, gate: make(chan struct{}), arrived: make(chan string, 1000)}
}

func (g *gated) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	g.arrived <- name
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Module.Put(ctx, name, r, size)
}

func (g *gated) open() { close(g.gate) }

// Reads racing writes in the pipeline wait and get the final content.
func TestGetRacesPut(t *testing.T) {
	fs := newFS(t)
	g := newGated(fs)
	m := open(t, g, []filter.Filter{newZstd(t), newAES(t)}, filter.Options{})
	const n = 8
	want := make([][]byte, n)
	for i := range n {
		want[i] = text(100_000 + i)
		if i%2 == 0 {
			want[i] = random(100_000 + i)
		}
	}
	// Half enqueued, half put by writers that wait.
	var wg sync.WaitGroup
	for i := range n {
		name := fmt.Sprintf("r/%d", i)
		if i%2 == 0 {
			if err := m.Enqueue(ctx, name, bytes.NewReader(want[i]), int64(len(want[i]))); err != nil {
				t.Fatal(err)
			}
			continue
		}
		wg.Go(func() {
			if err := m.Put(ctx, name, bytes.NewReader(want[i]), -1); err != nil {
				t.Error(err)
			}
		})
	}
	<-g.arrived // a write is below, the others queued behind it
	if _, err := fs.Stat(ctx, "r/0"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("gate leaked: %v", err)
	}
	errs := make(chan error, 4*n)
	for range 4 {
		for i := range n {
			name := fmt.Sprintf("r/%d", i)
			wg.Go(func() {
				got, err := get(m, name)
				// A Put that has not yet read its object has not
				// happened: its name may not be found yet.
				for i%2 == 1 && errors.Is(err, storage.ErrNotFound) {
					time.Sleep(time.Millisecond)
					got, err = get(m, name)
				}
				if err == nil && !bytes.Equal(got, want[i]) {
					err = fmt.Errorf("%s: read %d bytes, not what was written", name, len(got))
				}
				if info, serr := m.Stat(ctx, name); serr != nil || info.Size != int64(len(want[i])) {
					err = errors.Join(err, fmt.Errorf("%s: stat %+v, %v", name, info, serr))
				}
				errs <- err
			})
		}
	}
	time.Sleep(20 * time.Millisecond) // let the readers block on the pipeline
	g.open()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// Writes of one name land in the order they were made.
func TestReplaceOrder(t *testing.T) {
	m := open(t, newFS(t), []filter.Filter{newZstd(t)}, filter.Options{Workers: 4})
	for i := range 50 {
		b := []byte(fmt.Sprintf("version %d", i))
		if err := m.Enqueue(ctx, "v", bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := get(m, "v"); err != nil || string(got) != "version 49" {
		t.Errorf("after 50 writes: %q, %v", got, err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Error(err)
	}
}

// Delete and List wait for writes in the pipeline.
func TestDeleteAndListPending(t *testing.T) {
	fs := newFS(t)
	g := newGated(fs)
	m := open(t, g, []filter.Filter{newZstd(t)}, filter.Options{})
	for _, name := range []string{"l/a", "l/b", "gone"} {
		if err := m.Enqueue(ctx, name, bytes.NewReader(text(1000)), 1000); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error)
	go func() { done <- m.Delete(ctx, "gone") }()
	var listed []string
	go func() {
		done <- m.List(ctx, "l/", func(i storage.Info) error {
			if i.Size != 1000 {
				t.Errorf("%s listed with size %d, want the plain size 1000", i.Name, i.Size)
			}
			listed = append(listed, i.Name)
			return nil
		})
	}()
	time.Sleep(20 * time.Millisecond)
	g.open()
	if err := errors.Join(<-done, <-done); err != nil {
		t.Fatal(err)
	}
	slices.Sort(listed)
	if !slices.Equal(listed, []string{"l/a", "l/b"}) {
		t.Errorf("listed %v", listed)
	}
	if _, err := fs.Stat(ctx, "gone"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleted while in the pipeline, then written: %v", err)
	}
}

// Close waits for the queue; what was enqueued is then durable below.
func TestCloseDrains(t *testing.T) {
	dir := t.TempDir()
	fs, _ := storage.NewFS(dir, storage.FSOptions{})
	g := newGated(fs)
	m, err := filter.New(g, []filter.Filter{newZstd(t)}, filter.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		b := text(10_000 + i)
		if err := m.Enqueue(ctx, fmt.Sprintf("c/%d", i), bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan error)
	go func() { closed <- m.Close(ctx) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned before the queue drained: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	g.open()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := m.Put(ctx, "late", bytes.NewReader(nil), 0); !errors.Is(err, filter.ErrClosed) {
		t.Errorf("put after close: %v", err)
	}
	// A new process sees everything.
	fs2, _ := storage.NewFS(dir, storage.FSOptions{})
	r := open(t, fs2, nil, filter.Options{})
	for i := range n {
		if got, err := get(r, fmt.Sprintf("c/%d", i)); err != nil || !bytes.Equal(got, text(10_000+i)) {
			t.Errorf("c/%d after close: %d bytes, %v", i, len(got), err)
		}
	}
}

// A Close that runs out of time discards the queue, naming the objects,
// and leaves nothing of them visible.
func TestCloseGivesUp(t *testing.T) {
	fs := newFS(t)
	g := newGated(fs) // never opens
	m, err := filter.New(g, nil, filter.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"stuck/1", "stuck/2", "stuck/3"} {
		if err := m.Enqueue(ctx, name, bytes.NewReader([]byte(name)), -1); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err = m.Close(cctx)
	for _, name := range []string{"stuck/1", "stuck/2", "stuck/3"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("close: %v; want it to name %s", err, name)
		}
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("close: %v; want context.DeadlineExceeded", err)
	}
	n := 0
	fs.List(ctx, "", func(storage.Info) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d objects visible below after the queue was discarded", n)
	}
}

// A failed background write reaches a waiting Get, later Gets, Sync and
// Close, naming the object; a failed Put reaches its caller.
func TestBackgroundWriteFailure(t *testing.T) {
	fs := newFS(t)
	faulty := storagetest.NewFaulty(fs)
	faulty.Inject(storagetest.Fault{Op: "put", Call: 1, Err: syscall.ENOSPC})
	g := newGated(faulty)
	m, err := filter.New(g, []filter.Filter{newZstd(t)}, filter.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Enqueue(ctx, "victim", bytes.NewReader(text(5000)), 5000); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error)
	go func() { _, err := get(m, "victim"); waiting <- err }()
	<-g.arrived
	time.Sleep(10 * time.Millisecond)
	g.open()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "victim") {
			t.Errorf("%s: %v; want the write's error naming the object", what, err)
		}
	}
	err = <-waiting
	check("waiting get", err)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("waiting get: %v; want ErrNotFound too", err)
	}
	_, err = get(m, "victim")
	check("later get", err)
	_, err = m.Stat(ctx, "victim")
	check("stat", err)

	// Put reports its own failure.
	faulty.Inject(storagetest.Fault{Op: "put", Call: 3, Err: syscall.EROFS})
	if err := m.Put(ctx, "other", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	if err := m.Put(ctx, "third", bytes.NewReader([]byte("x")), 1); !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "third") {
		t.Errorf("failed put: %v", err)
	}
	if _, err := get(m, "third"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("get after a failed put: %v", err)
	}
	check("close", m.Close(ctx))
}

func TestSyncReportsFailuresOnce(t *testing.T) {
	faulty := storagetest.NewFaulty(newFS(t))
	faulty.Inject(storagetest.Fault{Op: "put", Call: 2, Err: errors.New("disk on fire")})
	m := open(t, faulty, nil, filter.Options{Workers: 1})
	for _, name := range []string{"s/1", "s/2", "s/3"} {
		if err := m.Enqueue(ctx, name, bytes.NewReader([]byte(name)), -1); err != nil {
			t.Fatal(err)
		}
	}
	err := m.Sync(ctx)
	if err == nil || !strings.Contains(err.Error(), "s/2") || !strings.Contains(err.Error(), "disk on fire") || strings.Contains(err.Error(), "s/1") {
		t.Errorf("sync: %v; want the failure of s/2 only", err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Errorf("second sync: %v", err)
	}
	// Putting the name again clears the failure.
	put(t, m, "s/2", []byte("again"))
	if got, err := get(m, "s/2"); err != nil || string(got) != "again" {
		t.Errorf("after putting again: %q, %v", got, err)
	}
}

// Writers block while the queue is full.
func TestBackpressure(t *testing.T) {
	g := newGated(newFS(t))
	m := open(t, g, nil, filter.Options{Workers: 1, Queue: 3})
	for i := range 3 {
		if err := m.Enqueue(ctx, fmt.Sprintf("q/%d", i), bytes.NewReader([]byte("x")), 1); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if err := m.Enqueue(cctx, "q/3", bytes.NewReader([]byte("x")), 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("enqueue into a full queue: %v; want it to block until its context ends", err)
	}
	g.open()
	if err := m.Enqueue(ctx, "q/3", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Error(err)
	}
	// The byte budget too: an object over it waits for an empty queue.
	g2 := newGated(newFS(t))
	m2 := open(t, g2, nil, filter.Options{QueueBytes: 100})
	if err := m2.Enqueue(ctx, "big", bytes.NewReader(random(1000)), 1000); err != nil {
		t.Errorf("an object over the byte budget, into an empty queue: %v", err)
	}
	cctx2, cancel2 := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel2()
	if err := m2.Enqueue(cctx2, "small", bytes.NewReader([]byte("x")), 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("enqueue past the byte budget: %v", err)
	}
	g2.open()
	if err := m2.Enqueue(ctx, "small", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Error(err)
	}
}

// A canceled Put leaves nothing, even while queued behind others.
func TestCanceledQueuedPut(t *testing.T) {
	fs := newFS(t)
	g := newGated(fs)
	m := open(t, g, nil, filter.Options{Workers: 1})
	if err := m.Enqueue(ctx, "first", bytes.NewReader([]byte("1")), 1); err != nil {
		t.Fatal(err)
	}
	<-g.arrived
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- m.Put(cctx, "second", bytes.NewReader([]byte("2")), 1) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "second") {
		t.Errorf("canceled put: %v", err)
	}
	g.open()
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat(ctx, "second"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a canceled put was written: %v", err)
	}
}

func TestObjectSizeLimit(t *testing.T) {
	m := open(t, newFS(t), nil, filter.Options{MaxObjectSize: 1000})
	if err := m.Put(ctx, "big", bytes.NewReader(random(1001)), 1001); err == nil || !strings.Contains(err.Error(), "big") {
		t.Errorf("announced over the limit: %v", err)
	}
	if err := m.Put(ctx, "big", bytes.NewReader(random(1001)), -1); err == nil || !strings.Contains(err.Error(), "big") {
		t.Errorf("unannounced over the limit: %v", err)
	}
}

func TestChainChecks(t *testing.T) {
	z := newZstd(t)
	if _, err := filter.New(newFS(t), []filter.Filter{z, z}, filter.Options{}); err == nil {
		t.Error("a chain listing zstd twice was accepted")
	}
	var nine []filter.Filter
	for range 9 {
		nine = append(nine, z)
	}
	if _, err := filter.New(newFS(t), nine, filter.Options{}); err == nil {
		t.Error("a chain of 9 filters was accepted")
	}
}

// A process that dies with writes in the pipeline — one halfway onto the
// disk, others queued — leaves nothing of them visible to the next.
func TestCrashLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	fs, _ := storage.NewFS(dir, storage.FSOptions{})
	faulty := storagetest.NewFaulty(fs)
	faulty.Inject(storagetest.Fault{Op: "put", After: 50_000, Stall: true}) // every write stalls halfway
	m, err := filter.New(faulty, []filter.Filter{newZstd(t)}, filter.Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := m.Enqueue(ctx, fmt.Sprintf("crash/%d", i), bytes.NewReader(random(200_000)), 200_000); err != nil {
			t.Fatal(err)
		}
	}
	for faulty.Calls("put") == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond) // the first write is halfway
	tmp, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	if len(tmp) != 1 {
		t.Errorf("%d partial writes in tmp/, want 1", len(tmp))
	}

	// The next process, on the same directory.
	fs2, err := storage.NewFS(dir, storage.FSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m2 := open(t, fs2, []filter.Filter{newZstd(t)}, filter.Options{})
	n := 0
	if err := m2.List(ctx, "", func(storage.Info) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("after the crash: %d objects listed, %v", n, err)
	}
	if _, err := get(m2, "crash/0"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the object halfway written: %v, want ErrNotFound", err)
	}

	// Let the dead process's goroutines go.
	cctx, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	m.Close(cctx)
}

// TestPutContent: an object put with its SHA-256 reads back with it known
// when no filter applied, unknown when one did; a wrong SHA-256 given by
// the writer makes the object fail its checksum, never read as whole.
func TestPutContent(t *testing.T) {
	ctx := context.Background()
	m := open(t, newFS(t), []filter.Filter{newZstd(t)}, filter.Options{})
	random := make([]byte, 100_000)
	rand.Read(random)
	text := bytes.Repeat([]byte("compressible "), 10_000)
	for _, c := range []struct {
		name  string
		data  []byte
		known bool
	}{{"random", random, true}, {"text", text, false}} {
		sum := sha256.Sum256(c.data)
		if err := m.PutContent(ctx, c.name, c.data, sum); err != nil {
			t.Fatal(err)
		}
		got, gotSum, known, err := m.GetContent(ctx, c.name)
		if err != nil || !bytes.Equal(got, c.data) || known != c.known || (known && gotSum != sum) {
			t.Errorf("%s: %d bytes, known %v (want %v), %v", c.name, len(got), known, c.known, err)
		}
	}
	if err := m.PutContent(ctx, "lied", random, sha256.Sum256([]byte("other"))); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := m.GetContent(ctx, "lied"); !errors.Is(err, storage.ErrCorrupt) {
		t.Errorf("an object put with a wrong checksum: %v, want ErrCorrupt", err)
	}
}
