package raster

import "math"

// Every product that feeds an addition is wrapped in float64(...): the Go
// spec lets an explicit conversion stop the compiler from fusing it into a
// multiply-add, which some architectures would otherwise round differently.

type rgb struct{ r, g, b float64 }

func (c rgb) add(d rgb) rgb { return rgb{c.r + d.r, c.g + d.g, c.b + d.b} }

func (c rgb) scale(s float64) rgb { return rgb{float64(c.r * s), float64(c.g * s), float64(c.b * s)} }

// lerp returns c*(1-t) + d*t.
func (c rgb) lerp(d rgb, t float64) rgb {
	return rgb{
		float64(c.r*(1-t)) + float64(d.r*t),
		float64(c.g*(1-t)) + float64(d.g*t),
		float64(c.b*(1-t)) + float64(d.b*t),
	}
}

type vec struct{ x, y, z float64 }

func (a vec) add(b vec) vec       { return vec{a.x + b.x, a.y + b.y, a.z + b.z} }
func (a vec) sub(b vec) vec       { return vec{a.x - b.x, a.y - b.y, a.z - b.z} }
func (a vec) scale(s float64) vec { return vec{float64(a.x * s), float64(a.y * s), float64(a.z * s)} }

// addScaled returns a + b*s.
func (a vec) addScaled(b vec, s float64) vec {
	return vec{a.x + float64(b.x*s), a.y + float64(b.y*s), a.z + float64(b.z*s)}
}

func (a vec) dot(b vec) float64 {
	return float64(a.x*b.x) + float64(a.y*b.y) + float64(a.z*b.z)
}

func (a vec) cross(b vec) vec {
	return vec{
		float64(a.y*b.z) - float64(a.z*b.y),
		float64(a.z*b.x) - float64(a.x*b.z),
		float64(a.x*b.y) - float64(a.y*b.x),
	}
}

func (a vec) norm() vec { return a.scale(1 / math.Sqrt(a.dot(a))) }

// ---- orbit ----------------------------------------------------------------

type sphere struct {
	c     vec
	r, r2 float64
	col   rgb
}

type orbit struct {
	eye                vec
	fwd, right, up     vec
	sx, sy             float64 // pixel to image-plane scale
	halfW, halfH       float64
	spheres            []sphere
	light, half        vec // direction to the light; Blinn half vector for the fixed view
	sky0, sky1, floorA rgb
	floorB             rgb
}

// orbitSpheres describes each sphere's path: it circles the origin at radius
// dist, turning turns times per loop (an integer, so the loop closes),
// starting at angle start, and bobs bob units up and down twice per loop.
var orbitSpheres = []struct {
	radius, dist, start, bob, lift float64
	turns                          float64
	col                            rgb
}{
	{0.70, 2.1, 0.0, 0.25, 0.20, 1, rgb{0.85, 0.18, 0.12}},
	{0.50, 2.1, math.Pi, 0.35, 0.40, 1, rgb{0.15, 0.45, 0.90}},
	{0.40, 3.2, 1.3, 0.20, 0.10, -1, rgb{0.95, 0.75, 0.10}},
	{0.30, 1.1, 2.6, 0.45, 0.90, 2, rgb{0.20, 0.80, 0.35}},
}

func newOrbit(w, h int, phase float64) scene {
	theta := float64(2 * math.Pi * phase)
	o := &orbit{
		eye:    vec{0, 2.4, -7.5},
		halfW:  float64(w) / 2,
		halfH:  float64(h) / 2,
		light:  vec{-0.5, 1, -0.35}.norm(),
		sky0:   rgb{0.55, 0.70, 0.95},
		sky1:   rgb{0.10, 0.22, 0.55},
		floorA: rgb{0.80, 0.80, 0.78},
		floorB: rgb{0.16, 0.17, 0.20},
	}
	o.fwd = vec{0, 0.55, 0}.sub(o.eye).norm()
	o.right = vec{0, 1, 0}.cross(o.fwd).norm()
	o.up = o.fwd.cross(o.right)
	// Vertical field of view of 40 degrees: tan(20°).
	const tanHalf = 0.36397023426620234
	o.sy = tanHalf / o.halfH
	o.sx = o.sy // square pixels
	o.half = o.light.sub(o.fwd).norm()
	// 4π·phase is exactly 2·theta, written so no compiler turns the
	// doubling into a fused multiply-add.
	theta2 := float64(4 * math.Pi * phase)
	for _, s := range orbitSpheres {
		a := float64(s.turns*theta) + s.start
		wave := 0.5 + float64(0.5*math.Sin(theta2+s.start)) // 0..1
		y := s.radius + s.lift + float64(s.bob*wave)
		o.spheres = append(o.spheres, sphere{
			c:   vec{float64(s.dist * math.Cos(a)), y, float64(s.dist * math.Sin(a))},
			r:   s.radius,
			r2:  float64(s.radius * s.radius),
			col: s.col,
		})
	}
	return o
}

// hitSphere returns the nearest distance > eps along the unit ray (o, d) at
// which it meets s, or +Inf.
func hitSphere(s *sphere, o, d vec) float64 {
	oc := o.sub(s.c)
	b := oc.dot(d)
	c := oc.dot(oc) - s.r2
	disc := float64(b*b) - c
	if disc < 0 {
		return math.Inf(1)
	}
	q := math.Sqrt(disc)
	const eps = 1e-6
	if t := -b - q; t > eps {
		return t
	}
	if t := -b + q; t > eps {
		return t
	}
	return math.Inf(1)
}

// shadowed reports whether the point p is hidden from the light by a sphere.
func (o *orbit) shadowed(p vec, skip int) bool {
	for i := range o.spheres {
		if i != skip && !math.IsInf(hitSphere(&o.spheres[i], p, o.light), 1) {
			return true
		}
	}
	return false
}

func (o *orbit) shade(x, y float64) rgb {
	u := float64((x - o.halfW) * o.sx)
	v := float64((o.halfH - y) * o.sy)
	d := o.fwd.addScaled(o.right, u).addScaled(o.up, v).norm()

	best, hit := math.Inf(1), -1
	for i := range o.spheres {
		if t := hitSphere(&o.spheres[i], o.eye, d); t < best {
			best, hit = t, i
		}
	}
	if d.y < 0 {
		if t := -o.eye.y / d.y; t < best {
			return o.floor(o.eye.addScaled(d, t), t)
		}
	}
	if hit < 0 {
		return o.sky(d)
	}
	s := &o.spheres[hit]
	p := o.eye.addScaled(d, best)
	n := p.sub(s.c).scale(1 / s.r)
	const ambient = 0.16
	lit := 0.0
	spec := 0.0
	if ndl := n.dot(o.light); ndl > 0 && !o.shadowed(p, hit) {
		lit = ndl
		if ndh := n.dot(o.half); ndh > 0 {
			spec = float64(pow32(ndh) * 0.5)
		}
	}
	// A touch of floor bounce from below, sky from above.
	fill := float64(0.08 * (0.5 + float64(0.5*n.y)))
	c := s.col.scale(ambient + fill + float64((1-ambient)*lit))
	return c.add(rgb{spec, spec, spec})
}

func (o *orbit) floor(p vec, dist float64) rgb {
	col := o.floorA
	if (int64(math.Floor(p.x))+int64(math.Floor(p.z)))&1 != 0 {
		col = o.floorB
	}
	lit := o.light.y
	if o.shadowed(p, -1) {
		lit = 0
	}
	col = col.scale(0.2 + float64(0.8*lit))
	// Fade into the horizon haze.
	fog := dist / (dist + 28)
	return col.lerp(o.sky0, fog)
}

func (o *orbit) sky(d vec) rgb {
	t := max(0, min(1, d.y*2))
	return o.sky0.lerp(o.sky1, t)
}

// pow32 returns v**32 by repeated squaring.
func pow32(v float64) float64 {
	for range 5 {
		v *= v
	}
	return v
}

// ---- clock ----------------------------------------------------------------

type clock struct {
	cx, cy, inv float64 // centre in pixels; 1/radius
	hand        vec     // unit direction of the hand, screen coordinates (y down)
	ticks       [12]vec
}

var (
	clockBack = rgb{0.07, 0.09, 0.13}
	clockFace = rgb{0.93, 0.90, 0.82}
	clockInk  = rgb{0.10, 0.10, 0.12}
	clockHand = rgb{0.80, 0.12, 0.10}
)

func newClock(w, h int, phase float64) scene {
	theta := float64(2 * math.Pi * phase)
	c := &clock{
		cx:   float64(w) / 2,
		cy:   float64(h) / 2,
		inv:  1 / float64(0.46*float64(min(w, h))),
		hand: vec{math.Sin(theta), -math.Cos(theta), 0},
	}
	for k := range c.ticks {
		a := float64(k) * (math.Pi / 6)
		c.ticks[k] = vec{math.Sin(a), -math.Cos(a), 0}
	}
	return c
}

func (c *clock) shade(x, y float64) rgb {
	p := vec{float64((x - c.cx) * c.inv), float64((y - c.cy) * c.inv), 0}
	r2 := p.dot(p)
	switch {
	case r2 > 1:
		return clockBack
	case r2 > 0.92*0.92:
		return clockInk // rim
	case r2 < 0.07*0.07:
		return clockInk // hub
	}
	// The hand: a bar from slightly behind the centre to 0.78.
	along := p.dot(c.hand)
	across := float64(p.x*c.hand.y) - float64(p.y*c.hand.x)
	if along > -0.12 && along < 0.78 && math.Abs(across) < 0.03 {
		return clockHand
	}
	// Tick marks between radius 0.72 and 0.86; the quarter ones are wider.
	if r2 > 0.72*0.72 && r2 < 0.86*0.86 {
		for k, t := range c.ticks {
			if p.dot(t) <= 0 {
				continue
			}
			half := 0.018
			if k%3 == 0 {
				half = 0.035
			}
			if math.Abs(float64(p.x*t.y)-float64(p.y*t.x)) < half {
				return clockInk
			}
		}
	}
	return clockFace
}
