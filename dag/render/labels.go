package render

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/trellisflow/trellis/dag"
)

// writeLabels writes the text of every box.
func writeLabels(v *view, flowID string, o Options) {
	for _, vn := range v.nodes {
		switch vn.kind {
		case kindNode:
			vn.lines = labelOf(vn.node, flowID, o)
		case kindMore:
			vn.lines = []string{fmt.Sprintf("+%d more", vn.more), cut(clean(vn.typ), o.MaxLabel), cut(clean(string(vn.state)), o.MaxLabel)}
			if vn.below > 0 {
				vn.lines = append(vn.lines, fmt.Sprintf("+%d below", vn.below))
				// Say what is hidden below when it is not all like the group.
				if len(vn.hidden) > 1 || vn.hidden[vn.state] == 0 {
					if s := countStates(vn.hidden); s != "" {
						vn.lines = append(vn.lines, cut(s, o.MaxLabel))
					}
				}
			}
		case kindRest:
			vn.lines = []string{fmt.Sprintf("+%d not drawn", vn.more), cut(fmt.Sprintf("past %d boxes, %d edges", o.MaxBoxes, o.MaxEdges), o.MaxLabel)}
			if s := countStates(vn.hidden); s != "" {
				vn.lines = append(vn.lines, cut(s, o.MaxLabel))
			}
		}
	}
}

// countStates is "3 failed · 40 succeeded", in lifecycle order.
func countStates(counts map[dag.State]int) string {
	var parts []string
	for _, st := range dag.States {
		if c := counts[st]; c > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c, st))
		}
	}
	return strings.Join(parts, " · ")
}

// labelOf is the text of a node's box, one element per line.
func labelOf(n *dag.Node, flowID string, o Options) []string {
	id := n.ID
	// Node IDs often start with the flow's, which the title shows.
	if rest, ok := strings.CutPrefix(id, flowID+"/"); ok && flowID != "" && rest != "" {
		id = "…/" + rest
	}
	first := cutMiddle(clean(id), o.MaxLabel)
	if n.Label != "" {
		first = cut(clean(n.Label), o.MaxLabel)
	}
	lines := []string{first, cut(clean(n.Type), o.MaxLabel)}
	status := cut(clean(string(n.State)), o.MaxLabel)
	if n.MaxAttempts > 0 {
		status += fmt.Sprintf(" · attempt %d/%d", n.Attempt, n.MaxAttempts)
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
