package render

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/trellisflow/trellis/dag"
)

func writeMermaid(w io.Writer, v *view, o Options) error {
	bw := bufio.NewWriter(w)
	title := strings.Join(titleLines(v), " — ")
	fmt.Fprintf(bw, "---\ntitle: \"%s\"\n---\n", yamlEscape(title))
	fmt.Fprintf(bw, "flowchart %s\n", v.dir)
	classes := map[string][]string{}
	var order []string
	addClass := func(class, id string) {
		if _, ok := classes[class]; !ok {
			order = append(order, class)
		}
		classes[class] = append(classes[class], id)
	}
	for i, vn := range v.nodes {
		id := fmt.Sprintf("n%d", i)
		label := mermaidLabel(vn.lines)
		switch vn.kind {
		case kindMore:
			fmt.Fprintf(bw, "  %s[[\"%s\"]]\n", id, label)
			addClass(mermaidClass(vn.state), id)
		case kindRest:
			fmt.Fprintf(bw, "  %s[[\"%s\"]]\n", id, label)
			addClass("external", id)
		case kindExternal:
			fmt.Fprintf(bw, "  %s([\"%s\"])\n", id, label)
			addClass("external", id)
		default:
			fmt.Fprintf(bw, "  %s[\"%s\"]\n", id, label)
			addClass(mermaidClass(vn.state), id)
		}
	}
	for _, e := range v.edges {
		arrow := "-->"
		if v.nodes[e[0]].kind != kindNode || v.nodes[e[1]].kind != kindNode || v.spawn[e] {
			arrow = "-.->"
		}
		fmt.Fprintf(bw, "  n%d %s n%d\n", e[0], arrow, e[1])
	}
	for _, class := range order {
		st := external
		if s, ok := styles[dag.State(class)]; ok {
			st = s
		}
		def := fmt.Sprintf("fill:%s,stroke:%s,color:%s,stroke-width:%gpx", st.Fill, st.Border, st.Text, st.Width)
		switch st.Line {
		case "dashed":
			def += ",stroke-dasharray:5 3"
		case "dotted":
			def += ",stroke-dasharray:2 2"
		}
		fmt.Fprintf(bw, "  classDef %s %s\n", class, def)
		fmt.Fprintf(bw, "  class %s %s\n", strings.Join(classes[class], ","), class)
	}
	return bw.Flush()
}

// mermaidClass is the class of a state: its name, or "unknown" for a state
// whose name is not a plain word.
func mermaidClass(s dag.State) string {
	if _, ok := styles[s]; ok {
		return string(s)
	}
	return "external"
}

// mermaidLabel joins lines of plain text into the inside of a quoted
// Mermaid label. Mermaid decodes "#name;" and "#123;" entity codes in
// labels and renders HTML, so the characters that could end the string,
// start markup or start an entity are written as entity codes.
func mermaidLabel(lines []string) string {
	var b strings.Builder
	for i, line := range lines {
		if i > 0 {
			b.WriteString("<br>")
		}
		for _, r := range line {
			switch r {
			case '"':
				b.WriteString("#quot;")
			case '#':
				b.WriteString("#35;")
			case '&':
				b.WriteString("#amp;")
			case '<':
				b.WriteString("#lt;")
			case '>':
				b.WriteString("#gt;")
			case '`':
				b.WriteString("#96;")
			case '\\':
				b.WriteString("#92;")
			default:
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

// yamlEscape escapes s for a double-quoted YAML string (the front matter).
// yamlEscape quotes the title for the front matter; angle brackets become
// look-alikes, because some Mermaid renderers treat the title as HTML.
func yamlEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "<", "‹", ">", "›").Replace(s)
}
