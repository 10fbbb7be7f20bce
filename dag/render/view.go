package render

import (
	"container/heap"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/trellisflow/trellis/dag"
)

type kind int

const (
	kindNode     kind = iota // a node of the flow
	kindMore                 // "+N more": stands for collapsed siblings and what hangs below them
	kindExternal             // a parent from an earlier flow
)

// vnode is one box of the picture.
type vnode struct {
	kind   kind
	name   string // unique: the node's ID, or a synthetic name for kindMore
	state  dag.State
	typ    string
	lines  []string          // plain text: sanitized, cut, not yet escaped
	more   int               // kindMore: collapsed siblings
	below  int               // kindMore: hidden descendants
	hidden map[dag.State]int // kindMore: hidden descendants by state
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
	spawn map[[2]int]bool
}

// build lays out f: it orders the nodes parents first, collapses large
// groups of siblings and writes the labels.
func build(f *dag.Flow, o Options) (*view, error) {
	if f == nil {
		return nil, errors.New("render: nil flow")
	}
	v := &view{title: o.Title, spawn: map[[2]int]bool{}}
	if v.title == "" {
		v.title = "flow " + f.ID
	}
	if v.title == "-" {
		v.title = ""
	}
	v.title = cut(clean(v.title), 2*o.MaxLabel)
	v.summary = summary(f)

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
	known := map[[2]string]bool{}
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
	spawned := rewireExpansions(nodes, byID, parents)
	names := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		names[n.ID] = true
		for _, p := range parents[n.ID] {
			names[p] = true
		}
	}

	type group struct {
		size, shown int
		more        int // view index of the "+N more" node, or -1
	}
	groups := map[string]*group{}
	keyOf := func(n *dag.Node) string {
		ps := slices.Clone(parents[n.ID])
		slices.Sort(ps)
		return n.Type + "\x00" + string(n.State) + "\x00" + strings.Join(ps, "\x00")
	}
	order := topo(nodes, parents, byID)
	keys := make(map[string]string, len(nodes))
	members := map[string][]*dag.Node{}
	for _, n := range order {
		k := keyOf(n)
		keys[n.ID] = k
		if groups[k] == nil {
			groups[k] = &group{more: -1}
		}
		groups[k].size++
		members[k] = append(members[k], n)
	}
	// A group too large to draw shows the members whose subtrees hold the
	// most urgent states (a failure below a succeeded phase), then the
	// first ones.
	shown := map[string]bool{}
	if o.MaxSiblings > 0 {
		score := urgency(order, parents, byID)
		for _, ms := range members {
			if len(ms) <= o.MaxSiblings {
				continue
			}
			ms = slices.Clone(ms)
			slices.SortStableFunc(ms, func(a, b *dag.Node) int { return score[b.ID] - score[a.ID] })
			for _, n := range ms[:o.MaxSiblings-1] {
				shown[n.ID] = true
			}
		}
	}

	index := map[string]int{} // drawn node or external parent → view index
	rep := map[string]int{}   // hidden node → view index of the "+N more" that holds it
	add := func(vn *vnode) int {
		v.nodes = append(v.nodes, vn)
		return len(v.nodes) - 1
	}
	source := func(p string) int {
		if i, ok := index[p]; ok {
			return i
		}
		if i, ok := rep[p]; ok {
			return i
		}
		i := add(&vnode{kind: kindExternal, name: p, lines: []string{cut(clean(p), o.MaxLabel), "earlier job"}})
		index[p] = i
		return i
	}
	seen := map[[2]int]bool{}
	link := func(from, to int, spawn bool) {
		e := [2]int{from, to}
		if from != to && !seen[e] {
			seen[e] = true
			v.edges = append(v.edges, e)
		}
		if spawn {
			v.spawn[e] = true
		}
	}
	moreCount := 0
	for _, n := range order {
		ps := parents[n.ID]
		hiddenAbove, inFlow := -1, 0
		for _, p := range ps {
			if _, ok := byID[p]; !ok {
				continue
			}
			inFlow++
			r, hidden := rep[p]
			if !hidden {
				hiddenAbove = -1
				break
			}
			if hiddenAbove < 0 {
				hiddenAbove = r
			}
		}
		if inFlow > 0 && hiddenAbove >= 0 {
			v.nodes[hiddenAbove].below++
			v.nodes[hiddenAbove].hidden[n.State]++
			rep[n.ID] = hiddenAbove
			continue
		}
		g := groups[keys[n.ID]]
		if o.MaxSiblings > 0 && g.size > o.MaxSiblings && !shown[n.ID] {
			if g.more < 0 {
				moreCount++
				name := fmt.Sprintf("more-%d", moreCount)
				for names[name] {
					name = "+" + name
				}
				names[name] = true
				from := make([]int, 0, len(ps))
				for _, p := range ps {
					from = append(from, source(p))
				}
				g.more = add(&vnode{kind: kindMore, name: name, state: n.State, typ: n.Type, hidden: map[dag.State]int{}})
				for j, s := range from {
					link(s, g.more, spawned[[2]string{ps[j], n.ID}])
				}
			}
			v.nodes[g.more].more++
			rep[n.ID] = g.more
			continue
		}
		g.shown++
		from := make([]int, 0, len(ps))
		for _, p := range ps {
			from = append(from, source(p))
		}
		i := add(&vnode{kind: kindNode, name: n.ID, state: n.State, typ: n.Type, lines: labelOf(n, f.ID, o)})
		index[n.ID] = i
		for j, s := range from {
			link(s, i, spawned[[2]string{ps[j], n.ID}])
		}
	}
	for _, vn := range v.nodes {
		if vn.kind == kindMore {
			vn.lines = []string{fmt.Sprintf("+%d more", vn.more), cut(clean(vn.typ), o.MaxLabel), cut(clean(string(vn.state)), o.MaxLabel)}
			if vn.below > 0 {
				vn.lines = append(vn.lines, fmt.Sprintf("+%d below", vn.below))
				// Say what is hidden below when it is not all like the group.
				if len(vn.hidden) > 1 || vn.hidden[vn.state] == 0 {
					var parts []string
					for _, st := range dag.States {
						if c := vn.hidden[st]; c > 0 {
							parts = append(parts, fmt.Sprintf("%d %s", c, st))
						}
					}
					if len(parts) > 0 {
						vn.lines = append(vn.lines, cut(strings.Join(parts, " · "), o.MaxLabel))
					}
				}
			}
		}
	}
	return v, nil
}

// topo orders nodes parents first, keeping the given order among nodes that
// are ready together. Nodes on a cycle (which a valid flow never has) come
// last, in the given order.
func topo(nodes []*dag.Node, parents map[string][]string, byID map[string]*dag.Node) []*dag.Node {
	pending := make(map[string]int, len(nodes))
	children := make(map[string][]*dag.Node, len(nodes))
	for _, n := range nodes {
		for _, p := range parents[n.ID] {
			if _, ok := byID[p]; ok {
				pending[n.ID]++
				children[p] = append(children[p], n)
			}
		}
	}
	pos := make(map[string]int, len(nodes))
	for i, n := range nodes {
		pos[n.ID] = i
	}
	out := make([]*dag.Node, 0, len(nodes))
	done := make(map[string]bool, len(nodes))
	// The frontier is a min-heap of positions, so nodes ready together keep
	// the order they were given in.
	frontier := &posHeap{}
	for i, n := range nodes {
		if pending[n.ID] == 0 {
			heap.Push(frontier, i)
		}
	}
	for frontier.Len() > 0 {
		n := nodes[heap.Pop(frontier).(int)]
		out = append(out, n)
		done[n.ID] = true
		for _, c := range children[n.ID] {
			pending[c.ID]--
			if pending[c.ID] == 0 {
				heap.Push(frontier, pos[c.ID])
			}
		}
	}
	for _, n := range nodes {
		if !done[n.ID] {
			out = append(out, n)
		}
	}
	return out
}

// labelOf is the text of a node's box, one element per line.
func labelOf(n *dag.Node, flowID string, o Options) []string {
	id := n.ID
	// Node IDs often start with the flow's, which the title shows.
	if rest, ok := strings.CutPrefix(id, flowID+"/"); ok && flowID != "" && rest != "" {
		id = "…/" + rest
	}
	lines := []string{cutMiddle(clean(id), o.MaxLabel), cut(clean(n.Type), o.MaxLabel)}
	status := cut(clean(string(n.State)), o.MaxLabel)
	if n.Attempts > 0 {
		status += fmt.Sprintf(" · attempt %d/%d", n.Attempt, n.Attempts)
	} else {
		status += fmt.Sprintf(" · attempt %d", n.Attempt)
	}
	if n.Expanded {
		status += " · expanded"
	}
	lines = append(lines, status)
	short := func(s string) string { // reasons name nodes by their full IDs
		if flowID != "" {
			s = strings.ReplaceAll(s, flowID+"/", "…/")
		}
		return cut(clean(firstLine(s)), o.MaxLabel)
	}
	switch {
	case n.State == dag.Failed && n.Error != nil && firstLine(n.Error.Message) != "":
		lines = append(lines, short(n.Error.Message))
	case n.Reason != "":
		lines = append(lines, short(n.Reason))
	}
	return lines
}

// firstLine is the first non-blank line of s, trimmed.
func firstLine(s string) string {
	for line := range strings.Lines(s) {
		if t := strings.TrimSpace(line); t != "" {
			return t
		}
	}
	return ""
}

// clean makes s safe to show on one line: invalid UTF-8 and control
// characters become U+FFFD, and line breaks and tabs become spaces.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			return '\uFFFD'
		}
		return r
	}, s)
}

// cutMiddle shortens s to at most max characters by replacing its middle
// with "…": the ends of an ID tell it apart best.
func cutMiddle(s string, max int) string {
	r := []rune(s)
	if len(r) <= max {
		return s
	}
	head := (max - 1) / 3
	tail := max - 1 - head
	return string(r[:head]) + "…" + string(r[len(r)-tail:])
}

// cut shortens s to at most max characters, ending it with "…" if it was cut.
func cut(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return strings.TrimRightFunc(string(r[:max-1]), unicode.IsSpace) + "…"
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
// dropped; its label says "expanded". It returns the new edges.
func rewireExpansions(nodes []*dag.Node, byID map[string]*dag.Node, parents map[string][]string) map[[2]string]bool {
	spawned := map[[2]string]bool{}
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
	return spawned
}

// urgency scores each node by the most urgent state in it and below it, so
// that collapsing keeps trouble in sight.
func urgency(order []*dag.Node, parents map[string][]string, byID map[string]*dag.Node) map[string]int {
	rank := map[dag.State]int{
		dag.Failed: 7, dag.Active: 6, dag.Delayed: 5, dag.Cancelled: 4,
		dag.Ready: 3, dag.Blocked: 2, dag.Skipped: 1, dag.Succeeded: 0,
	}
	score := make(map[string]int, len(order))
	for _, n := range order {
		r, ok := rank[n.State]
		if !ok {
			r = 4
		}
		score[n.ID] = max(score[n.ID], r)
	}
	for i := len(order) - 1; i >= 0; i-- {
		n := order[i]
		for _, p := range parents[n.ID] {
			if _, ok := byID[p]; ok {
				score[p] = max(score[p], score[n.ID])
			}
		}
	}
	return score
}
