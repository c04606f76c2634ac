package manifest

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/distren/distren/internal/durl"
)

// frameSpec is one <range> or <frame> before expansion.
type frameSpec struct {
	first, last, step int64
	deps              []depSpec
	backend           *Backend
	line              int
	elem              string
}

func (s *frameSpec) count() int64 { return span(s.first, s.last, s.step) }

// span counts first, first+step, ... up to last, saturating at MaxInt64.
func span(first, last, step int64) int64 {
	n := (last - first) / step
	if n == math.MaxInt64 {
		return n
	}
	return n + 1
}

type depKind int

const (
	depOn     depKind = iota // one frame, local or by URL
	depOffset                // frame id + offset
	depRange                 // every frame first..last by step
)

type depSpec struct {
	kind              depKind
	on                Dep
	offset            int64
	first, last, step int64
	line              int
}

func (d *depSpec) count() int64 {
	if d.kind == depRange {
		return span(d.first, d.last, d.step)
	}
	return 1
}

func (p *parser) frames(e *Element) []Frame {
	p.attrs(e)
	p.noText(e)
	var specs []frameSpec
	var total int64
	for _, c := range e.Children {
		var s frameSpec
		var ok bool
		switch c.Name {
		case "range":
			s, ok = p.rangeSpec(c)
		case "frame":
			s, ok = p.frameSpec(c)
		default:
			p.unknown(c, "frames", []string{"range", "frame"})
			continue
		}
		if !ok {
			continue
		}
		if n := s.count(); total > p.opt.MaxFrames-n {
			p.c.limit(c.Line, c.Name, "the job has more than %d frames, the limit", p.opt.MaxFrames)
			return nil
		}
		total += s.count()
		specs = append(specs, s)
	}
	if len(specs) == 0 {
		if len(p.c.errs) == 0 {
			p.c.add(e.Line, "frames", "needs at least one <range> or <frame>")
		}
		return nil
	}
	var edges int64
	for i := range specs {
		var per int64
		for _, d := range specs[i].deps {
			if c := d.count(); c > p.opt.MaxDeps-per {
				per = p.opt.MaxDeps + 1
				break
			}
			per += d.count()
		}
		if n := specs[i].count(); per > 0 && (n > p.opt.MaxDeps/per || edges > p.opt.MaxDeps-n*per) {
			p.c.limit(specs[i].line, specs[i].elem, "the job has more than %d dependencies, the limit", p.opt.MaxDeps)
			return nil
		}
		edges += specs[i].count() * per
	}
	if len(p.c.errs) > 0 {
		return nil // the specs are incomplete; expanding would only repeat problems
	}
	return p.expand(specs, total, edges)
}

func (p *parser) rangeSpec(e *Element) (frameSpec, bool) {
	p.attrs(e, "first", "last", "step")
	s := frameSpec{line: e.Line, elem: "range", step: 1}
	ok := true
	var good bool
	if s.first, good = p.idAttr(e, "first", true); !good {
		ok = false
	}
	if s.last, good = p.idAttr(e, "last", true); !good {
		ok = false
	}
	if v, has := e.Attr("step"); has {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 1 {
			p.c.add(e.Line, "range", "step %q is not a whole number of 1 or more", v)
			ok = false
		}
		s.step = n
	}
	if ok && s.last < s.first {
		p.c.add(e.Line, "range", "last (%d) is before first (%d)", s.last, s.first)
		ok = false
	}
	if !p.children(e, &s) {
		ok = false
	}
	return s, ok
}

func (p *parser) frameSpec(e *Element) (frameSpec, bool) {
	p.attrs(e, "id")
	s := frameSpec{line: e.Line, elem: "frame", step: 1}
	id, ok := p.idAttr(e, "id", true)
	s.first, s.last = id, id
	if !p.children(e, &s) {
		ok = false
	}
	return s, ok
}

// children reads the <depends> and <backend> elements of a <range> or <frame>.
func (p *parser) children(e *Element, s *frameSpec) bool {
	p.noText(e)
	ok := true
	for _, c := range e.Children {
		switch c.Name {
		case "depends":
			d, good := p.depends(c)
			if !good {
				ok = false
				continue
			}
			s.deps = append(s.deps, d)
		case "backend":
			if s.backend != nil {
				p.c.add(c.Line, "backend", "given twice in this <%s> (first on line %d)", e.Name, s.backend.Line)
				ok = false
				continue
			}
			if s.backend = p.backend(c); s.backend == nil {
				ok = false
			}
		default:
			p.unknown(c, e.Name, []string{"depends", "backend"})
			ok = false
		}
	}
	return ok
}

func (p *parser) depends(e *Element) (depSpec, bool) {
	p.attrs(e, "on", "offset", "first", "last", "step")
	if len(e.Children) > 0 || strings.TrimSpace(e.Text) != "" {
		p.c.add(e.Line, "depends", "takes attributes only, no content")
		return depSpec{}, false
	}
	d := depSpec{line: e.Line, step: 1}
	on, hasOn := e.Attr("on")
	off, hasOff := e.Attr("offset")
	_, hasFirst := e.Attr("first")
	_, hasLast := e.Attr("last")
	_, hasStep := e.Attr("step")
	forms := 0
	for _, b := range []bool{hasOn, hasOff, hasFirst || hasLast} {
		if b {
			forms++
		}
	}
	if forms != 1 || (hasStep && !hasFirst) {
		p.c.add(e.Line, "depends", `needs exactly one of on="FRAME or URL", offset="N", or first="A" last="B" [step="S"]`)
		return d, false
	}
	switch {
	case hasOn:
		on = strings.TrimSpace(on)
		if strings.HasPrefix(on, durl.Scheme) {
			a, err := durl.Parse(on)
			if err != nil {
				p.c.add(e.Line, "depends", "on=%q: %v", on, err)
				return d, false
			}
			if a.Kind != durl.KindFrame {
				p.c.add(e.Line, "depends", "on=%q: not a frame URL (distren://SERVER/JOB/frame/N)", on)
				return d, false
			}
			d.on = Dep{Server: a.Server, Job: a.Job, Frame: a.N}
			return d, true
		}
		n, ok := p.id(e, "on", on)
		d.on = Dep{Frame: n}
		return d, ok
	case hasOff:
		d.kind = depOffset
		n, err := strconv.ParseInt(strings.TrimSpace(off), 10, 64)
		if err != nil || n == 0 {
			p.c.add(e.Line, "depends", "offset %q is not a non-zero whole number such as -1", off)
			return d, false
		}
		d.offset = n
		return d, true
	}
	d.kind = depRange
	var ok1, ok2 bool
	d.first, ok1 = p.idAttr(e, "first", true)
	d.last, ok2 = p.idAttr(e, "last", true)
	if !ok1 || !ok2 {
		return d, false
	}
	if v, has := e.Attr("step"); has {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 1 {
			p.c.add(e.Line, "depends", "step %q is not a whole number of 1 or more", v)
			return d, false
		}
		d.step = n
	}
	if d.last < d.first {
		p.c.add(e.Line, "depends", "last (%d) is before first (%d)", d.last, d.first)
		return d, false
	}
	return d, true
}

// idAttr reads a frame id from an attribute.
func (p *parser) idAttr(e *Element, name string, required bool) (int64, bool) {
	v, ok := e.Attr(name)
	if !ok {
		if required {
			p.c.add(e.Line, e.Name, "missing attribute %s", name)
		}
		return 0, false
	}
	return p.id(e, name, v)
}

func (p *parser) id(e *Element, attr, v string) (int64, bool) {
	s := strings.TrimSpace(v)
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err == nil && n < 0:
		p.c.add(e.Line, e.Name, "%s=%q: frame ids are not negative", attr, v)
		return 0, false
	case err != nil && strings.HasPrefix(s, "-"):
		p.c.add(e.Line, e.Name, "%s=%q: frame ids are not negative", attr, v)
		return 0, false
	case err != nil:
		p.c.add(e.Line, e.Name, "%s=%q: not a frame id (a whole number 0..%d)", attr, v, int64(math.MaxInt64))
		return 0, false
	}
	return n, true
}

// expand turns the specs into frames, then checks duplicates, missing
// dependencies and cycles.
func (p *parser) expand(specs []frameSpec, total, edges int64) []Frame {
	frames := make([]Frame, 0, total)
	deps := make([]Dep, 0, edges)
	for si := range specs {
		s := &specs[si]
		reported := false
		for k := range s.count() {
			id := s.first + k*s.step
			start := len(deps)
			for di := range s.deps {
				d := &s.deps[di]
				switch d.kind {
				case depOn:
					deps = append(deps, d.on)
				case depOffset:
					t := id + d.offset
					if (d.offset > 0 && t < id) || t < 0 {
						if !reported {
							p.c.add(d.line, "depends", "frame %d: offset %d gives no valid frame id", id, d.offset)
							reported = true
						}
						continue
					}
					deps = append(deps, Dep{Frame: t})
				case depRange:
					for j := range d.count() {
						deps = append(deps, Dep{Frame: d.first + j*d.step})
					}
				}
			}
			frames = append(frames, Frame{ID: id, Deps: deps[start:len(deps):len(deps)], Backend: s.backend, Line: s.line})
		}
	}
	slices.SortStableFunc(frames, func(a, b Frame) int { return cmp.Compare(a.ID, b.ID) })
	dups := 0
	for i := 1; i < len(frames); i++ {
		if frames[i].ID == frames[i-1].ID {
			if dups++; dups <= maxReported {
				p.c.add(frames[i].Line, "frames", "frame %d is defined twice (also on line %d)", frames[i].ID, frames[i-1].Line)
			}
		}
	}
	if dups > 0 {
		return nil
	}
	missing := 0
	for i := range frames {
		f := &frames[i]
		for _, d := range f.Deps {
			if !d.Local() {
				continue
			}
			if d.Frame == f.ID {
				if missing++; missing <= maxReported {
					p.c.add(f.Line, "depends", "frame %d depends on itself", f.ID)
				}
				continue
			}
			if _, ok := frameIndex(frames, d.Frame); !ok {
				if missing++; missing <= maxReported {
					p.c.add(f.Line, "depends", "frame %d depends on frame %d, which the job does not have", f.ID, d.Frame)
				}
			}
		}
	}
	if missing > 0 {
		return nil
	}
	if cyc := findCycle(frames); cyc != nil {
		// A long cycle shows its first ten frames and the last two, back
		// to the first.
		var parts []string
		for i, id := range cyc {
			if len(cyc) > 14 && i == 10 {
				parts = append(parts, fmt.Sprintf("… (%d more)", len(cyc)-13))
			}
			if len(cyc) <= 14 || i < 10 || i >= len(cyc)-3 {
				parts = append(parts, strconv.FormatInt(id, 10))
			}
		}
		i, _ := frameIndex(frames, cyc[0])
		p.c.add(frames[i].Line, "depends", "dependency cycle: frame %s", strings.Join(parts, " → "))
		return nil
	}
	return frames
}

// findCycle returns the ids along one dependency cycle among local
// dependencies, first id repeated at the end, or nil. It is iterative so that
// long chains cannot exhaust the stack.
func findCycle(frames []Frame) []int64 {
	const (
		white = iota
		grey
		black
	)
	color := make([]uint8, len(frames))
	type step struct{ node, next int }
	var stack []step
	for root := range frames {
		if color[root] != white {
			continue
		}
		color[root] = grey
		stack = append(stack[:0], step{root, 0})
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			deps := frames[top.node].Deps
			if top.next == len(deps) {
				color[top.node] = black
				stack = stack[:len(stack)-1]
				continue
			}
			d := deps[top.next]
			top.next++
			if !d.Local() {
				continue
			}
			t, _ := frameIndex(frames, d.Frame)
			switch color[t] {
			case white:
				color[t] = grey
				stack = append(stack, step{t, 0})
			case grey:
				// t is on the stack: the cycle runs from it to the top and back.
				var ids []int64
				on := false
				for _, s := range stack {
					if s.node == t {
						on = true
					}
					if on {
						ids = append(ids, frames[s.node].ID)
					}
				}
				return append(ids, frames[t].ID)
			}
		}
	}
	return nil
}

// Range is an inclusive interval of frame ids.
type Range struct {
	First, Last int64
}

// ParseFrameSet reads a frame set such as "1-10,20,30-40". Ranges are
// inclusive; the empty string is an error.
func ParseFrameSet(s string) ([]Range, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("empty frame set (expected e.g. 1-10,20)")
	}
	var out []Range
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseInt(strings.TrimSpace(lo), 10, 64)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("frame set %q: %q is not a frame id or range such as 1-10", s, part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(strings.TrimSpace(hi), 10, 64); err != nil || b < 0 {
				return nil, fmt.Errorf("frame set %q: %q is not a frame id or range such as 1-10", s, part)
			}
			if b < a {
				return nil, fmt.Errorf("frame set %q: range %q ends before it starts", s, part)
			}
		}
		out = append(out, Range{a, b})
	}
	return out, nil
}

// Contains reports whether id lies in any of rs.
func Contains(rs []Range, id int64) bool {
	for _, r := range rs {
		if id >= r.First && id <= r.Last {
			return true
		}
	}
	return false
}

// FormatFrameSet formats rs as ParseFrameSet reads it.
func FormatFrameSet(rs []Range) string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteByte(',')
		}
		if r.First == r.Last {
			fmt.Fprintf(&b, "%d", r.First)
		} else {
			fmt.Fprintf(&b, "%d-%d", r.First, r.Last)
		}
	}
	return b.String()
}
