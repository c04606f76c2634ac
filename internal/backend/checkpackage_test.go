package backend

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/distren/distren/internal/manifest"
)

// TestCheckPackage: every file a manifest names — <inputs> and the files of
// backend elements — must be in the package; each missing one is reported
// with the file, line and element that name it, in line order.
func TestCheckPackage(t *testing.T) {
	for _, c := range []struct {
		name  string
		doc   string   // the manifest, line 1 on
		files []string // the package's files
		want  []string // "line <element>: path", in order; none for valid
	}{
		{name: "povray scene and ini present", files: []string{"a.pov", "a.ini"},
			doc: `<distrenjob version="1"><name>t</name>
<backend name="povray"><scene>a.pov</scene>
<ini>a.ini</ini></backend>
<frames><range first="1" last="3"/></frames><outputs><output>*.png</output></outputs></distrenjob>`},
		{name: "povray scene and ini missing", files: []string{"other.pov"},
			doc: `<distrenjob version="1"><name>t</name>
<backend name="povray"><scene>a.pov</scene>
<ini>anim/a.ini</ini></backend>
<frames><range first="1" last="3"/></frames><outputs><output>*.png</output></outputs></distrenjob>`,
			want: []string{`2 <scene>: "a.pov"`, `3 <ini>: "anim/a.ini"`}},
		{name: "blender blendfile missing, cleaned", files: []string{"scene.blend1"},
			doc: `<distrenjob version="1"><name>t</name>
<backend name="blender">
  <blendfile>./shots/scene.blend</blendfile>
</backend>
<frames><range first="1" last="3"/></frames><outputs><output>*.png</output></outputs></distrenjob>`,
			want: []string{`3 <blendfile>: "shots/scene.blend"`}},
		{name: "command: a relative program is a package file; PATH and absolute ones are not", files: []string{"x"},
			doc: `<distrenjob version="1"><name>t</name>
<backend name="command"><program>./tools/run.sh</program></backend>
<frames><frame id="1"/>
<frame id="2"><backend name="command"><program>sh</program></backend></frame>
<frame id="3"><backend name="command"><program>/bin/true</program></backend></frame>
<frame id="4"><backend name="command"><program>bin/{frame}.sh</program></backend></frame>
</frames><outputs><output>*</output></outputs></distrenjob>`,
			want: []string{`2 <program>: "tools/run.sh"`}},
		{name: "inputs and a per-frame override, by line", files: []string{"a.pov"},
			doc: `<distrenjob version="1"><name>t</name>
<backend name="povray"><scene>a.pov</scene></backend>
<inputs><file>tex/wood.png</file></inputs>
<frames><range first="1" last="3"/>
<frame id="4"><backend name="blender"><blendfile>b.blend</blendfile></backend></frame>
</frames><outputs><output>*.png</output></outputs></distrenjob>`,
			want: []string{`3 <file>: "tex/wood.png"`, `5 <blendfile>: "b.blend"`}},
		{name: "a file for frames that all have dependencies may come from their outputs", files: []string{"a.pov"},
			doc: `<distrenjob version="1"><name>t</name>
<backend name="povray"><scene>a.pov</scene></backend>
<frames><frame id="1"/>
<frame id="2"><depends on="1"/><backend name="povray"><scene>generated.pov</scene></backend></frame>
</frames><outputs><output>*</output></outputs></distrenjob>`},
		{name: "the job's backend, unused by any frame, needs no files", files: nil,
			doc: `<distrenjob version="1"><name>t</name>
<backend name="povray"><scene>a.pov</scene></backend>
<frames><frame id="1"><backend name="builtin"/></frame></frames><outputs><output>*</output></outputs></distrenjob>`},
		{name: "an element the backend refuses is reported once, its files not looked for", files: nil,
			doc: `<distrenjob version="1"><name>t</name>
<backend name="povray"><scene>a.txt</scene></backend>
<frames><frame id="1"/></frames><outputs><output>*</output></outputs></distrenjob>`,
			want: []string{`2 <scene>: is not a .pov file`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := manifest.Parse(strings.NewReader(c.doc), manifest.FileName, manifest.Options{})
			if err != nil {
				t.Fatal(err)
			}
			has := map[string]bool{}
			for _, f := range c.files {
				has[f] = true
			}
			err = Default().CheckPackage(m, func(p string) bool { return has[p] })
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var el manifest.ErrorList
			if !errors.As(err, &el) {
				t.Fatalf("got %v (%T), want a manifest.ErrorList", err, err)
			}
			if len(el) != len(c.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(el), len(c.want), err)
			}
			for i, e := range el {
				got := fmt.Sprintf("%d <%s>: %s", e.Line, e.Element, e.Msg)
				line, rest, _ := strings.Cut(c.want[i], " <")
				elem, what, _ := strings.Cut(rest, ">: ")
				if e.File != manifest.FileName || fmt.Sprint(e.Line) != line || e.Element != elem || !strings.Contains(e.Msg, what) {
					t.Errorf("problem %d: %s (file %s), want %s", i, got, e.File, c.want[i])
				}
				if strings.HasPrefix(what, `"`) && !strings.Contains(e.Msg, "the package has no file") {
					t.Errorf("problem %d: %q does not say the package lacks the file", i, e.Msg)
				}
			}
		})
	}
}

// TestCheckManifestIgnoresFiles: CheckManifest still checks only the elements,
// whatever the package holds.
func TestCheckManifestIgnoresFiles(t *testing.T) {
	m, err := manifest.Parse(strings.NewReader(`<distrenjob version="1"><name>t</name>
<backend name="povray"><scene>a.pov</scene></backend><inputs><file>x</file></inputs>
<frames><frame id="1"/></frames><outputs><output>*</output></outputs></distrenjob>`), manifest.FileName, manifest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Default().CheckManifest(m); err != nil {
		t.Fatal(err)
	}
	if err := Default().CheckPackage(m, func(string) bool { return false }); err == nil {
		t.Fatal("CheckPackage accepted a package without its files")
	}
}
