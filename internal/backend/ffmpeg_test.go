package backend

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/distren/distren/internal/manifest"
)

func TestFFmpegCheck(t *testing.T) {
	for _, good := range []string{
		`<backend name="ffmpeg"/>`,
		`<backend name="ffmpeg"><output>anim-{job}-{frame:04}.mp4</output><codec>libvpx-vp9</codec><fps>30000/1001</fps><crf>63</crf><pattern>shot_[0-9]*.PNG</pattern><pixfmt>yuv420p10le</pixfmt><preset>veryfast</preset></backend>`,
		`<backend name="ffmpeg"><fps>12.5</fps><crf>0</crf><output>v.mkv</output></backend>`,
	} {
		if err := (FFmpeg{}).Check(spec(t, good)); err != nil {
			t.Errorf("%s: %v", good, err)
		}
	}
	for _, c := range []struct {
		backend string
		line    int
		elem    string
		want    string
	}{
		{`<backend name="ffmpeg"><codek>x</codek></backend>`, 2, "codek", "unknown element for backend ffmpeg"},
		{`<backend name="ffmpeg"><fps>24</fps><fps>25</fps></backend>`, 2, "fps", "more than one <fps>"},
		{`<backend name="ffmpeg"><output>../v.mp4</output></backend>`, 2, "output", "must be a plain file name"},
		{`<backend name="ffmpeg"><output>{dir}v.mp4</output></backend>`, 2, "output", "must be a plain file name"},
		{`<backend name="ffmpeg"><output>..</output></backend>`, 2, "output", "must be a plain file name"},
		{`<backend name="ffmpeg"><output>video</output></backend>`, 2, "output", "needs an extension"},
		{`<backend name="ffmpeg"><output>v%03d.mp4</output></backend>`, 2, "output", "must not contain %"},
		{`<backend name="ffmpeg"><output>{frme}.mp4</output></backend>`, 2, "output", "unknown substitution {frme}"},
		{`<backend name="ffmpeg"><codec>libx264 -vf</codec></backend>`, 2, "codec", "not a name ffmpeg knows"},
		{`<backend name="ffmpeg"><codec>-f</codec></backend>`, 2, "codec", "not a name ffmpeg knows"},
		{`<backend name="ffmpeg"><codec/></backend>`, 2, "codec", "not a name ffmpeg knows"},
		{`<backend name="ffmpeg"><pixfmt>yuv;420p</pixfmt></backend>`, 2, "pixfmt", "not a name ffmpeg knows"},
		{`<backend name="ffmpeg"><preset>$(slow)</preset></backend>`, 2, "preset", "not a name ffmpeg knows"},
		{`<backend name="ffmpeg"><fps>0</fps></backend>`, 2, "fps", "more than 0"},
		{`<backend name="ffmpeg"><fps>30/0</fps></backend>`, 2, "fps", "denominator must not be 0"},
		{`<backend name="ffmpeg"><fps>-24</fps></backend>`, 2, "fps", "not a frame rate"},
		{`<backend name="ffmpeg"><fps>ntsc</fps></backend>`, 2, "fps", "not a frame rate"},
		{`<backend name="ffmpeg"><crf>64</crf></backend>`, 2, "crf", "from 0 to 63"},
		{`<backend name="ffmpeg"><crf>23.5</crf></backend>`, 2, "crf", "from 0 to 63"},
		{`<backend name="ffmpeg"><pattern>[a-</pattern></backend>`, 2, "pattern", "not a valid pattern"},
		{`<backend name="ffmpeg"><pattern>out/*.png</pattern></backend>`, 2, "pattern", "must not contain /"},
		{"<backend name=\"ffmpeg\">\n  <fps>24</fps>\n  <crf>99</crf>\n</backend>", 4, "crf", "from 0 to 63"},
	} {
		err := (FFmpeg{}).Check(spec(t, c.backend))
		want := fmt.Sprintf("distrenjob.xml:%d: <%s>: ", c.line, c.elem)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v\nwant %q and %q", c.backend, err, want, c.want)
		}
		var el manifest.ErrorList
		if !errors.As(err, &el) {
			t.Errorf("%s: error %T is not a manifest.ErrorList", c.backend, err)
		}
	}
}

func TestFFmpegVersion(t *testing.T) {
	v, ok := ffmpegVersion("ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026 the FFmpeg developers\nbuilt with gcc 12\n")
	if !ok || v != "5.1.9-0+deb12u1" {
		t.Errorf("ffmpegVersion = %q, %v", v, ok)
	}
	if v, ok := ffmpegVersion("avconv version 12\n"); ok {
		t.Errorf("ffmpegVersion of another program = %q", v)
	}
}

func TestFFmpegFingerprintWithoutFFmpeg(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := FFmpeg{}.Fingerprint(context.Background())
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "ffmpeg") {
		t.Errorf("Fingerprint without ffmpeg: %v, want ErrUnavailable naming ffmpeg", err)
	}
}

// ffmpegSuccess is what ffmpeg 5.1 printed encoding 12 frames with
// "-loglevel level+info -progress pipe:1 -nostats" (shortened).
var ffmpegSuccess = `[info] Input #0, image2, from '/h/ffmpeg-frames-1/%06d.png':
[info]   Stream #0:0: Video: png, rgb24(pc), 65x49 [SAR 1:1 DAR 65:49], 24 fps, 24 tbr, 24 tbn
[info] Stream mapping:
[libx264 @ 0x556dd6653140] [info] using cpu capabilities: MMX2 SSE2Fast SSSE3 SSE4.2 AVX FMA3 BMI2 AVX2 AVX512
[info] Output #0, mp4, to '/d/anim.mp4':
frame=0
fps=0.00
stream_0_0_q=0.0
out_time_us=N/A
progress=continue
frame=6
fps=0.00
progress=continue
frame=12
fps=0.0
bitrate=  43.1kbits/s
total_size=2048
speed=15.1x
progress=end
[info] frame=   12 fps=0.0 q=-1.0 Lsize=       2kB time=00:00:00.37 bitrate=  43.1kbits/s speed=15.1x
[libx264 @ 0x556dd6653140] [info] frame I:1     Avg QP:51.00  size:   156
[libx264 @ 0x556dd6653140] [info] kb/s:6.40`

func feedFFmpeg(p OutputParser, ev Events, out string) {
	for line := range strings.Lines(out) {
		p.Line(strings.TrimRight(line, "\n"), ev)
	}
}

func TestFFmpegOutputParser(t *testing.T) {
	t.Run("success", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "anim.mp4"), []byte("video"), 0o644)
		rec := newRecorder()
		p := &ffmpegOutput{frame: 49, total: 12, dir: dir, output: "anim.mp4"}
		feedFFmpeg(p, rec, ffmpegSuccess)
		if want := []float64{0, 0.5, 1}; !slices.Equal(rec.progress[49], want) {
			t.Errorf("progress %v, want %v", rec.progress[49], want)
		}
		if !slices.Equal(rec.done[49], []string{"anim.mp4"}) {
			t.Errorf("at progress=end: done %v, want [anim.mp4]", rec.done)
		}
		if err := p.Finish(nil, rec); err != nil {
			t.Error(err)
		}
		if len(rec.order) != 1 {
			t.Errorf("FrameDone reported %d times, want once", len(rec.order))
		}
	})
	t.Run("done at finish", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "v.mp4"), []byte("video"), 0o644)
		rec := newRecorder()
		p := &ffmpegOutput{frame: 3, total: 2, dir: dir, output: "v.mp4"}
		feedFFmpeg(p, rec, "frame=2\nprogress=continue\n")
		if err := p.Finish(nil, rec); err != nil || !slices.Equal(rec.done[3], []string{"v.mp4"}) {
			t.Errorf("Finish = %v, done %v", err, rec.done)
		}
	})
	t.Run("no output file", func(t *testing.T) {
		rec := newRecorder()
		p := &ffmpegOutput{frame: 3, total: 2, dir: t.TempDir(), output: "v.mp4"}
		feedFFmpeg(p, rec, "frame=2\nprogress=end\n")
		err := p.Finish(nil, rec)
		if err == nil || !strings.Contains(err.Error(), "wrote no v.mp4") || len(rec.order) != 0 {
			t.Errorf("Finish = %v, done %v; want an error naming v.mp4 and no frame done", err, rec.done)
		}
	})
	exit := errors.New("ffmpeg: exit status 1")
	for _, c := range []struct {
		name, out string
		job       bool
		want      string
	}{
		{"unknown encoder", "[info] Input #0, image2\n[fatal] Unknown encoder 'xyz'\n", true, "ffmpeg: exit status 1: Unknown encoder 'xyz' (set by <codec>"},
		{"bad preset", "x264 [error]: invalid preset 'bogus'\n[libx264 @ 0x563dd7ec3080] [error] Error setting preset/tune bogus/(null).\n[info] Conversion failed!\n", true, "invalid preset 'bogus' (set by <preset>)"},
		{"container", "[webm @ 0x562d8385d580] [error] Only VP8 or VP9 or AV1 video and Vorbis or Opus audio and WebVTT subtitles are supported for WebM.\n[error] Could not write header for output file #0 (incorrect codec parameters ?): Invalid argument\n", true, "Only VP8 or VP9"},
		{"disk full", "[mp4 @ 0x55] [error] Error writing trailer: No space left on device\n[error] Error while opening encoder\n", false, "No space left on device"},
		{"silent", "[info] Stream mapping:\n", false, "ffmpeg logged no error"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := newRecorder()
			p := &ffmpegOutput{frame: 3, total: 2, dir: t.TempDir(), output: "v.mp4"}
			feedFFmpeg(p, rec, c.out)
			err := p.Finish(exit, rec)
			if err == nil || !strings.Contains(err.Error(), c.want) || IsJobError(err) != c.job || !errors.Is(err, exit) {
				t.Errorf("Finish = %v (job error %v); want %q, job error %v, wrapping the exit", err, IsJobError(err), c.want, c.job)
			}
			if len(rec.order) != 0 {
				t.Errorf("failed encode reported done: %v", rec.done)
			}
		})
	}
	t.Run("damaged input", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "v.mp4"), []byte("video"), 0o644)
		rec := newRecorder()
		p := &ffmpegOutput{frame: 3, total: 12, dir: dir, output: "v.mp4"}
		feedFFmpeg(p, rec, "[png @ 0x5592d1c74cc0] [error] chunk too big\n[error] Error while decoding stream #0:0: Invalid data found when processing input\nframe=12\nprogress=end\n")
		err := p.Finish(nil, rec)
		if !IsJobError(err) || !strings.Contains(err.Error(), "chunk too big") || len(rec.order) != 0 {
			t.Errorf("Finish = %v, done %v; want a job error naming the decoding error and no frame done", err, rec.done)
		}
	})
}

// writeColourFrames writes n PNGs of w×h, each a different colour, into dir as
// name(i) and returns their names.
func writeColourFrames(t *testing.T, dir string, n, w, h int, name func(int) string) []string {
	t.Helper()
	var names []string
	for i := range n {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		c := color.NRGBA{uint8(i * 255 / n), uint8(255 - i*255/n), uint8(i * 97 % 256), 255}
		for y := range h {
			for x := range w {
				img.SetNRGBA(x, y, c)
			}
		}
		rel := name(i + 1)
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		names = append(names, rel)
	}
	return names
}

func TestFFmpegEncodesDependencies(t *testing.T) {
	b := Exec(FFmpeg{})
	if fp := needRenderer(t, b); fp.Version == "" || strings.ContainsAny(fp.Version, " \n") {
		t.Errorf("fingerprint version %q, want one word like 5.1.9-0+deb12u1", fp.Version)
	}
	task := newTask(t, `<backend name="ffmpeg"><output>anim-{frame}.mp4</output><fps>24</fps><crf>30</crf><preset>ultrafast</preset></backend>`, 49)
	// Dependencies' outputs, as the worker lists them: frame by frame, one
	// in a subdirectory, and a file the pattern leaves out.
	task.DepFiles = writeColourFrames(t, task.Dir, 12, 65, 49, func(i int) string {
		if i == 7 {
			return "sub/f-07.png"
		}
		return fmt.Sprintf("f-%02d.png", i)
	})
	os.WriteFile(filepath.Join(task.Dir, "f-03.log"), []byte("log"), 0o644)
	task.DepFiles = slices.Insert(task.DepFiles, 3, "f-03.log")

	if err := b.Render(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	rec := task.Events.(*recorder)
	if !slices.Equal(rec.done[49], []string{"anim-49.mp4"}) || len(rec.order) != 1 {
		t.Errorf("FrameDone: %v, want frame 49 once with anim-49.mp4", rec.done)
	}
	if p := rec.progress[49]; len(p) == 0 || p[len(p)-1] != 1 {
		t.Errorf("progress %v, want reports ending at 1", p)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", filepath.Join(task.Dir, "anim-49.mp4")).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v: %s", err, out)
	}
	// 65×49 is padded to even dimensions for yuv420p.
	if got := strings.TrimSpace(string(out)); got != "h264,66,50,12" {
		t.Errorf("ffprobe says %q, want h264,66,50,12 (codec, width, height, frames)", got)
	}
	// The sequence ffmpeg read is the PNGs, in DepFiles order.
	seqs, _ := filepath.Glob(filepath.Join(task.Home, "ffmpeg-frames-*"))
	if len(seqs) != 1 {
		t.Fatalf("sequence directories %v, want one", seqs)
	}
	i := 0
	for _, f := range task.DepFiles {
		if !strings.HasSuffix(f, ".png") {
			continue
		}
		i++
		a, err1 := os.Stat(filepath.Join(task.Dir, f))
		b, err2 := os.Stat(filepath.Join(seqs[0], fmt.Sprintf("%06d.png", i)))
		if err1 != nil || err2 != nil || !os.SameFile(a, b) {
			t.Errorf("video frame %d is not %s (%v, %v)", i, f, err1, err2)
		}
	}
}

func TestFFmpegUnknownCodecIsJobError(t *testing.T) {
	b := Exec(FFmpeg{})
	needRenderer(t, b)
	task := newTask(t, `<backend name="ffmpeg"><codec>nosuchcodec</codec></backend>`, 5)
	task.DepFiles = writeColourFrames(t, task.Dir, 2, 8, 8, func(i int) string { return fmt.Sprintf("%d.png", i) })
	err := b.Render(context.Background(), task)
	if !IsJobError(err) || !strings.Contains(err.Error(), "Unknown encoder 'nosuchcodec'") {
		t.Errorf("Render = %v, want a job error naming the encoder", err)
	}
	if rec := task.Events.(*recorder); len(rec.order) != 0 {
		t.Errorf("failed encode reported done: %v", rec.done)
	}
}

func TestFFmpegNoMatchingInputIsJobError(t *testing.T) {
	task := newTask(t, `<backend name="ffmpeg"/>`, 49)
	task.DepFiles = []string{"a.exr", "b.exr"}
	err := Exec(FFmpeg{}).Render(context.Background(), task)
	if !IsJobError(err) || !strings.Contains(err.Error(), "frame 49: no output of its dependencies matches *.png") || !strings.Contains(err.Error(), "a.exr, b.exr") {
		t.Errorf("Render = %v, want a job error naming the pattern and the files", err)
	}
	task.DepFiles = nil
	if err := Exec(FFmpeg{}).Render(context.Background(), task); !IsJobError(err) || !strings.Contains(err.Error(), "<depends") {
		t.Errorf("Render without dependencies = %v, want a job error suggesting <depends>", err)
	}
}

func TestFFmpegInputsNeedOneExtension(t *testing.T) {
	task := newTask(t, `<backend name="ffmpeg"><pattern>*</pattern></backend>`, 9)
	task.DepFiles = []string{"a.png", "b.PNG", "c.jpg"}
	for _, f := range task.DepFiles {
		os.WriteFile(filepath.Join(task.Dir, f), []byte("x"), 0o644)
	}
	_, err := FFmpeg{}.Command(task)
	if !IsJobError(err) || !strings.Contains(err.Error(), "a.png is .png and c.jpg is .jpg") {
		t.Errorf("Command = %v, want a job error naming both extensions", err)
	}
	task.Spec = spec(t, `<backend name="ffmpeg"><output>a.png</output></backend>`)
	if _, err := (FFmpeg{}).Command(task); !IsJobError(err) || !strings.Contains(err.Error(), "would overwrite") {
		t.Errorf("Command with an output named like an input = %v, want a job error", err)
	}
}

func TestFFmpegExampleJob(t *testing.T) {
	f, err := os.Open("../../examples/video/distrenjob.xml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := manifest.Parse(f, manifest.FileName, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := Registry{"builtin": Builtin{}, "ffmpeg": Exec(FFmpeg{})}
	if err := r.CheckManifest(m); err != nil {
		t.Fatal(err)
	}
	i, ok := m.FrameIndex(49)
	if !ok || len(m.Frames) != 49 {
		t.Fatalf("frames: %d, frame 49 found %v; want 49 frames", len(m.Frames), ok)
	}
	fr := m.Frames[i]
	if fr.Backend == nil || fr.Backend.Name != "ffmpeg" || len(fr.Deps) != 48 {
		t.Errorf("frame 49: backend %+v, %d dependencies; want ffmpeg after 48 frames", fr.Backend, len(fr.Deps))
	}
	if out, _, _ := fr.Backend.Get("output"); out != "orbit.mp4" {
		t.Errorf("frame 49 writes %q, want orbit.mp4", out)
	}
}
