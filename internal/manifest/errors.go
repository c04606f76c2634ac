package manifest

import (
	"errors"
	"fmt"
	"strings"
)

// ErrLimit is matched, with errors.Is, by the problems that are a
// configured limit passed (the manifest's size, its frames, its
// dependencies) rather than a mistake in the manifest.
var ErrLimit = errors.New("over a limit")

// Error is one problem in a manifest, located by file, line and element.
type Error struct {
	File    string
	Line    int    // 0 when the problem has no single line
	Element string // the element at fault, without brackets; may be empty
	Msg     string
	Err     error // ErrLimit for a limit passed; nil otherwise
}

// Unwrap returns the kind of problem, ErrLimit or nil.
func (e *Error) Unwrap() error { return e.Err }

// Error formats the problem as "file:line: <element>: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Element != "" {
		fmt.Fprintf(&b, "<%s>: ", e.Element)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// maxReported bounds the problems one ErrorList prints.
const maxReported = 20

// ErrorList is every problem found in a manifest, in document order.
type ErrorList []*Error

// Error prints one problem per line, at most maxReported of them.
func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i == maxReported {
			fmt.Fprintf(&b, "\n... and %d more problems", len(l)-i)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find the individual problems.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// collector gathers problems while a manifest is interpreted.
type collector struct {
	file string
	errs ErrorList
}

func (c *collector) add(line int, elem, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.file, Line: line, Element: elem, Msg: fmt.Sprintf(format, args...)})
}

// limit adds a problem that is a limit passed (see ErrLimit).
func (c *collector) limit(line int, elem, format string, args ...any) {
	c.add(line, elem, format, args...)
	c.errs[len(c.errs)-1].Err = ErrLimit
}

func (c *collector) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	return c.errs
}
