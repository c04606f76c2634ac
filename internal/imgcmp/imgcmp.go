// Package imgcmp owns comparing rendered images pixel by pixel, as the tests
// that check a renderer against its reference do.
package imgcmp

import (
	"fmt"
	"image"
)

// Diff says where two images differ — their sizes, or the first pixel whose
// colour differs — or returns "" if they are the same pixel for pixel.
func Diff(a, b image.Image) string {
	if a.Bounds() != b.Bounds() {
		return fmt.Sprintf("size %v against %v", a.Bounds(), b.Bounds())
	}
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			r1, g1, b1, a1 := a.At(x, y).RGBA()
			r2, g2, b2, a2 := b.At(x, y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 || a1 != a2 {
				return fmt.Sprintf("pixel (%d,%d) differs", x, y)
			}
		}
	}
	return ""
}
