package backend

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distren/distren/internal/imgcmp"
)

func TestPOVRayCheck(t *testing.T) {
	for _, c := range []struct{ xml, want string }{
		{`<scene>a.pov</scene><ini>a.ini</ini><width>64</width><height>48</height><antialias>0.3</antialias>`, ""},
		{`<scene>a.pov</scene><antialias>off</antialias>`, ""},
		{`<ini>a.ini</ini>`, "<scene>"},
		{`<scene>/etc/a.pov</scene>`, "not a relative path"},
		{`<scene>../a.pov</scene>`, "not a relative path"},
		{`<scene>a.txt</scene>`, "not a .pov file"},
		{`<scene>a b.pov</scene>`, "spaces"},
		{`<scene>a.pov</scene><ini>a.pov</ini>`, "not a .ini file"},
		{`<scene>a.pov</scene><width>0</width>`, "<width>"},
		{`<scene>a.pov</scene><antialias>lots</antialias>`, "<antialias>"},
		{`<scene>a.pov</scene>
<options>+L/etc</options>`, "distrenjob.xml:3: <options>: unknown element"},
		{`<scene>a.pov</scene><scene>b.pov</scene>`, "more than one <scene>"},
	} {
		err := POVRay{}.Check(spec(t, `<backend name="povray">`+c.xml+`</backend>`))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.xml, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one mentioning %q", c.xml, err, c.want)
		}
	}
}

// TestPOVRayOutput feeds recorded POV-Ray console output to the parser.
func TestPOVRayOutput(t *testing.T) {
	task := &Task{Frames: []int64{7, 8, 9}, Dir: t.TempDir()}
	for _, n := range []string{"orbit07.png", "orbit08.png"} {
		os.WriteFile(filepath.Join(task.Dir, n), []byte("png"), 0o644)
	}
	o := &povOutput{t: task}
	rec := newRecorder()
	for _, l := range []string{
		"Rendering frame 1 of 3", "Rendering frame 1 of 3",
		"  Output file..........orbit07.png, 24 bpp PNG",
		"Rendered 1024 of 4096 pixels (25%)", "Rendered 4096 of 4096 pixels (100%)",
		"Rendering frame 2 of 3", "  Output file..........orbit08.png, 24 bpp PNG",
		"Rendered 2048 of 4096 pixels (50%)",
		"Rendering frame 3 of 3", "  Output file..........orbit09.png, 24 bpp PNG",
		"File 'orbit.pov' line 12: Parse Error: Expected 'object', undeclared identifier 'Gld' found",
		" instead",
		"Fatal error in parser: Cannot parse input.", "Render failed",
	} {
		o.Line(l, rec)
	}
	err := o.Finish(errors.New("exit status 1"), rec)
	if fmt.Sprint(rec.order) != "[7 8]" || rec.done[7][0] != "orbit07.png" || rec.done[8][0] != "orbit08.png" {
		t.Errorf("frames done %v (%v), want 7 and 8 with their images", rec.order, rec.done)
	}
	if p := rec.progress[7]; len(p) != 2 || p[0] != 0.25 || p[1] != 1 {
		t.Errorf("progress of frame 7: %v", p)
	}
	if !IsJobError(err) || !strings.Contains(err.Error(), "frame 9") || !strings.Contains(err.Error(), "'Gld' found instead") {
		t.Errorf("error %v: want a job error naming frame 9 and the parse error", err)
	}
}

// TestPOVRayErrorThenExitZero: POV-Ray sometimes reports a refused file as
// a parse error, renders anyway and exits 0; the frame still fails.
func TestPOVRayErrorThenExitZero(t *testing.T) {
	task := &Task{Frames: []int64{1}, Dir: t.TempDir()}
	os.WriteFile(filepath.Join(task.Dir, "evil.png"), []byte("png"), 0o644)
	o := &povOutput{t: task}
	rec := newRecorder()
	for _, l := range []string{
		"  Output file..........evil.png, 24 bpp PNG",
		"File 'evil.pov' line 1: Possible Parse Error: Cannot find file '/etc/passwd',",
		" even after trying to append file type extension.",
		"File 'evil.pov' line 1: Parse Error: Cannot open user file /etc/passwd (read).",
		"Rendered 256 of 256 pixels (100%)",
	} {
		o.Line(l, rec)
	}
	err := o.Finish(nil, rec)
	if len(rec.order) != 0 || !IsJobError(err) || !strings.Contains(err.Error(), "/etc/passwd") {
		t.Errorf("frames done %v, error %v: want the frame failed as the job's fault", rec.order, err)
	}
}

// povTask is a task on the example animation, its files in the scratch directory.
func povTask(t *testing.T, xml string, frames ...int64) *Task {
	t.Helper()
	task := newTask(t, `<backend name="povray">`+xml+`</backend>`, frames...)
	for _, n := range []string{"orbit.pov", "orbit.ini"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "povray", n))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(task.Dir, n), b, 0o644)
	}
	return task
}

func decodePNG(t *testing.T, p string) image.Image {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return img
}

// TestPOVRayRendersAsPOVRayDoes renders frames 5-7 as one chunk and frame 9
// alone, small, and compares each with `povray orbit.ini` run by hand.
func TestPOVRayRendersAsPOVRayDoes(t *testing.T) {
	needRenderer(t, Exec(POVRay{}))
	size := `<width>64</width><height>36</height>`
	direct := povTask(t, "")
	cmd := exec.Command("povray", "orbit.ini", "-D", "+W64", "+H36", "+SF5", "+EF9")
	cmd.Dir, cmd.Env = direct.Dir, append(os.Environ(), "HOME="+direct.Home)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("povray by hand: %v\n%s", err, out)
	}
	chunk := povTask(t, `<scene>orbit.pov</scene><ini>orbit.ini</ini>`+size, 5, 6, 7)
	one := povTask(t, `<scene>orbit.pov</scene><ini>orbit.ini</ini>`+size, 9)
	for _, task := range []*Task{chunk, one} {
		if err := Exec(POVRay{}).Render(context.Background(), task); err != nil {
			t.Fatalf("frames %v: %v", task.Frames, err)
		}
		rec := task.Events.(*recorder)
		for _, f := range task.Frames {
			files := rec.done[f]
			if len(files) != 1 {
				t.Fatalf("frame %d: files %v", f, files)
			}
			want := fmt.Sprintf("orbit%02d.png", f)
			if files[0] != want {
				t.Errorf("frame %d: output %s, want %s", f, files[0], want)
			}
			if d := imgcmp.Diff(decodePNG(t, filepath.Join(task.Dir, files[0])), decodePNG(t, filepath.Join(direct.Dir, want))); d != "" {
				t.Errorf("frame %d differs from povray's own: %s", f, d)
			}
			if p := rec.progress[f]; len(p) == 0 || p[len(p)-1] != 1 {
				t.Errorf("frame %d: progress %v does not reach 1", f, p)
			}
		}
	}
}

// TestPOVRaySceneIsConfined runs scenes that read /etc/passwd, read a file
// beside the scratch directory, and write outside it: each fails, and
// nothing is written.
func TestPOVRaySceneIsConfined(t *testing.T) {
	needRenderer(t, Exec(POVRay{}))
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.inc")
	os.WriteFile(secret, []byte("#declare Secret = 42;\n"), 0o644)
	escape := filepath.Join(outside, "escaped.txt")
	for name, body := range map[string]string{
		"control: read and write inside": `#fopen F "mine.txt" write #write (F, "1,") #fclose F #fopen F "mine.txt" read #read (F, S)`,
		"read /etc/passwd":               `#fopen F "/etc/passwd" read #read (F, S)`,
		"include outside":                `#include "` + secret + `"`,
		"write outside":                  `#fopen F "` + escape + `" write #write (F, "x") #fclose F`,
		"write via relative":             `#fopen F "../` + filepath.Base(outside) + `/escaped.txt" write #write (F, "x") #fclose F`,
	} {
		t.Run(name, func(t *testing.T) {
			task := newTask(t, `<backend name="povray"><scene>evil.pov</scene><width>16</width><height>16</height></backend>`, 1)
			// The scratch directory must sit beside outside for the relative escape.
			task.Dir = filepath.Join(filepath.Dir(outside), "scratch-"+strings.ReplaceAll(name, " ", "-"))
			os.MkdirAll(task.Dir, 0o755)
			defer os.RemoveAll(task.Dir)
			os.WriteFile(filepath.Join(task.Dir, "evil.pov"), []byte(body+"\ncamera { location -3*z look_at 0 } sphere { 0, 1 pigment { rgb 1 } }\n"), 0o644)
			err := Exec(POVRay{}).Render(context.Background(), task)
			if strings.HasPrefix(name, "control") {
				if err != nil {
					t.Fatalf("a scene using its own directory failed: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("the scene rendered")
			}
			if strings.Contains(err.Error(), "root:") {
				t.Errorf("the error shows /etc/passwd: %v", err)
			}
			if _, serr := os.Stat(escape); serr == nil {
				t.Fatal("a file was written outside the scratch directory")
			}
			t.Logf("refused: %v", err)
		})
	}
}

func TestPOVRayStillWithoutIni(t *testing.T) {
	needRenderer(t, Exec(POVRay{}))
	task := povTask(t, `<scene>orbit.pov</scene><width>32</width><height>18</height><antialias>off</antialias>`, 3)
	if err := Exec(POVRay{}).Render(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	files := task.Events.(*recorder).done[3]
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	if b := decodePNG(t, filepath.Join(task.Dir, files[0])).Bounds(); b.Dx() != 32 || b.Dy() != 18 {
		t.Errorf("size %v", b)
	}
}

func TestParsePOVRayIni(t *testing.T) {
	a, err := ParsePOVRayIni(strings.NewReader(`; an animation
Input_File_Name="clock.pov"
Initial_Frame = 10 ; first
Final_Frame=57
+KI0.5 +KF2
Width=640
`), "clock.ini")
	if err != nil {
		t.Fatal(err)
	}
	if a.Scene != "clock.pov" || a.InitialFrame != 10 || a.FinalFrame != 57 || a.InitialClock != 0.5 || a.FinalClock != 2 || a.Width != 640 || !a.HasFrames {
		t.Errorf("%+v", a)
	}
	a, err = ParsePOVRayIni(strings.NewReader("+KFI3 +KFF9 +Iscene.pov\n"), "x.ini")
	if err != nil || a.InitialFrame != 3 || a.FinalFrame != 9 || a.Scene != "scene.pov" {
		t.Errorf("switches: %+v, %v", a, err)
	}
	for in, want := range map[string]string{
		"Initial_Frame=1\nFinal_Frame=ten\n": "x.ini:2: Final_Frame",
		"Initial_Frame=9\nFinal_Frame=3\n":   "before Initial_Frame",
		"Initial_Frame=-2\nFinal_Frame=3\n":  "not negative",
	} {
		if _, err := ParsePOVRayIni(strings.NewReader(in), "x.ini"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
	}
}
