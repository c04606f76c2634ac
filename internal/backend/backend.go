// Package backend owns the renderers distren can run: the Backend interface a
// renderer implements (check a manifest's backend element, fingerprint the
// machine, render a frame in a scratch directory), the registry of known
// backends, the built-in Go renderer and the command backend. docs/backends.md
// says how to add one.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/distren/distren/internal/manifest"
)

// ErrUnavailable is returned by Fingerprint when a renderer is not installed.
var ErrUnavailable = errors.New("renderer not available")

// Task is one frame to render.
type Task struct {
	Job   int64
	Frame int64
	// Dir is the frame's scratch directory: the job's input files and the
	// outputs of the frames it depends on are there; outputs go there too.
	Dir string
	// Spec is the frame's backend element from the manifest.
	Spec *manifest.Backend
	// DepFiles are the files of the dependencies' outputs, relative to Dir,
	// in the order of the frame's dependencies.
	DepFiles []string
	// Stderr receives the renderer's diagnostics; its tail goes into failure messages.
	Stderr io.Writer
	// Progress, if not nil, receives the fraction done (0..1) where the renderer reports it.
	Progress func(float64)
}

// Backend is a renderer.
type Backend interface {
	// Name is the manifest's <backend name="...">.
	Name() string
	// Check validates a backend element when a job is submitted; errors are
	// *manifest.Error values naming the line and element at fault.
	Check(spec *manifest.Backend) error
	// Fingerprint reports the renderer's version on this machine, or an error
	// wrapping ErrUnavailable.
	Fingerprint(ctx context.Context) (string, error)
	// Render renders the task's frame into t.Dir. It returns when the
	// renderer has finished; when ctx ends it kills every process it started
	// (the whole process group) and returns ctx's error.
	Render(ctx context.Context, t *Task) error
}

// Registry maps backend names to backends.
type Registry map[string]Backend

// Default returns the backends built into distren.
func Default() Registry {
	r := Registry{}
	for _, b := range []Backend{Builtin{}, Command{}} {
		r[b.Name()] = b
	}
	return r
}

// Known reports whether name is a registered backend.
func (r Registry) Known(name string) bool { _, ok := r[name]; return ok }

// Names returns the registered names, sorted.
func (r Registry) Names() []string {
	var n []string
	for k := range r {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}

// CheckManifest checks the job's backend element and every per-frame override.
func (r Registry) CheckManifest(m *manifest.Manifest) error {
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
	check := func(b *manifest.Backend) {
		be, ok := r[b.Name]
		if !ok {
			add(&manifest.Error{File: manifest.FileName, Line: b.Line, Element: "backend", Msg: fmt.Sprintf("unknown backend %q (this server has: %s)", b.Name, strings.Join(r.Names(), ", "))})
			return
		}
		add(be.Check(b))
	}
	check(&m.Backend)
	seen := map[*manifest.Backend]bool{}
	for i := range m.Frames {
		if b := m.Frames[i].Backend; b != nil && !seen[b] {
			seen[b] = true
			check(b)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
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
