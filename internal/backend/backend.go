// Package backend owns the renderers distren can run: the Backend interface a
// renderer implements, shaped like a task driver (check a manifest's backend
// element, fingerprint the machine, render a frame or a chunk of frames in a
// scratch directory, reporting progress and finished frames), the Program
// interface and Exec runner for renderers that are external programs (build
// the command, parse its output, classify failures), the registry of known
// backends, and the backends themselves: the built-in Go renderer, command,
// POV-Ray, Blender and ffmpeg. docs/backends.md says how to add one.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/distren/distren/internal/manifest"
)

// ErrUnavailable is returned by Fingerprint when a renderer is not installed.
var ErrUnavailable = errors.New("renderer not available")

// Task is work for a backend: one frame, or a chunk of consecutive frames of
// one job that a backend able to render a range (Chunks) renders in one go.
type Task struct {
	Job int64
	// Frames are the frame numbers, ascending; more than one only for a
	// backend whose Chunks is true.
	Frames []int64
	// Dir is the task's scratch directory, an absolute path: the job's
	// input files and the outputs of the frames it depends on are there;
	// outputs go there too.
	Dir string
	// Home is a private directory outside Dir for the renderer's HOME,
	// configuration and temporary files, an absolute path. A worker gives
	// it empty but for tmp/, an empty directory (the TMPDIR), and empties
	// it with Dir after the task.
	Home string
	// Spec is the frames' backend element from the manifest.
	Spec *manifest.Backend
	// DepFiles are the files of the dependencies' outputs, relative to Dir,
	// in the order of the frames' dependencies.
	DepFiles []string
	// Stderr receives the renderer's diagnostics; its tail goes into failure messages.
	Stderr io.Writer
	// Events, if not nil, receives progress and finished frames as the
	// renderer reports them.
	Events Events
}

// Frame is the task's first frame: the frame, for backends that render one at a time.
func (t *Task) Frame() int64 { return t.Frames[0] }

// checkDirs refuses a task whose directories are relative: a renderer runs
// in Dir, so it would take a relative HOME, scene or output path from there
// and find nothing (the worker makes its directory absolute at start).
func (t *Task) checkDirs() error {
	if !filepath.IsAbs(t.Dir) || !filepath.IsAbs(t.Home) {
		return fmt.Errorf("task directories must be absolute paths (scratch %q, home %q)", t.Dir, t.Home)
	}
	return nil
}

// Events receives what a renderer reports while it works. Both methods may be
// called from any goroutine, but not concurrently.
type Events interface {
	// Progress reports the fraction (0..1) of a frame done.
	Progress(frame int64, fraction float64)
	// FrameDone reports a frame finished, with the files it produced
	// (relative to Task.Dir). In a chunk the worker sends each frame's
	// output as soon as it is done, so a chunk that fails later keeps it;
	// a frame never reported done in a chunk fails. For a single frame,
	// not reporting it lets the worker take every file the render created
	// or changed that matches the manifest's output globs.
	FrameDone(frame int64, files []string)
}

// Fingerprint is a renderer as found on a worker.
type Fingerprint struct {
	Version string // the renderer's version, as it reports it (e.g. "3.7.0.10")
}

// Backend is a renderer, shaped like a task driver: it checks a manifest's
// backend element, fingerprints the machine, and renders tasks.
//
// Renderers that are programs implement Program instead and are wrapped by
// Exec, which runs the command, parses its output and classifies failures.
type Backend interface {
	// Name is the manifest's <backend name="...">.
	Name() string
	// Check validates a backend element when a job is submitted; errors are
	// *manifest.Error values naming the line and element at fault. It runs on
	// the server, which need not have the renderer installed.
	Check(spec *manifest.Backend) error
	// Fingerprint reports the renderer on this machine, or an error wrapping
	// ErrUnavailable that says what is missing.
	Fingerprint(ctx context.Context) (Fingerprint, error)
	// Chunks reports whether one Render call may get several frames.
	Chunks() bool
	// Render renders the task's frames into t.Dir. It returns when the
	// renderer has finished; when ctx ends it kills every process it started
	// (the whole process group) and returns ctx's error. An error for which
	// IsJobError is true blames the job (its scene or settings), not the
	// machine.
	Render(ctx context.Context, t *Task) error
}

// JobError is a failure caused by the job itself — a scene that does not
// parse, a missing file, a setting the renderer refuses — rather than by the
// machine. Such a frame is not retried: every attempt would fail the same way.
type JobError struct{ Err error }

func (e *JobError) Error() string { return e.Err.Error() }
func (e *JobError) Unwrap() error { return e.Err }

// IsJobError reports whether err blames the job.
func IsJobError(err error) bool {
	var je *JobError
	return errors.As(err, &je)
}

// Registry maps backend names to backends.
type Registry map[string]Backend

// Default returns the backends built into distren.
func Default() Registry {
	r := Registry{}
	for _, b := range []Backend{Builtin{}, Command{}, Exec(POVRay{}), Exec(FFmpeg{}), Exec(Blender{})} {
		r[b.Name()] = b
	}
	return r
}

// Known reports whether name is a registered backend.
func (r Registry) Known(name string) bool { _, ok := r[name]; return ok }

// Fingerprints fingerprints every registered backend: what this machine can
// render (name → fingerprint) and why the others are unavailable.
func (r Registry) Fingerprints(ctx context.Context) (map[string]Fingerprint, map[string]error) {
	have, missing := map[string]Fingerprint{}, map[string]error{}
	for name, b := range r {
		fp, err := b.Fingerprint(ctx)
		if err != nil {
			missing[name] = err
			continue
		}
		have[name] = fp
	}
	return have, missing
}

// Names returns the registered names, sorted.
func (r Registry) Names() []string {
	var n []string
	for k := range r {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}

// NamedFile is a file of the job package that a backend element names.
type NamedFile struct {
	Path    string // clean, slash-separated, relative to the package root
	Line    int    // the element's line in the manifest
	Element string // the element, e.g. scene or blendfile
}

// FileNamer is implemented by backends (and Programs) whose elements name
// files of the job package: POV-Ray's <scene> and <ini>, Blender's
// <blendfile>. Files is called at submission only for an element that
// Check accepted; CheckPackage refuses a package that lacks one of them.
type FileNamer interface {
	Files(spec *manifest.Backend) []NamedFile
}

// CheckManifest checks the job's backend element and every per-frame override.
func (r Registry) CheckManifest(m *manifest.Manifest) error {
	errs, _ := r.checkSpecs(m)
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// CheckPackage checks a manifest against the package it came with: its
// backend elements (as CheckManifest does), and that the package holds
// every file the manifest names — each <inputs> <file>, and each file a
// backend element names (FileNamer). has reports whether the package holds
// a path (clean, slash-separated, relative). A backend element's files are
// not required of the package when every frame rendered with that element
// depends on other frames, whose outputs may bring them. The problems come
// as one manifest.ErrorList, by line.
func (r Registry) CheckPackage(m *manifest.Manifest, has func(path string) bool) error {
	errs, specs := r.checkSpecs(m)
	for _, in := range m.Inputs {
		if !has(in.Path) {
			errs = append(errs, &manifest.Error{File: manifest.FileName, Line: in.Line, Element: "file",
				Msg: fmt.Sprintf("the package has no file %q", in.Path)})
		}
	}
	for _, sp := range specs {
		if !sp.ok || !sp.standalone {
			continue
		}
		fn, ok := r[sp.spec.Name].(FileNamer)
		if !ok {
			continue
		}
		for _, f := range fn.Files(sp.spec) {
			if !has(f.Path) {
				errs = append(errs, &manifest.Error{File: manifest.FileName, Line: f.Line, Element: f.Element,
					Msg: fmt.Sprintf("the package has no file %q (backend %s needs it)", f.Path, sp.spec.Name)})
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b *manifest.Error) int { return a.Line - b.Line })
	return errs
}

// checkedSpec is a backend element of a manifest, as checked.
type checkedSpec struct {
	spec       *manifest.Backend
	ok         bool // its backend is known and accepted it
	standalone bool // a frame without dependencies is rendered with it
}

// checkSpecs checks the job's backend element and every per-frame
// override, in document order.
func (r Registry) checkSpecs(m *manifest.Manifest) (manifest.ErrorList, []checkedSpec) {
	var errs manifest.ErrorList
	add := func(err error) {
		var el manifest.ErrorList
		var e *manifest.Error
		switch {
		case err == nil:
		case errors.As(err, &el):
			errs = append(errs, el...)
		case errors.As(err, &e):
			errs = append(errs, e)
		default:
			errs = append(errs, &manifest.Error{File: manifest.FileName, Element: "backend", Msg: err.Error()})
		}
	}
	var specs []checkedSpec
	index := map[*manifest.Backend]int{}
	check := func(b *manifest.Backend) {
		index[b] = len(specs)
		be, ok := r[b.Name]
		if !ok {
			add(&manifest.Error{File: manifest.FileName, Line: b.Line, Element: "backend", Msg: fmt.Sprintf("unknown backend %q (this server has: %s)", b.Name, strings.Join(r.Names(), ", "))})
			specs = append(specs, checkedSpec{spec: b})
			return
		}
		err := be.Check(b)
		add(err)
		specs = append(specs, checkedSpec{spec: b, ok: err == nil})
	}
	check(&m.Backend)
	for i := range m.Frames {
		f := &m.Frames[i]
		b := f.Backend
		if b == nil {
			b = &m.Backend
		} else if _, seen := index[b]; !seen {
			check(b)
		}
		if len(f.Deps) == 0 {
			specs[index[b]].standalone = true
		}
	}
	return errs, specs
}

// specError locates a problem in a backend element.
func specError(spec *manifest.Backend, line int, elem, format string, args ...any) *manifest.Error {
	if line == 0 {
		line = spec.Line
	}
	return &manifest.Error{File: manifest.FileName, Line: line, Element: elem, Msg: fmt.Sprintf(format, args...)}
}

// Expand substitutes {frame}, {frame:N} (zero-padded to N digits), {job} and
// {dir} in s; {{ is a literal {.
func Expand(s string, job, frame int64, dir string) (string, error) {
	if !strings.Contains(s, "{") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		if strings.HasPrefix(s[i:], "{{") { // a literal brace
			b.WriteByte('{')
			s = s[i+2:]
			continue
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("unclosed { in %q (write {{ for a literal {)", s)
		}
		key := s[i+1 : i+j]
		s = s[i+j+1:]
		switch {
		case key == "frame":
			b.WriteString(strconv.FormatInt(frame, 10))
		case key == "job":
			b.WriteString(strconv.FormatInt(job, 10))
		case key == "dir":
			b.WriteString(dir)
		case strings.HasPrefix(key, "frame:"):
			w, err := strconv.Atoi(key[len("frame:"):])
			if err != nil || w < 1 || w > 18 {
				return "", fmt.Errorf("bad substitution {%s}: want {frame:N} with N from 1 to 18", key)
			}
			fmt.Fprintf(&b, "%0*d", w, frame)
		default:
			return "", fmt.Errorf("unknown substitution {%s} (known: {frame}, {frame:N}, {job}, {dir}; write {{ for a literal {)", key)
		}
	}
}
