package render

import "github.com/trellisflow/trellis/dag"

// Style is how a node of one state is drawn. Colors are "#RRGGBB".
type Style struct {
	Fill   string
	Border string
	Text   string
	// Line is the border's pattern: "solid", "dashed" or "dotted".
	Line string
	// Width is the border's width in points.
	Width float64
}

var styles = map[dag.State]Style{
	dag.Blocked:   {Fill: "#E5E7EB", Border: "#6B7280", Text: "#111827", Line: "solid", Width: 1},
	dag.Ready:     {Fill: "#E0F2FE", Border: "#0284C7", Text: "#0C4A6E", Line: "solid", Width: 1},
	dag.Delayed:   {Fill: "#FEF3C7", Border: "#D97706", Text: "#78350F", Line: "solid", Width: 1},
	dag.Active:    {Fill: "#C7D2FE", Border: "#4338CA", Text: "#1E1B4B", Line: "solid", Width: 2.5},
	dag.Succeeded: {Fill: "#DCFCE7", Border: "#16A34A", Text: "#14532D", Line: "solid", Width: 1},
	dag.Failed:    {Fill: "#FEE2E2", Border: "#DC2626", Text: "#7F1D1D", Line: "solid", Width: 2},
	dag.Skipped:   {Fill: "#F9FAFB", Border: "#9CA3AF", Text: "#4B5563", Line: "dotted", Width: 1},
	dag.Cancelled: {Fill: "#E7E5E4", Border: "#57534E", Text: "#292524", Line: "dashed", Width: 1},
}

// external is the style of a parent that belongs to an earlier flow, and of
// a state this package does not know.
var external = Style{Fill: "#FFFFFF", Border: "#6B7280", Text: "#374151", Line: "dashed", Width: 1}

// StyleOf returns the style of nodes in state s (a neutral dashed style for
// an unknown state).
func StyleOf(s dag.State) Style {
	if st, ok := styles[s]; ok {
		return st
	}
	return external
}
