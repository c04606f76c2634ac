// Package manifest owns distrenjob.xml: its schema, its parsing and its
// validation. A Manifest is the checked, expanded form of one job's manifest:
// every frame with its dependencies, the backend that renders it, the files
// the job needs and the outputs it keeps. Every problem is reported with the
// file, line and element at fault.
package manifest

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/distren/distren/internal/durl"
)

// FileName is the manifest's name at the root of a job package.
const FileName = "distrenjob.xml"

// Defaults and limits.
const (
	DefaultMaxBytes  = 16 << 20   // manifest size
	DefaultMaxFrames = 1_000_000  // frames per job
	DefaultMaxDeps   = 10_000_000 // dependency edges per job, after expansion
	DefaultPriority  = 50
	DefaultRetries   = 2
	MaxChunk         = 1000
	// MaxRequirements bounds the distinct backend name and version pairs a
	// job's frames need.
	MaxRequirements = 64
	MaxPriority     = 100
	MaxRetries      = 100
	maxNameLen      = 256
)

// Options bound what Parse accepts.
type Options struct {
	MaxBytes  int64 // 0: DefaultMaxBytes
	MaxFrames int64 // 0: DefaultMaxFrames
	MaxDeps   int64 // 0: DefaultMaxDeps
	// Backends reports whether a backend name is known; nil accepts any name.
	Backends func(name string) bool
}

// Manifest is a validated job manifest.
type Manifest struct {
	Version  int
	Name     string
	Priority int           // 0..100, higher first
	Deadline time.Time     // zero when none
	Retries  int           // extra attempts per frame
	Timeout  time.Duration // per attempt; 0 for none
	// Chunk is how many consecutive frames one task may render, for
	// backends that render a range in one process; 1 otherwise.
	Chunk   int
	Backend Backend  // the job's backend
	Frames  []Frame  // sorted by ID, no duplicates
	Inputs  []Input  // files the package must hold, in document order
	Outputs []string // globs, relative to a frame's scratch directory
}

// Backend is a <backend> element: a renderer's name and its own elements,
// kept as written for the backend to check and interpret.
type Backend struct {
	Name string
	// Version, if not empty, is the renderer version a worker must have:
	// "3.7" accepts 3.7, 3.7.0.10 and so on (see VersionMatches).
	Version  string
	Line     int
	Elements []*Element
}

// VersionMatches reports whether a renderer version satisfies a wanted one:
// equal, or starting with it followed by a separator ("3.7" matches "3.7.0"
// and "3.7-1", not "3.70").
func VersionMatches(want, have string) bool {
	if want == "" || want == have {
		return true
	}
	if !strings.HasPrefix(have, want) {
		return false
	}
	c := have[len(want)]
	return c < '0' || c > '9'
}

// Get returns the trimmed text of the first child element called name.
func (b *Backend) Get(name string) (value string, line int, ok bool) {
	for _, e := range b.Elements {
		if e.Name == name {
			return strings.TrimSpace(e.Text), e.Line, true
		}
	}
	return "", 0, false
}

// All returns every child element called name, in document order.
func (b *Backend) All(name string) []*Element {
	var out []*Element
	for _, e := range b.Elements {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// Frame is one frame of a job.
type Frame struct {
	ID      int64
	Deps    []Dep    // in document order
	Backend *Backend // a per-frame override; nil means the job's backend
	Line    int      // the <frame> or <range> that defines it
}

// Dep is one dependency of a frame: a frame of the same job (Server empty),
// or a frame named by its distren:// URL.
type Dep struct {
	Server string
	Job    int64
	Frame  int64
}

// Local reports whether d names a frame of the same job.
func (d Dep) Local() bool { return d.Server == "" }

func (d Dep) String() string {
	if d.Local() {
		return fmt.Sprintf("frame %d", d.Frame)
	}
	return durl.Frame(d.Server, d.Job, d.Frame)
}

// Input is a file the manifest names, which the package must contain.
type Input struct {
	Path string // clean, slash-separated, relative
	Line int
}

// FrameIndex returns the index in m.Frames of the frame with the given id.
func (m *Manifest) FrameIndex(id int64) (int, bool) {
	return frameIndex(m.Frames, id)
}

func frameIndex(fs []Frame, id int64) (int, bool) {
	if len(fs) == 0 {
		return 0, false
	}
	// Contiguous ids are the common case: try the direct position first.
	if i := id - fs[0].ID; i >= 0 && i < int64(len(fs)) && fs[i].ID == id {
		return int(i), true
	}
	return slices.BinarySearchFunc(fs, id, func(f Frame, id int64) int {
		switch {
		case f.ID < id:
			return -1
		case f.ID > id:
			return 1
		}
		return 0
	})
}

// Parse reads and validates a manifest. file names it in error messages. The
// error is an ErrorList of every problem found, or a single *Error when the
// document cannot be read as XML at all.
func Parse(r io.Reader, file string, opt Options) (*Manifest, error) {
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = DefaultMaxBytes
	}
	if opt.MaxFrames <= 0 {
		opt.MaxFrames = DefaultMaxFrames
	}
	if opt.MaxDeps <= 0 {
		opt.MaxDeps = DefaultMaxDeps
	}
	raw, err := io.ReadAll(io.LimitReader(r, opt.MaxBytes+1))
	if err != nil {
		return nil, &Error{File: file, Msg: fmt.Sprintf("reading: %v", err)}
	}
	if int64(len(raw)) > opt.MaxBytes {
		return nil, &Error{File: file, Msg: fmt.Sprintf("larger than the limit of %d bytes", opt.MaxBytes), Err: ErrLimit}
	}
	if !utf8.Valid(raw) {
		return nil, &Error{File: file, Msg: "not valid UTF-8"}
	}
	root, err := readTree(bytes.NewReader(raw), file)
	if err != nil {
		return nil, err
	}
	p := &parser{c: collector{file: file}, opt: opt}
	m := p.manifest(root)
	if err := p.c.err(); err != nil {
		return nil, err
	}
	return m, nil
}

type parser struct {
	c   collector
	opt Options
}

var topElements = []string{"name", "priority", "deadline", "retries", "timeout", "chunk", "backend", "inputs", "frames", "outputs"}

func (p *parser) manifest(root *Element) *Manifest {
	m := &Manifest{Priority: DefaultPriority, Retries: DefaultRetries, Chunk: 1}
	if root.Name != "distrenjob" {
		p.c.add(root.Line, root.Name, "the root element must be <distrenjob>")
		return nil
	}
	p.attrs(root, "version")
	switch v, ok := root.Attr("version"); {
	case !ok:
		p.c.add(root.Line, "distrenjob", `missing attribute version="1"`)
	case strings.TrimSpace(v) != "1":
		p.c.add(root.Line, "distrenjob", "version %q is not supported (this distren reads version 1)", v)
	default:
		m.Version = 1
	}
	p.noText(root)
	seen := map[string]*Element{}
	for _, e := range root.Children {
		if !slices.Contains(topElements, e.Name) {
			p.unknown(e, "distrenjob", topElements)
			continue
		}
		if prev := seen[e.Name]; prev != nil {
			p.c.add(e.Line, e.Name, "given twice (first on line %d)", prev.Line)
			continue
		}
		seen[e.Name] = e
		switch e.Name {
		case "name":
			if v, ok := p.scalar(e); ok {
				switch {
				case v == "":
					p.c.add(e.Line, "name", "must not be empty")
				case len(v) > maxNameLen:
					p.c.add(e.Line, "name", "longer than %d bytes", maxNameLen)
				case strings.IndexFunc(v, unicode.IsControl) >= 0:
					p.c.add(e.Line, "name", "must not contain control characters")
				default:
					m.Name = v
				}
			}
		case "priority":
			if v, ok := p.scalar(e); ok {
				m.Priority = p.intIn(e, v, 0, MaxPriority)
			}
		case "retries":
			if v, ok := p.scalar(e); ok {
				m.Retries = p.intIn(e, v, 0, MaxRetries)
			}
		case "chunk":
			if v, ok := p.scalar(e); ok {
				m.Chunk = p.intIn(e, v, 1, MaxChunk)
			}
		case "deadline":
			if v, ok := p.scalar(e); ok {
				t, err := time.Parse(time.RFC3339, v)
				if err != nil {
					p.c.add(e.Line, "deadline", "%q is not an RFC 3339 time such as 2026-12-01T18:00:00Z", v)
				}
				m.Deadline = t.UTC()
			}
		case "timeout":
			if v, ok := p.scalar(e); ok {
				d, err := time.ParseDuration(v)
				if err != nil || d <= 0 {
					p.c.add(e.Line, "timeout", "%q is not a positive duration such as 90s or 10m", v)
				}
				m.Timeout = d
			}
		case "backend":
			if b := p.backend(e); b != nil {
				m.Backend = *b
			}
		case "inputs":
			m.Inputs = p.inputs(e)
		case "outputs":
			m.Outputs = p.outputs(e)
		case "frames":
			m.Frames = p.frames(e)
		}
	}
	if seen["backend"] != nil && seen["frames"] != nil {
		reqs := map[[2]string]bool{{m.Backend.Name, m.Backend.Version}: true}
		for _, f := range m.Frames {
			if b := f.Backend; b != nil && !reqs[[2]string{b.Name, b.Version}] {
				if len(reqs) == MaxRequirements {
					p.c.add(b.Line, "backend", "more than %d different backend names and versions in one job", MaxRequirements)
					break
				}
				reqs[[2]string{b.Name, b.Version}] = true
			}
		}
	}
	for _, req := range []string{"name", "backend", "frames", "outputs"} {
		if seen[req] == nil {
			p.c.add(root.Line, "distrenjob", "missing required element <%s>", req)
		}
	}
	return m
}

// attrs reports attributes of e other than those allowed.
func (p *parser) attrs(e *Element, allowed ...string) {
	for _, a := range e.Attrs {
		if !slices.Contains(allowed, a.Name) {
			if len(allowed) == 0 {
				p.c.add(e.Line, e.Name, "unknown attribute %q (<%s> takes none)", a.Name, e.Name)
			} else {
				p.c.add(e.Line, e.Name, "unknown attribute %q (known: %s)", a.Name, strings.Join(allowed, ", "))
			}
		}
	}
}

// noText reports character data in an element that holds only elements.
func (p *parser) noText(e *Element) {
	if t := strings.TrimSpace(e.Text); t != "" {
		p.c.add(e.Line, e.Name, "unexpected text %q (this element holds only elements)", clip(t))
	}
}

func (p *parser) unknown(e *Element, parent string, known []string) {
	msg := fmt.Sprintf("unknown element in <%s>", parent)
	if s := suggest(e.Name, known); s != "" {
		msg += fmt.Sprintf(" (did you mean <%s>?)", s)
	} else {
		msg += fmt.Sprintf(" (known: %s)", strings.Join(known, ", "))
	}
	p.c.add(e.Line, e.Name, "%s", msg)
}

// scalar returns the trimmed text of an element that must hold text only.
func (p *parser) scalar(e *Element) (string, bool) {
	p.attrs(e)
	if len(e.Children) > 0 {
		p.c.add(e.Children[0].Line, e.Name, "unexpected element <%s> (this element holds only text)", e.Children[0].Name)
		return "", false
	}
	return strings.TrimSpace(e.Text), true
}

func (p *parser) intIn(e *Element, v string, lo, hi int) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.c.add(e.Line, e.Name, "%q is not a whole number in %d..%d", v, lo, hi)
	}
	return n
}

func (p *parser) backend(e *Element) *Backend {
	p.attrs(e, "name", "version")
	p.noText(e)
	version, _ := e.Attr("version")
	version = strings.TrimSpace(version)
	if strings.ContainsFunc(version, func(r rune) bool { return r <= ' ' || r == '"' }) {
		p.c.add(e.Line, "backend", "version %q must not contain spaces or control characters", version)
	}
	name, ok := e.Attr("name")
	name = strings.TrimSpace(name)
	switch {
	case !ok || name == "":
		p.c.add(e.Line, "backend", `missing attribute name (for example <backend name="builtin">)`)
		return nil
	case p.opt.Backends != nil && !p.opt.Backends(name):
		p.c.add(e.Line, "backend", "unknown backend %q", name)
		return nil
	}
	return &Backend{Name: name, Version: version, Line: e.Line, Elements: e.Children}
}

func (p *parser) inputs(e *Element) []Input {
	p.attrs(e)
	p.noText(e)
	var out []Input
	seen := map[string]int{}
	for _, f := range e.Children {
		if f.Name != "file" {
			p.unknown(f, "inputs", []string{"file"})
			continue
		}
		v, ok := p.scalar(f)
		if !ok {
			continue
		}
		clean, err := relPath(v)
		switch {
		case err != nil:
			p.c.add(f.Line, "file", "%q: %v", v, err)
		case clean == FileName:
			p.c.add(f.Line, "file", "%q is the manifest itself", v)
		case seen[clean] > 0:
			p.c.add(f.Line, "file", "%q listed twice (first on line %d)", v, seen[clean])
		default:
			seen[clean] = f.Line
			out = append(out, Input{Path: clean, Line: f.Line})
		}
	}
	return out
}

func (p *parser) outputs(e *Element) []string {
	p.attrs(e)
	p.noText(e)
	var out []string
	for _, o := range e.Children {
		if o.Name != "output" {
			p.unknown(o, "outputs", []string{"output"})
			continue
		}
		v, ok := p.scalar(o)
		if !ok {
			continue
		}
		if _, err := scratchPath(v); err != nil {
			p.c.add(o.Line, "output", "%q: %v", v, err)
			continue
		}
		if _, err := path.Match(v, ""); err != nil {
			p.c.add(o.Line, "output", "%q is not a valid glob: %v", v, err)
			continue
		}
		out = append(out, v)
	}
	if len(out) == 0 && len(p.c.errs) == 0 {
		p.c.add(e.Line, "outputs", "needs at least one <output> glob")
	}
	return out
}

// A pathRule says what a relative path of the manifest names and where it
// must stay.
type pathRule struct {
	noun   string // "path", "glob"
	abs    string // why an absolute one is refused
	leaves string // what it must not leave
}

var (
	packagePath  = pathRule{"path", "paths are relative to the package root", "the package root"}
	scratchGlobs = pathRule{"glob", "outputs are matched in the frame's scratch directory, relative to it", "the frame's scratch directory"}
)

// relPath checks a path inside a package.
func relPath(v string) (string, error) { return packagePath.check(v) }

// scratchPath checks a glob relative to a frame's scratch directory.
func scratchPath(v string) (string, error) { return scratchGlobs.check(v) }

func (r pathRule) check(v string) (string, error) {
	switch {
	case v == "":
		return "", fmt.Errorf("empty %s", r.noun)
	case strings.ContainsRune(v, 0) || strings.ContainsRune(v, '\\'):
		return "", fmt.Errorf("NUL or backslash in the %s", r.noun)
	case path.IsAbs(v):
		return "", fmt.Errorf("absolute %s; %s", r.noun, r.abs)
	}
	c := path.Clean(v)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("the %s leaves %s", r.noun, r.leaves)
	}
	return c, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// synonyms are words people write for an element, by the element meant.
var synonyms = map[string][]string{
	"backend": {"renderer", "render", "engine"},
	"frames":  {"animation", "sequence"},
	"depends": {"dependency", "dependson", "after"},
	"outputs": {"results"},
	"inputs":  {"files", "assets"},
}

// suggest returns the known name closest to s, or to a synonym of it, if s
// is a likely typo of it (<rendrer> gives <backend>).
func suggest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		for _, w := range append([]string{k}, synonyms[k]...) {
			if d := editDistance(strings.ToLower(s), w); d < bestD {
				best, bestD = k, d
			}
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
