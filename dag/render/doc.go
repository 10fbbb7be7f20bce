// Package render draws a flow — live or finished — as a picture.
//
// Four outputs share one layout of the graph, made by [Prepare] (or by each
// of the functions of the same names, for one picture):
//
//   - [Picture.DOT]: Graphviz's DOT language, produced through
//     github.com/dominikbraun/graph's draw package;
//   - [Picture.Mermaid]: a Mermaid flowchart, for Markdown and dashboards
//     (Mermaid refuses diagrams past 500 edges by default: set MaxEdges to
//     500 for pictures Mermaid will draw);
//   - [Picture.SVG]: laid out and drawn by Graphviz through
//     github.com/goccy/go-graphviz (Graphviz compiled to WebAssembly; no
//     cgo, nothing to install);
//   - [Picture.PNG]: that SVG drawn in Go (golang.org/x/image, Go Regular
//     font), because go-graphviz's own PNG renderer leaves out borders and
//     edges.
//
// Every function is safe for concurrent use. Graphviz's WebAssembly
// instance is shared by the process and used by one call at a time; use
// Direction "LR" for wide flows.
//
// # Bounds
//
// Every picture draws at most [Options].MaxBoxes boxes (default
// [DefaultMaxBoxes], 300; at most [HardMaxBoxes], 1,000) and
// [Options].MaxEdges edges (default twice MaxBoxes; at most [HardMaxEdges],
// 1,000), whatever the flow's size and whatever MaxSiblings asks, so its
// time and memory are bounded: Graphviz's layout time grows faster than the
// boxes and, above all, the edges it places. A flow that would need more is collapsed
// further, in two steps:
//
//  1. MaxSiblings is lowered to the largest value whose picture fits (a
//     negative MaxSiblings, "never collapse", counts as the largest group);
//  2. if even one box per group of siblings is too many (a long chain, or
//     nodes that share no parents), the picture draws the first boxes in
//     topological order, as many as fit, and one last box, "+N not drawn",
//     that holds the rest and counts them by state.
//
// [Picture.Info] says what was drawn, and [Info.Note] says in a sentence how
// it was collapsed; the picture's title says the same in a third line.
// Callers that show a picture to a person pass the note on (the monitor
// sets the X-Trellis-Collapsed header, `trellis graph` prints it on
// stderr).
//
// Every function stops with ctx's error when ctx ends: between the stages
// of laying the flow out, while waiting for Graphviz, and while drawing the
// PNG. go-graphviz (v0.2.10) makes its WebAssembly runtime in its package's
// init without closing it on a context's end, so a Graphviz layout, once
// started, runs to its end; the limits above bound how long that is, and
// ctx is checked again when it returns.
//
// render is a subpackage of dag so that the WebAssembly runtime, which
// go-graphviz compiles when its package initialises, stays out of the runner
// and of every program that does not draw.
//
// # Labels
//
// Each node shows its ID, its message type, and its state with the attempt
// count ("failed · attempt 3/3"). A failed node adds the first line of its
// last error; a cancelled or skipped node adds its reason ("parent plan
// failed"). Long lines are cut with "…" at [Options].MaxLabel characters.
// Control characters become spaces or U+FFFD, and quotes, backslashes and
// HTML are escaped for each output, so an ID or error message cannot end a
// string, add an attribute or inject markup.
//
// # Colors
//
// Nodes are filled by state (see [StyleOf]):
//
//	state      fill     border   note
//	blocked    #E5E7EB  #6B7280  grey: waiting for parents
//	ready      #E0F2FE  #0284C7  light blue: claimable
//	delayed    #FEF3C7  #D97706  amber: waiting for a delay or backoff
//	active     #C7D2FE  #4338CA  indigo, thick border: running now
//	succeeded  #DCFCE7  #16A34A  green
//	failed     #FEE2E2  #DC2626  red, with the error's first line
//	skipped    #F9FAFB  #9CA3AF  white, dotted border
//	cancelled  #E7E5E4  #57534E  stone, dashed border
//
// A job that a node depends on but that belongs to an earlier flow is drawn
// as a white dashed box labelled "earlier job".
//
// # Expanded nodes
//
// A node whose step added a sub-graph (the full plan save) finishes when
// that sub-graph does, and the store records that by linking the
// sub-graph's sinks to it. The pictures draw it the way people think of it
// instead: a dashed indigo edge from the expanded node to each root of its
// sub-graph ("expanded into"), and no edges back; its label says
// "expanded". A node ID that starts with the flow's ID shows the rest after
// "…/"; IDs too long for MaxLabel lose their middle, not their end.
//
// # Collapsing
//
// A flow of thousands of nodes is unreadable. Siblings — nodes with the same
// parents, message type and state — are drawn one by one up to
// [Options].MaxSiblings; a larger group shows MaxSiblings-1 members and one
// "+N more" node that stands for the rest. The members shown are those with
// the most urgent state in or below them (failed, then active, delayed,
// cancelled, ready, blocked, skipped, succeeded), then the first ones, so a
// failure deep in a large plan stays in the picture. Nodes whose parents are
// all hidden this way are hidden too, and counted on that node ("+M below",
// with their states when they differ from the group's).
//
// A rank (a row top to bottom, a column left to right) holds at most
// [Options].MaxRank boxes (default [DefaultMaxRank]): the groups of a wider
// rank collapse further, rank by rank from the top, so narrow ranks keep
// their groups whole. [Options].Expand names groups (by the key
// [SceneBox].Group gives) that are drawn whole. Without a Direction, a
// fan-out (a rank with more than twice as many boxes as there are ranks)
// is drawn left to right.
//
// # Labels for people
//
// A node with a label ([dag.Spec].Label, set by flow.NodeOpts.Label or the
// message's Label method) shows it in place of its ID.
//
// # Scenes
//
// [Layout] lays a flow out for a client that draws it itself (the
// dashboard's live view): boxes in ranks with their places and sizes, and
// edges as polylines that take a slot of their own in each rank they cross,
// so no edge passes under a box and each ends on its own. It fits the rank
// bound to the viewport, and marks what an expansion added at run time.
package render
