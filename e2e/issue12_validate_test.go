package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMissingNamedFilesRefused: a package lacking a file its manifest's
// backend element names is refused at submission, naming the line and the
// element (issue 12, item 3: it was accepted, then every frame failed on
// the workers); distren validate finds the same problems, in the same
// words, without a server (item 16).
func TestMissingNamedFilesRefused(t *testing.T) {
	_, url := serve(t, "--data", t.TempDir(), "--name", "named", "--workers", "0")
	for _, c := range []struct {
		name     string
		manifest string
		files    map[string]string
		want     []string // the problems, each a line of both messages
	}{
		{"povray scene and ini", `<distrenjob version="1">
  <name>pov</name>
  <backend name="povray">
    <scene>orbit.pov</scene>
    <ini>orbit.ini</ini>
  </backend>
  <frames><range first="1" last="4"/></frames>
  <outputs><output>*.png</output></outputs>
</distrenjob>`, map[string]string{"orbit.ini": "Initial_Frame=1\n"},
			[]string{`distrenjob.xml:4: <scene>: the package has no file "orbit.pov" (backend povray needs it)`}},
		{"blender blendfile and an input", `<distrenjob version="1">
  <name>bl</name>
  <backend name="blender"><blendfile>shots/scene.blend</blendfile></backend>
  <inputs><file>textures/wood.png</file></inputs>
  <frames><range first="1" last="4"/></frames>
  <outputs><output>*.png</output></outputs>
</distrenjob>`, map[string]string{"scene.blend": "not here"},
			[]string{`distrenjob.xml:3: <blendfile>: the package has no file "shots/scene.blend" (backend blender needs it)`,
				`distrenjob.xml:4: <file>: the package has no file "textures/wood.png"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pkg := writeJob(t, c.manifest, c.files)
			_, submitErr := run2(t, 5, "submit", pkg, "--server", url)
			_, validateErr := run2(t, 5, "validate", pkg)
			for _, w := range c.want {
				if !strings.Contains(submitErr, w+"\n") && !strings.HasSuffix(strings.TrimSpace(submitErr), w) {
					t.Errorf("submit's message lacks %q:\n%s", w, submitErr)
				}
				if !strings.Contains(validateErr, w) {
					t.Errorf("validate's message lacks %q:\n%s", w, validateErr)
				}
			}
			// validate prints the problems the server gives, and no others.
			for _, l := range strings.Split(strings.TrimSpace(validateErr), "\n")[1:] {
				if !strings.Contains(submitErr, l) {
					t.Errorf("validate says %q, the server does not:\n%s", l, submitErr)
				}
			}
		})
	}
	// The examples are valid, and accepted.
	for _, ex := range []string{"povray", "blender", "video", "command"} {
		dir := filepath.Join("..", "examples", ex)
		if out := run(t, 0, "validate", dir); !strings.Contains(out, "a valid job package") {
			t.Errorf("validate %s: %q", ex, out)
		}
		run(t, 0, "submit", dir, "--server", url, "-q")
	}
}

// TestSubmitWhatIsNotAPackage: submit says, before it connects to any
// server (here there is none), that a path is not a job package and how to
// make one (issue 12, item 16).
func TestSubmitWhatIsNotAPackage(t *testing.T) {
	noServer := "http://127.0.0.1:1" // nothing listens: a connection attempt would exit 4
	scenes := t.TempDir()
	blend, err := os.ReadFile(filepath.Join("..", "examples", "blender", "scene.blend"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(scenes, "shot.blend"), blend, 0o644)
	os.WriteFile(filepath.Join(scenes, "orbit.pov"), []byte("sphere { 0, 1 }\n"), 0o644)
	for _, c := range []struct {
		pkg  string
		want []string
	}{
		{scenes, []string{"no distrenjob.xml at the package's root", "<scene>orbit.pov</scene>"}},
		{filepath.Join(scenes, "shot.blend"), []string{"is a scene file, not a job package", `<backend name="blender"><blendfile>shot.blend</blendfile></backend>`, "distren validate"}},
		{filepath.Join(scenes, "orbit.pov"), []string{"is a scene file", "distren init povray", "<scene>orbit.pov</scene>"}},
		{filepath.Join(scenes, "missing"), []string{"no such file or directory"}},
	} {
		msg := runStderr(t, 2, "submit", c.pkg, "--server", noServer)
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("submit %s: %q\nlacks %q", c.pkg, msg, w)
			}
		}
	}
	// The manifest the message suggests makes the directory a valid job.
	msg := runStderr(t, 2, "submit", filepath.Join(scenes, "shot.blend"), "--server", noServer)
	i, j := strings.Index(msg, "<distrenjob"), strings.Index(msg, "</distrenjob>")
	if i < 0 || j < i {
		t.Fatalf("no manifest in %q", msg)
	}
	os.Remove(filepath.Join(scenes, "orbit.pov"))
	os.WriteFile(filepath.Join(scenes, "distrenjob.xml"), []byte(msg[i:j+len("</distrenjob>")]), 0o644)
	run(t, 0, "validate", scenes)
}
