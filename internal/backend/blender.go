package backend

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/distren/distren/internal/manifest"
)

// Blender renders .blend files with Blender's command line (blender -b). Its
// elements:
//
//	<blendfile>shot.blend</blendfile>  required: the file to render, relative to the package root
//	<engine>CYCLES</engine>            CYCLES (default), BLENDER_EEVEE or BLENDER_WORKBENCH
//	<samples>64</samples>              Cycles samples or EEVEE render samples, 1..65536 (default: the file's)
//	<format>PNG</format>               PNG (default), JPEG, OPEN_EXR or TIFF; the extension follows
//	<width>1920</width> <height>1080</height>  resolution, 1..16384 each, at 100% (default: the file's)
//	<threads>0</threads>               render threads, 0..1024; 0 is one per CPU (default: Blender's)
//	<output>frame-</output>            file name prefix; Blender appends the frame (4 digits or more) and extension
//
// One Blender process renders a whole chunk of frames (-s/-e/-a), or one frame
// (-f). Blender always runs with -Y (--disable-autoexec): scripts embedded in
// the .blend file (drivers, registered text blocks) do not run. Settings that
// have no command-line flag reach Blender through a small Python file that
// Command writes into Task.Home; it holds only numbers Go formatted after
// validation, never text from the manifest.
//
// Blender is not sandboxed: Exec gives it a HOME and TMPDIR of its own inside
// Task.Home, but it may read and write wherever the worker's user may. Only
// -Y keeps the .blend file's own scripts from running.
type Blender struct{}

// Name implements Program.
func (Blender) Name() string { return "blender" }

// Chunks implements Program: one Blender process renders a range of frames,
// loading the .blend file once.
func (Blender) Chunks() bool { return true }

var (
	blenderElems   = []string{"blendfile", "engine", "samples", "format", "width", "height", "threads", "output"}
	blenderEngines = []string{"CYCLES", "BLENDER_EEVEE", "BLENDER_WORKBENCH"}
	blenderFormats = []string{"PNG", "JPEG", "OPEN_EXR", "TIFF"}
)

// blenderSpec is a checked <backend name="blender"> element. Zero numbers
// mean "as the .blend file says" (threads: hasThreads).
type blenderSpec struct {
	blendfile     string
	engine        string
	format        string
	output        string
	samples       int
	width, height int
	threads       int
	hasThreads    bool
}

func parseBlender(spec *manifest.Backend) (blenderSpec, error) {
	bs := blenderSpec{engine: "CYCLES", format: "PNG", output: "frame-"}
	var errs manifest.ErrorList
	bad := func(line int, elem, format string, args ...any) {
		errs = append(errs, specError(spec, line, elem, format, args...))
	}
	first := map[string]int{}
	for _, e := range spec.Elements {
		switch {
		case !slices.Contains(blenderElems, e.Name):
			bad(e.Line, e.Name, "unknown element for backend blender (known: %s)", strings.Join(blenderElems, ", "))
		case first[e.Name] != 0:
			bad(e.Line, e.Name, "<%s> given twice (first on line %d)", e.Name, first[e.Name])
		case len(e.Children) > 0:
			bad(e.Children[0].Line, e.Name, "unexpected element <%s> (this element holds only text)", e.Children[0].Name)
		case len(e.Attrs) > 0:
			bad(e.Line, e.Name, "unexpected attribute %s (this element has none)", e.Attrs[0].Name)
		default:
			first[e.Name] = e.Line
		}
	}
	num := func(name string, lo, hi int, dst *int) bool {
		v, line, ok := spec.Get(name)
		if !ok {
			return false
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			bad(line, name, "%s %q is not a whole number in %d..%d", name, v, lo, hi)
			return false
		}
		*dst = n
		return true
	}
	oneOf := func(name string, known []string, dst *string) {
		v, line, ok := spec.Get(name)
		if !ok {
			return
		}
		if !slices.Contains(known, v) {
			hint := ""
			if i := slices.IndexFunc(known, func(k string) bool { return strings.EqualFold(k, v) }); i >= 0 {
				hint = fmt.Sprintf("; write %s, in capitals", known[i])
			}
			bad(line, name, "unknown %s %q (%s%s)", name, v, strings.Join(known, ", "), hint)
			return
		}
		*dst = v
	}

	if v, line, ok := spec.Get("blendfile"); !ok || v == "" {
		bad(line, "blendfile", "backend blender needs a <blendfile>: the .blend file to render, relative to the package root")
	} else if err := blenderRelPath(v); err != nil {
		bad(line, "blendfile", "blendfile %q: %v", v, err)
	} else {
		bs.blendfile = path.Clean(v)
	}
	oneOf("engine", blenderEngines, &bs.engine)
	oneOf("format", blenderFormats, &bs.format)
	if num("samples", 1, 65536, &bs.samples) && bs.engine == "BLENDER_WORKBENCH" {
		_, line, _ := spec.Get("samples")
		bad(line, "samples", "samples apply to CYCLES and BLENDER_EEVEE, not to BLENDER_WORKBENCH")
	}
	num("width", 1, 16384, &bs.width)
	num("height", 1, 16384, &bs.height)
	bs.hasThreads = num("threads", 0, 1024, &bs.threads)
	if v, line, ok := spec.Get("output"); ok {
		if err := blenderOutputName(v); err != nil {
			bad(line, "output", "output %q: %v", v, err)
		} else {
			bs.output = v
		}
	}
	if len(errs) > 0 {
		return bs, errs
	}
	return bs, nil
}

// blenderRelPath checks a path inside the job package.
func blenderRelPath(v string) error {
	switch {
	case strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return errors.New("control character in path")
	case strings.Contains(v, `\`):
		return errors.New(`backslash in path; use /`)
	case path.IsAbs(v):
		return errors.New("absolute path; the path is relative to the package root")
	case slices.Contains(strings.Split(v, "/"), ".."):
		return errors.New("path contains ..; it must stay inside the package")
	case path.Clean(v) == ".":
		return errors.New("not a file")
	}
	return nil
}

// blenderOutputName checks an output prefix: a plain file name, without the
// # that Blender would take for frame digits.
func blenderOutputName(v string) error {
	switch {
	case v == "":
		return errors.New("empty; leave <output> out for the default frame-")
	case strings.ContainsAny(v, `/\`) || strings.Contains(v, ".."):
		return errors.New("must be a plain file name prefix, without / or ..")
	case strings.Contains(v, "#"):
		return errors.New("must not contain #: Blender appends the frame number itself")
	case strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return errors.New("control character in name")
	}
	return nil
}

// Check implements Program.
func (Blender) Check(spec *manifest.Backend) error {
	_, err := parseBlender(spec)
	return err
}

// Files implements FileNamer: the <blendfile>.
func (Blender) Files(spec *manifest.Backend) []NamedFile {
	v, line, ok := spec.Get("blendfile")
	if !ok {
		return nil
	}
	return []NamedFile{{Path: path.Clean(v), Line: line, Element: "blendfile"}}
}

var blenderVersionRe = regexp.MustCompile(`(?m)^Blender (\d+\.\d+(?:\.\d+)?)`)

// Fingerprint implements Program: it runs blender --version.
func (Blender) Fingerprint(ctx context.Context) (Fingerprint, error) {
	out, err := lookVersion(ctx, "blender", "--version")
	if err != nil {
		return Fingerprint{}, err
	}
	m := blenderVersionRe.FindStringSubmatch(out)
	if m == nil {
		return Fingerprint{}, fmt.Errorf("%w: blender --version: %w (it printed %q)", ErrUnavailable, errNoVersion, blenderClip(out))
	}
	return Fingerprint{Version: m[1]}, nil
}

func blenderClip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		return s[:197] + "..."
	}
	return s
}

// blenderMaxFrame is the largest frame number Blender accepts (MAXFRAME).
const blenderMaxFrame = 1048574

// blenderScript is the Python file Command writes into Task.Home.
const blenderScript = "distren-blender-settings.py"

// settingsScript returns the Python that applies what Blender's command line
// cannot set. Every value in it is a number formatted here.
func (bs blenderSpec) settingsScript() string {
	var b strings.Builder
	b.WriteString("# Written by distren from the job's <backend name=\"blender\"> element.\n")
	b.WriteString("import bpy\n\nscene = bpy.context.scene\n")
	// Without this a file left in the scratch directory (a dependency's
	// output of the same name) makes Blender skip the frame.
	b.WriteString("scene.render.use_overwrite = True\nscene.render.use_placeholder = False\n")
	if bs.width > 0 {
		fmt.Fprintf(&b, "scene.render.resolution_x = %d\n", bs.width)
	}
	if bs.height > 0 {
		fmt.Fprintf(&b, "scene.render.resolution_y = %d\n", bs.height)
	}
	if bs.width > 0 || bs.height > 0 {
		b.WriteString("scene.render.resolution_percentage = 100\n")
	}
	if bs.samples > 0 {
		switch bs.engine {
		case "CYCLES":
			fmt.Fprintf(&b, "scene.cycles.samples = %d\n", bs.samples)
		case "BLENDER_EEVEE":
			fmt.Fprintf(&b, "scene.eevee.taa_render_samples = %d\n", bs.samples)
		}
	}
	return b.String()
}

// Command implements Program:
//
//	blender -b DIR/BLENDFILE -Y --python-exit-code 1 --python HOME/settings.py
//	        -E ENGINE -o DIR/OUTPUT#### -F FORMAT -x 1 [-t N] (-f N | -s FIRST -e LAST -j 1 -a)
//
// Blender applies its arguments in order, so the settings come before the
// render flag. The .blend file is named by its absolute path, so that a name
// starting with - is not taken for an option.
func (Blender) Command(t *Task) (*Invocation, error) {
	bs, err := parseBlender(t.Spec)
	if err != nil {
		return nil, err
	}
	if len(t.Frames) == 0 {
		return nil, errors.New("blender: the task has no frames")
	}
	for i := 1; i < len(t.Frames); i++ {
		if t.Frames[i] != t.Frames[i-1]+1 {
			return nil, fmt.Errorf("blender: a chunk must be consecutive frames, got %v", t.Frames)
		}
	}
	if last := t.Frames[len(t.Frames)-1]; last > blenderMaxFrame {
		return nil, &JobError{fmt.Errorf("blender: frame %d is beyond the last frame Blender can render (%d)", last, blenderMaxFrame)}
	}
	script := filepath.Join(t.Home, blenderScript)
	if err := os.WriteFile(script, []byte(bs.settingsScript()), 0o600); err != nil {
		return nil, fmt.Errorf("blender: writing its settings: %w", err)
	}
	args := []string{
		"-b", filepath.Join(t.Dir, filepath.FromSlash(bs.blendfile)),
		"-Y",
		"--python-exit-code", "1",
		"--python", script,
		"-E", bs.engine,
		"-o", filepath.Join(t.Dir, bs.output) + "####",
		"-F", bs.format,
		"-x", "1",
	}
	if bs.hasThreads {
		args = append(args, "-t", strconv.Itoa(bs.threads))
	}
	first, last := t.Frames[0], t.Frames[len(t.Frames)-1]
	if first == last {
		args = append(args, "-f", strconv.FormatInt(first, 10))
	} else {
		// -j 1: every frame of the range, whatever frame step the scene has.
		args = append(args, "-s", strconv.FormatInt(first, 10), "-e", strconv.FormatInt(last, 10), "-j", "1", "-a")
	}
	return &Invocation{
		Path:   "blender",
		Args:   args,
		Output: newBlenderParser(t.Dir, bs.output, t.Frames),
	}, nil
}

// blenderParser follows Blender's output. It relies on these lines of
// Blender 3.x (the frame status lines are shortened here):
//
//	Fra:3 Mem:9.87M (Peak 10.44M) | Time:00:00.05 | ... | distren, ViewLayer | Sample 1/4
//	Fra:1 ... | distren, ViewLayer | Rendered 2/15 Tiles, Sample 1/4
//	Fra:2 Mem:10.77M (Peak 11.87M) | Time:00:04.56 | Rendering 26 / 64 samples
//	Saved: '/abs/dir/frame-0003.png'
//	 Time: 00:00.21 (Saving: 00:00.13)
//	skipping existing frame "/abs/dir/frame-0003.png"
//	Error: Cannot read file '/abs/dir/missing.blend': No such file or directory
//
// Cycles prints the Sample lines and EEVEE the Rendering lines; Workbench
// prints no Fra: lines at all. A frame is done when Blender has saved its
// files: the Time line after the Saved lines (one per view of a stereo
// render) ends the frame.
type blenderParser struct {
	dir    string
	output string
	frames []int64

	cur      int64 // the frame of the last Fra: line, -1 before any
	started  bool  // whether a frame has begun rendering or been saved
	progress float64
	pending  int64 // the frame whose Saved lines are being collected, -1 if none
	files    []string
	done     map[int64]bool
	skipped  map[int64]string // frames Blender skipped, with the line saying so
	jobErr   string           // the first Error line that blames the job
	lastErr  string           // the last Error line
}

func newBlenderParser(dir, output string, frames []int64) *blenderParser {
	return &blenderParser{dir: dir, output: output, frames: frames, cur: -1, pending: -1,
		done: map[int64]bool{}, skipped: map[int64]string{}}
}

var (
	blenderFraRe     = regexp.MustCompile(`^Fra:(\d+) `)
	blenderCyclesRe  = regexp.MustCompile(`^(?:Rendered (\d+)/(\d+) Tiles, )?Sample (\d+)/(\d+)`)
	blenderEeveeRe   = regexp.MustCompile(`^Rendering (\d+) / (\d+) samples`)
	blenderSkippedRe = regexp.MustCompile(`^skipping existing frame "(.*)"$`)
)

// blenderJobErrors are the messages of Blender's Error lines that blame the
// job when they come before the first frame starts: a .blend file that is
// missing, unreadable or not a .blend file, an engine this Blender does not
// have, a scene that cannot render.
var blenderJobErrors = []string{
	"Cannot read file",
	"File format is not supported",
	"Failed to read blend file",
	"not a blend file",
	"engine not found",
	"Cannot render, no camera",
	"All render layers are disabled",
}

// Line implements OutputParser.
func (p *blenderParser) Line(line string, ev Events) {
	trimmed := strings.TrimSpace(line)
	switch {
	case strings.HasPrefix(line, "Fra:"):
		m := blenderFraRe.FindStringSubmatch(line)
		if m == nil {
			return
		}
		f, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			return
		}
		if f != p.pending {
			p.flush(ev)
		}
		if f != p.cur {
			p.cur, p.progress = f, -1
		}
		p.started = true
		status := line
		if i := strings.LastIndex(line, " | "); i >= 0 {
			status = line[i+3:]
		}
		if frac, ok := blenderProgress(status); ok && frac > p.progress && slices.Contains(p.frames, f) {
			p.progress = frac
			ev.Progress(f, frac)
		}
	case strings.HasPrefix(line, "Saved: '") && strings.HasSuffix(line, "'"):
		p.saved(line[len("Saved: '"):len(line)-1], ev)
	case strings.HasPrefix(trimmed, "Time: "):
		p.flush(ev)
	case strings.HasPrefix(line, "skipping existing frame "):
		if m := blenderSkippedRe.FindStringSubmatch(line); m != nil {
			if f, ok := p.frameOf(m[1]); ok {
				p.skipped[f] = line
			}
		}
	case strings.HasPrefix(trimmed, "Error:") || strings.HasPrefix(trimmed, "Error!"):
		p.lastErr = trimmed
		// Only errors before rendering starts blame the job: later ones
		// (a missing texture, say) may come from anything.
		if !p.started && p.jobErr == "" && slices.ContainsFunc(blenderJobErrors, func(s string) bool { return strings.Contains(trimmed, s) }) {
			p.jobErr = trimmed
		}
	}
}

// blenderProgress reads the fraction of a frame done from the last part of a
// Fra: line.
func blenderProgress(status string) (float64, bool) {
	if m := blenderCyclesRe.FindStringSubmatch(status); m != nil {
		x, _ := strconv.ParseFloat(m[3], 64)
		y, _ := strconv.ParseFloat(m[4], 64)
		if y <= 0 {
			return 0, false
		}
		frac := x / y
		if m[1] != "" {
			done, _ := strconv.ParseFloat(m[1], 64)
			tiles, _ := strconv.ParseFloat(m[2], 64)
			if tiles <= 0 {
				return 0, false
			}
			frac = (done + frac) / tiles
		}
		return min(frac, 1), true
	}
	if m := blenderEeveeRe.FindStringSubmatch(status); m != nil {
		x, _ := strconv.ParseFloat(m[1], 64)
		y, _ := strconv.ParseFloat(m[2], 64)
		if y <= 0 {
			return 0, false
		}
		return min(x/y, 1), true
	}
	return 0, false
}

// saved records a file Blender wrote.
func (p *blenderParser) saved(abs string, ev Events) {
	rel, err := filepath.Rel(p.dir, abs)
	if err != nil || !filepath.IsLocal(rel) {
		return // not one of the task's outputs
	}
	f, ok := p.frameOf(abs)
	if !ok {
		return
	}
	if f != p.pending {
		p.flush(ev)
		p.pending = f
	}
	p.files = append(p.files, rel)
	p.started = true
}

// frameOf finds the frame a file belongs to: from its name (OUTPUT, digits,
// extension), else the frame of the last Fra: line, else the task's first
// frame not yet done.
func (p *blenderParser) frameOf(abs string) (int64, bool) {
	name := filepath.Base(abs)
	if rest, ok := strings.CutPrefix(name, p.output); ok {
		digits := rest
		if i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
			digits = rest[:i]
		}
		if f, err := strconv.ParseInt(digits, 10, 64); err == nil && slices.Contains(p.frames, f) {
			return f, true
		}
	}
	if slices.Contains(p.frames, p.cur) {
		return p.cur, true
	}
	for _, f := range p.frames {
		if !p.done[f] && f != p.pending {
			return f, true
		}
	}
	return 0, false
}

// flush reports the frame whose files were saved.
func (p *blenderParser) flush(ev Events) {
	if p.pending < 0 {
		return
	}
	if !p.done[p.pending] {
		p.done[p.pending] = true
		ev.FrameDone(p.pending, p.files)
	}
	p.pending, p.files = -1, nil
}

// Finish implements OutputParser. Blender often exits with status 0 after an
// error, so the task succeeded only if every frame's file was saved.
func (p *blenderParser) Finish(exit error, ev Events) error {
	p.flush(ev)
	var missing []int64
	for _, f := range p.frames {
		if !p.done[f] {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		return nil // a crash after the last file was saved loses nothing
	}
	noun := "frame"
	if len(missing) > 1 {
		noun = "frames"
	}
	msg := fmt.Sprintf("Blender saved no file for %s %s", noun, blenderFrameList(missing))
	why := p.jobErr
	if why == "" {
		why = p.lastErr
	}
	if why == "" {
		for _, f := range missing {
			if s, ok := p.skipped[f]; ok {
				why = s
				break
			}
		}
	}
	if why != "" {
		msg += fmt.Sprintf(": %s", why)
	}
	var err error
	switch {
	case exit != nil:
		err = fmt.Errorf("%s (%w)", msg, exit)
	case why == "":
		err = fmt.Errorf("%s (it exited with status 0 and printed no error)", msg)
	default:
		err = errors.New(msg)
	}
	if p.jobErr != "" {
		return &JobError{Err: err}
	}
	return err
}

// blenderFrameList writes frames (ascending) compactly: 1-3, 7, 9-12.
func blenderFrameList(fs []int64) string {
	var parts []string
	for i := 0; i < len(fs); {
		j := i
		for j+1 < len(fs) && fs[j+1] == fs[j]+1 {
			j++
		}
		switch {
		case j == i:
			parts = append(parts, strconv.FormatInt(fs[i], 10))
		case j == i+1:
			parts = append(parts, strconv.FormatInt(fs[i], 10), strconv.FormatInt(fs[j], 10))
		default:
			parts = append(parts, fmt.Sprintf("%d-%d", fs[i], fs[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}
