// Command vaultbench measures the vault side by side with restic on the
// package bench/vaultgen generates (docs/PERFORMANCE.md): ingest through
// `distren submit` (chunking, deduplicated upload, storage; with compression
// off, on, and on with encryption) against `restic backup` with compression
// on and off, the stored sizes, a re-submission
// after editing 1% of the files, and what a worker downloads for a second
// job on the edited scene.
//
//	go run ./bench/vaultbench [-bin distren] [-size 2GiB] [-edit 1] [-edit-bytes 4096]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func main() {
	bin := flag.String("bin", "", "distren binary (default: build ./cmd/distren)")
	size := flag.String("size", "2GiB", "package size")
	edit := flag.String("edit", "1", "percentage of files edited for the re-submission")
	editBytes := flag.String("edit-bytes", "4096", "bytes overwritten in each binary file edited")
	keep := flag.Bool("restic", true, "measure restic too")
	flag.Parse()
	if err := run(*bin, *size, *edit, *editBytes, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "vaultbench:", err)
		os.Exit(1)
	}
}

func sh(dir string, env []string, name string, args ...string) (string, time.Duration, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), 0, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), time.Since(start), nil
}

func du(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func rate(n int64, d time.Duration) string {
	return fmt.Sprintf("%.0f MB/s", float64(n)/1e6/d.Seconds())
}

func run(bin, size, edit, editBytes string, withRestic bool) error {
	tmp, err := os.MkdirTemp("", "vaultbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	repo, _ := os.Getwd()
	if bin == "" {
		bin = filepath.Join(tmp, "distren")
		if out, _, err := sh(repo, nil, "go", "build", "-o", bin, "./cmd/distren"); err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
	}
	gen := filepath.Join(tmp, "vaultgen")
	if _, _, err := sh(repo, nil, "go", "build", "-o", gen, "./bench/vaultgen"); err != nil {
		return err
	}
	pkg := filepath.Join(tmp, "pkg")
	out, _, err := sh(tmp, nil, gen, "-o", pkg, "-size", size)
	if err != nil {
		return err
	}
	fmt.Printf("# vaultbench: %d CPUs, %s\n# %s", runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339), out)
	total := du(pkg)

	// distren: a server with compression off, one with it on, one with
	// compression and encryption (as restic always encrypts; kept for the
	// rest), and a full submission to each.
	key := filepath.Join(tmp, "vault.key")
	if _, _, err := sh(tmp, nil, bin, "vault", "key", key); err != nil {
		return err
	}
	startServe := func(data string, filters []string) (string, func(), error) {
		srv := exec.Command(bin, append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0", "--name", "bench", "--workers", "0",
			"--max-package-bytes", strconv.FormatInt(16<<30, 10)}, filters...)...)
		stderr, _ := srv.StderrPipe()
		if err := srv.Start(); err != nil {
			return "", nil, err
		}
		stop := func() { srv.Process.Kill(); srv.Wait() }
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if i := strings.Index(sc.Text(), " url="); i >= 0 {
				go io.Copy(io.Discard, stderr)
				return strings.Fields(sc.Text()[i+5:])[0], stop, nil
			}
		}
		stop()
		return "", nil, fmt.Errorf("serve did not start")
	}
	sentRE := regexp.MustCompile(`\((\d+) (?:of \d+ )?bytes\)`)
	submit := func(url string, extra ...string) (int64, time.Duration, error) {
		out, d, err := sh(tmp, nil, bin, append([]string{"submit", pkg, "--server", url}, extra...)...)
		if err != nil {
			return 0, 0, err
		}
		m := sentRE.FindStringSubmatch(out)
		if m == nil {
			return 0, 0, fmt.Errorf("submit said %q", out)
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		return n, d, nil
	}
	var url, data string
	var stored int64
	configs := []struct {
		name    string
		filters []string
	}{
		{"--compress=false", []string{"--compress=false"}},
		{"--compress", []string{"--compress"}},
		{"--compress --encrypt-key", []string{"--compress", "--encrypt-key", key}},
	}
	for i, c := range configs {
		data = filepath.Join(tmp, fmt.Sprintf("data-%d", i))
		u, stop, err := startServe(data, c.filters)
		if err != nil {
			return err
		}
		sent, d, err := submit(u, "--rechunk")
		if err != nil {
			stop()
			return err
		}
		stored = du(filepath.Join(data, "vault"))
		fmt.Printf("distren submit, %-25s (chunk, upload, store): %s in %.1fs = %s; sent %s; stored %s\n",
			c.name, mb(total), d.Seconds(), rate(total, d), mb(sent), mb(stored))
		if i < len(configs)-1 {
			stop()
			continue
		}
		defer stop()
		url = u
	}

	var resticRepos []string
	if withRestic {
		for _, comp := range []string{"auto", "off"} {
			r := filepath.Join(tmp, "restic-"+comp)
			env := []string{"RESTIC_PASSWORD=bench", "RESTIC_REPOSITORY=" + r, "RESTIC_CACHE_DIR=" + filepath.Join(tmp, "restic-cache")}
			if _, _, err := sh(tmp, env, "restic", "init"); err != nil {
				return err
			}
			_, d, err := sh(tmp, env, "restic", "backup", "--compression", comp, "-q", pkg)
			if err != nil {
				return err
			}
			fmt.Printf("restic backup --compression %-4s        %s in %.1fs = %s; stored %s\n", comp, mb(total), d.Seconds(), rate(total, d), mb(du(r)))
			resticRepos = append(resticRepos, r)
		}
	}

	// Edit, then submit again, and back up again.
	out, _, err = sh(tmp, nil, gen, "-o", pkg, "-edit", edit, "-edit-bytes", editBytes, "-seed", "2")
	if err != nil {
		return err
	}
	fmt.Printf("# %s", out)
	sent, d, err := submit(url)
	if err != nil {
		return err
	}
	fmt.Printf("distren submit after the edit:            sent %s in %.2fs; stored now %s (+%s)\n",
		mb(sent), d.Seconds(), mb(du(filepath.Join(data, "vault"))), mb(du(filepath.Join(data, "vault"))-stored))
	for i, r := range resticRepos {
		env := []string{"RESTIC_PASSWORD=bench", "RESTIC_REPOSITORY=" + r, "RESTIC_CACHE_DIR=" + filepath.Join(tmp, "restic-cache")}
		before := du(r)
		_, d, err := sh(tmp, env, "restic", "backup", "--compression", []string{"auto", "off"}[i], "-q", pkg)
		if err != nil {
			return err
		}
		fmt.Printf("restic backup after the edit (%s):        %.2fs; repository grew %s\n", []string{"auto", "off"}[i], d.Seconds(), mb(du(r)-before))
	}

	// A worker renders job 1, then job 2 (the edited scene).
	wdir := filepath.Join(tmp, "worker")
	w := exec.Command(bin, "worker", "--server", url, "--slots", "1", "--dir", wdir, "--name", "bench")
	wout, _ := w.StderrPipe()
	if err := w.Start(); err != nil {
		return err
	}
	defer func() { w.Process.Kill(); w.Wait() }()
	var logBuf strings.Builder
	logDone := make(chan struct{})
	go func() { io.Copy(&logBuf, wout); close(logDone) }()
	for deadline := time.Now().Add(15 * time.Minute); ; {
		out, _, _ := sh(tmp, nil, bin, "status", "2", "--server", url)
		if strings.Contains(out, "DONE") || strings.Contains(out, "FAILED") {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("job 2 did not finish: %s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	w.Process.Kill()
	<-logDone
	dl := regexp.MustCompile(`inputs downloaded.*job=(\d+) .*downloaded=(\d+)`)
	got := map[string]int64{}
	for _, line := range strings.Split(logBuf.String(), "\n") {
		if m := dl.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseInt(m[2], 10, 64)
			got[m[1]] += n
		}
	}
	fmt.Printf("worker downloads: job 1 %s, job 2 (edited scene) %s\n", mb(got["1"]), mb(got["2"]))
	return nil
}
