package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distren/distren/internal/api"
)

// decodeStrict decodes one line of --json output into v, refusing fields v
// does not have: the output is exactly the wire type.
func decodeStrict(t *testing.T, what, line string, v any) {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(line))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, line)
	}
}

// jsonLines splits --json output into its lines, requiring n of them.
func jsonLines(t *testing.T, what, out string, n int) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != n || out == "" {
		t.Fatalf("%s printed %d lines, want %d:\n%s", what, len(lines), n, out)
	}
	return lines
}

// TestJSONOutputs: the verbs that print state print the API's wire types
// with --json: submit (with --wait, then the job as it ended, also when it
// failed, exiting 3), cancel and retry (api.Changed), gc (api.GCResult),
// version, validate and vault check.
func TestJSONOutputs(t *testing.T) {
	data := t.TempDir()
	srv, url := serve(t, "--data", data, "--name", "js", "--workers", "2")

	var v struct {
		Version string `json:"version"`
	}
	decodeStrict(t, "version --json", run(t, 0, "version", "--json"), &v)
	if plain := strings.TrimSpace(run(t, 0, "version")); v.Version == "" || plain != "distren "+v.Version {
		t.Errorf("version --json says %q, version says %q", v.Version, plain)
	}

	good := writeJob(t, `<distrenjob version="1"><name>three</name>
<backend name="builtin"><width>8</width><height>8</height><samples>1</samples><output>f-{frame}.png</output></backend>
<frames><range first="1" last="3"/></frames><outputs><output>*.png</output></outputs></distrenjob>`, nil)
	randomFile(t, filepath.Join(good, "texture.bin"), 3<<20) // objects of their own in the vault, not in packs
	var val struct {
		Package  string   `json:"package"`
		Name     string   `json:"name"`
		Frames   int      `json:"frames"`
		Backends []string `json:"backends"`
		Files    int      `json:"files"`
	}
	decodeStrict(t, "validate --json", run(t, 0, "validate", good, "--json"), &val)
	if val.Package != good || val.Name != "three" || val.Frames != 3 || len(val.Backends) != 1 || val.Backends[0] != "builtin" || val.Files != 2 {
		t.Errorf("validate --json: %+v", val)
	}
	if out, _ := run2(t, 5, "validate", writeJob(t, `<distrenjob version="1"><name>x</name>`, nil), "--json"); out != "" {
		t.Errorf("validate --json of an invalid package printed %q", out)
	}

	// submit --json prints the server's answer instead of the URL; the
	// line saying what was sent stays on stderr.
	out, errOut := run2(t, 0, "submit", good, "--json", "--server", url)
	var sub api.Submitted
	decodeStrict(t, "submit --json", jsonLines(t, "submit --json", out, 1)[0], &sub)
	if sub.ID != 1 || sub.URL != "distren://js/1" || sub.Name != "three" || sub.Frames != 3 {
		t.Errorf("submit --json: %+v", sub)
	}
	if !strings.HasPrefix(errOut, "sent ") {
		t.Errorf("submit --json wrote %q on stderr, want the line saying what was sent", errOut)
	}

	// With --wait, a second line: the job as it ended.
	lines := jsonLines(t, "submit --json --wait", run(t, 0, "submit", good, "--json", "--wait", "-q", "--server", url), 2)
	var job api.Job
	decodeStrict(t, "submit --json --wait", lines[0], &sub)
	decodeStrict(t, "submit --json --wait", lines[1], &job)
	if sub.ID != 2 || job.ID != 2 || job.State != api.JobDone || job.Counts[api.StateDone] != 3 {
		t.Errorf("submit --json --wait: %+v then %+v", sub, job)
	}

	// A job that fails: still the job as it ended, and exit 3.
	failing := writeJob(t, `<distrenjob version="1"><name>bad</name><retries>0</retries>
<backend name="command"><program>sh</program><arg>-c</arg><arg>exit 3</arg></backend>
<frames><frame id="1"/></frames><outputs><output>*.png</output></outputs></distrenjob>`, nil)
	out, errOut = run2(t, 3, "submit", failing, "--json", "--wait", "-q", "--server", url)
	lines = jsonLines(t, "submit --json --wait of a failing job", out, 2)
	decodeStrict(t, "submit --json --wait of a failing job", lines[1], &job)
	if job.ID != 3 || job.State != api.JobFailed || job.Error == "" || !strings.Contains(errOut, "failed") {
		t.Errorf("a failing job: %+v; stderr %q", job, errOut)
	}

	// retry --json: the frames queued again.
	var ch api.Changed
	decodeStrict(t, "retry --json", run(t, 0, "retry", "3", "--json", "--server", url), &ch)
	if ch.Frames != 1 {
		t.Errorf("retry --json of a job of one failed frame: %+v", ch)
	}

	// cancel --json: the frames stopped.
	slow := writeJob(t, `<distrenjob version="1"><name>slow</name>
<backend name="command"><program>sleep</program><arg>120</arg></backend>
<frames><range first="1" last="3"/></frames><outputs><output>*.png</output></outputs></distrenjob>`, nil)
	randomFile(t, filepath.Join(slow, "own.bin"), 1<<20) // chunks no other job has
	decodeStrict(t, "submit --json", run(t, 0, "submit", slow, "--json", "-q", "--server", url), &sub)
	decodeStrict(t, "cancel --json", run(t, 0, "cancel", sub.URL, "--json", "--server", url), &ch)
	if ch.Frames != 3 {
		t.Errorf("cancel --json of a job of 3 unfinished frames: %+v", ch)
	}
	if plain := run(t, 0, "cancel", sub.URL, "--server", url); plain != "job 4 canceled: 0 frames stopped\n" {
		t.Errorf("cancel again, without --json: %q", plain)
	}

	// gc --json: the server's answer. The deleted job's own objects are
	// recent: kept, not removed (--gc-grace).
	run(t, 0, "delete", sub.URL, "--server", url)
	var gc api.GCResult
	decodeStrict(t, "gc --json", run(t, 0, "gc", "--json", "--server", url), &gc)
	if gc.Kept == 0 || gc.Objects != 0 || gc.JobsDeleted != 0 {
		t.Errorf("gc --json after deleting a job: %+v, want its objects kept as recent, nothing removed", gc)
	}
	if plain := run(t, 0, "gc", "--server", url); plain != fmt.Sprintf("removed 0 objects (0 B), kept %d recent unreferenced ones; 0 jobs deleted by retention\n", gc.Kept) {
		t.Errorf("gc again, without --json: %q; --json said %+v", plain, gc)
	}

	// vault check --json, of the stopped server's data directory.
	srv.kill()
	type damage struct {
		Object string `json:"object"`
		Where  string `json:"where"`
		Msg    string `json:"msg"`
	}
	var chk struct {
		Objects int      `json:"objects"`
		Bytes   int64    `json:"bytes"`
		Damaged int      `json:"damaged"`
		Damages []damage `json:"damages"`
	}
	decodeStrict(t, "vault check --json", run(t, 0, "vault", "check", "--data", data, "--json"), &chk)
	if chk.Objects == 0 || chk.Bytes == 0 || chk.Damaged != 0 || chk.Damages == nil || len(chk.Damages) != 0 {
		t.Errorf("vault check --json of a sound vault: %+v", chk)
	}
	var victim string
	filepath.WalkDir(filepath.Join(data, "vault", "objects"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && victim == "" {
			victim = p
		}
		return nil
	})
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out = run(t, 6, "vault", "check", "--data", data, "--json")
	decodeStrict(t, "vault check --json of a damaged vault", out, &chk)
	if chk.Damaged != 1 || len(chk.Damages) != 1 || chk.Damages[0].Object != filepath.Base(victim) || bytes.Contains([]byte(out), []byte("DAMAGED")) {
		t.Errorf("vault check --json after flipping a byte of %s: %s", filepath.Base(victim), out)
	}
}
