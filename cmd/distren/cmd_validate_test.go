package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distren/distren/internal/jobpkg"
)

const povManifest = `<distrenjob version="1">
  <name>v</name>
  <backend name="povray">
    <scene>scene.pov</scene>
  </backend>
  <frames><range first="1" last="2"/></frames>
  <outputs><output>*.png</output></outputs>
</distrenjob>
`

// pkgDir writes a package directory of the given files.
func pkgDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tarGz packs a directory into a .tar.gz beside it.
func tarGz(t *testing.T, dir string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if err := jobpkg.WriteDir(zw, dir); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	p := filepath.Join(t.TempDir(), "pkg.tar.gz")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidate(t *testing.T) {
	missingScene := pkgDir(t, map[string]string{"distrenjob.xml": povManifest, "other.pov": "x"})
	blendOnly := pkgDir(t, map[string]string{"shot.blend": "BLENDER", "notes.txt": "x"})
	for _, c := range []struct {
		name string
		pkg  string
		code int
		want []string // in the message (or stdout, for 0)
	}{
		{"valid directory", pkgDir(t, map[string]string{"distrenjob.xml": povManifest, "scene.pov": "sphere{0,1}"}), 0,
			[]string{`a valid job package: "v", 2 frames (povray), 2 files`}},
		{"valid tarball", tarGz(t, pkgDir(t, map[string]string{"distrenjob.xml": povManifest, "scene.pov": "sphere{0,1}"})), 0,
			[]string{`a valid job package`}},
		{"scene missing", missingScene, exitRejected,
			[]string{"not a valid job package", `distrenjob.xml:4: <scene>: the package has no file "scene.pov" (backend povray needs it)`}},
		{"scene missing, in a tarball", tarGz(t, missingScene), exitRejected,
			[]string{`distrenjob.xml:4: <scene>: the package has no file "scene.pov"`}},
		{"a bad manifest", pkgDir(t, map[string]string{"distrenjob.xml": strings.Replace(povManifest, "<name>v</name>", "<nme>v</nme>", 1)}), exitRejected,
			[]string{"distrenjob.xml:2: <nme>: unknown element"}},
		{"an unknown backend", pkgDir(t, map[string]string{"distrenjob.xml": strings.Replace(povManifest, `name="povray"`, `name="maya"`, 1)}), exitRejected,
			[]string{`distrenjob.xml:3: <backend>: unknown backend "maya"`}},
		{"no manifest", pkgDir(t, map[string]string{"notes.txt": "x"}), exitUsage,
			[]string{"no distrenjob.xml at the package's root", "distren init povray"}},
		{"no manifest beside a .blend", blendOnly, exitUsage,
			[]string{"no distrenjob.xml at the package's root", "<blendfile>shot.blend</blendfile>", "distren validate " + blendOnly}},
		{"no manifest in a tarball", tarGz(t, blendOnly), exitUsage, []string{"no distrenjob.xml at the package's root"}},
		{"a .blend file", filepath.Join(blendOnly, "shot.blend"), exitUsage,
			[]string{"is a scene file, not a job package", "<blendfile>shot.blend</blendfile>"}},
		{"a .pov file", filepath.Join(missingScene, "other.pov"), exitUsage,
			[]string{"is a scene file", "distren init povray", "<scene>other.pov</scene>"}},
		{"the manifest a directory", pkgDir(t, map[string]string{"distrenjob.xml/x": "x"}), exitRejected,
			[]string{"distrenjob.xml is a directory, not a file"}},
		{"the manifest a directory, in a tarball", tarGz(t, pkgDir(t, map[string]string{"distrenjob.xml/x": "x"})), exitRejected,
			[]string{"distrenjob.xml is a directory, not a file"}},
		{"no such path", filepath.Join(t.TempDir(), "nothing"), exitUsage, []string{"no such file or directory"}},
		{"a file of another kind", filepath.Join(blendOnly, "notes.txt"), exitUsage, []string{"not a directory nor a .tar"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			err := runValidate(context.Background(), validateOptions{output: output{&out, io.Discard}}, []string{c.pkg})
			if got := exitCode(err); got != c.code {
				t.Fatalf("exit %d, want %d: %v", got, c.code, err)
			}
			msg := out.String()
			if err != nil {
				msg = err.Error()
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q\nmissing %q", msg, w)
				}
			}
		})
	}
}

// TestSceneHintsAreValid: the manifest a hint suggests for a scene file is
// a valid package once written beside it.
func TestSceneHintsAreValid(t *testing.T) {
	for _, scene := range []string{"orbit.pov", "shot.blend"} {
		hint := sceneHint(scene, "DIR")
		i, j := strings.Index(hint, "<distrenjob"), strings.Index(hint, "</distrenjob>")
		if i < 0 || j < i {
			t.Fatalf("%s: no manifest in the hint:\n%s", scene, hint)
		}
		dir := pkgDir(t, map[string]string{scene: "x", "distrenjob.xml": hint[i : j+len("</distrenjob>")]})
		if err := runValidate(context.Background(), validateOptions{output: output{io.Discard, io.Discard}}, []string{dir}); err != nil {
			t.Errorf("%s: the suggested manifest is not valid: %v", scene, err)
		}
	}
}

// TestCheckBeforeUpload: submit refuses what is not a package before it
// connects to anything; a package, valid or not, goes on to the server.
func TestCheckBeforeUpload(t *testing.T) {
	withManifest := pkgDir(t, map[string]string{"distrenjob.xml": povManifest})
	noManifest := pkgDir(t, map[string]string{"scene.pov": "x"})
	for _, c := range []struct {
		pkg  string
		code int
		want string
	}{
		{withManifest, exitOK, ""},
		{tarGz(t, withManifest), exitOK, ""},
		{noManifest, exitUsage, "distren init povray"},
		{pkgDir(t, map[string]string{"distrenjob.xml/x": "x"}), exitOK, ""}, // the server says what is wrong with it
		{tarGz(t, noManifest), exitUsage, "no distrenjob.xml at the package's root"},
		{filepath.Join(noManifest, "scene.pov"), exitUsage, "<scene>scene.pov</scene>"},
		{filepath.Join(noManifest, "nothing"), exitUsage, "no such file or directory"},
	} {
		err := checkBeforeUpload(c.pkg)
		if got := exitCode(err); got != c.code || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: exit %d (want %d): %v", c.pkg, got, c.code, err)
		}
	}
	// submit says so before it connects: here to no server at all.
	err := runSubmit(context.Background(), submitOptions{connOptions: connOptions{server: "http://127.0.0.1:1"}, output: output{io.Discard, io.Discard}}, []string{noManifest})
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "no distrenjob.xml at the package's root") {
		t.Errorf("submit of a directory without a manifest: exit %d: %v", exitCode(err), err)
	}
}
