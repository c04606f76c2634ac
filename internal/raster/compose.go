package raster

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"sync"
)

// errSize is wrapped by Blend when its inputs differ in size.
var errSize = errors.New("images differ in size")

// nrgbaAt returns the non-premultiplied colour of img at (x, y), without
// allocating for the image types distren produces and reads back.
func nrgbaAt(img image.Image, x, y int) color.NRGBA {
	switch m := img.(type) {
	case *image.NRGBA:
		return m.NRGBAAt(x, y)
	case *image.RGBA:
		c := m.RGBAAt(x, y)
		switch c.A {
		case 0xff:
			return color.NRGBA{c.R, c.G, c.B, 0xff}
		case 0:
			return color.NRGBA{}
		}
		return color.NRGBAModel.Convert(c).(color.NRGBA)
	}
	return color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
}

// Montage lays imgs out as a contact sheet: each image is scaled to
// tileW x tileH (averaging the source pixels under each tile pixel when
// shrinking, repeating them when enlarging) and placed row-major, cols tiles
// per row. cols <= 0 picks a near-square layout of ceil(sqrt(len(imgs)))
// columns; cols larger than len(imgs) is reduced to len(imgs). A tileW or
// tileH <= 0 takes the first image's width or height. Cells left over in the
// last row, and cells of nil or empty images, stay transparent. No images
// give a 1x1 transparent image.
func Montage(imgs []image.Image, cols, tileW, tileH int) *image.NRGBA {
	n := len(imgs)
	if n == 0 {
		return image.NewNRGBA(image.Rect(0, 0, 1, 1))
	}
	if tileW <= 0 || tileH <= 0 {
		var b image.Rectangle
		if imgs[0] != nil {
			b = imgs[0].Bounds()
		}
		if tileW <= 0 {
			tileW = b.Dx()
		}
		if tileH <= 0 {
			tileH = b.Dy()
		}
	}
	tileW, tileH = max(tileW, 1), max(tileH, 1)
	if cols <= 0 {
		cols = 1
		for cols*cols < n {
			cols++
		}
	}
	cols = min(cols, n)
	rows := (n + cols - 1) / cols
	dst := image.NewNRGBA(image.Rect(0, 0, cols*tileW, rows*tileH))
	for i, src := range imgs {
		if src == nil {
			continue
		}
		x0, y0 := (i%cols)*tileW, (i/cols)*tileH
		scaleInto(dst, image.Rect(x0, y0, x0+tileW, y0+tileH), src)
	}
	return dst
}

// scaleInto box-filters src into the rectangle r of dst. Colours are
// averaged weighted by alpha, so transparent pixels do not bleed.
func scaleInto(dst *image.NRGBA, r image.Rectangle, src image.Image) {
	b := src.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if sw <= 0 || sh <= 0 {
		return
	}
	tw, th := r.Dx(), r.Dy()
	span := func(d, dn, sn, base int) (int, int) {
		lo := base + d*sn/dn
		hi := base + (d+1)*sn/dn
		return lo, max(hi, lo+1)
	}
	for dy := range th {
		sy0, sy1 := span(dy, th, sh, b.Min.Y)
		row := dst.Pix[(r.Min.Y+dy)*dst.Stride:]
		for dx := range tw {
			sx0, sx1 := span(dx, tw, sw, b.Min.X)
			var sr, sg, sb, sa, count uint64
			for sy := sy0; sy < sy1; sy++ {
				for sx := sx0; sx < sx1; sx++ {
					c := nrgbaAt(src, sx, sy)
					a := uint64(c.A)
					sr += uint64(c.R) * a
					sg += uint64(c.G) * a
					sb += uint64(c.B) * a
					sa += a
					count++
				}
			}
			o := row[(r.Min.X+dx)*4 : (r.Min.X+dx)*4+4 : (r.Min.X+dx)*4+4]
			if sa == 0 {
				o[0], o[1], o[2], o[3] = 0, 0, 0, 0
				continue
			}
			o[0] = uint8((sr + sa/2) / sa)
			o[1] = uint8((sg + sa/2) / sa)
			o[2] = uint8((sb + sa/2) / sa)
			o[3] = uint8((sa + count/2) / count)
		}
	}
}

// Blend cross-fades two images of the same size: each pixel is
// a*(1-t) + b*t, with colours weighted by alpha. t is clamped to 0..1, so
// t = 0 gives a and t = 1 gives b exactly. The result's bounds start at
// (0, 0); a and b may have different origins.
func Blend(a, b image.Image, t float64) (*image.NRGBA, error) {
	if a == nil || b == nil {
		return nil, errors.New("blend: missing image")
	}
	ab, bb := a.Bounds(), b.Bounds()
	if ab.Dx() != bb.Dx() || ab.Dy() != bb.Dy() {
		return nil, fmt.Errorf("blend: %w: %dx%d and %dx%d", errSize, ab.Dx(), ab.Dy(), bb.Dx(), bb.Dy())
	}
	if !(t > 0) { // also maps NaN to 0
		t = 0
	} else if t > 1 {
		t = 1
	}
	s := 1 - t
	w, h := ab.Dx(), ab.Dy()
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		row := dst.Pix[y*dst.Stride:]
		for x := range w {
			ca := nrgbaAt(a, ab.Min.X+x, ab.Min.Y+y)
			cb := nrgbaAt(b, bb.Min.X+x, bb.Min.Y+y)
			aa, ba := float64(ca.A), float64(cb.A)
			alpha := float64(aa*s) + float64(ba*t)
			o := row[x*4 : x*4+4 : x*4+4]
			if alpha <= 0 {
				o[0], o[1], o[2], o[3] = 0, 0, 0, 0
				continue
			}
			mix := func(p, q uint8) uint8 {
				v := (float64(float64(p)*aa*s) + float64(float64(q)*ba*t)) / alpha
				return uint8(math.Min(255, math.Floor(v+0.5)))
			}
			o[0] = mix(ca.R, cb.R)
			o[1] = mix(ca.G, cb.G)
			o[2] = mix(ca.B, cb.B)
			o[3] = uint8(math.Min(255, math.Floor(alpha+0.5)))
		}
	}
	return dst, nil
}

// EncodePNG writes img to w as PNG, favouring speed over size.
func EncodePNG(w io.Writer, img image.Image) error {
	if img == nil {
		return errors.New("encode png: no image")
	}
	enc := png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: encoderPool{}}
	if err := enc.Encode(w, img); err != nil {
		return fmt.Errorf("encode png: %w", err)
	}
	return nil
}

// encoderPool reuses the PNG encoder's buffers and compressor between frames:
// allocating a compressor costs more than encoding a small image.
type encoderPool struct{}

var encoderBuffers sync.Pool

func (encoderPool) Get() *png.EncoderBuffer {
	b, _ := encoderBuffers.Get().(*png.EncoderBuffer)
	return b
}

func (encoderPool) Put(b *png.EncoderBuffer) { encoderBuffers.Put(b) }
