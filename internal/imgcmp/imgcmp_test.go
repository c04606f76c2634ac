package imgcmp

import (
	"image"
	"image/color"
	"testing"
)

func TestDiff(t *testing.T) {
	a := image.NewRGBA(image.Rect(0, 0, 4, 3))
	b := image.NewRGBA(image.Rect(0, 0, 4, 3))
	if d := Diff(a, b); d != "" {
		t.Errorf("equal images: %q", d)
	}
	b.Set(2, 1, color.RGBA{1, 0, 0, 255})
	if d := Diff(a, b); d != "pixel (2,1) differs" {
		t.Errorf("one pixel: %q", d)
	}
	if d := Diff(a, image.NewRGBA(image.Rect(0, 0, 4, 4))); d == "" {
		t.Error("different sizes compare equal")
	}
}
