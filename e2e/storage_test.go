package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/distren/distren/internal/api"
)

// mountSmallDisk mounts a tmpfs of the given size at dir (made if needed),
// so that a test can fill a disk for real; it is unmounted at the end. It
// needs root (CAP_SYS_ADMIN), as CI has; without it the test fails saying so.
func mountSmallDisk(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("the disk-full test mounts a %s tmpfs and needs root (CAP_SYS_ADMIN) for it: mount: %v: %s", size, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

// fill writes name until its file system is full and returns how much it wrote.
func fill(t *testing.T, name string) int64 {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			return n
		} else if err != nil {
			t.Fatal(err)
		}
	}
}

// TestDiskFull fills, in turn, the disk of the server's vault and the disk
// of its state store, while a job renders and clients submit: the requests
// that need space fail with a clear error, nothing half-written is left,
// the server keeps serving what it holds, and once space returns the work
// resumes by itself and every frame completes once with its output intact.
func TestDiskFull(t *testing.T) {
	// The data directory (state store, upload space) on one small disk,
	// the vault on another mounted inside it.
	disk := t.TempDir()
	data := filepath.Join(disk, "data")
	mountSmallDisk(t, data, "32m")
	mountSmallDisk(t, filepath.Join(data, "vault"), "64m")
	gate := filepath.Join(t.TempDir(), "gate")
	srv, url := serve(t, "--data", data, "--workers", "2", "--lease", "2s", "--compress=false", "--name", "full")
	jobs := func() int {
		var list []api.Job
		getJSON(t, url+"/v1/jobs", &list)
		return len(list)
	}

	// A job done before the disk fills, to read while it is full.
	before := strings.TrimSpace(run(t, 0, "submit", writeJob(t, smallJob("b", ""), nil), "--server", url, "--wait"))
	// A job whose frames wait for the gate, then write 1 MB of random
	// bytes each: their outputs arrive when the vault has no room for them.
	blocked := strings.TrimSpace(run(t, 0, "submit", writeJob(t, fmt.Sprintf(`<distrenjob version="1">
  <name>blocked</name>
  <backend name="command">
    <program>sh</program><arg>-c</arg>
    <arg>while [ ! -e %s ]; do sleep 0.05; done; head -c 1000000 /dev/urandom > o-{frame}.bin; cksum o-{frame}.bin > o-{frame}.sum</arg>
  </backend>
  <frames><range first="1" last="6"/></frames>
  <outputs><output>o-*</output></outputs>
</distrenjob>`, gate), nil), "--server", url))

	// 1. The vault's disk is full.
	filler := filepath.Join(data, "vault", "filler")
	t.Logf("vault disk filled with %d bytes", fill(t, filler))
	big := writeJob(t, smallJob("n", ""), map[string]string{"input.bin": strings.Repeat("0123456789abcdef", 1<<16)})
	n := jobs()
	_, errOut := run2(t, 1, "submit", big, "--server", url)
	if !strings.Contains(errOut, "no space left on device") {
		t.Errorf("submitting with the vault's disk full: the error does not say the disk is full: %s", errOut)
	}
	t.Logf("submit, vault disk full: %s", strings.TrimSpace(errOut))
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Frames finish rendering; their outputs cannot be stored, and the
	// worker keeps them and tries again.
	refused := regexp.MustCompile(`reporting failed, retrying.*no space left on device`)
	waitFor(t, "a frame output refused for lack of space", func() bool { return refused.MatchString(srv.log.String()) })
	if resp, err := http.Get(url + "/v1/server"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("server with a full vault disk: %v %v", resp, err)
	}
	checkBundle(t, url, before, "b", 3, 1)
	if job, _ := status(t, url, blocked); job.State == api.JobDone || job.Counts[api.StateFailed] > 0 {
		t.Fatalf("the blocked job is %s with the vault's disk full: %+v", job.State, job)
	}
	if m := jobs(); m != n {
		t.Errorf("%d jobs before the refused submission, %d after", n, m)
	}
	// Space returns: the job completes without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	run(t, 0, "status", blocked, "--watch", "--interval", "200ms", "--server", url)
	out := t.TempDir()
	run(t, 0, "fetch", blocked, "--server", url, "-o", out)
	for i := 1; i <= 6; i++ {
		cmd := exec.Command("cksum", fmt.Sprintf("o-%d.bin", i))
		cmd.Dir = out
		sum, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("o-%d.sum", i)))
		if err != nil {
			t.Fatal(err)
		}
		if string(sum) != string(want) {
			t.Errorf("frame %d output: cksum %q, the render wrote %q", i, sum, want)
		}
	}

	// 2. The state store's disk is full. The package's bytes go to the
	// vault, which has room; its 6 MB manifest must go to the state store,
	// which has none.
	padded := writeJob(t, smallJob("p", "\n  <!-- "+strings.Repeat("padding ", 6<<17)+"-->"), nil)
	filler = filepath.Join(data, "filler")
	t.Logf("state disk filled with %d bytes", fill(t, filler))
	n = jobs()
	_, errOut = run2(t, 1, "submit", padded, "--server", url)
	if !strings.Contains(errOut, "disk is full") {
		t.Errorf("submitting with the state store's disk full: the error does not say the disk is full: %s", errOut)
	}
	t.Logf("submit, state disk full: %s", strings.TrimSpace(errOut))
	if m := jobs(); m != n {
		t.Errorf("%d jobs before the refused submission, %d after", n, m)
	}
	if job, _ := status(t, url, blocked); job.State != api.JobDone {
		t.Errorf("with the state store's disk full, %s reads as %s", blocked, job.State)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	after := strings.TrimSpace(run(t, 0, "submit", padded, "--server", url, "--wait"))
	checkBundle(t, url, after, "p", 3, 1)
	after2 := strings.TrimSpace(run(t, 0, "submit", big, "--server", url, "--wait"))
	checkBundle(t, url, after2, "n", 3, 1)

	// What was saved survives a restart, and nothing stored is damaged.
	srv.kill()
	srv, url = serve(t, "--data", data, "--workers", "0", "--name", "full")
	for _, j := range []string{before, blocked, after, after2} {
		if job, _ := status(t, url, j); job.State != api.JobDone {
			t.Errorf("after restart %s is %s", j, job.State)
		}
	}
	srv.kill()
	run(t, 0, "vault", "check", "--data", data)
}

// smallJob is a three-frame command job writing prefix-NNNN.txt with the
// frame number; extra is more XML for the job element.
func smallJob(prefix, extra string) string {
	return fmt.Sprintf(`<distrenjob version="1">
  <name>%s</name>%s
  <backend name="command">
    <program>sh</program><arg>-c</arg><arg>echo {frame} > %s-{frame:04}.txt</arg>
  </backend>
  <frames><range first="1" last="3"/></frames>
  <outputs><output>%s-*.txt</output></outputs>
</distrenjob>`, prefix, extra, prefix, prefix)
}

// TestOutputOverLimitFails renders a frame whose output is over the
// server's --max-output-bytes: the worker reports the refusal as a failed
// attempt, so the frame fails with the server's reason after its retries
// instead of being leased again forever.
func TestOutputOverLimitFails(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--workers", "1", "--max-output-bytes", "100000")
	job := strings.TrimSpace(run(t, 3, "submit", writeJob(t, `<distrenjob version="1">
  <name>too-big</name>
  <retries>1</retries>
  <backend name="command">
    <program>sh</program><arg>-c</arg><arg>head -c 200000 /dev/zero > big-{frame}.bin</arg>
  </backend>
  <frames><frame id="1"/></frames>
  <outputs><output>big-*.bin</output></outputs>
</distrenjob>`, nil), "--server", url, "--wait"))
	_, frames := status(t, url, job)
	if len(frames) != 1 || frames[0].State != api.StateFailed || frames[0].Attempts != 2 ||
		!strings.Contains(frames[0].Error, "the server refused the output") || !strings.Contains(frames[0].Error, "100000") {
		t.Fatalf("frame with an output over the limit: %+v", frames)
	}
}

// ext4Disk is a small ext4 file system on a loop device, mounted at dir, that
// a test can make fail: shutdown turns every later operation on it into EIO,
// as a dying disk does; remount brings it back with what was durable.
type ext4Disk struct {
	t        *testing.T
	img, dir string
}

func newExt4Disk(t *testing.T, dir, size string) *ext4Disk {
	t.Helper()
	d := &ext4Disk{t: t, img: filepath.Join(t.TempDir(), "disk.img"), dir: dir}
	for _, c := range [][]string{{"truncate", "-s", size, d.img}, {"mkfs.ext4", "-q", "-F", d.img}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("the disk-fault test makes an ext4 image (e2fsprogs): %s: %v: %s", c[0], err, out)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d.mount()
	t.Cleanup(func() { exec.Command("umount", "-l", d.dir).Run() })
	return d
}

func (d *ext4Disk) mount() {
	d.t.Helper()
	if out, err := exec.Command("mount", "-o", "loop", d.img, d.dir).CombinedOutput(); err != nil {
		d.t.Fatalf("the disk-fault test mounts an ext4 image on a loop device and needs root (CAP_SYS_ADMIN) for it: %v: %s", err, out)
	}
}

// shutdown makes the file system fail every operation with EIO from now on
// (EXT4_IOC_SHUTDOWN, without flushing its journal).
func (d *ext4Disk) shutdown() {
	d.t.Helper()
	f, err := os.Open(d.dir)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	const ext4IocShutdown, noLogFlush = 0x8004587d, 2 // _IOR('X', 125, __u32), EXT4_GOING_FLAGS_NOLOGFLUSH
	flags := uint32(noLogFlush)
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), ext4IocShutdown, uintptr(unsafe.Pointer(&flags))); errno != 0 {
		d.t.Fatalf("shutting down the file system at %s: %v", d.dir, errno)
	}
}

// remount unmounts the failed file system and mounts it again: the journal
// is replayed, and what was durable before the failure is back.
func (d *ext4Disk) remount() {
	d.t.Helper()
	if out, err := exec.Command("umount", d.dir).CombinedOutput(); err != nil {
		d.t.Fatalf("umount %s: %v: %s", d.dir, err, out)
	}
	d.mount()
}

// TestDiskIOErrors makes the disk under the vault, then the disk under the
// state store, fail every operation with EIO — a real file system shut
// down under the running server: requests that need the disk fail with an
// error naming the I/O error, the server keeps serving what it holds in
// memory, and after the disk is replaced (remounted) and the server
// restarted, every acknowledged job is there and the vault is undamaged.
func TestDiskIOErrors(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	stateDisk := newExt4Disk(t, data, "64M")
	vaultDisk := newExt4Disk(t, filepath.Join(data, "vault"), "64M")
	args := []string{"--data", data, "--workers", "1", "--name", "eio", "--compress=false"}
	srv, url := serve(t, args...)
	before := strings.TrimSpace(run(t, 0, "submit", writeJob(t, smallJob("b", ""), nil), "--server", url, "--wait"))
	pkg := writeJob(t, smallJob("n", ""), map[string]string{"input.bin": strings.Repeat("fedcba9876543210", 1<<16)})
	alive := func(when string) {
		t.Helper()
		if resp, err := http.Get(url + "/v1/server"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: the server does not answer: %v %v", when, resp, err)
		}
		if job, _ := status(t, url, before); job.State != api.JobDone {
			t.Fatalf("%s: %s reads as %s", when, before, job.State)
		}
	}

	// 1. The vault's disk fails.
	vaultDisk.shutdown()
	_, errOut := run2(t, 1, "submit", pkg, "--server", url)
	if !strings.Contains(errOut, "input/output error") {
		t.Errorf("submitting with the vault's disk failing: the error does not name the I/O error: %s", errOut)
	}
	t.Logf("submit, vault disk failing: %s", strings.TrimSpace(errOut))
	fetch := exec.Command(bin, "fetch", before, "--server", url, "-o", t.TempDir())
	if out, err := fetch.CombinedOutput(); err == nil || !strings.Contains(string(out), "input/output error") {
		t.Errorf("fetching with the vault's disk failing: %v: %s", err, out)
	} else {
		t.Logf("fetch, vault disk failing: %s", strings.TrimSpace(string(out)))
	}
	alive("vault disk failing")

	// The disk is replaced: the server restarts on it and serves.
	srv.kill()
	vaultDisk.remount()
	srv, url = serve(t, args...)
	checkBundle(t, url, before, "b", 3, 1)
	second := strings.TrimSpace(run(t, 0, "submit", pkg, "--server", url, "--wait"))

	// 2. The state store's disk fails.
	stateDisk.shutdown()
	_, errOut = run2(t, 1, "submit", writeJob(t, smallJob("s", ""), nil), "--server", url)
	if !strings.Contains(errOut, "state could not be saved") || !strings.Contains(errOut, "I/O error") {
		t.Errorf("submitting with the state store's disk failing: %s", errOut)
	}
	t.Logf("submit, state disk failing: %s", strings.TrimSpace(errOut))
	alive("state disk failing")

	// Replaced: every acknowledged job is there, nothing is damaged.
	srv.kill()
	exec.Command("umount", vaultDisk.dir).Run()
	stateDisk.remount()
	vaultDisk.mount()
	srv, url = serve(t, args...)
	checkBundle(t, url, before, "b", 3, 1)
	checkBundle(t, url, second, "n", 3, 1)
	var list []api.Job
	getJSON(t, url+"/v1/jobs", &list)
	if len(list) != 2 {
		t.Errorf("after the state disk failed: %d jobs, want the 2 acknowledged", len(list))
	}
	srv.kill()
	run(t, 0, "vault", "check", "--data", data)
}
