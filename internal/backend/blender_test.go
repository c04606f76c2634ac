package backend

import (
	"context"
	"errors"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/distren/distren/internal/manifest"
)

func TestBlenderCheck(t *testing.T) {
	good := `<backend name="blender">
  <blendfile>shots/a.blend</blendfile>
  <engine>BLENDER_EEVEE</engine>
  <samples>16</samples>
  <format>OPEN_EXR</format>
  <width>640</width>
  <height>360</height>
  <threads>0</threads>
  <output>shot-a-</output>
</backend>`
	if err := (Blender{}).Check(spec(t, good)); err != nil {
		t.Errorf("good spec: %v", err)
	}
	if err := (Blender{}).Check(spec(t, `<backend name="blender"><blendfile>scene.blend</blendfile></backend>`)); err != nil {
		t.Errorf("minimal spec: %v", err)
	}
	for _, c := range []struct{ backend, want string }{
		{"<backend name=\"blender\">\n<engine>CYCLES</engine></backend>", "distrenjob.xml:2: <blendfile>: backend blender needs a <blendfile>"},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile>\n<blendfil>b.blend</blendfil></backend>", "distrenjob.xml:3: <blendfil>: unknown element for backend blender"},
		{"<backend name=\"blender\">\n<blendfile>/etc/a.blend</blendfile></backend>", "distrenjob.xml:3: <blendfile>: blendfile \"/etc/a.blend\": absolute path"},
		{"<backend name=\"blender\">\n<blendfile>x/../../a.blend</blendfile></backend>", "distrenjob.xml:3: <blendfile>: blendfile \"x/../../a.blend\": path contains .."},
		{"<backend name=\"blender\">\n<blendfile>a\\b.blend</blendfile></backend>", "distrenjob.xml:3: <blendfile>: blendfile \"a\\\\b.blend\": backslash"},
		{"<backend name=\"blender\">\n<blendfile></blendfile></backend>", "distrenjob.xml:3: <blendfile>: backend blender needs a <blendfile>"},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile>\n<blendfile>b.blend</blendfile></backend>", "distrenjob.xml:3: <blendfile>: <blendfile> given twice (first on line 2)"},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile>\n<engine>cycles</engine></backend>", `distrenjob.xml:3: <engine>: unknown engine "cycles" (CYCLES, BLENDER_EEVEE, BLENDER_WORKBENCH; write CYCLES, in capitals)`},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile>\n<engine>LUXCORE</engine></backend>", `distrenjob.xml:3: <engine>: unknown engine "LUXCORE"`},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile>\n<samples>0</samples></backend>", `distrenjob.xml:3: <samples>: samples "0" is not a whole number in 1..65536`},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile>\n<samples>65537</samples></backend>", `distrenjob.xml:3: <samples>: samples "65537" is not a whole number in 1..65536`},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile><engine>BLENDER_WORKBENCH</engine>\n<samples>8</samples></backend>", "distrenjob.xml:3: <samples>: samples apply to CYCLES and BLENDER_EEVEE, not to BLENDER_WORKBENCH"},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile>\n<format>AVI_JPEG</format></backend>", `distrenjob.xml:3: <format>: unknown format "AVI_JPEG" (PNG, JPEG, OPEN_EXR, TIFF)`},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile>\n<width>wide</width></backend>", `distrenjob.xml:3: <width>: width "wide" is not a whole number in 1..16384`},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile>\n<height>16385</height></backend>", `distrenjob.xml:3: <height>: height "16385" is not a whole number in 1..16384`},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile>\n<threads>-1</threads></backend>", `distrenjob.xml:3: <threads>: threads "-1" is not a whole number in 0..1024`},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile>\n<output>../frame-</output></backend>", "distrenjob.xml:3: <output>: output \"../frame-\": must be a plain file name prefix"},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile>\n<output>out/frame-</output></backend>", "distrenjob.xml:3: <output>: output \"out/frame-\": must be a plain file name prefix"},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile>\n<output>f-####</output></backend>", "distrenjob.xml:3: <output>: output \"f-####\": must not contain #"},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile>\n<output></output></backend>", "distrenjob.xml:3: <output>: output \"\": empty"},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile>\n<width unit=\"px\">3</width></backend>", "distrenjob.xml:3: <width>: unexpected attribute unit"},
		{"<backend name=\"blender\"><blendfile>a.blend</blendfile><engine>\n<name>CYCLES</name></engine></backend>", "distrenjob.xml:3: <engine>: unexpected element <name>"},
	} {
		err := (Blender{}).Check(spec(t, c.backend))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\nerror %v\nwant %q", c.backend, err, c.want)
		}
	}
	// Every problem is reported at once.
	err := (Blender{}).Check(spec(t, "<backend name=\"blender\">\n<samples>x</samples>\n<format>GIF</format></backend>"))
	for _, want := range []string{"<blendfile>", "<samples>", "<format>"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestBlenderCommand(t *testing.T) {
	for _, c := range []struct {
		name    string
		backend string
		frames  []int64
		want    []string // the arguments after the script, in order
		script  []string // lines the settings script must hold
		absent  []string // lines it must not hold
	}{
		{
			name:    "one frame, defaults",
			backend: `<backend name="blender"><blendfile>scene.blend</blendfile></backend>`,
			frames:  []int64{7},
			want:    []string{"-E", "CYCLES", "-o", "DIR/frame-####", "-F", "PNG", "-x", "1", "-f", "7"},
			script:  []string{"scene.render.use_overwrite = True"},
			absent:  []string{"resolution", "samples"},
		},
		{
			name: "chunk with overrides",
			backend: `<backend name="blender"><blendfile>sub/scene.blend</blendfile><engine>BLENDER_EEVEE</engine><samples>8</samples>
				<format>JPEG</format><width>64</width><height>36</height><threads>2</threads><output>shot-</output></backend>`,
			frames: []int64{3, 4, 5},
			want:   []string{"-E", "BLENDER_EEVEE", "-o", "DIR/shot-####", "-F", "JPEG", "-x", "1", "-t", "2", "-s", "3", "-e", "5", "-j", "1", "-a"},
			script: []string{"scene.render.resolution_x = 64", "scene.render.resolution_y = 36",
				"scene.render.resolution_percentage = 100", "scene.eevee.taa_render_samples = 8"},
			absent: []string{"cycles"},
		},
		{
			name:    "cycles samples",
			backend: `<backend name="blender"><blendfile>scene.blend</blendfile><samples>2</samples></backend>`,
			frames:  []int64{1},
			want:    []string{"-E", "CYCLES", "-o", "DIR/frame-####", "-F", "PNG", "-x", "1", "-f", "1"},
			script:  []string{"scene.cycles.samples = 2"},
			absent:  []string{"eevee", "resolution"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			task := newTask(t, c.backend, c.frames...)
			inv, err := (Blender{}).Command(task)
			if err != nil {
				t.Fatal(err)
			}
			if inv.Path != "blender" || inv.Sandbox != nil {
				t.Errorf("path %q, sandbox %v", inv.Path, inv.Sandbox)
			}
			bf, _, _ := task.Spec.Get("blendfile")
			script := filepath.Join(task.Home, blenderScript)
			head := []string{"-b", filepath.Join(task.Dir, bf), "-Y", "--python-exit-code", "1", "--python", script}
			var want []string
			for _, a := range c.want {
				want = append(want, strings.Replace(a, "DIR", task.Dir, 1))
			}
			if got := inv.Args; !slices.Equal(got, append(head, want...)) {
				t.Errorf("args\n%q\nwant\n%q", got, append(head, want...))
			}
			if slices.Contains(inv.Args, "--python-expr") {
				t.Error("--python-expr passed")
			}
			b, err := os.ReadFile(script)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(b), "\n")
			for _, s := range c.script {
				if !slices.Contains(lines, s) {
					t.Errorf("script lacks %q:\n%s", s, b)
				}
			}
			for _, s := range c.absent {
				if strings.Contains(string(b), s) {
					t.Errorf("script mentions %q:\n%s", s, b)
				}
			}
		})
	}
	task := newTask(t, `<backend name="blender"><blendfile>scene.blend</blendfile></backend>`, 1, 3)
	if _, err := (Blender{}).Command(task); err == nil || !strings.Contains(err.Error(), "consecutive") {
		t.Errorf("frames 1, 3: error %v, want one about consecutive frames", err)
	}
	task = newTask(t, `<backend name="blender"><blendfile>scene.blend</blendfile></backend>`, 1048575)
	if _, err := (Blender{}).Command(task); !IsJobError(err) || !strings.Contains(err.Error(), "1048574") {
		t.Errorf("frame 1048575: error %v, want a job error naming Blender's last frame", err)
	}
}

// Lines recorded from Blender 3.4.1 rendering examples/blender/scene.blend
// (the Fra: lines are shortened in the middle).
const (
	blFra1Sample0 = "Fra:1 Mem:9.64M (Peak 10.44M) | Time:00:00.03 | Mem:0.76M, Peak:0.76M | distren, ViewLayer | Sample 0/4"
	blFra1Sample1 = "Fra:1 Mem:9.87M (Peak 10.44M) | Time:00:00.04 | Remaining:00:00.02 | Mem:0.98M, Peak:0.98M | distren, ViewLayer | Sample 1/4"
	blFra1Sample4 = "Fra:1 Mem:10.09M (Peak 10.53M) | Time:00:00.05 | Mem:0.98M, Peak:0.98M | distren, ViewLayer | Sample 4/4"
	blFra1Done    = "Fra:1 Mem:10.09M (Peak 10.53M) | Time:00:00.05 | Mem:0.98M, Peak:0.98M | distren, ViewLayer | Finished"
	blTime        = " Time: 00:00.17 (Saving: 00:00.11)"
)

func blFra(frame, status string) string {
	return "Fra:" + frame + " Mem:9.14M (Peak 10.44M) | Time:00:00.04 | Mem:0.01M, Peak:0.01M | distren, ViewLayer | " + status
}

func blFeed(p OutputParser, ev Events, lines ...string) {
	for _, l := range lines {
		p.Line(l, ev)
	}
}

func TestBlenderParserChunk(t *testing.T) {
	dir := "/scratch/task"
	p := newBlenderParser(dir, "frame-", []int64{1, 2, 3})
	rec := newRecorder()
	blFeed(p, rec,
		"Blender 3.4.1",
		"Read blend: /scratch/task/scene.blend",
		blFra("1", "Synchronizing object | Cube"),
		blFra1Sample0, blFra1Sample1, blFra1Sample4, blFra1Done,
		"Saved: '/scratch/task/frame-0001.png'",
		blTime,
		blFra("2", "Sample 0/4"), blFra("2", "Sample 1/4"), blFra("2", "Sample 4/4"),
		"Saved: '/scratch/task/frame-0002.png'",
		blTime,
		blFra("3", "Sample 2/4"),
		"Saved: '/scratch/task/frame-0003.png'",
		blTime,
		"Blender quit",
	)
	if err := p.Finish(nil, rec); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rec.order, []int64{1, 2, 3}) {
		t.Errorf("frames done in order %v, want 1, 2, 3", rec.order)
	}
	for f, name := range map[int64]string{1: "frame-0001.png", 2: "frame-0002.png", 3: "frame-0003.png"} {
		if !slices.Equal(rec.done[f], []string{name}) {
			t.Errorf("frame %d: files %q, want %s", f, rec.done[f], name)
		}
	}
	if !slices.Equal(rec.progress[1], []float64{0, 0.25, 1}) || !slices.Equal(rec.progress[3], []float64{0.5}) {
		t.Errorf("progress %v", rec.progress)
	}
}

// A frame is reported done as soon as its files are written: the next frame
// failing does not lose it.
func TestBlenderParserReportsFrameBeforeTheNextStarts(t *testing.T) {
	p := newBlenderParser("/d", "frame-", []int64{1, 2})
	rec := newRecorder()
	blFeed(p, rec, blFra1Sample4, "Saved: '/d/frame-0001.png'", blTime)
	if !slices.Equal(rec.order, []int64{1}) {
		t.Fatalf("after frame 1's Time line, frames done %v", rec.order)
	}
	// Stereo renders save one file per view, then one Time line.
	p = newBlenderParser("/d", "frame-", []int64{1, 2})
	rec = newRecorder()
	blFeed(p, rec, "Saved: '/d/frame-0001_L.png'", "Saved: '/d/frame-0001_R.png'", blTime, blFra("2", "Sample 1/4"))
	if !slices.Equal(rec.order, []int64{1}) || !slices.Equal(rec.done[1], []string{"frame-0001_L.png", "frame-0001_R.png"}) {
		t.Errorf("stereo: done %v %v", rec.order, rec.done)
	}
}

func TestBlenderParserProgress(t *testing.T) {
	for status, want := range map[string]float64{
		"Sample 3/16":                          3.0 / 16,
		"Rendered 2/15 Tiles, Sample 1/4":      (2 + 0.25) / 15,
		"Rendered 14/15 Tiles, Sample 4/4":     1,
		"Rendering 26 / 64 samples":            26.0 / 64,
		"Sample 4/4, Denoising":                1,
		"Sample 1/0":                           -1,
		"Updating Scene BVH | Building BVH 0%": -1,
	} {
		got, ok := blenderProgress(status)
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("%q: %v, want %v", status, got, want)
		}
	}
	// Tile lines go back within a tile; the progress reported does not.
	p := newBlenderParser("/d", "frame-", []int64{1})
	rec := newRecorder()
	blFeed(p, rec,
		blFra("1", "Rendered 1/4 Tiles, Sample 4/4"),
		blFra("1", "Rendered 1/4 Tiles, Sample 1/4"),
		blFra("1", "Rendered 2/4 Tiles, Sample 4/4"),
		"Fra:1 Mem:10.77M (Peak 11.87M) | Time:00:04.56 | Rendering 26 / 64 samples",
	)
	if !slices.Equal(rec.progress[1], []float64{0.5, 0.75}) {
		t.Errorf("progress %v, want [0.5 0.75]", rec.progress[1])
	}
}

// Workbench prints no Fra: lines: the frame comes from the file name, or
// else from the task's frames in order.
func TestBlenderParserWithoutFraLines(t *testing.T) {
	p := newBlenderParser("/d", "frame-", []int64{4, 5})
	rec := newRecorder()
	blFeed(p, rec, "Saved: '/d/frame-0004.jpg'", blTime, "Saved: '/d/frame-0005.jpg'", blTime)
	if err := p.Finish(nil, rec); err != nil || !slices.Equal(rec.order, []int64{4, 5}) || rec.done[5][0] != "frame-0005.jpg" {
		t.Errorf("err %v, done %v %v", err, rec.order, rec.done)
	}
	p = newBlenderParser("/d", "frame-", []int64{4, 5})
	rec = newRecorder()
	blFeed(p, rec, "Saved: '/d/other.png'", blTime, "Saved: '/d/other2.png'", blTime)
	if err := p.Finish(nil, rec); err != nil || !slices.Equal(rec.order, []int64{4, 5}) {
		t.Errorf("err %v, done %v %v", err, rec.order, rec.done)
	}
	// A file outside the scratch directory is not an output.
	p = newBlenderParser("/d", "frame-", []int64{4})
	rec = newRecorder()
	blFeed(p, rec, "Saved: '/elsewhere/frame-0004.png'", blTime)
	if err := p.Finish(nil, rec); err == nil || len(rec.order) != 0 {
		t.Errorf("err %v, done %v", err, rec.order)
	}
}

func TestBlenderParserFinish(t *testing.T) {
	exit1 := errors.New("/usr/bin/blender: exit status 1")
	for _, c := range []struct {
		name   string
		frames []int64
		lines  []string
		exit   error
		want   string // "" for success
		job    bool
		done   []int64
	}{
		{
			name:   "all saved, crash at exit",
			frames: []int64{1},
			lines:  []string{blFra1Sample4, "Saved: '/d/frame-0001.png'", blTime},
			exit:   errors.New("signal: segmentation fault"),
			done:   []int64{1},
		},
		{
			name:   "status 0, nothing saved",
			frames: []int64{3},
			lines:  []string{blFra("3", "Sample 1/4"), "Blender quit"},
			want:   "Blender saved no file for frame 3 (it exited with status 0 and printed no error)",
		},
		{
			name:   "chunk stops after a write error",
			frames: []int64{1, 2, 3},
			lines: []string{blFra1Sample4, "Saved: '/d/frame-0001.png'", blTime, blFra("2", "Sample 4/4"),
				"imb_savepng: Cannot open file for writing: '/d/frame-0002.png'",
				"Error: Render error (No space left on device) cannot save: '/d/frame-0002.png'", blTime},
			exit: exit1,
			want: "Blender saved no file for frames 2, 3: Error: Render error (No space left on device) cannot save: '/d/frame-0002.png' (/usr/bin/blender: exit status 1)",
			done: []int64{1},
		},
		{
			name:   "not a blend file",
			frames: []int64{1},
			lines:  []string{"Blender 3.4.1", "Error: File format is not supported in file '/d/scene.blend'", "", "Blender quit"},
			exit:   exit1,
			want:   "Blender saved no file for frame 1: Error: File format is not supported in file '/d/scene.blend' (/usr/bin/blender: exit status 1)",
			job:    true,
		},
		{
			name:   "missing blend file",
			frames: []int64{1, 2, 3, 4, 5, 6, 7},
			lines:  []string{"Error: Cannot read file '/d/scene.blend': No such file or directory"},
			exit:   exit1,
			want:   "Blender saved no file for frames 1-7: Error: Cannot read file '/d/scene.blend': No such file or directory",
			job:    true,
		},
		{
			name:   "truncated blend file",
			frames: []int64{1},
			lines:  []string{"Read blend: /d/scene.blend", "Error: Failed to read blend file '/d/scene.blend': Missing DNA block"},
			exit:   exit1,
			want:   "Missing DNA block",
			job:    true,
		},
		{
			name:   "blend header, then garbage",
			frames: []int64{1},
			lines:  []string{"Read blend: /d/scene.blend", "Error: Failed to read blend file '/d/scene.blend', not a blend file"},
			exit:   exit1,
			want:   "Blender saved no file for frame 1: Error: Failed to read blend file '/d/scene.blend', not a blend file",
			job:    true,
		},
		{
			name:   "unknown engine",
			frames: []int64{1},
			lines:  []string{"Read blend: /d/scene.blend", "Error: engine not found 'FOO'"},
			exit:   exit1,
			want:   "Blender saved no file for frame 1: Error: engine not found 'FOO'",
			job:    true,
		},
		{
			name:   "no camera",
			frames: []int64{1},
			lines:  []string{"Error: Cannot render, no camera"},
			exit:   exit1,
			want:   "Error: Cannot render, no camera",
			job:    true,
		},
		{
			name:   "an error after rendering started does not blame the job",
			frames: []int64{1, 2},
			lines: []string{blFra1Sample4, "Saved: '/d/frame-0001.png'", blTime, blFra("2", "Sample 1/4"),
				"Error: Cannot read file '/d/tex/wood.png'", "Error: Cannot render, no camera"},
			exit: exit1,
			want: "Blender saved no file for frame 2: Error: Cannot render, no camera (/usr/bin/blender: exit status 1)",
			done: []int64{1},
		},
		{
			name:   "existing file skipped",
			frames: []int64{1},
			lines:  []string{`skipping existing frame "/d/frame-0001.png"`, "Info: No frames rendered, skipped to not overwrite"},
			want:   `Blender saved no file for frame 1: skipping existing frame "/d/frame-0001.png"`,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newBlenderParser("/d", "frame-", c.frames)
			rec := newRecorder()
			blFeed(p, rec, c.lines...)
			err := p.Finish(c.exit, rec)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("error %v\nwant %q", err, c.want)
			case c.want != "" && IsJobError(err) != c.job:
				t.Errorf("IsJobError(%v) = %v, want %v", err, !c.job, c.job)
			}
			if c.exit != nil && err != nil && !errors.Is(err, c.exit) {
				t.Errorf("error %v does not wrap the exit error", err)
			}
			if !slices.Equal(rec.order, c.done) {
				t.Errorf("frames done %v, want %v", rec.order, c.done)
			}
		})
	}
}

func TestBlenderFingerprint(t *testing.T) {
	fp := needRenderer(t, Exec(Blender{}))
	if !blenderVersionRe.MatchString("Blender " + fp.Version) {
		t.Errorf("version %q", fp.Version)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := (Blender{}).Fingerprint(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("without blender in PATH: %v, want ErrUnavailable", err)
	}
}

// blenderTask is a task rendering a copy of the example scene.
func blenderTask(t *testing.T, backendXML string, frames ...int64) (*Task, *recorder) {
	t.Helper()
	task := newTask(t, backendXML, frames...)
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "blender", "scene.blend"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(task.Dir, "scene.blend"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return task, task.Events.(*recorder)
}

func blPNGSize(t *testing.T, file string) (int, int) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return cfg.Width, cfg.Height
}

func TestBlenderRenders(t *testing.T) {
	be := Exec(Blender{})
	needRenderer(t, be)
	ctx := context.Background()
	const small = `<backend name="blender"><blendfile>scene.blend</blendfile><samples>1</samples><width>32</width><height>18</height><threads>1</threads></backend>`

	t.Run("one frame", func(t *testing.T) {
		t.Parallel()
		task, rec := blenderTask(t, small, 5)
		if err := be.Render(ctx, task); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rec.done[5], []string{"frame-0005.png"}) {
			t.Fatalf("FrameDone: %v", rec.done)
		}
		if w, h := blPNGSize(t, filepath.Join(task.Dir, "frame-0005.png")); w != 32 || h != 18 {
			t.Errorf("size %dx%d, want 32x18", w, h)
		}
		if p := rec.progress[5]; len(p) == 0 || p[len(p)-1] != 1 {
			t.Errorf("progress %v, want it to end at 1", p)
		}
	})

	t.Run("chunk in one process", func(t *testing.T) {
		t.Parallel()
		task, rec := blenderTask(t, strings.Replace(small, "</backend>", "<output>shot-</output></backend>", 1), 1, 2, 3)
		if err := be.Render(ctx, task); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rec.order, []int64{1, 2, 3}) {
			t.Fatalf("frames done %v, want 1, 2, 3", rec.order)
		}
		for _, f := range []int64{1, 2, 3} {
			want := "shot-000" + string(rune('0'+f)) + ".png"
			if !slices.Equal(rec.done[f], []string{want}) {
				t.Errorf("frame %d: files %v, want %s", f, rec.done[f], want)
			}
			if w, h := blPNGSize(t, filepath.Join(task.Dir, want)); w != 32 || h != 18 {
				t.Errorf("%s: %dx%d, want 32x18", want, w, h)
			}
		}
	})

	t.Run("corrupt blend file", func(t *testing.T) {
		t.Parallel()
		task, rec := blenderTask(t, small, 1)
		if err := os.WriteFile(filepath.Join(task.Dir, "scene.blend"), []byte("this is a text file, not a .blend file\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		err := be.Render(ctx, task)
		if !IsJobError(err) || !strings.Contains(err.Error(), "frame 1") || !strings.Contains(err.Error(), "File format is not supported") {
			t.Errorf("error %v, want a JobError naming frame 1 and Blender's complaint", err)
		}
		if len(rec.order) != 0 {
			t.Errorf("frames done %v", rec.order)
		}
	})

	t.Run("missing blend file", func(t *testing.T) {
		t.Parallel()
		task, _ := blenderTask(t, strings.Replace(small, "scene.blend", "nothere.blend", 1), 1)
		if err := be.Render(ctx, task); !IsJobError(err) || !strings.Contains(err.Error(), "Cannot read file") {
			t.Errorf("error %v, want a JobError saying Blender cannot read the file", err)
		}
	})

	// The .blend file's own scripts do not run: Blender gets -Y.
	t.Run("no autorun scripts", func(t *testing.T) {
		t.Parallel()
		task, rec := blenderTask(t, strings.Replace(small, "scene.blend", "autorun.blend", 1), 1)
		add, err := filepath.Abs(filepath.Join("testdata", "blender", "add_autorun.py"))
		if err != nil {
			t.Fatal(err)
		}
		mk := exec.Command("blender", "-b", filepath.Join(task.Dir, "scene.blend"), "-Y", "--factory-startup",
			"--python-exit-code", "1", "--python", add, "--", filepath.Join(task.Dir, "autorun.blend"))
		mk.Env = append(os.Environ(), "HOME="+t.TempDir())
		if out, err := mk.CombinedOutput(); err != nil {
			t.Fatalf("making autorun.blend: %v\n%s", err, out)
		}
		if err := be.Render(ctx, task); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(task.Dir, "autorun-ran")); err == nil {
			t.Error("the script inside the .blend file ran")
		}
		if len(rec.done[1]) != 1 {
			t.Errorf("frame 1 not rendered: %v", rec.done)
		}
	})
}

func TestBlenderExampleJob(t *testing.T) {
	dir := filepath.Join("..", "..", "examples", "blender")
	f, err := os.Open(filepath.Join(dir, manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := manifest.Parse(f, manifest.FileName, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := (Registry{"blender": Exec(Blender{})}).CheckManifest(m); err != nil {
		t.Fatal(err)
	}
	if len(m.Frames) != 24 {
		t.Errorf("%d frames, want 24", len(m.Frames))
	}
	bf, _, _ := m.Backend.Get("blendfile")
	for _, in := range m.Inputs {
		if _, err := os.Stat(filepath.Join(dir, in.Path)); err != nil {
			t.Errorf("input %s: %v", in.Path, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, bf)); err != nil {
		t.Errorf("blendfile: %v", err)
	}
}
