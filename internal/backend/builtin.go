package backend

import (
	"bufio"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/raster"
)

// Builtin is the renderer written in Go: it draws frames of an animated scene
// to PNG with no external program. Its elements:
//
//	<scene>orbit</scene>        scene name (raster.Scenes)
//	<width>320</width> <height>180</height> <samples>4</samples> <cycle>48</cycle>
//	<mode>render</mode>         render | montage | trail
//	<columns>6</columns>        montage: tiles per row (0 = near-square)
//	<output>frame-{frame:04}.png</output>  the file written
//
// "montage" tiles the PNG outputs of the frame's dependencies into a contact
// sheet; "trail" blends the frame's render over its dependencies' outputs.
type Builtin struct{}

// Name implements Backend.
func (Builtin) Name() string { return "builtin" }

type builtinSpec struct {
	p       raster.Params
	mode    string
	columns int
	output  string
}

var builtinElems = []string{"scene", "width", "height", "samples", "cycle", "mode", "columns", "output"}

func parseBuiltin(spec *manifest.Backend) (builtinSpec, error) {
	bs := builtinSpec{p: raster.Params{Scene: raster.DefaultScene, Width: 320, Height: 180, Samples: 1, Cycle: 48},
		mode: "render", output: "frame-{frame:04}.png"}
	var errs manifest.ErrorList
	for _, e := range spec.Elements {
		known := false
		for _, k := range builtinElems {
			known = known || e.Name == k
		}
		if !known {
			errs = append(errs, specError(spec, e.Line, e.Name, "unknown element for backend builtin (known: %s)", strings.Join(builtinElems, ", ")))
		}
	}
	num := func(name string, dst *int) {
		if v, line, ok := spec.Get(name); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, specError(spec, line, name, "%q is not a whole number", v))
				return
			}
			*dst = n
		}
	}
	num("width", &bs.p.Width)
	num("height", &bs.p.Height)
	num("samples", &bs.p.Samples)
	num("cycle", &bs.p.Cycle)
	num("columns", &bs.columns)
	if v, _, ok := spec.Get("scene"); ok {
		bs.p.Scene = v
	}
	if v, line, ok := spec.Get("mode"); ok {
		if v != "render" && v != "montage" && v != "trail" {
			errs = append(errs, specError(spec, line, "mode", "unknown mode %q (render, montage or trail)", v))
		}
		bs.mode = v
	}
	if v, line, ok := spec.Get("output"); ok {
		if _, err := Expand(v, 1, 1, "."); err != nil {
			errs = append(errs, specError(spec, line, "output", "%v", err))
		} else if strings.Contains(v, "/") || strings.Contains(v, `\`) || strings.Contains(v, "{dir}") || v == "" {
			errs = append(errs, specError(spec, line, "output", "output %q must be a plain file name", v))
		}
		bs.output = v
	}
	if err := bs.p.Validate(); err != nil {
		errs = append(errs, specError(spec, 0, "backend", "%v", err))
	}
	if bs.columns < 0 {
		errs = append(errs, specError(spec, 0, "columns", "columns %d must not be negative", bs.columns))
	}
	if len(errs) > 0 {
		return bs, errs
	}
	return bs, nil
}

// Check implements Backend.
func (Builtin) Check(spec *manifest.Backend) error {
	_, err := parseBuiltin(spec)
	return err
}

// Fingerprint implements Backend: the built-in renderer is always there.
func (Builtin) Fingerprint(context.Context) (Fingerprint, error) {
	return Fingerprint{Version: "1 (" + runtime.Version() + ")"}, nil
}

// Chunks implements Backend: frames are rendered one at a time.
func (Builtin) Chunks() bool { return false }

// Render implements Backend.
func (Builtin) Render(ctx context.Context, t *Task) error {
	bs, err := parseBuiltin(t.Spec)
	if err != nil {
		return err
	}
	var img image.Image
	switch bs.mode {
	case "render":
		img, err = raster.Render(bs.p, t.Frame())
	case "montage", "trail":
		var deps []image.Image
		for _, name := range t.DepFiles {
			if !strings.EqualFold(filepath.Ext(name), ".png") {
				continue
			}
			d, err := readPNG(filepath.Join(t.Dir, name))
			if err != nil {
				return err
			}
			deps = append(deps, d)
		}
		if len(deps) == 0 {
			return fmt.Errorf("mode %s needs PNG outputs from the frame's dependencies, and it has none", bs.mode)
		}
		if bs.mode == "montage" {
			img = raster.Montage(deps, bs.columns, bs.p.Width, bs.p.Height)
			break
		}
		var cur *image.NRGBA
		if cur, err = raster.Render(bs.p, t.Frame()); err != nil {
			break
		}
		img = cur
		for _, d := range deps {
			if img, err = raster.Blend(d, img, 0.65); err != nil {
				return fmt.Errorf("trail: %w", err)
			}
		}
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	name, err := Expand(bs.output, t.Job, t.Frame(), t.Dir)
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(t.Dir, name))
	if err != nil {
		return err
	}
	w := pngWriters.Get().(*bufio.Writer)
	w.Reset(f)
	err = raster.EncodePNG(w, img)
	if err == nil {
		err = w.Flush()
	}
	w.Reset(nil)
	pngWriters.Put(w)
	if err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if t.Events != nil {
		t.Events.Progress(t.Frame(), 1)
	}
	return nil
}

// pngWriters buffer the PNGs written to their files: a buffer allocated per
// frame would cost more than encoding a small frame.
var pngWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

func readPNG(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, err := png.Decode(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Base(path), err)
	}
	return img, nil
}
