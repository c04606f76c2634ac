package manifest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const full = `<?xml version="1.0" encoding="UTF-8"?>
<!-- every element of the schema -->
<distrenjob version="1">
  <name>clock</name>
  <priority>70</priority>
  <deadline>2026-12-01T18:00:00+01:00</deadline>
  <retries>3</retries>
  <timeout>10m</timeout>
  <backend name="builtin">
    <scene>clock</scene>
    <arg> spaced </arg>
  </backend>
  <inputs>
    <file>textures/wood.png</file>
    <file>./scene.pov</file>
  </inputs>
  <frames>
    <range first="1" last="5"/>
    <range first="10" last="20" step="5"><depends offset="-5"/></range>
    <frame id="100">
      <depends on="20"/>
      <depends first="1" last="5" step="2"/>
      <depends on="distren://farm-b/7/frame/3"/>
      <backend name="command"><program>sh</program></backend>
    </frame>
    <frame id="0"/>
  </frames>
  <outputs>
    <output>*.png</output>
    <output>out/*.exr</output>
  </outputs>
</distrenjob>
`

func parse(t *testing.T, s string) *Manifest {
	t.Helper()
	m, err := Parse(strings.NewReader(s), "job.xml", Options{})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return m
}

func TestParseFull(t *testing.T) {
	m := parse(t, full)
	if m.Version != 1 || m.Name != "clock" || m.Priority != 70 || m.Retries != 3 || m.Timeout != 10*time.Minute {
		t.Fatalf("scalars: %+v", m)
	}
	if want := time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC); !m.Deadline.Equal(want) {
		t.Errorf("deadline %v, want %v", m.Deadline, want)
	}
	if m.Backend.Name != "builtin" || m.Backend.Line != 9 {
		t.Errorf("backend %q line %d", m.Backend.Name, m.Backend.Line)
	}
	if v, line, ok := m.Backend.Get("scene"); !ok || v != "clock" || line != 10 {
		t.Errorf("Get(scene) = %q, %d, %v", v, line, ok)
	}
	if a := m.Backend.All("arg"); len(a) != 1 || a[0].Text != " spaced " {
		t.Errorf("All(arg) = %+v (text must be verbatim)", a)
	}
	if len(m.Inputs) != 2 || m.Inputs[0] != (Input{"textures/wood.png", 14}) || m.Inputs[1].Path != "scene.pov" {
		t.Errorf("inputs %+v", m.Inputs)
	}
	var ids []int64
	for _, f := range m.Frames {
		ids = append(ids, f.ID)
	}
	if got := fmt.Sprint(ids); got != "[0 1 2 3 4 5 10 15 20 100]" {
		t.Fatalf("frames %s", got)
	}
	f15 := m.Frames[7]
	if len(f15.Deps) != 1 || f15.Deps[0] != (Dep{Frame: 10}) || f15.Line != 19 {
		t.Errorf("frame 15: %+v", f15)
	}
	f100 := m.Frames[9]
	wantDeps := []Dep{{Frame: 20}, {Frame: 1}, {Frame: 3}, {Frame: 5}, {Server: "farm-b", Job: 7, Frame: 3}}
	if fmt.Sprint(f100.Deps) != fmt.Sprint(wantDeps) {
		t.Errorf("frame 100 deps %v, want %v", f100.Deps, wantDeps)
	}
	if f100.Backend == nil || f100.Backend.Name != "command" || m.Frames[0].Backend != nil {
		t.Errorf("per-frame backend: %+v / %+v", f100.Backend, m.Frames[0].Backend)
	}
	if f100.Deps[4].Local() || !f100.Deps[0].Local() {
		t.Error("Local()")
	}
	if i, ok := m.FrameIndex(15); !ok || i != 7 {
		t.Errorf("FrameIndex(15) = %d, %v", i, ok)
	}
	if _, ok := m.FrameIndex(16); ok {
		t.Error("FrameIndex(16) found a frame that does not exist")
	}
	if len(m.Outputs) != 2 || m.Outputs[1] != "out/*.exr" {
		t.Errorf("outputs %v", m.Outputs)
	}
}

func TestDefaults(t *testing.T) {
	m := parse(t, `<distrenjob version="1"><name>d</name><backend name="x"/><frames><frame id="1"/></frames><outputs><output>*</output></outputs></distrenjob>`)
	if m.Priority != DefaultPriority || m.Retries != DefaultRetries || m.Timeout != 0 || !m.Deadline.IsZero() {
		t.Errorf("defaults: %+v", m)
	}
}

// wrap puts body inside a valid manifest, the frames element last so that the
// line numbers of errors are predictable: the body starts on line 3.
func wrap(body string) string {
	return "<distrenjob version=\"1\">\n<name>n</name><backend name=\"builtin\"/><outputs><output>*.png</output></outputs>\n" + body + "\n</distrenjob>"
}

func TestRejections(t *testing.T) {
	frames := func(s string) string { return wrap("<frames>\n" + s + "\n</frames>") } // s starts on line 4
	cases := []struct {
		name, doc string
		want      []string // substrings of the error
	}{
		{"malformed", "<distrenjob version=\"1\">\n<name>x</nam>", []string{"job.xml:2:", "malformed XML"}},
		{"unclosed", "<distrenjob version=\"1\">\n<name>x</name>", []string{"job.xml:2:", "<distrenjob>", "not closed"}},
		{"empty", "", []string{"job.xml: empty document"}},
		{"doctype", "<!DOCTYPE distrenjob [<!ENTITY x \"y\">]>\n" + wrap(""), []string{"job.xml:1:", "DOCTYPE and entity declarations are not allowed"}},
		{"entity", wrap("<frames><frame id=\"&x;\"/></frames>"), []string{"job.xml:3:", "malformed XML", "entity"}},
		{"procinst", wrap("<?php x?>"), []string{"job.xml:3:", "processing instruction <?php?>"}},
		{"namespace", wrap("<a:frames xmlns:a=\"u\"/>"), []string{"job.xml:3:", "namespaces"}},
		{"root", "<job/>", []string{"job.xml:1: <job>: the root element must be <distrenjob>"}},
		{"version", "<distrenjob version=\"2\"/>", []string{`version "2" is not supported`}},
		{"no version", "<distrenjob/>", []string{`missing attribute version="1"`}},
		{"unknown", wrap("<zzz/>"), []string{"job.xml:3: <zzz>: unknown element in <distrenjob>", "known:"}},
		{"typo suggestion", wrap("<frame/>"), []string{"job.xml:3: <frame>: unknown element in <distrenjob> (did you mean <frames>?)"}},
		{"typo of a synonym", wrap("<rendrer/>"), []string{"job.xml:3: <rendrer>: unknown element in <distrenjob> (did you mean <backend>?)"}},
		{"synonym", wrap("<frames><frame id=\"1\"><Dependency on=\"2\"/></frame></frames>"), []string{"<Dependency>: unknown element in <frame> (did you mean <depends>?)"}},
		{"missing frames", wrap(""), []string{"job.xml:1: <distrenjob>: missing required element <frames>"}},
		{"twice", wrap("<name>again</name><frames><frame id=\"1\"/></frames>"), []string{"job.xml:3: <name>: given twice (first on line 2)"}},
		{"priority", wrap("<priority>101</priority><frames><frame id=\"1\"/></frames>"), []string{"<priority>: \"101\" is not a whole number in 0..100"}},
		{"deadline", wrap("<deadline>tomorrow</deadline><frames><frame id=\"1\"/></frames>"), []string{"<deadline>: \"tomorrow\" is not an RFC 3339 time"}},
		{"timeout", wrap("<timeout>-1s</timeout><frames><frame id=\"1\"/></frames>"), []string{"<timeout>: \"-1s\" is not a positive duration"}},
		{"unknown attr", wrap("<frames><frame id=\"1\" name=\"x\"/></frames>"), []string{"job.xml:3: <frame>: unknown attribute \"name\" (known: id)"}},
		{"negative id", frames(`<frame id="-1"/>`), []string{"job.xml:4: <frame>: id=\"-1\": frame ids are not negative"}},
		{"huge id", frames(`<frame id="9223372036854775808"/>`), []string{"job.xml:4: <frame>: id=\"9223372036854775808\": not a frame id"}},
		{"not a number", frames(`<range first="a" last="2"/>`), []string{"job.xml:4: <range>: first=\"a\": not a frame id"}},
		{"backwards", frames(`<range first="5" last="2"/>`), []string{"job.xml:4: <range>: last (2) is before first (5)"}},
		{"bad step", frames(`<range first="1" last="2" step="0"/>`), []string{`step "0" is not a whole number of 1 or more`}},
		{"duplicate", frames("<range first=\"1\" last=\"10\"/>\n<frame id=\"7\"/>"), []string{"job.xml:5: <frames>: frame 7 is defined twice (also on line 4)"}},
		{"no frames", frames(""), []string{"<frames>: needs at least one <range> or <frame>"}},
		{"missing dep", frames("<frame id=\"1\"/>\n<frame id=\"2\"><depends on=\"3\"/></frame>"), []string{"job.xml:5: <depends>: frame 2 depends on frame 3, which the job does not have"}},
		{"missing range dep", frames(`<range first="1" last="3"/><frame id="9"><depends first="1" last="4"/></frame>`), []string{"frame 9 depends on frame 4"}},
		{"offset out", frames(`<range first="0" last="3"><depends offset="-1"/></range>`), []string{"job.xml:4: <depends>: frame 0: offset -1 gives no valid frame id"}},
		{"self", frames(`<frame id="1"><depends on="1"/></frame>`), []string{"frame 1 depends on itself"}},
		{"cycle", frames("<frame id=\"1\"><depends on=\"3\"/></frame>\n<frame id=\"2\"><depends on=\"1\"/></frame>\n<frame id=\"3\"><depends on=\"2\"/></frame>"),
			[]string{"job.xml:4: <depends>: dependency cycle: frame 1 → 3 → 2 → 1"}},
		{"depends forms", frames(`<frame id="1"><depends on="2" offset="-1"/></frame>`), []string{"<depends>: needs exactly one of"}},
		{"depends none", frames(`<frame id="1"><depends/></frame>`), []string{"<depends>: needs exactly one of"}},
		{"bad url", frames(`<frame id="1"><depends on="distren://Bad Server/1/frame/2"/></frame>`), []string{"job.xml:4: <depends>: on=\"distren://Bad Server/1/frame/2\""}},
		{"job url", frames(`<frame id="1"><depends on="distren://farm/1"/></frame>`), []string{"not a frame URL"}},
		{"unknown in frame", frames(`<frame id="1"><depend on="2"/></frame>`), []string{"<depend>: unknown element in <frame> (did you mean <depends>?)"}},
		{"text in frames", wrap("<frames>junk<frame id=\"1\"/></frames>"), []string{"<frames>: unexpected text \"junk\""}},
		{"backend no name", wrap("<frames><frame id=\"1\"><backend/></frame></frames>"), []string{"<backend>: missing attribute name"}},
		{"input abs", wrap("<inputs><file>/etc/passwd</file></inputs><frames><frame id=\"1\"/></frames>"), []string{"<file>: \"/etc/passwd\": absolute path"}},
		{"input dotdot", wrap("<inputs><file>a/../../x</file></inputs><frames><frame id=\"1\"/></frames>"), []string{"<file>: \"a/../../x\": the path leaves the package root"}},
		{"input dup", wrap("<inputs><file>a</file>\n<file>./a</file></inputs><frames><frame id=\"1\"/></frames>"), []string{"job.xml:4: <file>: \"./a\" listed twice (first on line 3)"}},
		{"bad glob", "<distrenjob version=\"1\"><name>n</name><backend name=\"b\"/><frames><frame id=\"1\"/></frames>\n<outputs><output>[</output></outputs></distrenjob>", []string{"job.xml:2: <output>: \"[\" is not a valid glob"}},
		{"no outputs", "<distrenjob version=\"1\"><name>n</name><backend name=\"b\"/><frames><frame id=\"1\"/></frames><outputs/></distrenjob>", []string{"<outputs>: needs at least one <output>"}},
		{"after root", wrap("<frames><frame id=\"1\"/></frames>") + "<x/>", []string{"content after the root element"}},
		{"latin1", "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>" + wrap(""), []string{"malformed XML"}},
		{"not utf8", "<distrenjob version=\"1\"><name>\xff</name></distrenjob>", []string{"not valid UTF-8"}},
		{"dup attr", "<distrenjob version=\"1\" version=\"1\"/>", []string{"attribute \"version\" given twice"}},
		{"doctype over lines", "<?xml version=\"1.0\"?>\n<!DOCTYPE d [\n<!ENTITY a \"a\">\n<!ENTITY b \"&a;&a;\">\n]>\n" + wrap(""),
			[]string{"job.xml:2: DOCTYPE and entity declarations are not allowed (<!DOCTYPE>)"}},
		{"unclosed names its line", "<distrenjob version=\"1\">\n<name>x</name>\n<frames>\n", []string{"<frames>: unexpected end of file: <frames> (line 3) is not closed"}},
		{"deep", wrap("<backend name=\"b\">" + strings.Repeat("<x>", 10000) + strings.Repeat("</x>", 10000) + "</backend>"),
			[]string{"job.xml:3: <x>: elements nested deeper than 32"}},
		{"output dotdot", "<distrenjob version=\"1\"><name>n</name><backend name=\"b\"/><frames><frame id=\"1\"/></frames>\n<outputs><output>../*</output></outputs></distrenjob>",
			[]string{"job.xml:2: <output>: \"../*\": the glob leaves the frame's scratch directory"}},
		{"output abs", "<distrenjob version=\"1\"><name>n</name><backend name=\"b\"/><frames><frame id=\"1\"/></frames>\n<outputs><output>/etc/*</output></outputs></distrenjob>",
			[]string{"job.xml:2: <output>: \"/etc/*\": absolute glob"}},
		{"long cycle", frames(`<range first="1" last="9999"><depends offset="1"/></range><frame id="10000"><depends on="1"/></frame>`),
			[]string{"job.xml:4: <depends>: dependency cycle: frame 1 → 2 → 3 → 4 → 5 → 6 → 7 → 8 → 9 → 10 → … (9988 more) → 9999 → 10000 → 1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.doc), "job.xml", Options{})
			if err == nil {
				t.Fatalf("accepted:\n%s", c.doc)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			var e *Error
			if !errors.As(err, &e) || e.File != "job.xml" {
				t.Errorf("error %T does not unwrap to a *Error naming the file", err)
			}
		})
	}
}

func TestUnknownBackend(t *testing.T) {
	known := func(n string) bool { return n == "builtin" }
	doc := wrap("<frames><frame id=\"1\">\n<backend name=\"povray\"/></frame></frames>")
	_, err := Parse(strings.NewReader(doc), "job.xml", Options{Backends: known})
	if err == nil || !strings.Contains(err.Error(), `job.xml:4: <backend>: unknown backend "povray"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestEveryProblemReported(t *testing.T) {
	doc := "<distrenjob version=\"1\">\n<priority>x</priority>\n<retries>-1</retries>\n<rendrer/>\n</distrenjob>"
	_, err := Parse(strings.NewReader(doc), "job.xml", Options{})
	var l ErrorList
	if !errors.As(err, &l) {
		t.Fatalf("err %T %v", err, err)
	}
	// priority, retries, rendrer, and the four missing required elements.
	if len(l) != 7 {
		t.Fatalf("%d problems, want 7:\n%v", len(l), err)
	}
	for i, line := range []int{2, 3, 4} {
		if l[i].Line != line {
			t.Errorf("problem %d on line %d, want %d", i, l[i].Line, line)
		}
	}
}

func TestLimits(t *testing.T) {
	big := wrap(`<frames><range first="0" last="1000000"/></frames>`)
	_, err := Parse(strings.NewReader(big), "job.xml", Options{})
	if err == nil || !strings.Contains(err.Error(), "more than 1000000 frames") {
		t.Errorf("frames over the default limit: %v", err)
	}
	_, err = Parse(strings.NewReader(wrap(`<frames><range first="0" last="9223372036854775807"/></frames>`)), "job.xml", Options{})
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("a range of every id: %v", err)
	}
	_, err = Parse(strings.NewReader(wrap(`<frames><range first="0" last="99"/><range first="100" last="199"><depends first="0" last="99"/></range></frames>`)),
		"job.xml", Options{MaxDeps: 9999})
	if err == nil || !strings.Contains(err.Error(), "more than 9999 dependencies") {
		t.Errorf("dependencies over the limit: %v", err)
	}
	_, err = Parse(strings.NewReader(full), "job.xml", Options{MaxBytes: 100})
	if err == nil || !strings.Contains(err.Error(), "larger than the limit of 100 bytes") {
		t.Errorf("size limit: %v", err)
	}
	if !errors.Is(err, ErrLimit) {
		t.Errorf("size limit: %v does not match ErrLimit", err)
	}
	// Limits passed match ErrLimit (the server answers 413); mistakes do not.
	for doc, isLimit := range map[string]bool{
		big: true,
		wrap(`<frames><range first="0" last="99"><depends first="0" last="99"/></range></frames>`): true,
		wrap(`<frames><range first="5" last="1"/></frames>`):                                       false,
	} {
		_, err := Parse(strings.NewReader(doc), "job.xml", Options{MaxDeps: 9999})
		if err == nil || errors.Is(err, ErrLimit) != isLimit {
			t.Errorf("%s: err %v, ErrLimit %v, want %v", doc, err, errors.Is(err, ErrLimit), isLimit)
		}
	}
	_, err = Parse(strings.NewReader(strings.Repeat("<a>", 40)), "job.xml", Options{})
	if err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("depth: %v", err)
	}
}

func TestLongChainNoCycle(t *testing.T) {
	// A 200,000-frame chain: the cycle check must not recurse.
	m := parse(t, wrap(`<frames><frame id="0"/><range first="1" last="199999"><depends offset="-1"/></range></frames>`))
	if len(m.Frames) != 200000 || m.Frames[199999].Deps[0].Frame != 199998 {
		t.Fatalf("chain: %d frames", len(m.Frames))
	}
	_, err := Parse(strings.NewReader(wrap(`<frames><frame id="0"><depends on="199999"/></frame><range first="1" last="199999"><depends offset="-1"/></range></frames>`)), "job.xml", Options{})
	if err == nil || !strings.Contains(err.Error(), "dependency cycle: frame 0 → 199999 → 199998") || !strings.Contains(err.Error(), "more)") {
		t.Errorf("long cycle: %v", err)
	}
}

func TestFrameSet(t *testing.T) {
	rs, err := ParseFrameSet("1-10, 20,30-40")
	if err != nil {
		t.Fatal(err)
	}
	if FormatFrameSet(rs) != "1-10,20,30-40" {
		t.Errorf("format %q", FormatFrameSet(rs))
	}
	for id, want := range map[int64]bool{0: false, 1: true, 10: true, 11: false, 20: true, 35: true, 41: false} {
		if Contains(rs, id) != want {
			t.Errorf("Contains(%d) = %v", id, !want)
		}
	}
	for _, bad := range []string{"", "a", "5-1", "-3", "1-", "1,,2", "1-2-3"} {
		if _, err := ParseFrameSet(bad); err == nil {
			t.Errorf("ParseFrameSet(%q) accepted", bad)
		}
	}
}

// FuzzParse: any document is refused with an error or accepted as a
// manifest that keeps its invariants; never a panic. Seeds: the golden
// manifests of testdata and a few written here.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.xml")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add(full)
	f.Add(wrap(`<frames><range first="1" last="3"><depends offset="-1"/></range></frames>`))
	f.Add("<!DOCTYPE x>")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(strings.NewReader(s), "f.xml", Options{MaxFrames: 10000, MaxDeps: 100000})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		// An accepted manifest is sorted, duplicate-free, and its local
		// dependencies exist.
		for i, fr := range m.Frames {
			if i > 0 && fr.ID <= m.Frames[i-1].ID {
				t.Fatalf("frames not strictly sorted at %d", i)
			}
			for _, d := range fr.Deps {
				if _, ok := m.FrameIndex(d.Frame); d.Local() && !ok {
					t.Fatalf("frame %d depends on missing %d", fr.ID, d.Frame)
				}
			}
		}
	})
}

func BenchmarkParse100k(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`<distrenjob version="1"><name>big</name><backend name="builtin"/><outputs><output>*.png</output></outputs><frames>`)
	for i := range 100000 {
		if i%100 == 99 {
			fmt.Fprintf(&sb, "<frame id=\"%d\"><depends on=\"%d\"/></frame>\n", i, i-1)
		} else {
			fmt.Fprintf(&sb, "<frame id=\"%d\"/>\n", i)
		}
	}
	sb.WriteString("</frames></distrenjob>")
	doc := sb.String()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := Parse(strings.NewReader(doc), "big.xml", Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
