package backend

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/sandbox"
)

// POVRay renders scenes with POV-Ray 3.7:
//
//	<backend name="povray">
//	  <scene>clock.pov</scene>   the scene, a path in the package
//	  <ini>clock.ini</ini>       optional: an animation .ini (Initial_Frame, Final_Frame,
//	                             Initial_Clock, Final_Clock, or +KFI-style switches)
//	  <width>640</width> <height>480</height>   optional size
//	  <antialias>0.3</antialias>                optional: threshold, or "off"
//	</backend>
//
// With an ini, frame n of the job is frame n of its animation (POV-Ray's
// subset switches +SF/+EF select it), so the image is the one `povray
// clock.ini` makes for frame n. Without one, frame n is a still whose clock
// is n. A chunk of frames renders in one process.
//
// Every task runs with its own HOME and working directory, -D (no display),
// a povray.conf that restricts file I/O to the working directory, and —
// because POV-Ray's own restrictions are not enforced for every file access —
// inside a Landlock sandbox that lets it read only the system's libraries,
// POV-Ray's include files and its scratch directory, and write only there.
type POVRay struct{}

// Name implements Program.
func (POVRay) Name() string { return "povray" }

// Chunks implements Program: POV-Ray renders a range of an animation in one process.
func (POVRay) Chunks() bool { return true }

var povElems = []string{"scene", "ini", "width", "height", "antialias"}

type povSpec struct {
	scene, ini    string
	width, height int
	antialias     string // "" (the ini's), "off", or a threshold
}

func parsePOVRay(spec *manifest.Backend) (povSpec, error) {
	var ps povSpec
	var errs manifest.ErrorList
	for _, e := range spec.Elements {
		if !slicesContains(povElems, e.Name) {
			errs = append(errs, specError(spec, e.Line, e.Name, "unknown element for backend povray (known: %s)", strings.Join(povElems, ", ")))
		} else if len(spec.All(e.Name)) > 1 && spec.All(e.Name)[0] != e {
			errs = append(errs, specError(spec, e.Line, e.Name, "more than one <%s>", e.Name))
		}
	}
	file := func(name, ext string, required bool) string {
		v, line, ok := spec.Get(name)
		switch {
		case !ok && required:
			errs = append(errs, specError(spec, 0, name, "backend povray needs a <%s> (the %s file in the package)", name, ext))
		case !ok:
		case !packagePath(v):
			errs = append(errs, specError(spec, line, name, "%q is not a relative path inside the package", v))
		case !strings.EqualFold(path.Ext(v), ext):
			errs = append(errs, specError(spec, line, name, "%q is not a %s file", v, ext))
		case strings.ContainsAny(v, " \t\"'+;"):
			errs = append(errs, specError(spec, line, name, "%q: POV-Ray cannot be given a file name with spaces, quotes, '+' or ';'", v))
		default:
			return v
		}
		return ""
	}
	ps.scene = file("scene", ".pov", true)
	ps.ini = file("ini", ".ini", false)
	size := func(name string) int {
		v, line, ok := spec.Get(name)
		if !ok {
			return 0
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 16384 {
			errs = append(errs, specError(spec, line, name, "%q: want pixels from 1 to 16384", v))
		}
		return n
	}
	ps.width, ps.height = size("width"), size("height")
	if v, line, ok := spec.Get("antialias"); ok {
		if f, err := strconv.ParseFloat(v, 64); v == "off" || (err == nil && f >= 0 && f <= 3) {
			ps.antialias = v
		} else {
			errs = append(errs, specError(spec, line, "antialias", "%q: want a threshold from 0 to 3 (e.g. 0.3), or off", v))
		}
	}
	if len(errs) > 0 {
		return ps, errs
	}
	return ps, nil
}

// packagePath reports whether p names a file inside a package.
func packagePath(p string) bool {
	return p != "" && !path.IsAbs(p) && path.Clean(p) == p && p != ".." && !strings.HasPrefix(p, "../") && !strings.Contains(p, `\`)
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Check implements Program.
func (POVRay) Check(spec *manifest.Backend) error {
	_, err := parsePOVRay(spec)
	return err
}

// Files implements FileNamer: the <scene> and the <ini>.
func (POVRay) Files(spec *manifest.Backend) []NamedFile {
	var out []NamedFile
	for _, name := range []string{"scene", "ini"} {
		if v, line, ok := spec.Get(name); ok {
			out = append(out, NamedFile{Path: v, Line: line, Element: name})
		}
	}
	return out
}

var povVersion = regexp.MustCompile(`POV-Ray (\d+\.\d+[0-9.]*)`)

// Fingerprint implements Program: POV-Ray's version, and the sandbox it
// needs.
func (POVRay) Fingerprint(ctx context.Context) (Fingerprint, error) {
	out, err := lookVersion(ctx, "povray", "--version")
	if err != nil {
		return Fingerprint{}, err
	}
	m := povVersion.FindStringSubmatch(out)
	if m == nil {
		return Fingerprint{}, fmt.Errorf("%w: povray --version: %w: %q", ErrUnavailable, errNoVersion, firstLine(out))
	}
	if err := sandbox.Available(); err != nil {
		return Fingerprint{}, fmt.Errorf("%w: POV-Ray scenes can read and write files, and %w", ErrUnavailable, err)
	}
	return Fingerprint{Version: m[1]}, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// povrayPolicy is what a POV-Ray process may read besides its directories.
var povrayPolicy = sandbox.Policy{Read: []string{
	"/usr", "/bin", "/lib", "/lib32", "/lib64", "/etc/ld.so.cache", "/etc/povray",
	"/etc/localtime", "/proc/cpuinfo", "/sys/devices/system/cpu", "/dev/null", "/dev/urandom",
}}

// povrayConf restricts POV-Ray's file I/O to its working directory and
// forbids shell-outs.
const povrayConf = `; written by distren for one task
[File I/O Security]
restricted
[Shellout Security]
forbidden
[Permitted Paths]
read* = /usr/share/povray-3.7/include
read+write = .
`

// Command implements Program.
func (POVRay) Command(t *Task) (*Invocation, error) {
	ps, err := parsePOVRay(t.Spec)
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(t.Home, ".povray", "3.7")
	if err := os.MkdirAll(conf, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(conf, "povray.conf"), []byte(povrayConf), 0o600); err != nil {
		return nil, err
	}
	first, last := t.Frames[0], t.Frames[len(t.Frames)-1]
	var args []string
	if ps.ini != "" {
		args = append(args, ps.ini, fmt.Sprintf("+SF%d", first), fmt.Sprintf("+EF%d", last))
	} else {
		args = append(args, fmt.Sprintf("+K%d", first))
	}
	args = append(args, "+I"+ps.scene, "-D", "+FN", "-P")
	if ps.width > 0 {
		args = append(args, fmt.Sprintf("+W%d", ps.width))
	}
	if ps.height > 0 {
		args = append(args, fmt.Sprintf("+H%d", ps.height))
	}
	switch ps.antialias {
	case "":
	case "off":
		args = append(args, "-A")
	default:
		args = append(args, "+A"+ps.antialias)
	}
	p := povrayPolicy
	return &Invocation{Path: "povray", Args: args, Sandbox: &p, Output: &povOutput{t: t}}, nil
}

var (
	povFrame    = regexp.MustCompile(`^Rendering frame (\d+) of (\d+)`)
	povFile     = regexp.MustCompile(`^\s*Output file\.+(.+?), \d+ bpp`)
	povProgress = regexp.MustCompile(`^Rendered (\d+) of (\d+) pixels`)
	povError    = regexp.MustCompile(`(Parse Error|Possible Parse Error|Fatal error|I/O restriction|Permission denied|Cannot open|Illegal)`)
	// povFatal marks errors that fail the frame even when POV-Ray goes on
	// and exits 0, as it sometimes does after refusing a file.
	povFatal = regexp.MustCompile(`(^|[^e] )Parse Error:|Fatal error|Cannot open user file|I/O restriction|Permission denied`)
)

// povOutput follows POV-Ray's console: "Rendering frame k of n" starts the
// k-th frame of the task (and so ends the one before), "Output file....name"
// names its image, "Rendered x of y pixels" is its progress.
type povOutput struct {
	t        *Task
	k        int // 1-based index of the frame being rendered; 0 before the first
	files    map[int]string
	done     int // frames up to which finish has looked
	reported map[int]bool
	errLine  string       // the first error POV-Ray printed
	errOpen  bool         // the last line was errLine or its continuation
	bad      map[int]bool // frames during which POV-Ray printed a fatal error
}

func (o *povOutput) frame(k int) int64 { return o.t.Frames[0] + int64(k-1) }

func (o *povOutput) Line(line string, ev Events) {
	if m := povFrame.FindStringSubmatch(line); m != nil {
		k, _ := strconv.Atoi(m[1])
		if k > o.k && k <= len(o.t.Frames) {
			o.finish(k-1, ev) // the frames before have been written
			o.k = k
		}
		return
	}
	if o.k == 0 && (povFile.MatchString(line) || povProgress.MatchString(line)) {
		o.k = 1 // a still: no "Rendering frame" line
	}
	if m := povFile.FindStringSubmatch(line); m != nil && o.k > 0 {
		if o.files == nil {
			o.files = map[int]string{}
		}
		o.files[o.k] = strings.TrimSpace(m[1])
		return
	}
	if m := povProgress.FindStringSubmatch(line); m != nil && o.k > 0 {
		x, _ := strconv.ParseFloat(m[1], 64)
		y, _ := strconv.ParseFloat(m[2], 64)
		if y > 0 {
			ev.Progress(o.frame(o.k), min(x/y, 1))
		}
		return
	}
	if povFatal.MatchString(line) {
		if o.bad == nil {
			o.bad = map[int]bool{}
		}
		o.bad[max(o.k, 1)] = true
	}
	switch {
	case o.errLine == "" && povError.MatchString(line):
		o.errLine, o.errOpen = strings.TrimSpace(line), true
	case o.errOpen && strings.HasPrefix(line, " "):
		o.errLine += " " + strings.TrimSpace(line) // POV-Ray wraps its messages at 80 columns
	default:
		o.errOpen = false
	}
}

// finish reports frames up to the k-th done, where their images exist.
func (o *povOutput) finish(k int, ev Events) {
	for ; o.done < k; o.done++ {
		i := o.done + 1
		name := o.files[i]
		if name == "" || o.bad[i] {
			continue
		}
		if fi, err := os.Stat(filepath.Join(o.t.Dir, name)); err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			continue
		}
		if o.reported == nil {
			o.reported = map[int]bool{}
		}
		o.reported[i] = true
		ev.FrameDone(o.frame(i), []string{filepath.ToSlash(name)})
	}
}

func (o *povOutput) Finish(exit error, ev Events) error {
	if exit == nil {
		o.finish(len(o.t.Frames), ev)
	}
	var missing []string
	for i := 1; i <= len(o.t.Frames); i++ {
		if !o.reported[i] {
			missing = append(missing, strconv.FormatInt(o.frame(i), 10))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	what := "POV-Ray wrote no image for frame " + strings.Join(missing, ", ")
	if len(o.bad) > 0 {
		what = "POV-Ray failed on frame " + strings.Join(missing, ", ")
	}
	switch {
	case o.errLine != "":
		err := fmt.Errorf("%s: %s", what, o.errLine)
		if exit != nil {
			err = fmt.Errorf("%s: %s (%w)", what, o.errLine, exit)
		}
		return &JobError{err}
	case exit != nil:
		return fmt.Errorf("%s: %w", what, exit)
	}
	return fmt.Errorf("%s", what)
}
