package manifest

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxDepth bounds element nesting; no valid manifest comes near it.
const maxDepth = 32

// Element is one XML element as written in the manifest. Backend-specific
// elements are kept in this form for the backend to interpret.
type Element struct {
	Name     string
	Attrs    []Attr
	Text     string // the character data directly inside the element, verbatim
	Children []*Element
	Line     int
}

// Attr is one attribute of an Element.
type Attr struct {
	Name, Value string
}

// Attr returns the value of the named attribute.
func (e *Element) Attr(name string) (string, bool) {
	for _, a := range e.Attrs {
		if a.Name == name {
			return a.Value, true
		}
	}
	return "", false
}

// readTree reads one XML document into an element tree. It refuses DOCTYPE
// and entity declarations, processing instructions other than the XML
// declaration, namespaces, and anything after the root element.
func readTree(r io.Reader, file string) (*Element, error) {
	d := xml.NewDecoder(r)
	d.Strict = true
	var (
		root  *Element
		stack []*Element
		text  [][]byte
	)
	line := func() int { l, _ := d.InputPos(); return l }
	// start is the line where the token being handled begins: tokens are
	// contiguous, so it is where the one before ended.
	start := 1
	fail := func(elem, format string, args ...any) error {
		return &Error{File: file, Line: start, Element: elem, Msg: fmt.Sprintf(format, args...)}
	}
	for {
		start = line()
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return nil, &Error{File: file, Line: se.Line, Msg: "malformed XML: " + se.Msg}
			}
			return nil, &Error{File: file, Line: line(), Msg: "malformed XML: " + err.Error()}
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space != "" {
				return nil, fail(t.Name.Space+":"+t.Name.Local, "XML namespaces are not supported")
			}
			if root != nil && len(stack) == 0 {
				return nil, fail(t.Name.Local, "content after the root element")
			}
			if len(stack) >= maxDepth {
				return nil, fail(t.Name.Local, "elements nested deeper than %d", maxDepth)
			}
			e := &Element{Name: t.Name.Local, Line: start}
			for _, a := range t.Attr {
				if a.Name.Space != "" {
					return nil, fail(t.Name.Local, "attribute %s:%s: XML namespaces are not supported", a.Name.Space, a.Name.Local)
				}
				if _, dup := e.Attr(a.Name.Local); dup {
					return nil, fail(t.Name.Local, "attribute %q given twice", a.Name.Local)
				}
				e.Attrs = append(e.Attrs, Attr{a.Name.Local, a.Value})
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.Children = append(p.Children, e)
			} else {
				root = e
			}
			stack = append(stack, e)
			text = append(text, nil)
		case xml.EndElement:
			// RawToken does not match tags; Strict decoding checks them on Token,
			// so check here.
			if len(stack) == 0 || stack[len(stack)-1].Name != t.Name.Local || t.Name.Space != "" {
				return nil, fail(t.Name.Local, "malformed XML: unexpected closing tag </%s>", t.Name.Local)
			}
			stack[len(stack)-1].Text = string(text[len(text)-1])
			stack = stack[:len(stack)-1]
			text = text[:len(text)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if len(strings.TrimSpace(string(t))) > 0 {
					return nil, fail("", "text outside the root element")
				}
				continue
			}
			text[len(text)-1] = append(text[len(text)-1], t...)
		case xml.Directive:
			return nil, fail("", "DOCTYPE and entity declarations are not allowed (<!%s>)", firstWord(string(t)))
		case xml.ProcInst:
			if t.Target != "xml" || root != nil {
				return nil, fail("", "processing instruction <?%s?> is not allowed", t.Target)
			}
		case xml.Comment:
		}
	}
	if len(stack) > 0 {
		open := stack[len(stack)-1]
		return nil, &Error{File: file, Line: line(), Element: open.Name,
			Msg: fmt.Sprintf("unexpected end of file: <%s> (line %d) is not closed", open.Name, open.Line)}
	}
	if root == nil {
		return nil, &Error{File: file, Msg: "empty document: expected <distrenjob>"}
	}
	return root, nil
}

func firstWord(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, " \t\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}
