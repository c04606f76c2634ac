package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/backend"
	"github.com/distren/distren/internal/jobpkg"
	"github.com/distren/distren/internal/manifest"
)

type validateOptions struct {
	output
	json bool
}

func newValidateCommand() *cobra.Command {
	var o validateOptions
	c := &cobra.Command{
		Use:   "validate JOB",
		Short: "Check a job package here, before any upload: its manifest, backends and the files it names",
		Long: `Check a job package (a directory, .tar, .tar.gz, .tgz or .tar.zst) on this machine, as the
server checks it at submission and with the same messages: distrenjob.xml at its root, the
manifest (every problem with its file, line and element), each backend's elements, and that the
package holds every file the manifest names (<inputs>, POV-Ray's <scene> and <ini>, Blender's
<blendfile>, a command's relative <program>). Nothing is sent anywhere.

Exit 0: valid. Exit 5: the server would refuse it (the problems are printed). Exit 2: not a
package at all (no such path, no distrenjob.xml, a scene file given instead of a package).`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runValidate(c.Context(), o, args)
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, `print what a valid package holds as JSON: {"package", "name", "frames", "backends", "files"}`)
	return c
}

// validated is validate --json's output: what a valid package holds.
type validated struct {
	Package  string   `json:"package"`  // the path given
	Name     string   `json:"name"`     // the job's name
	Frames   int      `json:"frames"`   // frames of the job
	Backends []string `json:"backends"` // the backends it uses, the job's first
	Files    int      `json:"files"`    // files of the package, the manifest included
}

func runValidate(_ context.Context, o validateOptions, args []string) error {
	pkg := args[0]
	p, err := readPackage(pkg)
	if err != nil {
		return err
	}
	m, err := validatePackage(p)
	if err != nil {
		return rejectedError{fmt.Errorf("%s is not a valid job package (the server would refuse it):\n%w", pkg, err)}
	}
	var names []string
	for _, b := range append([]*manifest.Backend{&m.Backend}, frameBackends(m)...) {
		if !slices.Contains(names, b.Name) {
			names = append(names, b.Name)
		}
	}
	if o.json {
		return writeJSON(o.stdout, validated{Package: pkg, Name: m.Name, Frames: len(m.Frames), Backends: names, Files: len(p.files)})
	}
	fmt.Fprintf(o.stdout, "%s: a valid job package: %q, %s (%s), %s\n", pkg, m.Name,
		plural(len(m.Frames), "frame"), strings.Join(names, ", "), plural(len(p.files), "file"))
	return nil
}

// frameBackends returns the per-frame backend overrides of m, each once.
func frameBackends(m *manifest.Manifest) []*manifest.Backend {
	var out []*manifest.Backend
	for i := range m.Frames {
		if b := m.Frames[i].Backend; b != nil && !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	return out
}

// localPackage is a job package as read here: its manifest's bytes and
// the paths of its files.
type localPackage struct {
	manifest []byte
	files    map[string]bool
}

// validatePackage checks a package as the server does at submission: the
// same functions, so the same messages.
func validatePackage(p localPackage) (*manifest.Manifest, error) {
	reg := backend.Default()
	m, err := manifest.Parse(bytes.NewReader(p.manifest), manifest.FileName, manifest.Options{Backends: reg.Known})
	if err != nil {
		return nil, err
	}
	if err := reg.CheckPackage(m, func(path string) bool { return p.files[path] }); err != nil {
		return nil, err
	}
	return m, nil
}

// readPackage reads a job package's manifest and lists its files. A path
// that is not a package at all is a usage error; a package the server
// would refuse as it is (an unsafe entry, a manifest too large) is a
// rejectedError.
func readPackage(pkg string) (localPackage, error) {
	p := localPackage{files: map[string]bool{}}
	fi, err := statPackage(pkg)
	if err != nil {
		return p, err
	}
	if fi.IsDir() {
		root, err := os.OpenRoot(pkg)
		if err != nil {
			return p, err
		}
		defer root.Close()
		err = fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
			switch {
			case err != nil:
				return err
			case d.IsDir() && name == manifest.FileName:
				return manifestIsDir(pkg)
			case d.IsDir():
				return nil
			case !d.Type().IsRegular():
				return rejectedError{fmt.Errorf("%s: %s is not a regular file (%s): a package holds only files and directories",
					pkg, name, d.Type())}
			}
			p.files[name] = true
			return nil
		})
		if err != nil {
			return p, err
		}
		if !p.files[manifest.FileName] {
			return p, noManifest(pkg, p.files)
		}
		f, err := root.Open(manifest.FileName)
		if err != nil {
			return p, err
		}
		defer f.Close()
		p.manifest, err = readManifest(f, pkg)
		return p, err
	}
	f, err := os.Open(pkg)
	if err != nil {
		return p, err
	}
	defer f.Close()
	err = jobpkg.Scan(f, jobpkg.Limits{}, func(e jobpkg.File, r io.Reader) error {
		p.files[e.Path] = true
		if strings.HasPrefix(e.Path, manifest.FileName+"/") {
			return manifestIsDir(pkg)
		}
		if e.Path == manifest.FileName {
			var err error
			p.manifest, err = readManifest(r, pkg)
			return err
		}
		return nil
	})
	var re rejectedError
	switch {
	case errors.As(err, &re):
		return p, err
	case err != nil:
		return p, rejectedError{fmt.Errorf("job package %s: %w", pkg, err)}
	case !p.files[manifest.FileName]:
		return p, noManifest(pkg, p.files)
	}
	return p, nil
}

// manifestIsDir says what the server says of a package whose manifest is a
// directory.
func manifestIsDir(pkg string) error {
	return rejectedError{fmt.Errorf("job package %s: %s is a directory, not a file", pkg, manifest.FileName)}
}

// readManifest reads distrenjob.xml, up to the server's default limit.
func readManifest(r io.Reader, pkg string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, manifest.DefaultMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", pkg, manifest.FileName, err)
	}
	if len(b) > manifest.DefaultMaxBytes {
		return nil, rejectedError{fmt.Errorf("%s: %s: larger than the limit of %d bytes", pkg, manifest.FileName, manifest.DefaultMaxBytes)}
	}
	return b, nil
}

// statPackage finds a package path: a directory, or a file named like a
// tarball. Anything else is a usage error that says what a package is,
// and for a renderer's own file (a .pov, .blend or .ini) how to make one.
func statPackage(pkg string) (fs.FileInfo, error) {
	fi, err := os.Stat(pkg)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, usageError{fmt.Errorf("job package %s: no such file or directory", pkg)}
	case err != nil:
		return nil, fmt.Errorf("job package: %w", err)
	case fi.IsDir():
		return fi, nil
	}
	if hint := sceneHint(filepath.Base(pkg), filepath.Dir(pkg)); hint != "" {
		return nil, usageError{fmt.Errorf("%s is a scene file, not a job package: submit a directory holding it and a %s.\n%s", pkg, manifest.FileName, hint)}
	}
	lower := strings.ToLower(pkg)
	if !fi.Mode().IsRegular() || !slices.ContainsFunc([]string{".tar", ".tar.gz", ".tgz", ".tar.zst"}, func(ext string) bool { return strings.HasSuffix(lower, ext) }) {
		return nil, usageError{fmt.Errorf("job package %s: not a directory nor a .tar, .tar.gz, .tgz or .tar.zst file; a job package holds %s at its root (docs/manifest.md)", pkg, manifest.FileName)}
	}
	return fi, nil
}

// noManifest says that a package lacks its manifest, and how to write one.
func noManifest(pkg string, files map[string]bool) error {
	msg := fmt.Sprintf("%s: no %s at the package's root, so it is not a job package: the manifest names the backend, the frames and the outputs (docs/manifest.md)", pkg, manifest.FileName)
	var names []string
	for f := range files {
		if !strings.Contains(f, "/") {
			names = append(names, f)
		}
	}
	slices.Sort(names)
	for _, f := range names {
		if hint := sceneHint(f, pkg); hint != "" {
			return usageError{fmt.Errorf("%s.\n%s", msg, hint)}
		}
	}
	return usageError{fmt.Errorf("%s. For a POV-Ray animation, distren init povray ANIMATION.ini writes one; distren validate %s checks it", msg, pkg)}
}

// sceneHint says how to make a job of a renderer's file named name in
// directory dir, or "" for a file that is not one.
func sceneHint(name, dir string) string {
	stem := strings.TrimSuffix(name, path.Ext(name))
	esc := func(s string) string {
		var b strings.Builder
		xml.EscapeText(&b, []byte(s))
		return b.String()
	}
	write := fmt.Sprintf("Write %s beside it, for example:\n\n", manifest.FileName)
	then := fmt.Sprintf("\nthen check it with distren validate %s, and submit %s (docs/manifest.md, docs/backends.md).", dir, dir)
	switch strings.ToLower(path.Ext(name)) {
	case ".ini":
		return fmt.Sprintf("For a POV-Ray animation .ini, distren init povray %s writes %s beside it (frames and clock from the .ini);%s",
			filepath.Join(dir, name), manifest.FileName, strings.TrimPrefix(then, "\nthen"))
	case ".pov":
		return "For a POV-Ray animation, distren init povray ANIMATION.ini writes the manifest from its .ini. " + write +
			sceneManifest(esc(stem), `<backend name="povray"><scene>`+esc(name)+`</scene></backend>`,
				"frame n is a still rendered with clock = n") + then
	case ".blend":
		return "A Blender job renders frames of the .blend file. " + write +
			sceneManifest(esc(stem), `<backend name="blender"><blendfile>`+esc(name)+`</blendfile></backend>`,
				"Blender's frames 1 to 24, one frame-NNNN.png each") + then
	}
	return ""
}

// sceneManifest is a minimal manifest for a hint.
func sceneManifest(name, backendElem, frames string) string {
	return fmt.Sprintf(`  <distrenjob version="1">
    <name>%s</name>
    %s
    <frames><range first="1" last="24"/></frames>  <!-- %s -->
    <outputs><output>*.png</output></outputs>
  </distrenjob>
`, name, backendElem, frames)
}

// checkBeforeUpload refuses, before anything is sent, a path that is not a
// job package: none there, a scene file given instead of a package, a
// directory or tarball without distrenjob.xml at its root. The manifest
// itself, even one that is not a file, is the server's to judge (its
// limits and backends decide).
func checkBeforeUpload(pkg string) error {
	fi, err := statPackage(pkg)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if _, err := os.Lstat(filepath.Join(pkg, manifest.FileName)); err == nil {
			return nil
		}
		_, err := readPackage(pkg) // says what is missing, and how to make it, from the files there
		return err
	}
	f, err := os.Open(pkg)
	if err != nil {
		return err
	}
	defer f.Close()
	errFound := errors.New("found")
	files := map[string]bool{}
	err = jobpkg.Scan(f, jobpkg.Limits{}, func(e jobpkg.File, _ io.Reader) error {
		if e.Path == manifest.FileName || strings.HasPrefix(e.Path, manifest.FileName+"/") {
			return errFound // no need to read on
		}
		files[e.Path] = true
		return nil
	})
	switch {
	case errors.Is(err, errFound):
		return nil
	case err != nil:
		return nil // the server says what is wrong with the tarball
	}
	return noManifest(pkg, files)
}
