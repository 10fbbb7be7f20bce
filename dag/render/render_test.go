package render

import (
	"bytes"
	"context"
	"encoding/xml"
	"flag"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/trellisflow/trellis/dag"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func node(id, typ string, st dag.State, attempt, attempts int, parents ...string) *dag.Node {
	n := &dag.Node{State: st, Attempt: attempt}
	n.ID, n.Type, n.MaxAttempts, n.Parents = id, typ, attempts, parents
	return n
}

// withChildren fills each node's Children from the others' Parents, as the
// store does.
func withChildren(f *dag.Flow) *dag.Flow {
	byID := map[string]*dag.Node{}
	for _, n := range f.Nodes {
		byID[n.ID] = n
	}
	for _, n := range f.Nodes {
		for _, p := range n.Parents {
			if pn := byID[p]; pn != nil {
				pn.Children = append(pn.Children, n.ID)
			}
		}
	}
	return f
}

// planFlow is a small workout save caught mid-run: every state appears.
func planFlow() *dag.Flow {
	failed := node("phase-2", "WORKOUT_PHASE_CREATE", dag.Failed, 3, 3, "plan")
	failed.Error = &dag.ErrorInfo{Message: "pq: duplicate key value violates unique constraint \"phases_pkey\"\ngoroutine 7 [running]:", Attempt: 3}
	cancelled := node("session-2a", "WORKOUT_SESSION_CREATE", dag.Cancelled, 0, 3, "phase-2")
	cancelled.Reason = "parent phase-2 failed"
	skipped := node("notify", "NOTIFICATION", dag.Skipped, 0, 1, "session-1a", "session-2a")
	skipped.Reason = "condition false"
	expanded := node("plan", "WORKOUT_PLAN_CREATE", dag.Succeeded, 1, 3, "import-42")
	expanded.Expanded = true
	return withChildren(&dag.Flow{ID: "save-1", Nodes: []*dag.Node{
		expanded,
		node("phase-1", "WORKOUT_PHASE_CREATE", dag.Succeeded, 2, 3, "plan"),
		failed,
		node("phase-3", "WORKOUT_PHASE_CREATE", dag.Delayed, 2, 3, "plan"),
		node("session-1a", "WORKOUT_SESSION_CREATE", dag.Active, 1, 3, "phase-1"),
		node("session-1b", "WORKOUT_SESSION_CREATE", dag.Ready, 0, 3, "phase-1"),
		cancelled,
		node("session-3a", "WORKOUT_SESSION_CREATE", dag.Blocked, 0, 3, "phase-3"),
		skipped,
	}})
}

// bigFlow is a full plan save: 1 plan, phases×sessions×exercises.
func bigFlow(phases, sessions, exercises int) *dag.Flow {
	f := &dag.Flow{ID: "big", Nodes: []*dag.Node{node("plan", "WORKOUT_PLAN_CREATE", dag.Succeeded, 1, 3)}}
	for p := range phases {
		pid := fmt.Sprintf("phase-%d", p)
		f.Nodes = append(f.Nodes, node(pid, "WORKOUT_PHASE_CREATE", dag.Succeeded, 1, 3, "plan"))
		for s := range sessions {
			sid := fmt.Sprintf("%s/session-%d", pid, s)
			f.Nodes = append(f.Nodes, node(sid, "WORKOUT_SESSION_CREATE", dag.Succeeded, 1, 3, pid))
			for e := range exercises {
				f.Nodes = append(f.Nodes, node(fmt.Sprintf("%s/ex-%d", sid, e), "WORKOUT_EXERCISE_CREATE", dag.Ready, 0, 3, sid))
			}
		}
	}
	return withChildren(f)
}

// hostileFlow has IDs, types and errors that try to break out of every
// format's strings.
func hostileFlow() *dag.Flow {
	a := node(`"]; evil [label="pwned`, `<script>alert(1)</script>`, dag.Failed, 1, 1)
	a.Error = &dag.ErrorInfo{Message: "line one \\\" } ]] --> x\x00\x1b[31m & &lt; #quot; `code`\nsecond line"}
	b := node("back\\slash\\", "T\"Y\\PE", dag.Cancelled, 0, 1, a.ID)
	b.Reason = "<img src=x onerror=alert(1)>\r\ninjected"
	c := node("new\nline\u2028id", "TYPE", dag.Succeeded, 1, 1, a.ID, "ext\"ernal\\")
	d := node("more-1", "X", dag.State("weird\"\nstate]"), 0, 1) // collides with a synthetic name; unknown state
	return withChildren(&dag.Flow{ID: "evil\"flow\n", Nodes: []*dag.Node{a, b, c, d}})
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./dag/render -update to create it")
	require.Equal(t, string(want), string(got))
}

func TestGolden(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		flow *dag.Flow
		opts *Options
	}{
		{"plan", planFlow(), nil},
		{"collapsed", bigFlow(12, 3, 20), &Options{MaxSiblings: 4, Direction: "LR"}},
		{"hostile", hostileFlow(), &Options{MaxLabel: 24}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var dot, mmd bytes.Buffer
			require.NoError(t, DOT(t.Context(), &dot, tc.flow, tc.opts))
			require.NoError(t, Mermaid(t.Context(), &mmd, tc.flow, tc.opts))
			golden(t, tc.name+".dot", dot.Bytes())
			golden(t, tc.name+".mmd", mmd.Bytes())

			// The same flow gives the same bytes, whatever the map order.
			for range 5 {
				var again bytes.Buffer
				require.NoError(t, DOT(t.Context(), &again, tc.flow, tc.opts))
				require.Equal(t, dot.String(), again.String())
			}
		})
	}
}

func TestCollapse(t *testing.T) {
	t.Parallel()
	f := bigFlow(12, 3, 20)
	v, err := build(t.Context(), f, (&Options{MaxSiblings: 4}).WithDefaults())
	require.NoError(t, err)
	// plan, 3 phases + "+9 more" (holding 27 sessions and 540 exercises
	// below), 3 sessions per shown phase, each with 3 exercises + "+17 more".
	require.Len(t, v.nodes, 1+3+1+9+9*4)
	var more []*vnode
	for _, vn := range v.nodes {
		if vn.kind == kindMore {
			more = append(more, vn)
		}
	}
	require.Len(t, more, 10)
	labels := map[string][]string{}
	for _, m := range more {
		labels[m.typ] = m.lines
	}
	require.Equal(t, []string{"+9 more", "WORKOUT_PHASE_CREATE", "succeeded", "+567 below", "540 ready · 27 succeeded"}, labels["WORKOUT_PHASE_CREATE"])
	require.Equal(t, []string{"+17 more", "WORKOUT_EXERCISE_CREATE", "ready"}, labels["WORKOUT_EXERCISE_CREATE"])
	// Every drawn box is reachable from the plan: no edge was lost.
	require.Len(t, v.edges, len(v.nodes)-1)

	// At or under the threshold nothing collapses; negative never does.
	v, err = build(t.Context(), bigFlow(4, 5, 6), (&Options{MaxRank: -1}).WithDefaults())
	require.NoError(t, err)
	require.Len(t, v.nodes, 145)
	v, err = build(t.Context(), f, (&Options{MaxSiblings: -1, MaxBoxes: HardMaxBoxes, MaxRank: -1}).WithDefaults())
	require.NoError(t, err)
	require.Len(t, v.nodes, len(f.Nodes))
	require.False(t, v.info.Collapsed)
}

func TestSiblingsDifferInStateOrType(t *testing.T) {
	t.Parallel()
	f := &dag.Flow{ID: "f", Nodes: []*dag.Node{node("root", "A", dag.Succeeded, 1, 1)}}
	for i := range 6 {
		f.Nodes = append(f.Nodes, node(fmt.Sprintf("ok-%d", i), "B", dag.Succeeded, 1, 1, "root"))
		f.Nodes = append(f.Nodes, node(fmt.Sprintf("bad-%d", i), "B", dag.Failed, 1, 1, "root"))
	}
	v, err := build(t.Context(), f, (&Options{MaxSiblings: 6}).WithDefaults())
	require.NoError(t, err)
	require.Len(t, v.nodes, 13, "two groups of 6 each fit under the threshold")
	v, err = build(t.Context(), f, (&Options{MaxSiblings: 3}).WithDefaults())
	require.NoError(t, err)
	require.Len(t, v.nodes, 1+2*3, "each state collapses on its own")
}

func TestLabels(t *testing.T) {
	t.Parallel()
	o := (&Options{MaxLabel: 20}).WithDefaults()
	n := node("phase-2", "WORKOUT_PHASE_CREATE", dag.Failed, 2, 3)
	n.Error = &dag.ErrorInfo{Message: "\n  connection refused by the database server at 10.0.0.1\nstack"}
	require.Equal(t, []string{"phase-2", "WORKOUT_PHASE_CREATE", "failed · attempt 2/3", "connection refused…"}, labelOf(n, "", o))
	require.Equal(t, "a b \uFFFD", clean("a\nb\t\x00"))
	require.Equal(t, "ab\uFFFD", clean("ab\xff"))
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	err := DOT(t.Context(), &buf, planFlow(), &Options{Direction: "up"})
	require.ErrorContains(t, err, "Options.Direction")
	err = Mermaid(t.Context(), &buf, planFlow(), &Options{MaxLabel: 3})
	require.ErrorContains(t, err, "Options.MaxLabel")
	require.Error(t, DOT(t.Context(), &buf, nil, nil))
}

func TestMermaidHostile(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	require.NoError(t, Mermaid(t.Context(), &buf, hostileFlow(), nil))
	out := buf.String()
	// A node line is an ID, an opening bracket, one quoted label, a closing
	// bracket; the label holds no quote, markup or stray entity.
	nodeLine := regexp.MustCompile(`^  n\d+(\[|\[\[|\(\[)"([^"]*)"(\]|\]\]|\]\))$`)
	entity := regexp.MustCompile(`#\w+;`)
	nodes := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "  n") || strings.Contains(line, "->") {
			continue
		}
		nodes++
		m := nodeLine.FindStringSubmatch(line)
		require.NotNil(t, m, line)
		inner := entity.ReplaceAllString(strings.ReplaceAll(m[2], "<br>", ""), "")
		require.NotContains(t, inner, "#", line)
		for _, c := range []string{"<", ">", "&", "`", "\\", "\n", "\r"} {
			require.NotContains(t, inner, c, line)
		}
	}
	require.Equal(t, 5, nodes, "4 nodes and the earlier job")
	require.NotContains(t, out, "<script")
	require.Contains(t, out, "#lt;script#gt;")
	require.Contains(t, out, `#quot;]; evil [label=#quot;pwned`)
}

// svgDoc is the part of Graphviz's SVG that the tests read.
type svgDoc struct {
	Groups []svgGroup `xml:"g>g"`
}

type svgGroup struct {
	Class   string     `xml:"class,attr"`
	Title   string     `xml:"title"`
	Path    []svgShape `xml:"path"`
	Polygon []svgShape `xml:"polygon"`
	Text    []string   `xml:"text"`
}

type svgShape struct {
	Fill   string `xml:"fill,attr"`
	Stroke string `xml:"stroke,attr"`
}

func parseSVG(t *testing.T, b []byte) svgDoc {
	t.Helper()
	var doc svgDoc
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	require.NoError(t, dec.Decode(&doc))
	// Every element is SVG: no markup smuggled in through a label.
	dec = xml.NewDecoder(bytes.NewReader(b))
	allowed := map[string]bool{"svg": true, "g": true, "title": true, "path": true, "polygon": true, "text": true, "ellipse": true, "polyline": true}
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if se, ok := tok.(xml.StartElement); ok {
			require.True(t, allowed[se.Name.Local], "unexpected element <%s>", se.Name.Local)
		}
	}
	return doc
}

func nodesOf(doc svgDoc) map[string]svgGroup {
	out := map[string]svgGroup{}
	for _, g := range doc.Groups {
		if g.Class == "node" {
			out[g.Title] = g
		}
	}
	return out
}

func fillOf(g svgGroup) string {
	for _, s := range append(g.Path, g.Polygon...) {
		if s.Fill != "" && s.Fill != "none" {
			return strings.ToUpper(s.Fill)
		}
	}
	return ""
}

// The images share one Graphviz instance: keep these tests few.
func TestSVG(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := planFlow()
	var buf bytes.Buffer
	require.NoError(t, SVG(ctx, &buf, f, nil))
	nodes := nodesOf(parseSVG(t, buf.Bytes()))
	require.Len(t, nodes, len(f.Nodes)+1, "every node and the earlier job")
	for _, n := range f.Nodes {
		g, ok := nodes[n.ID]
		require.True(t, ok, "node %s", n.ID)
		require.Equal(t, StyleOf(n.State).Fill, fillOf(g), "fill of %s (%s)", n.ID, n.State)
		require.Contains(t, g.Text, n.Type)
	}
	require.Equal(t, external.Fill, fillOf(nodes["import-42"]))
	require.Contains(t, nodes["phase-2"].Text, `pq: duplicate key value violates unique constra…`)

	// Hostile names and labels stay text.
	buf.Reset()
	hf := hostileFlow()
	require.NoError(t, SVG(ctx, &buf, hf, nil))
	nodes = nodesOf(parseSVG(t, buf.Bytes()))
	require.Len(t, nodes, len(hf.Nodes)+1)
	for _, n := range hf.Nodes {
		_, ok := nodes[lexed(n.ID)]
		require.True(t, ok, "node %q", n.ID)
	}
	evil := nodes[lexed(hf.Nodes[0].ID)]
	require.Contains(t, evil.Text, "<script>alert(1)</script>")
	require.Equal(t, StyleOf(dag.Failed).Fill, fillOf(evil))
}

func TestPNG(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	f := planFlow()
	require.NoError(t, PNG(context.Background(), &buf, f, &Options{Direction: "LR"}))
	img, err := png.Decode(&buf)
	require.NoError(t, err)
	require.Greater(t, img.Bounds().Dx(), 400)
	require.Greater(t, img.Bounds().Dy(), 400)

	// Every state's fill and border is painted somewhere, and so are the
	// edges.
	rgba, ok := img.(*image.RGBA)
	require.True(t, ok, "got %T", img)
	counts := map[[3]byte]int{}
	for i := 0; i+3 < len(rgba.Pix); i += 4 {
		counts[[3]byte(rgba.Pix[i:i+3])]++
	}
	seen := map[string]int{}
	for c, n := range counts {
		seen[fmt.Sprintf("#%02X%02X%02X", c[0], c[1], c[2])] = n
	}
	for _, n := range f.Nodes {
		st := StyleOf(n.State)
		require.Greater(t, seen[st.Fill], 100, "fill of %s", n.State)
		require.Greater(t, seen[st.Border], 20, "border of %s", n.State)
	}
	require.Greater(t, seen["#6B7280"], 200, "edges")
}

func TestRasterizeRejectsGarbage(t *testing.T) {
	t.Parallel()
	_, err := rasterize(t.Context(), []byte("not svg"))
	require.Error(t, err)
	_, err = rasterize(t.Context(), []byte(`<svg width="0pt" height="0pt"></svg>`))
	require.Error(t, err)
	// Unknown elements and odd paths are skipped, not fatal.
	img, err := rasterize(t.Context(), []byte(`<svg width="20pt" height="10pt"><g transform="translate(1 9)"><path d="M0,0 L 5 -5 Q 1 1" stroke="#000000"/><foo/><text>x</text></g></svg>`))
	require.NoError(t, err)
	require.Equal(t, 40, img.Bounds().Dx())
}

func TestImageCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, SVG(ctx, &bytes.Buffer{}, planFlow(), nil), context.Canceled)
}

func TestSyntheticNamesAreUnique(t *testing.T) {
	t.Parallel()
	f := &dag.Flow{ID: "f", Nodes: []*dag.Node{node("more-1", "A", dag.Succeeded, 1, 1), node("+more-1", "A", dag.Succeeded, 1, 1)}}
	for i := range 5 {
		f.Nodes = append(f.Nodes, node(fmt.Sprintf("c%d", i), "B", dag.Ready, 0, 1, "more-1"))
	}
	v, err := build(t.Context(), f, (&Options{MaxSiblings: 2}).WithDefaults())
	require.NoError(t, err)
	names := map[string]bool{}
	for _, vn := range v.nodes {
		require.False(t, names[vn.name], "duplicate %q", vn.name)
		names[vn.name] = true
	}
	require.True(t, names["++more-1"])
}

// lexed is a node name as Graphviz reads it back from dotID: \" is a quote,
// \\ stays two backslashes.
func lexed(id string) string {
	e := dotID(id)
	var b strings.Builder
	for i := 0; i < len(e); i++ {
		if e[i] == '\\' && i+1 < len(e) {
			if e[i+1] == '"' {
				b.WriteByte('"')
			} else {
				b.WriteString(e[i : i+2])
			}
			i++
			continue
		}
		b.WriteByte(e[i])
	}
	return b.String()
}

func TestWriteFiles(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "out")
	f := withChildren(&dag.Flow{ID: "tiny", Nodes: []*dag.Node{
		node("a", "A", dag.Succeeded, 1, 1), node("b", "B", dag.Failed, 2, 2, "a"),
	}})
	paths, _, err := WriteFiles(context.Background(), dir, "graph", f, nil)
	require.NoError(t, err)
	require.Len(t, paths, 4)
	for _, ext := range []string{".dot", ".mmd", ".svg", ".png"} {
		b, err := os.ReadFile(filepath.Join(dir, "graph"+ext))
		require.NoError(t, err)
		require.NotEmpty(t, b, ext)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 4, "no temporary files left")

	_, _, err = WriteFiles(context.Background(), dir, "../x", f, nil)
	require.ErrorContains(t, err, "plain name")
}

// expandedFlow is what the store holds after a full save expanded: the
// sub-graph's sinks list the expanded node as a child, and a node that
// waited for the save lists it as a parent.
func expandedFlow() *dag.Flow {
	save := node("f/save", "WORKOUT_PLAN_FULL_SAVE", dag.Blocked, 1, 3)
	save.Expanded = true
	p1 := node("f/phase/1", "WORKOUT_PHASE_CREATE", dag.Succeeded, 1, 3)
	p2 := node("f/phase/2", "WORKOUT_PHASE_CREATE", dag.Succeeded, 1, 3)
	s1 := node("f/session/1", "WORKOUT_SESSION_CREATE", dag.Succeeded, 1, 3, p1.ID)
	// A nested expansion: s2 added x1, whose sink joins s2.
	s2 := node("f/session/2", "WORKOUT_SESSION_CREATE", dag.Blocked, 1, 3, p2.ID)
	s2.Expanded = true
	x1 := node("f/x/1", "WORKOUT_EXERCISE_CREATE", dag.Active, 1, 3)
	x1.Children = []string{s2.ID}
	s1.Children = []string{save.ID}
	s2.Children = []string{save.ID}
	p1.Children = []string{s1.ID}
	p2.Children = []string{s2.ID}
	after := node("f/notify", "NOTIFICATION", dag.Blocked, 0, 1, save.ID)
	save.Children = []string{after.ID}
	return &dag.Flow{ID: "f", Nodes: []*dag.Node{p1, p2, s1, x1, s2, save, after}}
}

func TestExpansionIsDrawnFromTheExpandedNode(t *testing.T) {
	t.Parallel()
	v, err := build(t.Context(), expandedFlow(), (&Options{}).WithDefaults())
	require.NoError(t, err)
	var order []string
	for _, vn := range v.nodes {
		order = append(order, vn.name)
	}
	require.Equal(t, []string{"f/save", "f/phase/1", "f/phase/2", "f/session/1", "f/session/2", "f/x/1", "f/notify"}, order)
	type edge struct {
		from, to string
		spawn    bool
	}
	var edges []edge
	for _, e := range v.edges {
		edges = append(edges, edge{v.nodes[e[0]].name, v.nodes[e[1]].name, v.spawn[e]})
	}
	require.ElementsMatch(t, []edge{
		{"f/save", "f/phase/1", true}, {"f/save", "f/phase/2", true},
		{"f/phase/1", "f/session/1", false}, {"f/phase/2", "f/session/2", false},
		{"f/session/2", "f/x/1", true},
		{"f/save", "f/notify", false},
	}, edges)
	require.Equal(t, "…/save", v.nodes[0].lines[0], "the flow's ID is not repeated")
	n := node("f/x", "T", dag.Cancelled, 0, 1)
	n.Reason = "parent f/session/2 failed"
	require.Equal(t, "parent …/session/2 failed", labelOf(n, "f", (&Options{}).WithDefaults())[3])

	var dot bytes.Buffer
	require.NoError(t, DOT(t.Context(), &dot, expandedFlow(), nil))
	require.Contains(t, dot.String(), `"f/save" -> "f/phase/1" [ arrowhead="vee", arrowsize="0.7", color="#6366F1", style="dashed",  weight=0 ];`)
}

func TestCutMiddle(t *testing.T) {
	t.Parallel()
	require.Equal(t, "short", cutMiddle("short", 10))
	require.Equal(t, "0123…89abcdef", cutMiddle("0123456789abcdef", 13))
	require.Len(t, []rune(cutMiddle(strings.Repeat("x", 100), 48)), 48)
}

func TestCollapseKeepsTroubleInSight(t *testing.T) {
	t.Parallel()
	f := bigFlow(6, 2, 2)
	// One exercise of the last phase failed; its siblings were cancelled.
	var failed *dag.Node
	for _, n := range f.Nodes {
		if strings.HasPrefix(n.ID, "phase-5/session-1/ex-") {
			n.State = dag.Cancelled
		}
		if n.ID == "phase-5/session-1/ex-0" {
			failed = n
		}
	}
	failed.State = dag.Failed
	v, err := build(t.Context(), f, (&Options{MaxSiblings: 3}).WithDefaults())
	require.NoError(t, err)
	names := map[string]bool{}
	for _, vn := range v.nodes {
		names[vn.name] = true
	}
	require.True(t, names["phase-5"], "the phase with the failure below is drawn")
	require.True(t, names["phase-5/session-1/ex-0"], "the failure is drawn")
	require.True(t, names["phase-0"], "then the first phase")
	require.False(t, names["phase-1"])
}
