package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/distren/distren/internal/api"
)

// sameName is a job of two frames that both write out.txt, holding their
// frame number.
const sameName = `<distrenjob version="1">
  <name>same-name</name>
  <backend name="command"><program>sh</program><arg>-c</arg><arg>echo {frame} > out.txt</arg></backend>
  <frames><range first="1" last="2"/></frames>
  <outputs><output>*.txt</output></outputs>
</distrenjob>`

// TestSameOutputNameDownloads: frames writing the same file name make a job
// whose every output can still be downloaded — fetch into a directory, to a
// .tar, again into the directory, and render — under the documented names
// (the first frame done keeps out.txt, the other is frame-N/out.txt); status
// shows the warning naming both frames; and a fetch that cannot complete
// leaves the directory as it was.
func TestSameOutputNameDownloads(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "same", "--workers", "2")
	pkg := writeJob(t, sameName, nil)
	jobURL := strings.TrimSpace(run(t, 0, "submit", pkg, "--wait", "-q", "--server", url))
	job, frames := status(t, url, jobURL)
	if job.State != api.JobDone {
		t.Fatalf("job = %+v", job)
	}
	// Which frame was done first decides which keeps out.txt.
	first, second := frames[0], frames[1]
	if second.ID == first.ID || len(first.Files) != 1 || len(second.Files) != 1 {
		t.Fatalf("frames = %+v", frames)
	}
	if first.Files[0] > second.Files[0] {
		first, second = second, first
	}
	renamed := fmt.Sprintf("frame-%d/out.txt", second.ID)
	want := map[string]string{"out.txt": fmt.Sprintf("%d\n", first.ID), renamed: fmt.Sprintf("%d\n", second.ID)}
	check := func(what string, got map[string][]byte) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s holds %d files, want %v", what, len(got), want)
		}
		for name, content := range want {
			if string(got[filepath.FromSlash(name)]) != content {
				t.Errorf("%s: %s holds %q, want %q", what, name, got[filepath.FromSlash(name)], content)
			}
		}
	}

	out := run(t, 0, "status", jobURL, "--server", url)
	wantWarning := fmt.Sprintf(`warning: frames %d and %d both wrote "out.txt"`, first.ID, second.ID)
	if !strings.Contains(out, wantWarning) || !strings.Contains(out, renamed) || !strings.Contains(out, "{frame}") {
		t.Errorf("status does not warn %q, naming %s and how to name outputs per frame:\n%s", wantWarning, renamed, out)
	}

	dir := filepath.Join(t.TempDir(), "result")
	run(t, 0, "fetch", jobURL, "--server", url, "-o", dir)
	check("fetch -o DIR", readDir(t, dir))
	if errOut := runStderr(t, 0, "fetch", jobURL, "--server", url, "-o", dir); !strings.Contains(errOut, "2 done frames already in") {
		t.Errorf("fetch into the directory again: %s", errOut)
	}
	check("fetch -o DIR again", readDir(t, dir))

	tarball := filepath.Join(t.TempDir(), "result.tar")
	run(t, 0, "fetch", jobURL, "--server", url, "-o", tarball)
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inTar := tarFiles(t, "result.tar", f)
	check("fetch -o FILE.tar", inTar)

	// A fetch that cannot complete changes nothing: a file named like the
	// directory the bundle needs is in the way.
	blocked := t.TempDir()
	for _, name := range []string{"frame-1", "frame-2"} {
		os.WriteFile(filepath.Join(blocked, name), []byte("in the way"), 0o644)
	}
	run2(t, 1, "fetch", jobURL, "--server", url, "-o", blocked)
	ents, _ := os.ReadDir(blocked)
	if len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("a failed fetch left %v in the directory, want only the 2 files that were there", names)
	}

	// render: the same job in a one-shot farm.
	local := filepath.Join(t.TempDir(), "out")
	run(t, 0, "render", pkg, "-o", local, "--workers", "2", "-q")
	got := readDir(t, local)
	if len(got) != 2 || got["out.txt"] == nil {
		t.Fatalf("render wrote %v, want out.txt and frame-N/out.txt", got)
	}
	names := ""
	for name, content := range got {
		if name != "out.txt" && name != filepath.FromSlash("frame-"+strings.TrimSpace(string(content))+"/out.txt") {
			t.Errorf("render wrote %s holding %q: not the name the rule gives", name, content)
		}
		names += string(content)
	}
	if names != "1\n2\n" && names != "2\n1\n" {
		t.Errorf("render wrote the outputs %q, want both frames'", names)
	}
}

var recordedName = regexp.MustCompile(`msg="server name recorded: [^"]*" name=([a-z0-9-]+)`)

// TestServerNameRecorded: the first start on a data directory records a name
// of its own (not "local"); restarts keep it, with or without --name; a
// different --name is refused, exit 2, with a message saying what to do;
// another data directory gets another name.
func TestServerNameRecorded(t *testing.T) {
	data := t.TempDir()
	p, url := serve(t, "--data", data, "--workers", "0")
	m := recordedName.FindStringSubmatch(p.log.String())
	if m == nil {
		t.Fatalf("no name recorded at the first start:\n%s", p.log)
	}
	name := m[1]
	if name == "local" || !regexp.MustCompile(`^[a-z0-9][a-z0-9-]*-[a-z0-9]{4}$`).MatchString(name) {
		t.Fatalf("default name %q: want the host name and a random suffix", name)
	}
	if got := serverName(t, url); got != name {
		t.Fatalf("GET /v1/server names %q, the log %q", got, name)
	}
	jobURL := strings.TrimSpace(run(t, 0, "submit", writeJob(t, sameName, nil), "--server", url))
	if jobURL != "distren://"+name+"/1" {
		t.Fatalf("job URL %q, want distren://%s/1", jobURL, name)
	}
	p.kill()

	errOut := runStderr(t, 2, "serve", "--data", data, "--name", "other", "--listen", "127.0.0.1:0", "--workers", "0")
	for _, want := range []string{"--name other", `its server is "` + name + `"`, "Start it with --name " + name + ", or without --name", "a data directory of its own"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("serve --name other on %s's data directory: the message does not say %q:\n%s", name, want, errOut)
		}
	}
	for _, args := range [][]string{{}, {"--name", name}} {
		p, url := serve(t, append([]string{"--data", data, "--workers", "0"}, args...)...)
		if got := serverName(t, url); got != name {
			t.Errorf("restart with %v: the server is %q, want %q", args, got, name)
		}
		if j, _ := status(t, url, "1"); j.URL != jobURL {
			t.Errorf("restart with %v: the job is %s, want %s", args, j.URL, jobURL)
		}
		p.kill()
	}

	other, url2 := serve(t, "--data", t.TempDir(), "--workers", "0")
	if got := serverName(t, url2); got == name || !strings.HasPrefix(got, strings.TrimSuffix(name, name[len(name)-5:])) {
		t.Errorf("another data directory's server is %q; want a name of its own, of the same host (%s)", got, name)
	}
	other.kill()

	// --name given at the first start is kept exactly.
	named := t.TempDir()
	p, url = serve(t, "--data", named, "--name", "farm-a", "--workers", "0")
	if got := serverName(t, url); got != "farm-a" {
		t.Errorf("--name farm-a: the server is %q", got)
	}
	p.kill()
	p, url = serve(t, "--data", named, "--workers", "0")
	if got := serverName(t, url); got != "farm-a" {
		t.Errorf("restart without --name: the server is %q, want farm-a", got)
	}
	p.kill()
}

func serverName(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(url + "/v1/server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s api.Server
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s.Name
}
