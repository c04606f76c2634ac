package backend

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/distren/distren/internal/manifest"
)

// FFmpeg encodes the outputs of a frame's dependencies into a video with
// ffmpeg: the last step of an animation, a frame that depends on every frame
// of the shot. Its elements:
//
//	<output>video.mp4</output>  the file written (a plain name; substitutions as in Expand)
//	<codec>libx264</codec>      ffmpeg's video encoder (-c:v)
//	<fps>24</fps>               frames per second: a number or a rational, 30000/1001
//	<crf>23</crf>               optional constant rate factor, 0..63 (-crf)
//	<pattern>*.png</pattern>    which dependency files are encoded (path.Match on the base name)
//	<pixfmt>yuv420p</pixfmt>    pixel format (-pix_fmt)
//	<preset>slow</preset>       optional encoder preset (-preset)
//
// The files chosen by the pattern, in the order of Task.DepFiles, become the
// video's frames; they must share one extension. Odd widths and heights are
// padded to even ones for chroma-subsampled pixel formats such as yuv420p.
type FFmpeg struct{}

// Name implements Program.
func (FFmpeg) Name() string { return "ffmpeg" }

// Chunks implements Program: one ffmpeg run makes one frame's video.
func (FFmpeg) Chunks() bool { return false }

// ffmpegSpec is a checked <backend name="ffmpeg"> element.
type ffmpegSpec struct {
	output  string // not yet expanded
	codec   string
	fps     string
	crf     int // -1: not given
	pattern string
	pixfmt  string
	preset  string // "": not given
}

var ffmpegElems = []string{"output", "codec", "fps", "crf", "pattern", "pixfmt", "preset"}

var (
	// ffmpegName is what <codec>, <pixfmt> and <preset> accept: each is one
	// argument of ffmpeg's, so it must not look like an option.
	ffmpegName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	// ffmpegRate is a frame rate: a decimal number or a rational.
	ffmpegRate = regexp.MustCompile(`^(?:([0-9]{1,9})(?:\.[0-9]{1,9})?|([0-9]{1,9})/([0-9]{1,9}))$`)
)

// maxFPS bounds <fps>: no video plays faster.
const maxFPS = 1000

func parseFFmpeg(spec *manifest.Backend) (ffmpegSpec, error) {
	fs := ffmpegSpec{output: "video.mp4", codec: "libx264", fps: "24", crf: -1, pattern: "*.png", pixfmt: "yuv420p"}
	var errs manifest.ErrorList
	seen := map[string]bool{}
	for _, e := range spec.Elements {
		switch {
		case !slices.Contains(ffmpegElems, e.Name):
			errs = append(errs, specError(spec, e.Line, e.Name, "unknown element for backend ffmpeg (known: %s)", strings.Join(ffmpegElems, ", ")))
		case seen[e.Name]:
			errs = append(errs, specError(spec, e.Line, e.Name, "more than one <%s>", e.Name))
		}
		seen[e.Name] = true
	}
	if v, line, ok := spec.Get("output"); ok {
		if err := checkVideoName(v); err != nil {
			errs = append(errs, specError(spec, line, "output", "%v", err))
		}
		fs.output = v
	}
	name := func(elem string, dst *string) {
		v, line, ok := spec.Get(elem)
		if !ok {
			return
		}
		if !ffmpegName.MatchString(v) {
			errs = append(errs, specError(spec, line, elem, "%q is not a name ffmpeg knows: use letters, digits, _ and - (up to 64, not starting with -)", v))
		}
		*dst = v
	}
	name("codec", &fs.codec)
	name("pixfmt", &fs.pixfmt)
	name("preset", &fs.preset)
	if v, line, ok := spec.Get("fps"); ok {
		if err := checkRate(v); err != nil {
			errs = append(errs, specError(spec, line, "fps", "%v", err))
		}
		fs.fps = v
	}
	if v, line, ok := spec.Get("crf"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 63 {
			errs = append(errs, specError(spec, line, "crf", "%q: want a whole number from 0 to 63 (lower is better quality; libx264's default is 23)", v))
		}
		fs.crf = n
	}
	if v, line, ok := spec.Get("pattern"); ok {
		if _, err := path.Match(v, ""); err != nil || v == "" {
			errs = append(errs, specError(spec, line, "pattern", "%q is not a valid pattern (path.Match syntax: *, ?, [a-z])", v))
		} else if strings.Contains(v, "/") {
			errs = append(errs, specError(spec, line, "pattern", "%q must not contain /: it is matched against each file's base name", v))
		}
		fs.pattern = v
	}
	if len(errs) > 0 {
		return fs, errs
	}
	return fs, nil
}

// checkVideoName checks an <output>, before or after substitution.
func checkVideoName(v string) error {
	if _, err := Expand(v, 1, 1, "."); err != nil {
		return err
	}
	switch {
	case v == "" || v == "." || v == ".." || strings.ContainsAny(v, `/\`) || strings.Contains(v, "{dir}"):
		return fmt.Errorf("output %q must be a plain file name, like video.mp4", v)
	case strings.Contains(v, "%"):
		return fmt.Errorf("output %q must not contain %%: ffmpeg would read it as a pattern for many files", v)
	case path.Ext(v) == "" || path.Ext(v) == ".":
		return fmt.Errorf("output %q needs an extension (.mp4, .mkv, .webm, ...): ffmpeg chooses the container by it", v)
	}
	return nil
}

// checkRate checks an <fps>.
func checkRate(v string) error {
	m := ffmpegRate.FindStringSubmatch(v)
	if m == nil {
		return fmt.Errorf("%q is not a frame rate: want a positive number (24, 12.5) or a rational (30000/1001)", v)
	}
	var fps float64
	if m[2] != "" {
		num, _ := strconv.ParseFloat(m[2], 64)
		den, _ := strconv.ParseFloat(m[3], 64)
		if den == 0 {
			return fmt.Errorf("%q: the denominator must not be 0", v)
		}
		fps = num / den
	} else {
		fps, _ = strconv.ParseFloat(v, 64)
	}
	if fps <= 0 || fps > maxFPS {
		return fmt.Errorf("%q: the frame rate must be more than 0 and at most %d", v, maxFPS)
	}
	return nil
}

// Check implements Program.
func (FFmpeg) Check(spec *manifest.Backend) error {
	_, err := parseFFmpeg(spec)
	return err
}

// Fingerprint implements Program: the version is the word after "ffmpeg
// version" in `ffmpeg -version`.
func (FFmpeg) Fingerprint(ctx context.Context) (Fingerprint, error) {
	out, err := lookVersion(ctx, "ffmpeg", "-version")
	if err != nil {
		return Fingerprint{}, err
	}
	v, ok := ffmpegVersion(out)
	if !ok {
		return Fingerprint{}, fmt.Errorf("%w: ffmpeg -version: %w", ErrUnavailable, errNoVersion)
	}
	return Fingerprint{Version: v}, nil
}

// ffmpegVersion finds the version in `ffmpeg -version`'s first line,
// "ffmpeg version 5.1.9-0+deb12u1 Copyright ...".
func ffmpegVersion(out string) (string, bool) {
	first, _, _ := strings.Cut(out, "\n")
	f := strings.Fields(first)
	if len(f) < 3 || f[0] != "ffmpeg" || f[1] != "version" {
		return "", false
	}
	return f[2], true
}

// Command implements Program. It links the chosen dependency files into a
// numbered sequence in a fresh directory under t.Home (ffmpeg's image2
// demuxer reads 000001.png, 000002.png, ...) and encodes them into the
// output in t.Dir.
func (FFmpeg) Command(t *Task) (*Invocation, error) {
	fs, err := parseFFmpeg(t.Spec)
	if err != nil {
		return nil, &JobError{Err: err}
	}
	output, err := Expand(fs.output, t.Job, t.Frame(), t.Dir)
	if err == nil {
		err = checkVideoName(output)
	}
	if err != nil {
		return nil, &JobError{Err: fmt.Errorf("frame %d: <output>: %w", t.Frame(), err)}
	}
	files, ext, err := ffmpegInputs(t, fs.pattern, output)
	if err != nil {
		return nil, err
	}
	seq, err := os.MkdirTemp(t.Home, "ffmpeg-frames-")
	if err != nil {
		return nil, fmt.Errorf("ffmpeg: making the frame sequence directory: %w", err)
	}
	for i, f := range files {
		if err := linkOrCopy(filepath.Join(t.Dir, filepath.FromSlash(f)), filepath.Join(seq, fmt.Sprintf("%06d%s", i+1, ext))); err != nil {
			return nil, fmt.Errorf("ffmpeg: placing %s as video frame %d: %w", f, i+1, err)
		}
	}
	dir, err := filepath.Abs(t.Dir)
	if err != nil {
		return nil, err
	}
	// image2 reads %% as a literal %, wherever it is in the name.
	input := strings.ReplaceAll(seq+string(filepath.Separator), "%", "%%") + "%06d" + strings.ReplaceAll(ext, "%", "%%")
	args := []string{
		"-hide_banner", "-nostdin", "-loglevel", "level+info", "-y",
		"-f", "image2", "-framerate", fs.fps, "-start_number", "1", "-i", input,
		"-c:v", fs.codec,
	}
	if fs.crf >= 0 {
		args = append(args, "-crf", strconv.Itoa(fs.crf))
	}
	if fs.preset != "" {
		args = append(args, "-preset", fs.preset)
	}
	if subsampled(fs.pixfmt) {
		args = append(args, "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2")
	}
	args = append(args, "-pix_fmt", fs.pixfmt, "-progress", "pipe:1", "-nostats", filepath.Join(dir, output))
	return &Invocation{
		Path:   "ffmpeg",
		Args:   args,
		Output: &ffmpegOutput{frame: t.Frame(), total: len(files), dir: dir, output: output},
	}, nil
}

// ffmpegInputs chooses the dependency files matching pattern, in DepFiles
// order, and returns them with their common extension (lower case).
func ffmpegInputs(t *Task, pattern, output string) ([]string, string, error) {
	var files []string
	var ext, extFrom string
	for _, f := range t.DepFiles {
		if !filepath.IsLocal(filepath.FromSlash(f)) {
			return nil, "", fmt.Errorf("ffmpeg: dependency file %q is not inside the scratch directory", f)
		}
		if f == output {
			return nil, "", &JobError{Err: fmt.Errorf("frame %d: <output> %s would overwrite an output of the frame's dependencies; choose another name", t.Frame(), output)}
		}
		base := path.Base(filepath.ToSlash(f))
		if ok, _ := path.Match(pattern, base); !ok {
			continue
		}
		e := strings.ToLower(path.Ext(base))
		switch {
		case e == "" || e == ".":
			return nil, "", &JobError{Err: fmt.Errorf("frame %d: %s has no extension, so ffmpeg cannot tell its image format; narrow <pattern> (now %s) to image files", t.Frame(), f, pattern)}
		case ext == "":
			ext, extFrom = e, f
		case e != ext:
			return nil, "", &JobError{Err: fmt.Errorf("frame %d: the files to encode must have one extension, but %s is %s and %s is %s; narrow <pattern> (now %s) to one kind", t.Frame(), extFrom, ext, f, e, pattern)}
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		have := "it has no dependencies with outputs: give it <depends>, e.g. <depends first=\"1\" last=\"48\"/>"
		if len(t.DepFiles) > 0 {
			have = "its dependencies' outputs are: " + listSome(t.DepFiles, 5)
		}
		return nil, "", &JobError{Err: fmt.Errorf("frame %d: no output of its dependencies matches %s, so there is nothing to encode (%s)", t.Frame(), pattern, have)}
	}
	return files, ext, nil
}

// listSome joins the first n names and says how many more there are.
func listSome(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// linkOrCopy makes dst a hard link to the regular file src, or a copy when
// they are on different file systems.
func linkOrCopy(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", filepath.Base(src))
	}
	if os.Link(src, dst) == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// subsampled reports whether a pixel format halves the chroma resolution, so
// that encoders need even widths (and usually heights).
func subsampled(pixfmt string) bool {
	for _, p := range []string{"yuv420", "yuvj420", "yuva420", "yuv422", "yuvj422", "yuva422", "yuv411", "yuvj411", "yuv410", "nv12", "nv16", "nv20", "nv21", "p010", "p016", "p210", "p216", "y210"} {
		if strings.HasPrefix(pixfmt, p) {
			return true
		}
	}
	return false
}

// ffmpegOutput follows ffmpeg run with "-progress pipe:1 -loglevel
// level+info": key=value progress blocks on standard output, log lines
// tagged with their level on standard error.
type ffmpegOutput struct {
	frame  int64
	total  int    // frames to encode
	dir    string // the task's directory, absolute
	output string // relative to dir
	done   bool   // FrameDone was reported
	// errs are the first lines ffmpeg logged at level error or worse,
	// without their tags.
	errs []string
	// decodeErr is set when a frame could not be decoded: ffmpeg carries on
	// and exits 0, but the video misses a frame.
	decodeErr bool
}

// maxErrLines bounds the error lines an ffmpegOutput keeps.
const maxErrLines = 20

// ffmpegLogError matches an ffmpeg log line at level error or worse,
// "[libx264 @ 0x55d1] [error] width not divisible by 2", and the lines
// encoder libraries print themselves, "x264 [error]: invalid preset 'x'".
var ffmpegLogError = regexp.MustCompile(`^(?:\[[^\]]* @ 0x[0-9a-fA-F]+\] )?\[(?:error|fatal|panic)\] (.*)$|^[A-Za-z0-9_-]+ \[error\]:? (.*)$`)

// Line implements OutputParser.
func (p *ffmpegOutput) Line(line string, ev Events) {
	if v, ok := strings.CutPrefix(line, "frame="); ok {
		if f := strings.Fields(v); len(f) > 0 {
			if n, err := strconv.Atoi(f[0]); err == nil && n >= 0 && p.total > 0 {
				ev.Progress(p.frame, min(float64(n)/float64(p.total), 1))
			}
		}
		return
	}
	if line == "progress=end" {
		if !p.done && !p.decodeErr && p.present() == nil {
			p.done = true
			ev.FrameDone(p.frame, []string{p.output})
		}
		return
	}
	m := ffmpegLogError.FindStringSubmatch(line)
	if m == nil {
		return
	}
	msg := strings.TrimSpace(m[1] + m[2])
	if strings.HasPrefix(msg, "Error while decoding stream") {
		p.decodeErr = true
	}
	if len(p.errs) < maxErrLines && msg != "" {
		p.errs = append(p.errs, msg)
	}
}

// present reports whether the output was written: a non-empty regular file.
func (p *ffmpegOutput) present() error {
	fi, err := os.Lstat(filepath.Join(p.dir, p.output))
	switch {
	case err != nil:
		return fmt.Errorf("ffmpeg exited without error but wrote no %s: %w", p.output, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("ffmpeg exited without error but %s is not a regular file", p.output)
	case fi.Size() == 0:
		return fmt.Errorf("ffmpeg exited without error but %s is empty", p.output)
	}
	return nil
}

// Finish implements OutputParser.
func (p *ffmpegOutput) Finish(exit error, ev Events) error {
	if exit != nil {
		if len(p.errs) == 0 {
			return fmt.Errorf("%w (ffmpeg logged no error; its output is above)", exit)
		}
		err := fmt.Errorf("%w: %s%s", exit, p.errs[0], ffmpegHint(p.errs[0]))
		if p.blamesJob() {
			return &JobError{Err: err}
		}
		return err
	}
	if p.decodeErr {
		return &JobError{Err: fmt.Errorf("ffmpeg could not decode an output of frame %d's dependencies, so the video would miss a frame: %s", p.frame, strings.Join(p.errs, "; "))}
	}
	if err := p.present(); err != nil {
		return err
	}
	if !p.done {
		p.done = true
		ev.FrameDone(p.frame, []string{p.output})
	}
	return nil
}

// ffmpegJobFaults are errors that come from the job's settings or its
// frames; ffmpegMachineFaults are the machine's, and win.
var (
	ffmpegJobFaults = []string{
		"Unknown encoder", "Unknown pixel format", "Invalid pixel format", "Unable to find a suitable output format",
		"invalid preset", "Error setting preset", "Error setting option", "Error while opening encoder",
		"not divisible by", "Could not write header", "not supported", "are supported for",
		"Error while decoding", "Invalid data found when processing input", "Invalid frame rate",
	}
	ffmpegMachineFaults = []string{
		"No space left on device", "Cannot allocate memory", "Permission denied", "Input/output error",
		"Too many open files", "Read-only file system", "Disk quota exceeded",
	}
)

// blamesJob reports whether ffmpeg's errors are the job's fault.
func (p *ffmpegOutput) blamesJob() bool {
	job := false
	for _, e := range p.errs {
		for _, s := range ffmpegMachineFaults {
			if strings.Contains(e, s) {
				return false
			}
		}
		for _, s := range ffmpegJobFaults {
			job = job || strings.Contains(e, s)
		}
	}
	return job
}

// ffmpegHint points from an error to the element that caused it.
func ffmpegHint(msg string) string {
	switch {
	case strings.HasPrefix(msg, "Unknown encoder"):
		return " (set by <codec>; `ffmpeg -encoders` lists the encoders a worker has)"
	case strings.Contains(msg, "pixel format"):
		return " (set by <pixfmt>; `ffmpeg -pix_fmts` lists them)"
	case strings.Contains(msg, "preset"):
		return " (set by <preset>)"
	case strings.Contains(msg, "suitable output format"):
		return " (the extension of <output> chooses the container)"
	}
	return ""
}
