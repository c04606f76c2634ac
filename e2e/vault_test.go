package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distren/distren/internal/cdc"
	"github.com/distren/distren/internal/client"
)

// sentRE reads submit's report of what it sent.
var sentRE = regexp.MustCompile(`^sent .*?(\d+) (?:of \d+ )?chunks.*\((\d+) (?:of \d+ )?bytes\)$`)

func sent(t *testing.T, msg string) (bytes uint64, chunks int) {
	t.Helper()
	var m []string
	for line := range strings.Lines(msg) { // submit --wait ends with its own line
		if m = sentRE.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			break
		}
	}
	if m == nil {
		t.Fatalf("submit did not say what it sent: %q", msg)
	}
	chunks, _ = strconv.Atoi(m[1])
	b, _ := strconv.ParseUint(m[2], 10, 64)
	return b, chunks
}

func randomFile(t *testing.T, p string, n int) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

const sceneJob = `<distrenjob version="1"><name>%s</name>
<backend name="command"><program>sh</program><arg>-c</arg><arg>cat textures/*.bin scene.txt | wc -c > size-{frame}.txt</arg></backend>
<inputs><file>scene.txt</file></inputs>
<frames><range first="1" last="2"/></frames><outputs><output>*.txt</output></outputs></distrenjob>`

// TestDeduplicatedTransfer: a package is sent as chunks; sending it again
// sends nothing, a small change sends only the changed chunks, an upload
// cut off half-way resumes, and a worker rendering a second job on the same
// scene downloads nothing.
func TestDeduplicatedTransfer(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "dedup", "--workers", "0")
	w := start(t, "worker", "--server", url, "--slots", "1", "--dir", t.TempDir(), "--name", "w1")
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "textures"), 0o755)
	randomFile(t, filepath.Join(dir, "textures", "wood.bin"), 6<<20)
	randomFile(t, filepath.Join(dir, "textures", "stone.bin"), 3<<20)
	os.WriteFile(filepath.Join(dir, "scene.txt"), []byte(strings.Repeat("sphere { <0,0,0>, 1 }\n", 1000)), 0o644)
	write := func(name string) {
		os.WriteFile(filepath.Join(dir, "distrenjob.xml"), []byte(strings.Replace(sceneJob, "%s", name, 1)), 0o644)
	}
	write("first")
	total := uint64(9<<20 + 22000)

	msg := runStderr(t, 0, "submit", dir, "--server", url, "--wait")
	b, chunks := sent(t, msg)
	if b < total || chunks < 5 {
		t.Errorf("first submission sent %d bytes in %d chunks, want the whole package (%d bytes)", b, chunks, total)
	}

	// Again, same scene, another job: nothing to send but the changed manifest.
	write("second")
	b, _ = sent(t, runStderr(t, 0, "submit", dir, "--server", url, "--wait"))
	if b > 4096 {
		t.Errorf("resubmission sent %d bytes, want only the manifest", b)
	}
	if !strings.Contains(w.log.String(), "job=1") {
		t.Fatalf("the worker rendered nothing of job 1:\n%s", w.log)
	}
	for _, line := range strings.Split(w.log.String(), "\n") {
		if strings.Contains(line, "inputs downloaded") && strings.Contains(line, "job=2") {
			t.Errorf("the worker downloaded inputs again for the second job: %s", line)
		}
	}

	// A few bytes changed in the middle of a texture: one or two chunks.
	f, _ := os.OpenFile(filepath.Join(dir, "textures", "wood.bin"), os.O_WRONLY, 0)
	f.WriteAt([]byte("a small edit"), 3<<20)
	f.Close()
	b, n := sent(t, runStderr(t, 0, "submit", dir, "--server", url, "--wait"))
	if b == 0 || b > 8<<20+4096 || n > 3 {
		t.Errorf("after a 12-byte edit: sent %d bytes in %d chunks", b, n)
	}
	if b > total/2 {
		t.Errorf("after a 12-byte edit: sent %d of %d bytes", b, total)
	}

	// A new texture, half of whose chunks reach the server before the
	// upload is cut off: submitting again sends the other half.
	randomFile(t, filepath.Join(dir, "textures", "metal.bin"), 8<<20)
	c, err := client.New(url)
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := cdc.New(cdc.Options{})
	mf, _ := os.Open(filepath.Join(dir, "textures", "metal.bin"))
	var early, all uint64
	k := 0
	err = ch.Split(mf, func(c2 cdc.Chunk) error {
		all += uint64(c2.Size)
		if k++; k%2 == 1 {
			early += uint64(c2.Size)
			return c.PutChunk(context.Background(), hex.EncodeToString(c2.Hash[:]), strings.NewReader(string(c2.Data)), int64(c2.Size))
		}
		return nil
	})
	mf.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, _ = sent(t, runStderr(t, 0, "submit", dir, "--server", url, "--wait"))
	if b != all-early {
		t.Errorf("the resumed upload sent %d bytes, want the %d bytes not sent before", b, all-early)
	}
	// And every job's result is right: the frames saw the whole files.
	out := t.TempDir()
	run(t, 0, "fetch", "4", "--server", url, "-o", out)
	got, _ := os.ReadFile(filepath.Join(out, "size-1.txt"))
	if want := strconv.Itoa(int(total) + 8<<20); strings.TrimSpace(string(got)) != want {
		t.Errorf("the last job's frame read %s bytes of input, want %s", got, want)
	}
}

// TestSmallCache: a worker whose cache is smaller than a job's inputs
// still renders it — objects a task needs are pinned — and trims the cache
// afterwards.
func TestSmallCache(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "small", "--workers", "0")
	w := start(t, "worker", "--server", url, "--slots", "1", "--dir", t.TempDir(), "--name", "w1", "--cache-size", "2MiB")
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "textures"), 0o755)
	randomFile(t, filepath.Join(dir, "textures", "a.bin"), 5<<20)
	os.WriteFile(filepath.Join(dir, "scene.txt"), []byte("scene\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "distrenjob.xml"), []byte(strings.Replace(sceneJob, "%s", "one", 1)), 0o644)
	run(t, 0, "submit", dir, "--server", url, "--wait", "-q")
	randomFile(t, filepath.Join(dir, "textures", "a.bin"), 5<<20) // a new texture: new chunks
	run(t, 0, "submit", dir, "--server", url, "--wait", "-q")
	out := t.TempDir()
	run(t, 0, "fetch", "2", "--server", url, "-o", out)
	if got, _ := os.ReadFile(filepath.Join(out, "size-2.txt")); strings.TrimSpace(string(got)) != strconv.Itoa(5<<20+6) {
		t.Errorf("frame read %q bytes of input", got)
	}
	if !strings.Contains(w.log.String(), "cache trimmed") {
		t.Errorf("the worker never trimmed its cache:\n%s", w.log)
	}
}

// TestVaultCheck: vault check verifies every object of a stopped server's
// data directory and names a damaged one.
func TestVaultCheck(t *testing.T) {
	data := t.TempDir()
	srv, url := serve(t, "--data", data, "--name", "chk", "--workers", "1")
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "textures"), 0o755)
	randomFile(t, filepath.Join(dir, "textures", "a.bin"), 3<<20)
	os.WriteFile(filepath.Join(dir, "scene.txt"), []byte("scene\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "distrenjob.xml"), []byte(strings.Replace(sceneJob, "%s", "chk", 1)), 0o644)
	run(t, 0, "submit", dir, "--server", url, "--wait", "-q")
	if msg := runStderr(t, 1, "vault", "check", "--data", data); !strings.Contains(msg, "stop the server") {
		t.Errorf("check beside a running server: %q", msg)
	}
	srv.kill()
	if out := run(t, 0, "vault", "check", "--data", data); !strings.Contains(out, ": 0 damaged") {
		t.Errorf("a sound vault: %q", out)
	}
	var victim string
	filepath.WalkDir(filepath.Join(data, "vault", "objects"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && victim == "" {
			victim = p
		}
		return nil
	})
	b, _ := os.ReadFile(victim)
	b[len(b)/2] ^= 0x40
	os.WriteFile(victim, b, 0o644)
	out := run(t, 6, "vault", "check", "--data", data)
	if !strings.Contains(out, "DAMAGED object "+filepath.Base(victim)) || !strings.Contains(out, ": 1 damaged") {
		t.Errorf("after flipping a byte of %s: %q", filepath.Base(victim), out)
	}
}

// chunkHashes returns the chunk names of a file.
func chunkHashes(t *testing.T, p string) []string {
	t.Helper()
	ch, _ := cdc.New(cdc.Options{})
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	ch.Split(f, func(c cdc.Chunk) error { out = append(out, hex.EncodeToString(c.Hash[:])); return nil })
	return out
}

// TestDeleteAndGC: deleting a job and collecting removes the chunks only it
// used and keeps those another job shares; that job still renders, and the
// deleted job's id is not reused.
func TestDeleteAndGC(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "gc", "--workers", "0", "--gc-grace", "1ms", "--gc-interval", "0")
	mk := func(name string, shared []byte) string {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "textures"), 0o755)
		os.WriteFile(filepath.Join(dir, "textures", "shared.bin"), shared, 0o644)
		randomFile(t, filepath.Join(dir, "textures", name+".bin"), 3<<20)
		os.WriteFile(filepath.Join(dir, "scene.txt"), []byte(name+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "distrenjob.xml"), []byte(strings.Replace(sceneJob, "%s", name, 1)), 0o644)
		return dir
	}
	shared := make([]byte, 4<<20)
	rand.Read(shared)
	a, b := mk("alpha", shared), mk("beta", shared)
	run(t, 0, "submit", a, "--server", url, "-q")
	run(t, 0, "submit", b, "--server", url, "-q")

	onlyA := chunkHashes(t, filepath.Join(a, "textures", "alpha.bin"))
	sharedChunks := chunkHashes(t, filepath.Join(a, "textures", "shared.bin"))
	c, _ := client.New(url)
	missing := func(hs []string) int {
		m, err := c.MissingChunks(context.Background(), hs)
		if err != nil {
			t.Fatal(err)
		}
		return len(m)
	}
	if missing(onlyA)+missing(sharedChunks) != 0 {
		t.Fatal("chunks missing before any deletion")
	}
	time.Sleep(5 * time.Millisecond) // past the grace period
	if out := run(t, 0, "delete", "1", "--server", url); !strings.Contains(out, "job 1 deleted") {
		t.Errorf("delete printed %q", out)
	}
	runErr(t, 5, "status", "1", "--server", url)
	out := run(t, 0, "gc", "--server", url)
	if missing(onlyA) != len(onlyA) || missing(sharedChunks) != 0 {
		t.Errorf("after gc (%s): %d of %d of job 1's own chunks gone, %d shared chunks gone",
			strings.TrimSpace(out), missing(onlyA), len(onlyA), missing(sharedChunks))
	}
	// Job 2 still renders whole, and ids go on.
	start(t, "worker", "--server", url, "--slots", "1", "--dir", t.TempDir(), "--name", "w")
	run(t, 0, "status", "2", "--watch", "--interval", "100ms", "--server", url)
	res := t.TempDir()
	run(t, 0, "fetch", "2", "--server", url, "-o", res)
	if got, _ := os.ReadFile(filepath.Join(res, "size-1.txt")); strings.TrimSpace(string(got)) != strconv.Itoa(4<<20+3<<20+5) {
		t.Errorf("job 2's frame read %q bytes", got)
	}
	if sub := strings.TrimSpace(run(t, 0, "submit", a, "--server", url, "-q")); sub != "distren://gc/3" {
		t.Errorf("the next job is %s", sub)
	}
}

// bigOutputJob: frame 1 writes a 6 MiB output holding a marker (stored
// chunked by the server), frame 2 gets it as a dependency and checksums it.
const bigOutputJob = `<distrenjob version="1"><name>sealed</name>
<backend name="command"><program>sh</program><arg>-c</arg><arg>cat secret.txt textures/a.bin textures/a.bin > big.out</arg></backend>
<inputs><file>secret.txt</file></inputs>
<frames>
  <frame id="1"/>
  <frame id="2"><depends on="1"/><backend name="command"><program>sh</program><arg>-c</arg><arg>cksum big.out > sum.txt; rm big.out</arg></backend></frame>
</frames><outputs><output>*.out</output><output>*.txt</output></outputs></distrenjob>`

// TestEncryptedVault: with --encrypt-key, no byte of the data directory
// shows the scene or the outputs; a large output is stored chunked, passed
// to a dependent frame and fetched whole; vault check verifies everything
// with the key and names the filter it lacks without it.
func TestEncryptedVault(t *testing.T) {
	data, key := t.TempDir(), filepath.Join(t.TempDir(), "vault.key")
	if out := run(t, 0, "vault", "key", key); !strings.Contains(out, key) {
		t.Errorf("vault key said %q", out)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if msg := runStderr(t, 1, "vault", "key", key); !strings.Contains(msg, "file exists") { // a local error: 1, not 4 (unreachable)
		t.Errorf("a second vault key on the same file: %q", msg) // never overwritten
	}
	srv, url := serve(t, "--data", data, "--name", "sealed", "--workers", "1", "--encrypt-key", key)
	const marker = "SEALED-SCENE-MARKER-6f1d"
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "textures"), 0o755)
	randomFile(t, filepath.Join(dir, "textures", "a.bin"), 3<<20)
	os.WriteFile(filepath.Join(dir, "secret.txt"), []byte(strings.Repeat(marker+"\n", 2000)), 0o644)
	os.WriteFile(filepath.Join(dir, "distrenjob.xml"), []byte(bigOutputJob), 0o644)
	job := strings.TrimSpace(run(t, 0, "submit", dir, "--server", url, "--wait", "-q"))
	out := t.TempDir()
	run(t, 0, "fetch", job, "-o", out, "--server", url)
	got := readDir(t, out)
	tex, _ := os.ReadFile(filepath.Join(dir, "textures", "a.bin"))
	want := append([]byte(strings.Repeat(marker+"\n", 2000)), append(tex, tex...)...)
	if !bytes.Equal(got["big.out"], want) {
		t.Fatalf("fetched big.out is %d bytes, want %d (files %d)", len(got["big.out"]), len(want), len(got))
	}
	wantSum := cksum(t, filepath.Join(out, "big.out"))
	if string(got["sum.txt"]) != wantSum {
		t.Errorf("the dependent frame saw %q, want %q", got["sum.txt"], wantSum)
	}
	srv.kill()
	indexes := 0
	filepath.WalkDir(filepath.Join(data, "vault"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		indexes += strings.Count(d.Name(), ".index")
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(marker)) {
			t.Errorf("%s holds the scene in the clear", p)
		}
		return nil
	})
	if indexes == 0 {
		t.Error("no chunked object in the vault: the 6 MiB output should be one")
	}
	if out := run(t, 0, "vault", "check", "--data", data, "--encrypt-key", key); !strings.Contains(out, ": 0 damaged") {
		t.Errorf("check with the key: %q", out)
	}
	if out := run(t, 6, "vault", "check", "--data", data); !strings.Contains(out, "aes-256-gcm") {
		t.Errorf("check without the key: %q", out)
	}
}

func cksum(t *testing.T, p string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", "cksum big.out")
	cmd.Dir = filepath.Dir(p)
	b, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
