package raster

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	"image/color"
	"image/png"
	"slices"
	"strings"
	"testing"
)

func render(t *testing.T, p Params, frame int64) *image.NRGBA {
	t.Helper()
	img, err := Render(p, frame)
	if err != nil {
		t.Fatalf("Render(%+v, %d): %v", p, frame, err)
	}
	if got := img.Bounds(); got != image.Rect(0, 0, p.Width, p.Height) {
		t.Fatalf("Render(%+v, %d): bounds %v", p, frame, got)
	}
	return img
}

func small(scene string) Params {
	return Params{Scene: scene, Width: 64, Height: 36, Samples: 2, Cycle: 48}
}

func TestScenes(t *testing.T) {
	if got, want := Scenes(), []string{"clock", "orbit"}; !slices.Equal(got, want) {
		t.Fatalf("Scenes() = %v, want %v", got, want)
	}
	if !slices.Contains(Scenes(), DefaultScene) {
		t.Fatalf("DefaultScene %q is not among %v", DefaultScene, Scenes())
	}
}

func TestDeterminism(t *testing.T) {
	for _, sc := range Scenes() {
		for _, samples := range []int{1, 3, 8} {
			p := small(sc)
			p.Samples = samples
			a, b := render(t, p, 7), render(t, p, 7)
			if !bytes.Equal(a.Pix, b.Pix) {
				t.Errorf("%s samples %d: two renders of the same frame differ", sc, samples)
			}
		}
	}
}

func TestAnimation(t *testing.T) {
	for _, sc := range Scenes() {
		p := small(sc)
		f0, f1 := render(t, p, 0), render(t, p, 1)
		if bytes.Equal(f0.Pix, f1.Pix) {
			t.Errorf("%s: frames 0 and 1 are identical", sc)
		}
		for _, k := range []int64{0, 5, 47, 1 << 40} {
			a, b := render(t, p, k), render(t, p, k+int64(p.Cycle))
			if !bytes.Equal(a.Pix, b.Pix) {
				t.Errorf("%s: frame %d and frame %d+cycle differ", sc, k, k)
			}
		}
		if !bytes.Equal(render(t, p, -1).Pix, render(t, p, int64(p.Cycle-1)).Pix) {
			t.Errorf("%s: frame -1 differs from frame cycle-1", sc)
		}
		if !bytes.Equal(render(t, p, -9223372036854775808).Pix, render(t, p, 16).Pix) {
			// -2^63 mod 48 = 16
			t.Errorf("%s: frame MinInt64 differs from frame 16", sc)
		}
	}
}

func TestPhase(t *testing.T) {
	p := Params{Cycle: 4}
	for frame, want := range map[int64]float64{0: 0, 1: 0.25, 4: 0, -1: 0.75, -4: 0, -5: 0.75, 9223372036854775807: 0.75} {
		if got := p.Phase(frame); got != want {
			t.Errorf("Phase(%d) = %v, want %v", frame, got, want)
		}
	}
}

// The golden hashes pin the renderer's output. If you change a scene on
// purpose, look at the new frames and update these constants.
func TestGolden(t *testing.T) {
	golden := map[string]string{
		"orbit": "5e5b98df8ae0dd1bc1c0927d12a86442840c0a17c64e206a22342bc3aedbd708",
		"clock": "95109e53c54d1f758c1f17897a5d2ea8ecce631510728bd0cccff9768fae627f",
	}
	for sc, want := range golden {
		sum := sha256.Sum256(render(t, small(sc), 5).Pix)
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s frame 5: pixel hash %s, want %s", sc, got, want)
		}
	}
}

func TestOpaque(t *testing.T) {
	for _, sc := range Scenes() {
		img := render(t, small(sc), 3)
		for i := 3; i < len(img.Pix); i += 4 {
			if img.Pix[i] != 0xff {
				t.Fatalf("%s: pixel %d has alpha %d", sc, i/4, img.Pix[i])
			}
		}
	}
}

func TestTinyRender(t *testing.T) {
	for _, sc := range Scenes() {
		render(t, Params{Scene: sc, Width: 1, Height: 1, Samples: 1, Cycle: 1}, 123)
		render(t, Params{Scene: sc, Width: 3, Height: 200, Samples: 64, Cycle: 1}, 0)
	}
}

func TestValidate(t *testing.T) {
	ok := small("orbit")
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid params rejected: %v", err)
	}
	cases := []struct {
		mut  func(*Params)
		want string
	}{
		{func(p *Params) { p.Width = 0 }, "width 0: must be 1..8192"},
		{func(p *Params) { p.Height = 9000 }, "height 9000: must be 1..8192"},
		{func(p *Params) { p.Samples = 0 }, "samples 0: must be 1..64"},
		{func(p *Params) { p.Samples = 65 }, "samples 65"},
		{func(p *Params) { p.Cycle = 0 }, "cycle 0"},
		{func(p *Params) { p.Scene = "teapot" }, `scene "teapot"`},
	}
	for _, c := range cases {
		p := ok
		c.mut(&p)
		err := p.Validate()
		if err == nil {
			t.Errorf("%+v: accepted, want error containing %q", p, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %q, want it to contain %q", p, err, c.want)
		}
		if _, rerr := Render(p, 0); rerr == nil || !strings.Contains(rerr.Error(), c.want) {
			t.Errorf("%+v: Render error %v, want it to contain %q", p, rerr, c.want)
		}
	}
	p := ok
	p.Scene = "teapot"
	if err := p.Validate(); !strings.Contains(err.Error(), "clock, orbit") {
		t.Errorf("unknown scene error %q does not list the known scenes", err)
	}
	bad := Params{Scene: "x", Width: -1, Height: 0, Samples: 100, Cycle: -3}
	msg := bad.Validate().Error()
	for _, field := range []string{"scene", "width", "height", "samples", "cycle"} {
		if !strings.Contains(msg, field) {
			t.Errorf("error %q does not mention %s", msg, field)
		}
	}
}

func solid(w, h int, c color.NRGBA) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	return img
}

func TestMontage(t *testing.T) {
	colours := []color.NRGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {10, 20, 30, 255}, {200, 100, 50, 255}}
	var imgs []image.Image
	for _, c := range colours {
		imgs = append(imgs, solid(10, 10, c))
	}
	for _, tile := range [][2]int{{10, 10}, {4, 6}, {25, 17}} {
		tw, th := tile[0], tile[1]
		m := Montage(imgs, 0, tw, th)
		if got, want := m.Bounds(), image.Rect(0, 0, 3*tw, 2*th); got != want {
			t.Fatalf("tile %dx%d: bounds %v, want %v", tw, th, got, want)
		}
		for i, c := range colours {
			x, y := (i%3)*tw+tw/2, (i/3)*th+th/2
			if got := m.NRGBAAt(x, y); got != c {
				t.Errorf("tile %dx%d: centre of tile %d is %v, want %v", tw, th, i, got, c)
			}
		}
		// The sixth cell is unused.
		if got := m.NRGBAAt(2*tw+tw/2, th+th/2); got.A != 0 {
			t.Errorf("tile %dx%d: unused cell is %v, want transparent", tw, th, got)
		}
	}

	// Zero tile size takes the first image's; explicit cols are honoured.
	if got := Montage(imgs, 2, 0, 0).Bounds(); got != image.Rect(0, 0, 20, 30) {
		t.Errorf("cols 2, tile 0x0: bounds %v, want 20x30", got)
	}
	if got := Montage(imgs, 99, 0, 0).Bounds(); got != image.Rect(0, 0, 50, 10) {
		t.Errorf("cols 99: bounds %v, want 50x10", got)
	}
	if got := Montage(nil, 0, 0, 0).Bounds(); got != image.Rect(0, 0, 1, 1) {
		t.Errorf("no images: bounds %v, want 1x1", got)
	}

	// Shrinking averages: a 2x1 black-and-white image becomes mid grey.
	bw := image.NewNRGBA(image.Rect(5, 5, 7, 6))
	bw.SetNRGBA(5, 5, color.NRGBA{0, 0, 0, 255})
	bw.SetNRGBA(6, 5, color.NRGBA{254, 254, 254, 255})
	if got := Montage([]image.Image{bw}, 1, 1, 1).NRGBAAt(0, 0); got != (color.NRGBA{127, 127, 127, 255}) {
		t.Errorf("box filter of black and white = %v, want grey 127", got)
	}
}

func TestBlend(t *testing.T) {
	a := render(t, small("orbit"), 0)
	b := render(t, small("clock"), 0)
	for _, tc := range []struct {
		t    float64
		want *image.NRGBA
	}{{0, a}, {-3, a}, {1, b}, {7, b}} {
		got, err := Blend(a, b, tc.t)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Pix, tc.want.Pix) {
			t.Errorf("t=%v: result is not the expected input", tc.t)
		}
	}
	half, err := Blend(solid(2, 2, color.NRGBA{0, 100, 200, 255}), solid(2, 2, color.NRGBA{100, 200, 0, 255}), 0.5)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := half.NRGBAAt(1, 1), (color.NRGBA{50, 150, 100, 255}); got != want {
		t.Errorf("t=0.5: %v, want %v", got, want)
	}
	// Colour under a transparent pixel does not bleed in.
	clear := solid(1, 1, color.NRGBA{255, 0, 0, 0})
	green := solid(1, 1, color.NRGBA{0, 255, 0, 255})
	if got, err := Blend(clear, green, 0.5); err != nil || got.NRGBAAt(0, 0) != (color.NRGBA{0, 255, 0, 128}) {
		t.Errorf("blend with transparent = %v, %v; want pure green at half alpha", got.NRGBAAt(0, 0), err)
	}

	_, err = Blend(a, solid(10, 20, color.NRGBA{}), 0.5)
	if err == nil {
		t.Fatal("size mismatch accepted")
	}
	if !errors.Is(err, errSize) || !strings.Contains(err.Error(), "64x36") || !strings.Contains(err.Error(), "10x20") {
		t.Errorf("size mismatch error %q should name both sizes", err)
	}
}

func TestEncodePNG(t *testing.T) {
	src := render(t, small("orbit"), 11)
	var buf bytes.Buffer
	if err := EncodePNG(&buf, src); err != nil {
		t.Fatal(err)
	}
	dec, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if dec.Bounds() != src.Bounds() {
		t.Fatalf("decoded bounds %v, want %v", dec.Bounds(), src.Bounds())
	}
	for y := range src.Bounds().Dy() {
		for x := range src.Bounds().Dx() {
			if got, want := color.NRGBAModel.Convert(dec.At(x, y)), src.NRGBAAt(x, y); got != want {
				t.Fatalf("pixel (%d,%d): decoded %v, want %v", x, y, got, want)
			}
		}
	}
	// Translucent pixels survive too.
	tr := solid(3, 2, color.NRGBA{10, 200, 30, 77})
	buf.Reset()
	if err := EncodePNG(&buf, tr); err != nil {
		t.Fatal(err)
	}
	dec, err = png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := color.NRGBAModel.Convert(dec.At(2, 1)); got != tr.NRGBAAt(2, 1) {
		t.Errorf("translucent pixel decoded as %v, want %v", got, tr.NRGBAAt(2, 1))
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestEncodePNGError(t *testing.T) {
	err := EncodePNG(failWriter{}, solid(2, 2, color.NRGBA{1, 2, 3, 255}))
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("EncodePNG to a failing writer: %v, want the write error", err)
	}
}

func BenchmarkRender320x180(b *testing.B) {
	p := Params{Scene: "orbit", Width: 320, Height: 180, Samples: 4, Cycle: 48}
	for i := 0; b.Loop(); i++ {
		if _, err := Render(p, int64(i)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRender1x1(b *testing.B) {
	p := Params{Scene: "orbit", Width: 1, Height: 1, Samples: 1, Cycle: 48}
	for b.Loop() {
		if _, err := Render(p, 3); err != nil {
			b.Fatal(err)
		}
	}
}
