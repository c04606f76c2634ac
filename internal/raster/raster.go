// Package raster owns distren's built-in renderer: it draws frames of small
// animated scenes ("orbit", "clock") into images with no external program,
// and provides the image utilities the builtin backend needs around it —
// contact sheets (Montage), cross-fades (Blend) and fast PNG encoding
// (EncodePNG).
//
// Rendering is deterministic: the same Params and frame give bit-identical
// pixels on every run. Antialiasing uses a fixed per-pixel sample pattern
// derived from a hash of the pixel coordinates, never a random number
// generator or the clock. The renderer uses only math.Sqrt and math.Floor
// (exact everywhere) and math.Sin and math.Cos (pure Go except on s390x),
// and every product that feeds an addition is explicitly rounded, so
// architectures whose compilers fuse multiply-adds (arm64, ppc64le, riscv64,
// loong64) compute the same pixels as amd64.
//
// Rendering is single-threaded on purpose: a worker runs one task per slot,
// and a renderer that grabbed every core would oversubscribe the machine.
// Cost is proportional to Width*Height*Samples.
package raster

import (
	"fmt"
	"image"
	"math"
	"slices"
	"strings"
)

// DefaultScene is the scene used when a job does not name one.
const DefaultScene = "orbit"

// Limits on Params fields.
const (
	MaxSize    = 8192 // largest Width or Height, in pixels
	MaxSamples = 64   // largest Samples
)

// Params describes what to render.
type Params struct {
	Scene  string // scene name, one of Scenes()
	Width  int    // pixels, 1..8192
	Height int    // pixels, 1..8192
	// Samples is the number of antialiasing samples taken per pixel (not
	// per axis), 1..64. Rendering cost grows linearly with it. With 1 the
	// pixel centre is sampled; with more, the samples are spread over the
	// pixel in a fixed low-discrepancy pattern, rotated by a hash of the
	// pixel's coordinates.
	Samples int
	Cycle   int // frames per loop of the animation, >= 1; frame n and n+Cycle look the same
}

// scene draws one frame: newScene prepares the frame (phase is the position
// in the loop, in [0, 1)), and shade returns the linear colour seen through
// the continuous pixel coordinate (x, y), with (0, 0) the top-left corner
// of the image.
type scene interface {
	shade(x, y float64) rgb
}

var scenes = map[string]func(w, h int, phase float64) scene{
	"orbit": newOrbit,
	"clock": newClock,
}

// Scenes returns the names of the built-in scenes, sorted.
func Scenes() []string {
	names := make([]string, 0, len(scenes))
	for n := range scenes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// fieldErrors reports every invalid field at once, separated by "; ".
type fieldErrors []error

func (e fieldErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e fieldErrors) Unwrap() []error { return e }

// Validate reports whether p can be rendered. The error names each bad field
// with its value and allowed range, for example "width 0: must be 1..8192".
func (p Params) Validate() error {
	var errs fieldErrors
	if _, ok := scenes[p.Scene]; !ok {
		errs = append(errs, fmt.Errorf("scene %q: unknown (known scenes: %s)", p.Scene, strings.Join(Scenes(), ", ")))
	}
	rng := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			errs = append(errs, fmt.Errorf("%s %d: must be %d..%d", name, v, lo, hi))
		}
	}
	rng("width", p.Width, 1, MaxSize)
	rng("height", p.Height, 1, MaxSize)
	rng("samples", p.Samples, 1, MaxSamples)
	if p.Cycle < 1 {
		errs = append(errs, fmt.Errorf("cycle %d: must be at least 1", p.Cycle))
	}
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return errs
}

// Phase returns where frame falls in the animation loop of p, in [0, 1):
// (frame mod Cycle) / Cycle, with negative frames wrapping around, so frame
// -1 is frame Cycle-1. A Cycle below 1 is treated as 1.
func (p Params) Phase(frame int64) float64 {
	c := int64(max(p.Cycle, 1))
	f := frame % c
	if f < 0 {
		f += c
	}
	return float64(f) / float64(c)
}

// Render draws frame of the scene described by p. It validates p first.
// Any frame number is allowed, including negative ones; only frame mod
// p.Cycle matters. The result is opaque and its bounds start at (0, 0).
func Render(p Params, frame int64) (*image.NRGBA, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("invalid render parameters: %w", err)
	}
	sc := scenes[p.Scene](p.Width, p.Height, p.Phase(frame))
	img := image.NewNRGBA(image.Rect(0, 0, p.Width, p.Height))
	n := p.Samples
	inv := 1 / float64(n)
	for py := 0; py < p.Height; py++ {
		row := img.Pix[py*img.Stride:]
		for px := 0; px < p.Width; px++ {
			var sum rgb
			if n == 1 {
				sum = sc.shade(float64(px)+0.5, float64(py)+0.5)
			} else {
				ox, oy := pixelOffset(px, py)
				for i := range n {
					// Roberts' R2 sequence: evenly spread for any n.
					fx := frac(ox + float64(float64(i)*r2a))
					fy := frac(oy + float64(float64(i)*r2b))
					sum = sum.add(sc.shade(float64(px)+fx, float64(py)+fy))
				}
				sum = sum.scale(inv)
			}
			o := row[px*4 : px*4+4 : px*4+4]
			o[0] = toByte(sum.r)
			o[1] = toByte(sum.g)
			o[2] = toByte(sum.b)
			o[3] = 0xff
		}
	}
	return img, nil
}

// The generalised golden ratio's reciprocals for two dimensions.
const (
	r2a = 0.7548776662466927
	r2b = 0.5698402909980532
)

func frac(v float64) float64 { return v - math.Floor(v) }

// pixelOffset returns a per-pixel rotation of the sample pattern in [0, 1)²,
// a fixed function of the pixel's coordinates.
func pixelOffset(px, py int) (float64, float64) {
	h := uint32(px)*0x8da6b343 ^ uint32(py)*0xd8163841
	h ^= h >> 16
	h *= 0x7feb352d
	h ^= h >> 15
	h *= 0x846ca68b
	h ^= h >> 16
	return float64(float64(h&0xffff) / 65536), float64(float64(h>>16) / 65536)
}

// toByte maps a linear intensity to an 8-bit level with gamma 2 (the square
// root is correctly rounded on every architecture).
func toByte(v float64) uint8 {
	if !(v > 0) {
		return 0
	}
	if v >= 1 {
		return 255
	}
	return uint8(float64(math.Sqrt(v)*255) + 0.5)
}
