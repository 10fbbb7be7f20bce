package render

import (
	"cmp"
	"context"
	"slices"

	"github.com/trellisflow/trellis/dag"
)

// Scene is a flow laid out for a client that draws it itself (the
// dashboard's live view): every box with its place and size in pixels, and
// every edge as a polyline. Boxes sit in ranks (rows top to bottom, columns
// left to right) and edges run between the ranks, through a slot of their
// own where they cross one, so no edge passes under a box and each ends on
// the border of its own.
type Scene struct {
	Title     string      `json:"title"`
	Summary   string      `json:"summary"`
	Direction string      `json:"direction"` // "TB" or "LR"
	Width     float64     `json:"width"`
	Height    float64     `json:"height"`
	Boxes     []SceneBox  `json:"boxes"`
	Edges     []SceneEdge `json:"edges"`
	Info      Info        `json:"info"`
}

// SceneBox is one box of a Scene.
type SceneBox struct {
	// ID is the node's (or, for an external box, the earlier job's) ID; a
	// name of its own for a group or the rest.
	ID string `json:"id"`
	// Kind is "node", "group" ("+N more" siblings), "external" (a job of
	// another flow this one waits for) or "rest" ("+N not drawn").
	Kind  string    `json:"kind"`
	State dag.State `json:"state,omitempty"`
	Type  string    `json:"type,omitempty"`
	Lines []string  `json:"lines"`
	// Group is the key of the box's group of siblings: Options.Expand
	// draws it whole. Expanded says Options.Expand names it.
	Group    string `json:"group,omitempty"`
	Expanded bool   `json:"expanded,omitempty"`
	// Grown marks what an expansion added to the flow at run time.
	Grown bool `json:"grown,omitempty"`
	// More counts the nodes a group or the rest stands for, Below the
	// nodes hidden under a group.
	More  int     `json:"more,omitempty"`
	Below int     `json:"below,omitempty"`
	X     float64 `json:"x"`
	Y     float64 `json:"y"`
	W     float64 `json:"w"`
	H     float64 `json:"h"`
}

// SceneEdge runs from box From to box To (indexes in Scene.Boxes) along
// Points. Spawn marks "expanded into" rather than "must finish before".
type SceneEdge struct {
	From   int          `json:"from"`
	To     int          `json:"to"`
	Spawn  bool         `json:"spawn,omitempty"`
	Points [][2]float64 `json:"points"`
}

// The scene's measures, in pixels.
const (
	sceneBoxW     = 180 // a box's width
	sceneLine     = 14  // a label line's height
	scenePad      = 10  // a box's height past its lines
	sceneGap      = 16  // between boxes of one rank
	sceneSlot     = 6   // an edge's slot where it crosses a rank
	sceneRankTB   = 56  // between rows
	sceneRankLR   = 84  // between columns
	sceneMargin   = 16
	sceneMinScale = 0.5 // the smallest scale a fitted scene is meant to be read at
)

// Layout lays f out for a viewport of width × height pixels (0: 1280 ×
// 800). Where opts leave MaxRank 0, a rank holds what the viewport shows
// at half scale; where they leave Direction empty, the direction that
// draws more of the flow is taken, or, drawing as much, the one that fits
// the viewport at the larger scale.
func Layout(ctx context.Context, f *dag.Flow, opts *Options, width, height int) (*Scene, error) {
	if width <= 0 || height <= 0 {
		width, height = 1280, 800
	}
	fitRank := opts == nil || opts.MaxRank == 0
	o := opts.WithDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	p, err := prepare(ctx, f) // once for both directions
	if err != nil {
		return nil, err
	}
	lay := func(dir string) (*Scene, error) {
		c := o
		c.Direction = dir
		if fitRank {
			pitch := float64(sceneBoxW + sceneGap)
			room := float64(width)
			if dir == "LR" || dir == "RL" {
				pitch, room = float64(3*sceneLine+scenePad+sceneGap), float64(height)
			}
			c.MaxRank = max(4, int(room/pitch/sceneMinScale))
		}
		v, err := p.build(ctx, f, c)
		if err != nil {
			return nil, err
		}
		return place(v), nil
	}
	if o.Direction != "" {
		return lay(o.Direction)
	}
	tb, err := lay("TB")
	if err != nil {
		return nil, err
	}
	lr, err := lay("LR")
	if err != nil {
		return nil, err
	}
	drawn := func(s *Scene) int {
		k := 0
		for _, b := range s.Boxes {
			if b.Kind == "node" {
				k++
			}
		}
		return k
	}
	scale := func(s *Scene) float64 { return min(float64(width)/s.Width, float64(height)/s.Height) }
	if a, b := drawn(tb), drawn(lr); b > a || (b == a && scale(lr) > scale(tb)) {
		return lr, nil
	}
	return tb, nil
}

// ranksOf is each box's rank: one past its deepest parent's. Boxes on a
// cycle (which a valid flow never has) rank one past the parents ranked
// before them.
func ranksOf(v *view) []int {
	n := len(v.nodes)
	rank := make([]int, n)
	pending := make([]int, n)
	out := make([][]int, n)
	for _, e := range v.edges {
		pending[e[1]]++
		out[e[0]] = append(out[e[0]], e[1])
	}
	queue := make([]int, 0, n)
	for i := range n {
		if pending[i] == 0 {
			queue = append(queue, i)
		}
	}
	done := make([]bool, n)
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		done[i] = true
		for _, c := range out[i] {
			rank[c] = max(rank[c], rank[i]+1)
			if pending[c]--; pending[c] == 0 {
				queue = append(queue, c)
			}
		}
	}
	for i := range n { // a cycle: ranked from what is ranked above it
		if !done[i] {
			for _, c := range out[i] {
				if !done[c] {
					rank[c] = max(rank[c], rank[i]+1)
				}
			}
		}
	}
	return rank
}

// shape is the box count of the widest rank and the number of ranks.
func shape(ranks []int) (wide, deep int) {
	count := map[int]int{}
	for _, r := range ranks {
		count[r]++
		wide = max(wide, count[r])
		deep = max(deep, r+1)
	}
	return wide, deep
}

// widest is the box count of v's widest rank.
func widest(v *view) int {
	w, _ := shape(ranksOf(v))
	return w
}

// An item is a box, or a slot an edge takes where it crosses a rank.
type item struct {
	box      int // in v.nodes; -1 for a slot
	rank     int
	up, down []int   // neighbouring items in the ranks above and below
	at       float64 // order in its rank, then its centre across the rank
	breadth  float64 // its size across the rank
}

// place lays v out: longest-path ranks, a slot for each edge in each rank
// it crosses, barycentric ordering and a few rounds of pulling each item
// toward its neighbours, in order and apart.
func place(v *view) *Scene {
	lr := v.dir == "LR" || v.dir == "RL"
	dir := "TB"
	if lr {
		dir = "LR"
	}
	s := &Scene{Title: v.title, Summary: v.summary, Direction: dir, Info: v.info,
		Boxes: make([]SceneBox, 0, len(v.nodes)), Edges: make([]SceneEdge, 0, len(v.edges))}
	s.Info.Direction = dir
	ranks := ranksOf(v)
	thick := func(vn *vnode) float64 { // across and along the ranks
		return float64(len(vn.lines)*sceneLine + scenePad)
	}
	items := make([]item, len(v.nodes), len(v.nodes)+len(v.edges))
	for i, vn := range v.nodes {
		b := float64(sceneBoxW)
		if lr {
			b = thick(vn)
		}
		items[i] = item{box: i, rank: ranks[i], at: float64(i), breadth: b}
	}
	chains := make([][]int, len(v.edges)) // each edge's items, from its source to its target
	for k, e := range v.edges {
		chain := []int{e[0]}
		for r := ranks[e[0]] + 1; r < ranks[e[1]]; r++ {
			items = append(items, item{box: -1, rank: r, at: float64(e[0]), breadth: sceneSlot})
			chain = append(chain, len(items)-1)
		}
		chain = append(chain, e[1])
		for j := 1; j < len(chain); j++ {
			a, b := chain[j-1], chain[j]
			items[a].down = append(items[a].down, b)
			items[b].up = append(items[b].up, a)
		}
		chains[k] = chain
	}
	_, deep := shape(ranks)
	layers := make([][]int, deep)
	for i := range items {
		layers[items[i].rank] = append(layers[items[i].rank], i)
	}
	order(items, layers)
	coordinates(items, layers)

	// Along the ranks: each rank's band is as thick as its thickest box.
	band := make([]float64, deep)
	for i, vn := range v.nodes {
		t := thick(vn)
		if lr {
			t = sceneBoxW
		}
		band[ranks[i]] = max(band[ranks[i]], t)
	}
	gap := float64(sceneRankTB)
	if lr {
		gap = sceneRankLR
	}
	start := make([]float64, deep)
	at := float64(sceneMargin)
	for r := range deep {
		start[r] = at
		at += band[r] + gap
	}
	lo := 0.0
	for i, it := range items {
		if i == 0 || it.at-it.breadth/2 < lo {
			lo = it.at - it.breadth/2
		}
	}
	across := func(i int) float64 { return items[i].at - lo + sceneMargin }
	// pt makes a point from its places across and along the ranks.
	pt := func(a, l float64) [2]float64 {
		if lr {
			return [2]float64{l, a}
		}
		return [2]float64{a, l}
	}
	for i, vn := range v.nodes {
		t := thick(vn)
		along, length := start[ranks[i]], float64(sceneBoxW)
		if !lr {
			along, length = start[ranks[i]]+(band[ranks[i]]-t)/2, t
		}
		c := pt(across(i)-items[i].breadth/2, along)
		b := SceneBox{ID: vn.name, Kind: kindName[vn.kind], State: vn.state, Type: vn.typ, Lines: vn.lines,
			Group: vn.group, Expanded: vn.expanded, Grown: vn.grown, More: vn.more, Below: vn.below, X: c[0], Y: c[1]}
		if lr {
			b.W, b.H = length, items[i].breadth
		} else {
			b.W, b.H = items[i].breadth, length
		}
		s.Boxes = append(s.Boxes, b)
		s.Width, s.Height = max(s.Width, b.X+b.W+sceneMargin), max(s.Height, b.Y+b.H+sceneMargin)
	}
	// Where several edges end on a box, they meet its border spread out, in
	// the order of the places they come from.
	into := make([][]int, len(v.nodes))
	for k := range chains {
		to := v.edges[k][1]
		into[to] = append(into[to], k)
	}
	entry := make([]float64, len(v.edges))
	for to, ks := range into {
		last := func(k int) float64 { c := chains[k]; return across(c[len(c)-2]) }
		slices.SortStableFunc(ks, func(a, b int) int { return cmp.Compare(last(a), last(b)) })
		b := items[to].breadth
		for j, k := range ks {
			entry[k] = across(to) - b/2 + b*float64(j+1)/float64(len(ks)+1)
		}
	}
	edge := func(box int) (begin, end float64) { // a box's near and far side along the ranks
		b := s.Boxes[box]
		if lr {
			return b.X, b.X + b.W
		}
		return b.Y, b.Y + b.H
	}
	for k, e := range v.edges {
		_, out := edge(e[0])
		r0 := ranks[e[0]]
		pts := [][2]float64{pt(across(e[0]), out), pt(across(e[0]), start[r0]+band[r0])}
		for _, d := range chains[k][1 : len(chains[k])-1] {
			r := items[d].rank
			pts = append(pts, pt(across(d), start[r]), pt(across(d), start[r]+band[r]))
		}
		in, _ := edge(e[1])
		if r := ranks[e[1]]; r > r0 {
			pts = append(pts, pt(entry[k], start[r]))
		}
		pts = append(pts, pt(entry[k], in))
		s.Edges = append(s.Edges, SceneEdge{From: e[0], To: e[1], Spawn: v.spawn[e], Points: pts})
	}
	return s
}

var kindName = map[kind]string{kindNode: "node", kindMore: "group", kindExternal: "external", kindRest: "rest"}

// order sorts each rank by the mean place of its items' neighbours, down
// the ranks and up again, a few times; items start in the view's order
// (parents first, as the flow was built), which keeps a tree's branches
// together.
func order(items []item, layers [][]int) {
	// Places are compared as fractions of their ranks' lengths, so an item
	// with no neighbours on that side keeps its own place among the others.
	size := make([]float64, len(layers))
	for r, layer := range layers {
		size[r] = float64(max(1, len(layer)))
	}
	sortBy := func(layer []int, nbrs func(it *item) []int) {
		key := make(map[int]float64, len(layer))
		for _, i := range layer {
			ns := nbrs(&items[i])
			if len(ns) == 0 {
				key[i] = (items[i].at + 0.5) / size[items[i].rank]
				continue
			}
			sum := 0.0
			for _, n := range ns {
				sum += (items[n].at + 0.5) / size[items[n].rank]
			}
			key[i] = sum / float64(len(ns))
		}
		slices.SortStableFunc(layer, func(a, b int) int { return cmp.Compare(key[a], key[b]) })
		for j, i := range layer {
			items[i].at = float64(j)
		}
	}
	for _, layer := range layers { // the view's order first: each item keeps its place
		sortBy(layer, func(*item) []int { return nil })
	}
	down := func() {
		for r := 1; r < len(layers); r++ {
			sortBy(layers[r], func(it *item) []int { return it.up })
		}
	}
	for range 4 {
		down()
		for r := len(layers) - 2; r >= 0; r-- {
			sortBy(layers[r], func(it *item) []int { return it.down })
		}
	}
	down() // last, so every rank follows its parents' order
}

// coordinates gives each item its centre across its rank: packed in order
// first, then pulled toward its neighbours' mean, up and down the ranks,
// while it keeps its order and its distance from the items beside it.
func coordinates(items []item, layers [][]int) {
	apart := func(a, b int) float64 {
		g := float64(sceneGap)
		if items[a].box < 0 || items[b].box < 0 {
			g = sceneSlot
		}
		return (items[a].breadth+items[b].breadth)/2 + g
	}
	for _, layer := range layers {
		x := 0.0
		for j, i := range layer {
			if j > 0 {
				x += apart(layer[j-1], i)
			}
			items[i].at = x
		}
	}
	// settle moves a rank's items toward want, in order and apart: the mean
	// of a pass that pushes right and one that pushes left, each of which
	// keeps them apart, so the mean does too.
	settle := func(layer []int, want []float64) {
		n := len(layer)
		right, left := make([]float64, n), make([]float64, n)
		for j := range n {
			right[j] = want[j]
			if j > 0 {
				right[j] = max(want[j], right[j-1]+apart(layer[j-1], layer[j]))
			}
		}
		for j := n - 1; j >= 0; j-- {
			left[j] = want[j]
			if j < n-1 {
				left[j] = min(want[j], left[j+1]-apart(layer[j], layer[j+1]))
			}
		}
		for j, i := range layer {
			items[i].at = (right[j] + left[j]) / 2
		}
	}
	pull := func(layer []int, nbrs func(it *item) []int) {
		want := make([]float64, len(layer))
		for j, i := range layer {
			want[j] = items[i].at
			if ns := nbrs(&items[i]); len(ns) > 0 {
				sum := 0.0
				for _, n := range ns {
					sum += items[n].at
				}
				want[j] = sum / float64(len(ns))
			}
		}
		settle(layer, want)
	}
	for range 6 {
		for r := len(layers) - 2; r >= 0; r-- { // parents over their children
			pull(layers[r], func(it *item) []int { return it.down })
		}
		for r := 1; r < len(layers); r++ {
			pull(layers[r], func(it *item) []int { return it.up })
		}
	}
	for r := len(layers) - 2; r >= 0; r-- { // end with parents centred
		pull(layers[r], func(it *item) []int { return it.down })
	}
}
