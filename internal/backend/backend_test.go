package backend

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/raster"
)

func spec(t *testing.T, backend string) *manifest.Backend {
	t.Helper()
	doc := `<distrenjob version="1"><name>t</name>
` + backend + `
<frames><frame id="1"/></frames><outputs><output>*</output></outputs></distrenjob>`
	m, err := manifest.Parse(strings.NewReader(doc), manifest.FileName, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &m.Backend
}

func TestExpand(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                  "plain",
		"f{frame}":               "f7",
		"f{frame:4}.png":         "f0007.png",
		"{job}/{dir}":            "12//scratch",
		"awk '{{print $1}'":      "awk '{print $1}'",
		"{{frame}":               "{frame}",
		"{frame}{frame:2}{job}x": "70712x",
	} {
		got, err := Expand(in, 12, 7, "/scratch")
		if err != nil || got != want {
			t.Errorf("Expand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"{fram}", "{frame:0}", "{frame:x}", "{frame", "a{b}c"} {
		if _, err := Expand(bad, 1, 1, "."); err == nil {
			t.Errorf("Expand(%q) accepted", bad)
		}
	}
}

func TestCheckManifestNamesLineAndKnownBackends(t *testing.T) {
	doc := `<distrenjob version="1"><name>t</name><backend name="builtin"><width>0</width></backend>
<frames><frame id="1"><backend name="maya"/></frame>
<frame id="2"><backend name="command"><arg>x</arg></backend></frame></frames><outputs><output>*</output></outputs></distrenjob>`
	m, err := manifest.Parse(strings.NewReader(doc), manifest.FileName, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = Default().CheckManifest(m)
	for _, want := range []string{
		"distrenjob.xml:1: <backend>: width 0: must be 1..8192",
		`distrenjob.xml:2: <backend>: unknown backend "maya" (this server has: blender, builtin, command, ffmpeg, povray)`,
		"distrenjob.xml:3: <program>: backend command needs a <program>",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\ndoes not contain %q", err, want)
		}
	}
}

func TestBuiltinCheck(t *testing.T) {
	for _, c := range []struct{ backend, want string }{
		{`<backend name="builtin"><widht>3</widht></backend>`, "<widht>: unknown element for backend builtin"},
		{`<backend name="builtin"><width>x</width></backend>`, `<width>: "x" is not a whole number`},
		{`<backend name="builtin"><scene>teapot</scene></backend>`, `scene "teapot": unknown`},
		{`<backend name="builtin"><mode>blur</mode></backend>`, `unknown mode "blur"`},
		{`<backend name="builtin"><output>../x.png</output></backend>`, "must be a plain file name"},
		{`<backend name="builtin"><output>{dir}x.png</output></backend>`, "must be a plain file name"},
		{`<backend name="builtin"><output>{frme}.png</output></backend>`, "unknown substitution {frme}"},
	} {
		err := Builtin{}.Check(spec(t, c.backend))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "distrenjob.xml:2:") {
			t.Errorf("%s: error %v, want %q on line 2", c.backend, err, c.want)
		}
	}
}

func TestBuiltinRendersWhatRasterDraws(t *testing.T) {
	dir := t.TempDir()
	s := spec(t, `<backend name="builtin"><scene>clock</scene><width>40</width><height>30</height><samples>2</samples><cycle>12</cycle><output>c-{frame:3}.png</output></backend>`)
	if err := (Builtin{}).Render(context.Background(), &Task{Job: 1, Frames: []int64{5}, Dir: dir, Spec: s, Stderr: os.Stderr}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "c-005.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	want, err := raster.Render(raster.Params{Scene: "clock", Width: 40, Height: 30, Samples: 2, Cycle: 12}, 5)
	if err != nil {
		t.Fatal(err)
	}
	var gb, wb bytes.Buffer
	raster.EncodePNG(&gb, got)
	raster.EncodePNG(&wb, want)
	if !bytes.Equal(gb.Bytes(), wb.Bytes()) {
		t.Error("the PNG written differs from raster.Render's image")
	}
}

func TestCommandRunsWithSubstitutions(t *testing.T) {
	dir := t.TempDir()
	s := spec(t, `<backend name="command"><program>sh</program><arg>-c</arg><arg>echo {job} {frame:3} $DISTREN_FRAME > out.txt; echo oops >&amp;2; exit 3</arg></backend>`)
	var stderr bytes.Buffer
	err := Command{}.Render(context.Background(), &Task{Job: 4, Frames: []int64{9}, Dir: dir, Home: t.TempDir(), Spec: s, Stderr: &stderr})
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("error %v, want exit status 3", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "out.txt")); string(b) != "4 009 9\n" {
		t.Errorf("out.txt = %q", b)
	}
	if stderr.String() != "oops\n" {
		t.Errorf("stderr = %q", stderr.String())
	}
}

// TestCancelKillsProcessGroup checks that ending the context kills the
// renderer's children too, not only the program distren started.
func TestCancelKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	s := spec(t, `<backend name="command"><program>sh</program><arg>-c</arg><arg>sleep 300 &amp; echo $! > child.pid; wait</arg></backend>`)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Command{}.Render(ctx, &Task{Job: 1, Frames: []int64{1}, Dir: dir, Home: t.TempDir(), Spec: s, Stderr: os.Stderr})
	}()
	var pid int
	for pid == 0 {
		select {
		case err := <-done:
			t.Fatalf("render ended early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		b, _ := os.ReadFile(filepath.Join(dir, "child.pid"))
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("render returned %v, want context.Canceled", err)
	}
	// The child was SIGKILLed with its group; once reaped by init it is gone.
	for range 500 {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && strings.Contains(string(b), ") Z ") {
			return // killed, a zombie waiting for its reaper
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("the renderer's child %d still runs after cancel", pid)
}

// TestCommandPolicy: refuse removes the backend; an allow-list runs the
// programs listed, by name or by absolute path, and refuses the others
// without running them; bad policies are refused with a message.
func TestCommandPolicy(t *testing.T) {
	if r, err := CommandPolicy(Default(), CommandRefuse, nil); err != nil || r.Known("command") {
		t.Errorf("refuse: %v, command still known: %v", err, r.Known("command"))
	}
	if r, err := CommandPolicy(Default(), CommandAny, nil); err != nil || !r.Known("command") {
		t.Errorf("any: %v", err)
	}
	for _, bad := range []struct {
		policy string
		allow  []string
	}{{CommandAllowList, nil}, {CommandRefuse, []string{"sh"}}, {"some", nil}} {
		if _, err := CommandPolicy(Default(), bad.policy, bad.allow); err == nil || !strings.Contains(err.Error(), "policy") {
			t.Errorf("CommandPolicy(%q, %v) = %v, want an error naming the policy", bad.policy, bad.allow, err)
		}
	}
	touch, err := exec.LookPath("touch")
	if err != nil {
		t.Fatal(err)
	}
	r, err := CommandPolicy(Default(), CommandAllowList, []string{"sh", touch})
	if err != nil {
		t.Fatal(err)
	}
	cmd := r["command"]
	run := func(prog string) (bool, error) {
		dir := t.TempDir()
		s := spec(t, `<backend name="command"><program>`+prog+`</program><arg>ran</arg></backend>`)
		if prog == "sh" {
			s = spec(t, `<backend name="command"><program>sh</program><arg>-c</arg><arg>touch ran</arg></backend>`)
		}
		err := cmd.Render(context.Background(), &Task{Job: 1, Frames: []int64{1}, Dir: dir, Home: t.TempDir(), Spec: s, Stderr: io.Discard})
		_, statErr := os.Stat(filepath.Join(dir, "ran"))
		return statErr == nil, err
	}
	for prog, want := range map[string]bool{"sh": true, "touch": true, touch: true, "mkdir": false, "/usr/bin/../bin/mkdir": false} {
		ran, err := run(prog)
		if ran != want || (err == nil) != want {
			t.Errorf("program %s: ran %v, error %v; want allowed %v", prog, ran, err, want)
		}
		if !want && (err == nil || !strings.Contains(err.Error(), "not allowed on this worker") || !strings.Contains(err.Error(), prog)) {
			t.Errorf("refusal of %s reads %v", prog, err)
		}
	}
}
