// Command povbench measures POV-Ray through distren against POV-Ray alone:
// the 48-frame animation of examples/povray rendered (a) by one povray
// process over the whole range, (b) by distren with N slots and chunks of C
// frames per task, (c) by distren with N slots and one frame per task. For
// distren it reports the efficiency: the sum of the frames' render times
// divided by (slots × wall time). Runs alternate, so that the machine's
// noise falls on every case alike.
//
//	go run ./bench/povbench [-bin distren] [-slots 2] [-chunk 4] [-runs 2]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/client"
	"github.com/distren/distren/internal/jobpkg"
)

func main() {
	bin := flag.String("bin", "", "distren binary (default: build ./cmd/distren)")
	slots := flag.Int("slots", 2, "worker slots (serve --workers)")
	chunk := flag.Int("chunk", 4, "frames per task for case (b)")
	runs := flag.Int("runs", 2, "runs of each case")
	flag.Parse()
	if err := run(*bin, *slots, *chunk, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "povbench:", err)
		os.Exit(1)
	}
}

func run(bin string, slots, chunk, runs int) error {
	tmp, err := os.MkdirTemp("", "povbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if bin == "" {
		bin = filepath.Join(tmp, "distren")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/distren").CombinedOutput(); err != nil {
			return fmt.Errorf("building distren: %v\n%s", err, out)
		}
	}
	ver, _ := exec.Command("povray", "--version").CombinedOutput()
	fmt.Printf("# povbench: %d CPUs, %s, %s\n", runtime.NumCPU(), firstMatch(string(ver), "POV-Ray"), time.Now().UTC().Format(time.RFC3339))
	for r := 1; r <= runs; r++ {
		wall, err := direct(tmp)
		if err != nil {
			return err
		}
		fmt.Printf("run %d  (a) povray orbit.ini, one process:        %6.2fs\n", r, wall.Seconds())
		for _, c := range []int{chunk, 1} {
			wall, busy, err := farm(bin, tmp, slots, c)
			if err != nil {
				return err
			}
			label := "(b)"
			if c == 1 {
				label = "(c)"
			}
			fmt.Printf("run %d  %s distren, %d slots, %d frame(s) per task: %6.2fs  efficiency %3.0f%%  (render time %.2fs)\n",
				r, label, slots, c, wall.Seconds(), 100*busy.Seconds()/(float64(slots)*wall.Seconds()), busy.Seconds())
		}
	}
	return nil
}

func firstMatch(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return "?"
}

// scene copies the example into a fresh directory.
func scene(tmp string) (string, error) {
	dir, err := os.MkdirTemp(tmp, "scene-")
	if err != nil {
		return "", err
	}
	for _, n := range []string{"orbit.pov", "orbit.ini", "distrenjob.xml"} {
		b, err := os.ReadFile(filepath.Join("examples", "povray", n))
		if err != nil {
			return "", fmt.Errorf("run povbench from the repository root: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func direct(tmp string) (time.Duration, error) {
	dir, err := scene(tmp)
	if err != nil {
		return 0, err
	}
	cmd := exec.Command("povray", "orbit.ini", "-D")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "HOME="+dir)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("povray: %v\n%s", err, out)
	}
	return time.Since(start), nil
}

// farm renders the example through serve with local slots; it returns the
// wall time from submission to the last frame done and the frames' summed
// render times.
func farm(bin, tmp string, slots, chunk int) (time.Duration, time.Duration, error) {
	dir, err := scene(tmp)
	if err != nil {
		return 0, 0, err
	}
	m := filepath.Join(dir, "distrenjob.xml")
	b, _ := os.ReadFile(m)
	b = bytes.Replace(b, []byte("<chunk>4</chunk>"), []byte("<chunk>"+strconv.Itoa(chunk)+"</chunk>"), 1)
	os.WriteFile(m, b, 0o644)
	data, _ := os.MkdirTemp(tmp, "data-")
	cmd := exec.Command(bin, "serve", "--data", data, "--listen", "127.0.0.1:0", "--name", "pov", "--workers", strconv.Itoa(slots))
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	url := ""
	buf := make([]byte, 64<<10)
	var seen strings.Builder
	for url == "" {
		n, err := stderr.Read(buf)
		seen.Write(buf[:n])
		if i := strings.Index(seen.String(), " url="); i >= 0 && strings.Contains(seen.String()[i:], "\n") {
			url = strings.Fields(seen.String()[i+5:])[0]
		}
		if err != nil {
			return 0, 0, fmt.Errorf("serve: %v\n%s", err, seen.String())
		}
	}
	go io.Copy(io.Discard, stderr)
	c, err := client.New(url)
	if err != nil {
		return 0, 0, err
	}
	ctx := context.Background()
	// Let the local slots fingerprint their backends before the clock starts.
	for {
		ws, err := c.Workers(ctx)
		if err == nil && len(ws) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rc, size, err := jobpkg.Open(dir)
	if err != nil {
		return 0, 0, err
	}
	defer rc.Close()
	start := time.Now()
	sub, err := c.Submit(ctx, rc, size)
	if err != nil {
		return 0, 0, err
	}
	for {
		j, err := c.Job(ctx, sub.ID)
		if err != nil {
			return 0, 0, err
		}
		if j.State == api.JobDone {
			break
		}
		if j.State == api.JobFailed || j.State == api.JobCanceled {
			return 0, 0, fmt.Errorf("job %s: %s", j.State, j.Error)
		}
		time.Sleep(10 * time.Millisecond)
	}
	wall := time.Since(start)
	frames, err := c.Frames(ctx, sub.ID, "")
	if err != nil {
		return 0, 0, err
	}
	var busy time.Duration
	for _, f := range frames {
		busy += time.Duration(f.RenderMS) * time.Millisecond
	}
	return wall, busy, nil
}
