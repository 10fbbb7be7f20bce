package render

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
	"golang.org/x/image/vector"
)

// The PNG is Graphviz's SVG drawn by this file, not go-graphviz's own PNG
// renderer, which (in v0.2.10) leaves out node borders and most edges and
// fills some curves. Graphviz's SVG uses a small subset of SVG: one
// transform on the root group, polygon, polyline, ellipse, path (M, L, C, Z,
// absolute) and text. Anything else is skipped.

// pngScale is pixels per SVG point (Graphviz works in points; 96 dpi is 4/3).
const pngScale = 2.0

// maxPixels bounds a PNG's area; larger drawings are scaled down to fit.
const maxPixels = 16 << 20

type svgElem struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Children []svgElem  `xml:",any"`
	Text     string     `xml:",chardata"`
}

func (e *svgElem) attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (e *svgElem) num(name string) float64 {
	f, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(e.attr(name)), "pt"), 64)
	return f
}

// rasterize draws Graphviz's SVG into an image, stopping with ctx's error
// if ctx ends first.
func rasterize(ctx context.Context, svg []byte) (*image.RGBA, error) {
	var root svgElem
	dec := xml.NewDecoder(bytes.NewReader(svg))
	dec.Strict = false
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("render: read SVG: %w", err)
	}
	w, h := root.num("width"), root.num("height")
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("render: SVG has no size")
	}
	scale := pngScale
	if px := w * h * scale * scale; px > maxPixels {
		scale *= math.Sqrt(maxPixels / px)
	}
	img := image.NewRGBA(image.Rect(0, 0, int(math.Ceil(w*scale)), int(math.Ceil(h*scale))))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	r := &rasterizer{ctx: ctx, img: img, scale: scale}
	for i := range root.Children {
		r.elem(&root.Children[i], affine{a: scale, b: scale})
	}
	if r.err != nil {
		return nil, r.err
	}
	return img, nil
}

// affine maps SVG user space to pixels: (x·a + c, y·b + d). Graphviz only
// scales and translates.
type affine struct{ a, b, c, d float64 }

func (t affine) apply(x, y float64) (float64, float64) { return x*t.a + t.c, y*t.b + t.d }

type rasterizer struct {
	ctx   context.Context
	err   error // ctx's, once it ended: nothing more is drawn
	drawn int
	img   *image.RGBA
	scale float64
	z     vector.Rasterizer
}

func (r *rasterizer) elem(e *svgElem, t affine) {
	if r.drawn++; r.drawn%64 == 0 && r.err == nil {
		r.err = r.ctx.Err()
	}
	if r.err != nil {
		return
	}
	if tr := e.attr("transform"); tr != "" {
		t = withTransform(t, tr)
	}
	switch e.XMLName.Local {
	case "g", "a", "svg":
		for i := range e.Children {
			if e.attr("class") == "graph" && isBackground(&e.Children[i]) {
				continue
			}
			r.elem(&e.Children[i], t)
		}
	case "polygon":
		pts := points(e.attr("points"), t)
		r.shape(e, [][]pt{closeRing(pts)}, t)
	case "polyline":
		r.stroke(e, [][]pt{points(e.attr("points"), t)}, t)
	case "ellipse":
		cx, cy := t.apply(e.num("cx"), e.num("cy"))
		rx, ry := e.num("rx")*t.a, e.num("ry")*t.b
		var ring []pt
		for i := 0; i <= 48; i++ {
			a := 2 * math.Pi * float64(i) / 48
			ring = append(ring, pt{cx + rx*math.Cos(a), cy + ry*math.Sin(a)})
		}
		r.shape(e, [][]pt{ring}, t)
	case "path":
		r.shape(e, pathPoints(e.attr("d"), t), t)
	case "text":
		r.text(e, t)
	}
}

// isBackground reports whether e is the white polygon under the whole
// graph, which the image already is: filling it would size the
// rasterizer's buffers to the whole image.
func isBackground(e *svgElem) bool {
	if e.XMLName.Local != "polygon" || e.attr("stroke") != "none" {
		return false
	}
	f := strings.ToLower(e.attr("fill"))
	return f == "white" || f == "#ffffff"
}

func (r *rasterizer) shape(e *svgElem, rings [][]pt, t affine) {
	if c, ok := parseColor(e.attr("fill")); ok {
		var closed [][]pt
		for _, ring := range rings {
			closed = append(closed, closeRing(ring))
		}
		r.fill(closed, c)
	}
	r.stroke(e, rings, t)
}

func (r *rasterizer) stroke(e *svgElem, lines [][]pt, t affine) {
	c, ok := parseColor(e.attr("stroke"))
	if !ok {
		return
	}
	width := 1.0
	if s := e.attr("stroke-width"); s != "" {
		width, _ = strconv.ParseFloat(s, 64)
	}
	width *= t.a
	if width < 1 {
		width = 1
	}
	var dashes []float64
	for _, f := range strings.FieldsFunc(e.attr("stroke-dasharray"), func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
		if v, err := strconv.ParseFloat(f, 64); err == nil && v > 0 {
			dashes = append(dashes, v*t.a)
		}
	}
	var quads [][]pt
	for _, line := range lines {
		for _, seg := range dash(line, dashes) {
			quads = append(quads, thicken(seg, width)...)
		}
	}
	// Fill in small batches: a long diagonal edge has a huge bounding box
	// but covers little of it.
	for len(quads) > 0 {
		n := min(len(quads), 12)
		r.fill(quads[:n], c)
		quads = quads[n:]
	}
}

// fill paints polygons (non-zero winding) with c, working only on their
// bounding box.
func (r *rasterizer) fill(polys [][]pt, c color.Color) {
	minX, minY, maxX, maxY := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, p := range polys {
		for _, q := range p {
			minX, minY = math.Min(minX, q.x), math.Min(minY, q.y)
			maxX, maxY = math.Max(maxX, q.x), math.Max(maxY, q.y)
		}
	}
	box := image.Rect(int(math.Floor(minX)), int(math.Floor(minY)), int(math.Ceil(maxX))+1, int(math.Ceil(maxY))+1).Intersect(r.img.Bounds())
	if box.Empty() {
		return
	}
	r.z.Reset(box.Dx(), box.Dy())
	ox, oy := float32(box.Min.X), float32(box.Min.Y)
	// vector.Rasterizer adds signed coverage, so overlapping polygons of
	// opposite winding would cancel out: turn every polygon the same way.
	for _, p := range polys {
		if len(p) < 3 {
			continue
		}
		if area(p) < 0 {
			p = slices.Clone(p)
			slices.Reverse(p)
		}
		r.z.MoveTo(float32(p[0].x)-ox, float32(p[0].y)-oy)
		for _, q := range p[1:] {
			r.z.LineTo(float32(q.x)-ox, float32(q.y)-oy)
		}
		r.z.ClosePath()
	}
	r.z.Draw(r.img, box, image.NewUniform(c), image.Point{})
}

var (
	faceMu sync.Mutex
	faces  = map[float64]font.Face{}
	goFont *opentype.Font
)

// face returns Go Regular at size pixels; faces are cached, and a face is
// not safe for concurrent use, so callers hold faceMu.
func face(size float64) (font.Face, error) {
	if f, ok := faces[size]; ok {
		return f, nil
	}
	if goFont == nil {
		f, err := opentype.Parse(goregular.TTF)
		if err != nil {
			return nil, err
		}
		goFont = f
	}
	f, err := opentype.NewFace(goFont, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingNone})
	if err != nil {
		return nil, err
	}
	faces[size] = f
	return f, nil
}

func (r *rasterizer) text(e *svgElem, t affine) {
	s := e.Text
	if strings.TrimSpace(s) == "" {
		return
	}
	c, ok := parseColor(e.attr("fill"))
	if !ok {
		c = color.Black
	}
	size := e.num("font-size")
	if size <= 0 {
		size = 14
	}
	x, y := t.apply(e.num("x"), e.num("y"))
	faceMu.Lock()
	defer faceMu.Unlock()
	// Go Regular runs about 8% wider than the Helvetica metrics Graphviz
	// sized the boxes with.
	f, err := face(math.Round(size*t.a*0.92*4) / 4)
	if err != nil {
		return
	}
	d := &font.Drawer{Dst: r.img, Src: image.NewUniform(c), Face: f}
	adv := float64(d.MeasureString(s)) / 64
	switch e.attr("text-anchor") {
	case "middle":
		x -= adv / 2
	case "end":
		x -= adv
	}
	d.Dot = fixed.Point26_6{X: fixed.Int26_6(x * 64), Y: fixed.Int26_6(y * 64)}
	d.DrawString(s)
}

type pt struct{ x, y float64 }

// area is the signed area of a polygon (shoelace formula).
func area(p []pt) float64 {
	var a float64
	for i := range p {
		q := p[(i+1)%len(p)]
		a += p[i].x*q.y - q.x*p[i].y
	}
	return a / 2
}

func withTransform(t affine, s string) affine {
	for _, part := range strings.Split(s, ")") {
		name, args, ok := strings.Cut(strings.TrimSpace(part), "(")
		if !ok {
			continue
		}
		nums := numbers(args)
		switch strings.TrimSpace(name) {
		case "scale":
			if len(nums) == 1 {
				nums = append(nums, nums[0])
			}
			if len(nums) == 2 {
				t = affine{t.a * nums[0], t.b * nums[1], t.c, t.d}
			}
		case "translate":
			if len(nums) == 1 {
				nums = append(nums, 0)
			}
			if len(nums) == 2 {
				t.c += nums[0] * t.a
				t.d += nums[1] * t.b
			}
		}
	}
	return t
}

func numbers(s string) []float64 {
	var out []float64
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
		if v, err := strconv.ParseFloat(f, 64); err == nil {
			out = append(out, v)
		}
	}
	return out
}

func points(s string, t affine) []pt {
	nums := numbers(s)
	out := make([]pt, 0, len(nums)/2)
	for i := 0; i+1 < len(nums); i += 2 {
		x, y := t.apply(nums[i], nums[i+1])
		out = append(out, pt{x, y})
	}
	return out
}

func closeRing(p []pt) []pt {
	if len(p) > 1 && p[0] != p[len(p)-1] {
		p = append(p[:len(p):len(p)], p[0])
	}
	return p
}

// pathPoints flattens an SVG path of absolute M, L, C and Z commands into
// polylines, one per subpath.
func pathPoints(d string, t affine) [][]pt {
	var out [][]pt
	var cur []pt
	var cmd byte
	var nums []float64
	flush := func() {
		switch cmd {
		case 'M', 'L':
			for i := 0; i+1 < len(nums); i += 2 {
				x, y := t.apply(nums[i], nums[i+1])
				if cmd == 'M' && i == 0 {
					if len(cur) > 1 {
						out = append(out, cur)
					}
					cur = nil
				}
				cur = append(cur, pt{x, y})
			}
		case 'C':
			for i := 0; i+5 < len(nums) && len(cur) > 0; i += 6 {
				p0 := cur[len(cur)-1]
				x1, y1 := t.apply(nums[i], nums[i+1])
				x2, y2 := t.apply(nums[i+2], nums[i+3])
				x3, y3 := t.apply(nums[i+4], nums[i+5])
				const steps = 16
				for s := 1; s <= steps; s++ {
					u := float64(s) / steps
					a, b, c, e := (1-u)*(1-u)*(1-u), 3*u*(1-u)*(1-u), 3*u*u*(1-u), u*u*u
					cur = append(cur, pt{a*p0.x + b*x1 + c*x2 + e*x3, a*p0.y + b*y1 + c*y2 + e*y3})
				}
			}
		case 'Z', 'z':
			cur = closeRing(cur)
		}
		nums = nums[:0]
	}
	var tok strings.Builder
	endNum := func() {
		if tok.Len() > 0 {
			if v, err := strconv.ParseFloat(tok.String(), 64); err == nil {
				nums = append(nums, v)
			}
			tok.Reset()
		}
	}
	for i := 0; i < len(d); i++ {
		ch := d[i]
		switch {
		case ch == '-' && tok.Len() > 0 && !strings.HasSuffix(tok.String(), "e"):
			endNum()
			tok.WriteByte(ch)
		case ch >= '0' && ch <= '9' || ch == '.' || ch == '-' || ch == 'e' || ch == '+':
			tok.WriteByte(ch)
		case ch == ',' || ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r':
			endNum()
		default:
			endNum()
			flush()
			cmd = ch
		}
	}
	endNum()
	flush()
	if len(cur) > 1 {
		out = append(out, cur)
	}
	return out
}

// dash cuts a polyline into its dashes (on, off, on, …); no pattern keeps
// it whole.
func dash(line []pt, pattern []float64) [][]pt {
	if len(pattern) == 0 || len(line) < 2 {
		return [][]pt{line}
	}
	var out [][]pt
	idx, left, on := 0, pattern[0], true
	cur := []pt{line[0]}
	for i := 1; i < len(line); i++ {
		a, b := line[i-1], line[i]
		seg := math.Hypot(b.x-a.x, b.y-a.y)
		pos := 0.0
		for seg-pos > left {
			pos += left
			u := pos / seg
			p := pt{a.x + (b.x-a.x)*u, a.y + (b.y-a.y)*u}
			if on {
				out = append(out, append(cur, p))
			}
			cur = []pt{p}
			on = !on
			idx = (idx + 1) % len(pattern)
			left = pattern[idx]
		}
		left -= seg - pos
		cur = append(cur, b)
	}
	if on && len(cur) > 1 {
		out = append(out, cur)
	}
	return out
}

// thicken turns a polyline into one quadrilateral per segment, plus a
// square at each inner joint so that corners have no gaps.
func thicken(line []pt, width float64) [][]pt {
	h := width / 2
	var out [][]pt
	for i := 1; i < len(line); i++ {
		a, b := line[i-1], line[i]
		dx, dy := b.x-a.x, b.y-a.y
		l := math.Hypot(dx, dy)
		if l == 0 {
			continue
		}
		nx, ny := -dy/l*h, dx/l*h
		out = append(out, []pt{{a.x + nx, a.y + ny}, {b.x + nx, b.y + ny}, {b.x - nx, b.y - ny}, {a.x - nx, a.y - ny}})
		if i < len(line)-1 {
			out = append(out, []pt{{b.x - h, b.y - h}, {b.x + h, b.y - h}, {b.x + h, b.y + h}, {b.x - h, b.y + h}})
		}
	}
	return out
}

var named = map[string]color.RGBA{
	"black": {0, 0, 0, 255}, "white": {255, 255, 255, 255}, "red": {255, 0, 0, 255},
	"gray": {192, 192, 192, 255}, "grey": {192, 192, 192, 255}, "lightgrey": {211, 211, 211, 255},
}

func parseColor(s string) (color.Color, bool) {
	s = strings.TrimSpace(strings.ToLower(s))
	if c, ok := named[s]; ok {
		return c, true
	}
	if len(s) == 7 && s[0] == '#' {
		v, err := strconv.ParseUint(s[1:], 16, 32)
		if err == nil {
			return color.RGBA{uint8(v >> 16), uint8(v >> 8), uint8(v), 255}, true
		}
	}
	if len(s) == 9 && s[0] == '#' {
		v, err := strconv.ParseUint(s[1:], 16, 32)
		if err == nil && v&0xff > 0 {
			a := uint8(v)
			m := func(c uint8) uint8 { return uint8(uint16(c) * uint16(a) / 255) }
			return color.RGBA{m(uint8(v >> 24)), m(uint8(v >> 16)), m(uint8(v >> 8)), a}, true
		}
	}
	return nil, false
}
