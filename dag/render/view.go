package render

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/trellisflow/trellis/dag"
)

type kind int

const (
	kindNode     kind = iota // a node of the flow
	kindMore                 // "+N more": stands for collapsed siblings and what hangs below them
	kindExternal             // a parent from an earlier flow
	kindRest                 // "+N not drawn": the nodes past the picture's box or edge limit
)

// vnode is one box of the picture.
type vnode struct {
	kind   kind
	name   string // unique: the node's ID, or a synthetic name for kindMore and kindRest
	node   *dag.Node
	state  dag.State
	typ    string
	lines  []string          // plain text: sanitized, cut, not yet escaped
	more   int               // kindMore, kindRest: collapsed siblings, or the nodes not drawn
	below  int               // kindMore: hidden descendants
	hidden map[dag.State]int // kindMore, kindRest: hidden nodes by state
	// group is the key of the node's group of siblings (Options.Expand):
	// set on a "+N more" box and on the members of a group larger than one.
	group    string
	expanded bool // Options.Expand names its group: drawn whole
	grown    bool // added to the flow at run time by an expansion
}

// view is the picture of a flow before it is written in some format: boxes
// in topological order and deduplicated edges between them.
type view struct {
	title   string
	summary string // "10 nodes: 3 succeeded · 1 failed · …", the legend in words
	nodes   []*vnode
	edges   [][2]int
	// spawn marks the edges from an expanded node to the roots of the
	// sub-graph it added: "expanded into", not "must finish before".
	spawn    map[[2]int]bool
	siblings int // the sibling limit this view was laid out with
	// rankSiblings is the lowest limit narrow() set on the groups of a
	// rank wider than MaxRank; 0 if it set none.
	rankSiblings int
	dir          string // the direction: the options' or the one chosen for the flow's shape
	info         Info
}

// build lays out f within o's limits: it orders the nodes parents first,
// collapses large groups of siblings, collapses further while the picture
// would pass MaxBoxes or MaxEdges, and writes the labels.
func build(ctx context.Context, f *dag.Flow, o Options) (*view, error) {
	p, err := prepare(ctx, f)
	if err != nil {
		return nil, err
	}
	return p.build(ctx, f, o)
}

// build lays the prepared flow f out within o's limits (see build); it
// may be called again with other options.
func (p *prepared) build(ctx context.Context, f *dag.Flow, o Options) (*view, error) {
	p.limit = nil
	var err error
	want := o.MaxSiblings
	if want < 0 || want > p.largest {
		want = p.largest // a group no larger than the limit is drawn whole
	}
	p.expand = make(map[string]bool, len(o.Expand))
	for _, k := range o.Expand {
		p.expand[k] = true
	}
	v := p.pass(o, want, 0)
	collapsed := v == nil
	// Too many boxes or edges: the largest sibling limit that fits, found
	// by bisection (fewer siblings draw no more boxes).
	if v == nil {
		if v, _, err = bisect(ctx, 1, want-1, func(s int) *view { return p.pass(o, s, 0) }); err != nil {
			return nil, err
		}
	}
	// Even one box per group is too many (a long chain, a mesh): the first
	// boxes in topological order, as many as fit, and one box for the rest.
	if v == nil {
		if v, _, err = bisect(ctx, 1, o.MaxBoxes-1, func(room int) *view { return p.pass(o, 1, room) }); err != nil {
			return nil, err
		}
	}
	if v == nil { // unreachable while MaxBoxes >= 2 and MaxEdges >= 1
		return nil, fmt.Errorf("render: flow %q cannot be drawn within %d boxes and %d edges", f.ID, o.MaxBoxes, o.MaxEdges)
	}
	if o.MaxRank > 0 && v.info.NotDrawn == 0 {
		w, err := p.narrow(ctx, o, v)
		if err != nil {
			return nil, err
		}
		if w != v {
			v, collapsed = w, true
		}
	}
	v.dir = o.Direction
	if v.dir == "" {
		v.dir = "TB"
		if wide, deep := shape(ranksOf(v)); wide > 2*deep {
			v.dir = "LR"
		}
	}
	v.info.Direction = v.dir
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v.title = o.Title
	if v.title == "" {
		v.title = "flow " + f.ID
	}
	if v.title == "-" {
		v.title = ""
	}
	v.title = cut(clean(v.title), 2*o.MaxLabel)
	v.summary = p.summary
	v.info.Nodes = len(p.order)
	v.info.Boxes, v.info.Edges = len(v.nodes), len(v.edges)
	v.info.MaxBoxes, v.info.MaxEdges, v.info.MaxRank = o.MaxBoxes, o.MaxEdges, o.MaxRank
	v.info.Siblings = o.MaxSiblings
	v.info.RankSiblings = v.rankSiblings
	v.info.Wide = v.rankSiblings > 0
	for _, vn := range v.nodes {
		if vn.kind == kindRest {
			v.info.NotDrawn = vn.more
		}
	}
	if collapsed {
		v.info.Collapsed = true
		v.info.Siblings = v.siblings
	}
	writeLabels(v, f.ID, o)
	return v, nil
}

// narrow collapses the groups of each rank of v wider than o.MaxRank, from
// the top down, to the largest sibling limit that fits the rank (or one):
// narrower ranks keep their groups whole. It returns v if no rank is too
// wide.
func (p *prepared) narrow(ctx context.Context, o Options, v *view) (*view, error) {
	p.limit = make([]int, len(p.size))
	gid := make(map[string][]int, len(p.gkey)) // a key's groups: one per state
	for g, k := range p.gkey {
		gid[k] = append(gid[k], g)
	}
	lowest := 0
	for from := 0; ; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ranks := ranksOf(v)
		r, groups := crowded(v, ranks, from, o.MaxRank, gid, p.expand)
		if r < 0 {
			break
		}
		from = r + 1
		hi := 0
		for _, g := range groups {
			hi = max(hi, p.size[g])
		}
		if v.siblings > 0 {
			hi = min(hi, v.siblings)
		}
		set := func(s int) {
			for _, g := range groups {
				p.limit[g] = s
			}
		}
		fits := func(s int) *view {
			set(s)
			if w := p.pass(o, v.siblings, 0); w != nil && count(ranksOf(w), r) <= o.MaxRank {
				return w
			}
			return nil
		}
		w, best, err := bisect(ctx, 1, hi-1, fits)
		if err != nil {
			return nil, err
		}
		if w == nil { // no limit fits the rank: one sibling per group
			best = 1
		}
		set(best) // the later ranks are laid out with this one's limit
		if w == nil {
			if w = p.pass(o, v.siblings, 0); w == nil { // unreachable: fewer siblings never draw more
				break
			}
		}
		v = w
		if lowest == 0 || best < lowest {
			lowest = best
		}
	}
	v.rankSiblings = lowest
	return v, nil
}

// crowded returns the first rank from on that holds more than most boxes,
// and the groups of siblings of its boxes that may collapse further; -1 if
// there is none.
func crowded(v *view, ranks []int, from, most int, gid map[string][]int, expand map[string]bool) (int, []int) {
	per := map[int]int{}
	for _, r := range ranks {
		per[r]++
	}
	r := -1
	for k, c := range per {
		if k >= from && c > most && (r < 0 || k < r) {
			r = k
		}
	}
	if r < 0 {
		return -1, nil
	}
	seen := map[int]bool{}
	var groups []int
	for i, vn := range v.nodes {
		if ranks[i] != r || vn.group == "" || expand[vn.group] {
			continue
		}
		for _, g := range gid[vn.group] {
			if !seen[g] {
				seen[g] = true
				groups = append(groups, g)
			}
		}
	}
	if len(groups) == 0 {
		return crowded(v, ranks, r+1, most, gid, expand)
	}
	return r, groups
}

// count is how many boxes rank r holds.
func count(ranks []int, r int) int {
	k := 0
	for _, x := range ranks {
		if x == r {
			k++
		}
	}
	return k
}

// bisect returns the view of the largest x in [lo, hi] whose layout fits,
// and that x, assuming a smaller x never draws more; nil if none does.
func bisect(ctx context.Context, lo, hi int, layout func(int) *view) (*view, int, error) {
	var best *view
	at := 0
	for lo <= hi {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		mid := lo + (hi-lo)/2
		if v := layout(mid); v != nil {
			best, at, lo = v, mid, mid+1
		} else {
			hi = mid - 1
		}
	}
	return best, at, nil
}

// prepared is a flow ready to be laid out at any sibling limit: its nodes
// parents first, each node's parents by position, and its sibling groups
// with their members ranked by urgency.
type prepared struct {
	order     []*dag.Node
	parents   [][]int // by position in order; p < 0 is the earlier job externals[-p-1]
	externals []string
	spawn     map[[2]int]bool // (parent, child) positions of "expanded into" edges
	group     []int           // position → its group of siblings
	size      []int           // group → members
	rank      []int           // position → place in its group, most urgent first
	gkey      []string        // group → its key (Options.Expand): the members' type and parents
	grown     []bool          // position → added by an expansion
	expand    map[string]bool // group keys drawn whole (Options.Expand)
	limit     []int           // group → its own sibling limit, below pass's (narrow); 0: none
	names     map[string]bool // every ID, so synthetic names avoid them
	largest   int             // members of the largest group
	summary   string
}

func prepare(ctx context.Context, f *dag.Flow) (*prepared, error) {
	if f == nil {
		return nil, errors.New("render: nil flow")
	}
	byID := make(map[string]*dag.Node, len(f.Nodes))
	var nodes []*dag.Node
	for _, n := range f.Nodes {
		if n == nil {
			continue
		}
		if _, dup := byID[n.ID]; dup {
			continue
		}
		byID[n.ID] = n
		nodes = append(nodes, n)
	}
	// Parents come from both sides of each edge, deduplicated, in order.
	parents := make(map[string][]string, len(nodes))
	known := make(map[[2]string]bool, len(nodes))
	addEdge := func(p, c string) {
		if k := [2]string{p, c}; !known[k] {
			known[k] = true
			parents[c] = append(parents[c], p)
		}
	}
	for _, n := range nodes {
		for _, p := range n.Parents {
			addEdge(p, n.ID)
		}
	}
	for _, n := range nodes {
		for _, c := range n.Children {
			if _, ok := byID[c]; ok {
				addEdge(n.ID, c)
			}
		}
	}
	known = nil
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	spawned, grown := rewireExpansions(nodes, byID, parents)
	p := &prepared{summary: summary(f), names: make(map[string]bool, len(nodes)), spawn: map[[2]int]bool{}}
	for _, n := range nodes {
		p.names[n.ID] = true
		for _, q := range parents[n.ID] {
			p.names[q] = true
		}
	}
	p.order = topo(nodes, parents)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pos := make(map[string]int, len(p.order))
	p.grown = make([]bool, len(p.order))
	for i, n := range p.order {
		pos[n.ID] = i
		p.grown[i] = grown[n.ID]
	}
	ext := map[string]int{}
	p.parents = make([][]int, len(p.order))
	for i, n := range p.order {
		ps := make([]int, len(parents[n.ID]))
		for j, q := range parents[n.ID] {
			if k, ok := pos[q]; ok {
				ps[j] = k
			} else {
				k, ok := ext[q]
				if !ok {
					k = len(p.externals)
					ext[q] = k
					p.externals = append(p.externals, q)
				}
				ps[j] = -k - 1
			}
			if spawned[[2]string{q, n.ID}] {
				p.spawn[[2]int{ps[j], i}] = true
			}
		}
		p.parents[i] = ps
	}
	// Siblings share their parents, message type and state. A group's key
	// leaves the state out, so a group expanded stays so as its members
	// move on.
	keys := make(map[string]int, len(p.order))
	p.group = make([]int, len(p.order))
	var members [][]int
	for i, n := range p.order {
		ps := slices.Clone(parents[n.ID])
		slices.Sort(ps)
		kin := n.Type + "\x00" + strings.Join(ps, "\x00")
		k := string(n.State) + "\x00" + kin
		g, ok := keys[k]
		if !ok {
			g = len(members)
			keys[k] = g
			members = append(members, nil)
			h := fnv.New64a()
			h.Write([]byte(kin))
			p.gkey = append(p.gkey, fmt.Sprintf("g%016x", h.Sum64()))
		}
		p.group[i] = g
		members[g] = append(members[g], i)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A group too large to draw shows the members whose subtrees hold the
	// most urgent states (a failure below a succeeded phase), then the
	// first ones.
	score := urgency(p.order, p.parents)
	p.size = make([]int, len(members))
	p.rank = make([]int, len(p.order))
	for g, ms := range members {
		p.size[g] = len(ms)
		p.largest = max(p.largest, len(ms))
		slices.SortStableFunc(ms, func(a, b int) int { return score[b] - score[a] })
		for r, i := range ms {
			p.rank[i] = r
		}
	}
	return p, nil
}

// pass lays the prepared flow out with at most siblings members drawn per
// group (a larger group shows siblings-1 and one "+N more"). With room > 0,
// the nodes that would need a box past the first room boxes all go into one
// last box instead. It returns nil when the picture would pass o.MaxBoxes
// boxes or o.MaxEdges edges. Labels are left to writeLabels.
func (p *prepared) pass(o Options, siblings, room int) *view {
	v := &view{spawn: map[[2]int]bool{}, siblings: siblings}
	const none = -1
	box := make([]int32, len(p.order)) // position → its box: its own, or the one that holds it
	for i := range box {
		box[i] = none
	}
	extBox := make([]int32, len(p.externals))
	for i := range extBox {
		extBox[i] = none
	}
	more := make([]int32, len(p.size)) // group → its "+N more" box
	for i := range more {
		more[i] = none
	}
	own := make([]bool, len(p.order)) // drawn in a box of its own
	full := func() bool { return room > 0 && len(v.nodes) >= room }
	over := false
	add := func(vn *vnode) int32 {
		v.nodes = append(v.nodes, vn)
		if len(v.nodes) > o.MaxBoxes {
			over = true
		}
		return int32(len(v.nodes) - 1)
	}
	// source is the box an edge from parent q starts at, or none for an
	// earlier job that no longer fits.
	source := func(q int) int32 {
		if q >= 0 {
			return box[q]
		}
		e := -q - 1
		if extBox[e] == none && !full() {
			name := p.externals[e]
			extBox[e] = add(&vnode{kind: kindExternal, name: name, lines: []string{cut(clean(name), o.MaxLabel), "earlier job"}})
		}
		return extBox[e]
	}
	seen := map[[2]int]bool{}
	link := func(from, to int32, spawn bool) {
		e := [2]int{int(from), int(to)}
		if from == none || from == to || seen[e] {
			return
		}
		seen[e] = true
		v.edges = append(v.edges, e)
		if len(v.edges) > o.MaxEdges {
			over = true
		}
		if spawn {
			v.spawn[e] = true
		}
	}
	rest := int32(none)
	moreCount := 0
	synthetic := func(prefix string) string {
		moreCount++
		name := fmt.Sprintf("%s-%d", prefix, moreCount)
		for p.names[name] {
			name = "+" + name
		}
		return name
	}
	for i, n := range p.order {
		if over {
			return nil
		}
		ps := p.parents[i]
		hiddenAbove, inFlow := int32(none), 0
		for _, q := range ps {
			if q < 0 {
				continue
			}
			inFlow++
			if own[q] || box[q] == none { // drawn, or (on a cycle) not laid out yet
				hiddenAbove = none
				break
			}
			if hiddenAbove == none {
				hiddenAbove = box[q]
			}
		}
		if inFlow > 0 && hiddenAbove != none {
			hb := v.nodes[hiddenAbove]
			if hb.kind == kindRest {
				hb.more++
			} else {
				hb.below++
			}
			hb.hidden[n.State]++
			box[i] = hiddenAbove
			continue
		}
		g := p.group[i]
		expanded := p.expand[p.gkey[g]]
		s := siblings
		if p.limit != nil && p.limit[g] > 0 && (s <= 0 || p.limit[g] < s) {
			s = p.limit[g]
		}
		collapse := s > 0 && p.size[g] > s && p.rank[i] >= s-1 && !expanded
		if (!collapse || more[g] == none) && full() {
			// No room for another box: this node joins the last one.
			if rest == none {
				rest = add(&vnode{kind: kindRest, name: synthetic("rest"), hidden: map[dag.State]int{}})
			}
			v.nodes[rest].more++
			v.nodes[rest].hidden[n.State]++
			box[i] = rest
			for _, q := range ps {
				link(source(q), rest, false)
			}
			continue
		}
		if collapse {
			if more[g] == none {
				from := make([]int32, len(ps))
				for j, q := range ps {
					from[j] = source(q)
				}
				more[g] = add(&vnode{kind: kindMore, name: synthetic("more"), state: n.State, typ: n.Type, hidden: map[dag.State]int{},
					group: p.gkey[g], grown: p.grown[i]})
				for j, q := range ps {
					link(from[j], more[g], p.spawn[[2]int{q, i}])
				}
			}
			v.nodes[more[g]].more++
			box[i] = more[g]
			continue
		}
		from := make([]int32, len(ps))
		for j, q := range ps {
			from[j] = source(q)
		}
		vn := &vnode{kind: kindNode, name: n.ID, node: n, state: n.State, typ: n.Type, grown: p.grown[i]}
		if p.size[g] > 1 {
			vn.group, vn.expanded = p.gkey[g], expanded
		}
		box[i] = add(vn)
		own[i] = true
		for j, q := range ps {
			link(from[j], box[i], p.spawn[[2]int{q, i}])
		}
	}
	if over {
		return nil
	}
	return v
}

type posHeap []int

func (h posHeap) Len() int           { return len(h) }
func (h posHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h posHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *posHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *posHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// summary counts the flow's nodes by state, in lifecycle order.
func summary(f *dag.Flow) string {
	counts := map[dag.State]int{}
	total := 0
	for _, n := range f.Nodes {
		if n != nil {
			counts[n.State]++
			total++
		}
	}
	parts := make([]string, 0, len(counts))
	for _, st := range dag.States {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
			delete(counts, st)
		}
	}
	if len(counts) > 0 {
		other := 0
		for _, c := range counts {
			other += c
		}
		parts = append(parts, fmt.Sprintf("%d in another state", other))
	}
	noun := "nodes"
	if total == 1 {
		noun = "node"
	}
	if total == 0 {
		return "no nodes"
	}
	return fmt.Sprintf("%d %s: %s", total, noun, strings.Join(parts, " · "))
}

// rewireExpansions redraws expanded nodes. The store makes an expanded node
// finish after its sub-graph by linking the sub-graph's sinks to it, which
// drawn as is puts the node below the work it started. Instead the node
// points at the sub-graph's roots ("expanded into") and the join edges are
// dropped; its label says "expanded". It returns the new edges and the
// nodes of the sub-graphs.
func rewireExpansions(nodes []*dag.Node, byID map[string]*dag.Node, parents map[string][]string) (spawned map[[2]string]bool, grown map[string]bool) {
	spawned, grown = map[[2]string]bool{}, map[string]bool{}
	inFlow := func(id string) bool { _, ok := byID[id]; return ok }
	for _, e := range nodes {
		if !e.Expanded {
			continue
		}
		own := make(map[string]bool, len(e.Parents))
		for _, p := range e.Parents {
			own[p] = true
		}
		var joins, keep []string
		for _, p := range parents[e.ID] {
			if !own[p] && inFlow(p) {
				joins = append(joins, p)
			} else {
				keep = append(keep, p)
			}
		}
		if len(joins) == 0 {
			continue
		}
		// The sub-graph is what the joins hang on, short of e's ancestors;
		// a nested expanded node's own joins belong to it, not to e.
		ancestors := map[string]bool{e.ID: true}
		for stack := slices.Clone(keep); len(stack) > 0; {
			id := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if ancestors[id] || !inFlow(id) {
				continue
			}
			ancestors[id] = true
			stack = append(stack, parents[id]...)
		}
		sub := map[string]bool{}
		for stack := joins; len(stack) > 0; {
			id := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if sub[id] || ancestors[id] || !inFlow(id) {
				continue
			}
			sub[id] = true
			grown[id] = true
			if n := byID[id]; n.Expanded {
				stack = append(stack, n.Parents...)
			} else {
				stack = append(stack, parents[id]...)
			}
		}
		parents[e.ID] = keep
		for _, n := range nodes {
			if !sub[n.ID] {
				continue
			}
			root := true
			for _, p := range parents[n.ID] {
				if sub[p] {
					root = false
					break
				}
			}
			if root {
				parents[n.ID] = append(parents[n.ID], e.ID)
				spawned[[2]string{e.ID, n.ID}] = true
			}
		}
	}
	return spawned, grown
}

// urgency scores each node by the most urgent state in it and below it, so
// that collapsing keeps trouble in sight. order is topological and parents
// are positions in it.
func urgency(order []*dag.Node, parents [][]int) []int {
	rank := map[dag.State]int{
		dag.Failed: 7, dag.Active: 6, dag.Delayed: 5, dag.Cancelled: 4,
		dag.Ready: 3, dag.Blocked: 2, dag.Skipped: 1, dag.Succeeded: 0,
	}
	score := make([]int, len(order))
	for i, n := range order {
		r, ok := rank[n.State]
		if !ok {
			r = 4
		}
		score[i] = r
	}
	for i := len(order) - 1; i >= 0; i-- {
		for _, q := range parents[i] {
			if q >= 0 {
				score[q] = max(score[q], score[i])
			}
		}
	}
	return score
}

// topo orders nodes parents first, keeping the given order among nodes that
// are ready together. Nodes on a cycle (which a valid flow never has) come
// last, in the given order.
func topo(nodes []*dag.Node, parents map[string][]string) []*dag.Node {
	pos := make(map[string]int, len(nodes))
	for i, n := range nodes {
		pos[n.ID] = i
	}
	pending := make([]int, len(nodes))
	children := make([][]int, len(nodes))
	for i, n := range nodes {
		for _, p := range parents[n.ID] {
			if j, ok := pos[p]; ok {
				pending[i]++
				children[j] = append(children[j], i)
			}
		}
	}
	out := make([]*dag.Node, 0, len(nodes))
	done := make([]bool, len(nodes))
	// The frontier is a min-heap of positions, so nodes ready together keep
	// the order they were given in.
	frontier := &posHeap{}
	for i := range nodes {
		if pending[i] == 0 {
			heap.Push(frontier, i)
		}
	}
	for frontier.Len() > 0 {
		i := heap.Pop(frontier).(int)
		out = append(out, nodes[i])
		done[i] = true
		for _, c := range children[i] {
			pending[c]--
			if pending[c] == 0 {
				heap.Push(frontier, c)
			}
		}
	}
	for i, n := range nodes {
		if !done[i] {
			out = append(out, n)
		}
	}
	return out
}
