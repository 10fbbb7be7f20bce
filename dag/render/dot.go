package render

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/dominikbraun/graph"
	"github.com/dominikbraun/graph/draw"
)

func writeDOT(w io.Writer, v *view, o Options) error {
	g := graph.New(graph.StringHash, graph.Directed())
	keys := make([]string, len(v.nodes))
	rank := make(map[string]int, len(v.nodes))
	for i, vn := range v.nodes {
		key := dotID(vn.name)
		for _, dup := rank[key]; dup; _, dup = rank[key] {
			key += "\uFFFD" // only names that were invalid UTF-8 can meet here
		}
		keys[i], rank[key] = key, i
		if err := g.AddVertex(key, graph.VertexAttributes(nodeAttrs(vn))); err != nil {
			return fmt.Errorf("render: node %q: %w", vn.name, err)
		}
	}
	for _, e := range v.edges {
		attrs := map[string]string{"color": "#6B7280", "arrowsize": "0.7"}
		if v.nodes[e[0]].kind != kindNode || v.nodes[e[1]].kind != kindNode {
			attrs["style"] = "dashed"
		}
		if v.spawn[e] {
			attrs["style"], attrs["color"], attrs["arrowhead"] = "dashed", "#6366F1", "vee"
		}
		if err := g.AddEdge(keys[e[0]], keys[e[1]], graph.EdgeAttributes(attrs)); err != nil {
			return fmt.Errorf("render: edge %q → %q: %w", v.nodes[e[0]].name, v.nodes[e[1]].name, err)
		}
	}
	var buf bytes.Buffer
	err := draw.DOT(g, &buf,
		draw.GraphAttribute("rankdir", v.dir),
		draw.GraphAttribute("fontname", "Helvetica"),
		draw.GraphAttribute("fontsize", "12"),
		draw.GraphAttribute("labelloc", "t"),
		draw.GraphAttribute("label", dotLabel(titleLines(v))),
		draw.GraphAttribute("nodesep", "0.25"),
		draw.GraphAttribute("ranksep", "0.45"),
	)
	if err != nil {
		return fmt.Errorf("render: dot: %w", err)
	}
	return sortDOT(w, buf.Bytes(), rank)
}

func nodeAttrs(vn *vnode) map[string]string {
	st := StyleOf(vn.state)
	shape, style := "box", "rounded,filled"
	switch vn.kind {
	case kindExternal:
		st = external
	case kindMore:
		shape = "box3d"
		style = "filled"
	case kindRest:
		st = external
		shape = "box3d"
		style = "filled"
	}
	if st.Line != "solid" {
		style += "," + st.Line
	}
	return map[string]string{
		"label":     dotLabel(vn.lines),
		"shape":     shape,
		"style":     style,
		"fillcolor": st.Fill,
		"color":     st.Border,
		"fontcolor": st.Text,
		"penwidth":  strconv.FormatFloat(st.Width, 'f', -1, 64),
		"fontname":  "Helvetica",
		"fontsize":  "10",
		"margin":    "0.12,0.06",
	}
}

// dotID escapes a node name for a DOT quoted string. Graphviz's lexer reads
// \" as a quote and \\ as two backslashes, and leaves everything else alone,
// so escaping both keeps the string closed; control characters, which a
// valid ID never holds, are spelled out so each statement stays on one line.
func dotID(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029':
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// dotLabel joins lines of plain text (already free of control characters)
// into a DOT quoted label. Graphviz also reads escapes (\n, \N, \G …) and
// HTML character entities in labels, so backslashes and ampersands are
// escaped too and the text shows exactly as given.
func dotLabel(lines []string) string {
	var b strings.Builder
	for i, line := range lines {
		if i > 0 {
			b.WriteString(`\n`)
		}
		for _, r := range line {
			switch r {
			case '"', '\\':
				b.WriteByte('\\')
				b.WriteRune(r)
			case '&':
				b.WriteString("&amp;")
			default:
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

// sortDOT rewrites draw's output, whose statements come in map order, with
// the graph attributes first and then each node followed by its edges, in
// the order of rank.
func sortDOT(w io.Writer, src []byte, rank map[string]int) error {
	type stmt struct {
		from, to int
		line     string
	}
	var head, attrs []string
	var stmts []stmt
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		t := strings.TrimSpace(line)
		switch {
		case t == "" || t == "}":
		case strings.HasSuffix(t, "{"):
			head = append(head, t)
		case strings.HasPrefix(t, `"`):
			src, rest, ok := quoted(t)
			if !ok {
				return fmt.Errorf("render: unexpected DOT statement %q", t)
			}
			s := stmt{from: rank[src], to: -1, line: "\t" + t}
			if after, ok := strings.CutPrefix(rest, ` -> "`); ok {
				dst, _, ok := quoted(`"` + after)
				if !ok {
					return fmt.Errorf("render: unexpected DOT edge %q", t)
				}
				s.to = rank[dst]
			}
			stmts = append(stmts, s)
		default:
			attrs = append(attrs, "\t"+t)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	slices.SortFunc(stmts, func(a, b stmt) int {
		if a.from != b.from {
			return a.from - b.from
		}
		return a.to - b.to
	})
	var out bytes.Buffer
	for _, h := range head {
		out.WriteString(h + "\n")
	}
	for _, a := range attrs {
		out.WriteString(a + "\n")
	}
	for _, s := range stmts {
		out.WriteString(s.line + "\n")
	}
	out.WriteString("}\n")
	_, err := w.Write(out.Bytes())
	return err
}

// quoted reads the DOT quoted string at the start of s and returns its
// escaped contents and what follows it.
func quoted(s string) (content, rest string, ok bool) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", false
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return s[1:i], s[i+1:], true
		}
	}
	return "", "", false
}

// titleLines is the title, the count of nodes by state and, when the
// picture was collapsed to fit its limits, a line that says so.
func titleLines(v *view) []string {
	var lines []string
	if v.title != "" {
		lines = append(lines, v.title)
	}
	lines = append(lines, v.summary)
	if note := v.info.Note(); note != "" {
		lines = append(lines, note)
	}
	return lines
}
