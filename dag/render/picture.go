package render

import (
	"context"
	"fmt"
	"io"

	"github.com/trellisflow/trellis/dag"
)

// Picture is a flow laid out once, within its options' limits, and ready
// to be written in any format.
type Picture struct {
	v *view
	o Options
}

// Info says what a picture draws.
type Info struct {
	// Nodes is the number of the flow's nodes.
	Nodes int
	// Boxes and Edges are what the picture draws: at most MaxBoxes and
	// MaxEdges.
	Boxes, Edges int
	// MaxBoxes and MaxEdges are the limits the picture was drawn within.
	MaxBoxes, MaxEdges int
	// Siblings is the sibling limit the picture was drawn with: the
	// options' MaxSiblings, or less when Collapsed.
	Siblings int
	// Collapsed reports that the picture is collapsed further than its
	// options asked, to stay within MaxBoxes and MaxEdges.
	Collapsed bool
	// NotDrawn is the number of nodes in the last box ("+N not drawn"),
	// when even one box per group of siblings was too many.
	NotDrawn int
	// MaxRank is the rank bound the picture was drawn within; Wide says
	// it collapsed the groups of ranks wider than that further, to
	// RankSiblings siblings per group at the least.
	MaxRank      int
	Wide         bool
	RankSiblings int
	// Direction is the layout's direction: the options' or, when they set
	// none, the one chosen for the flow's shape.
	Direction string
}

// Note says in a sentence how the picture was collapsed to fit its
// limits, or "" when it was not.
func (i Info) Note() string {
	if !i.Collapsed {
		return ""
	}
	limit := fmt.Sprintf("to stay within %d boxes and %d edges", i.MaxBoxes, i.MaxEdges)
	if i.Wide {
		limit = fmt.Sprintf("to stay within %d boxes, %d edges and %d boxes per rank", i.MaxBoxes, i.MaxEdges, i.MaxRank)
	}
	if i.NotDrawn > 0 {
		return fmt.Sprintf("collapsed %s: %d nodes in %d boxes, one sibling per group, and %d nodes past the first %d boxes in the last one",
			limit, i.Nodes, i.Boxes, i.NotDrawn, i.Boxes-1)
	}
	if i.Wide && (i.Siblings < 0 || i.RankSiblings < i.Siblings) {
		return fmt.Sprintf("collapsed %s: %d nodes in %d boxes, down to %d siblings per group in the widest ranks", limit, i.Nodes, i.Boxes, i.RankSiblings)
	}
	return fmt.Sprintf("collapsed %s: %d nodes in %d boxes, %d siblings per group", limit, i.Nodes, i.Boxes, i.Siblings)
}

// Prepare lays f out within opts's limits (nil means the defaults). It
// returns ctx's error if ctx ends first.
func Prepare(ctx context.Context, f *dag.Flow, opts *Options) (*Picture, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o := opts.WithDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	v, err := build(ctx, f, o)
	if err != nil {
		return nil, err
	}
	return &Picture{v: v, o: o}, nil
}

// Info says what the picture draws and whether it was collapsed to fit.
func (p *Picture) Info() Info { return p.v.info }

// DOT writes the picture in Graphviz's DOT language: one box per node,
// colored by state, with the edges from parents to children. The
// statements come in a stable order (parents first), so the same flow gives
// the same bytes.
func (p *Picture) DOT(w io.Writer) error { return writeDOT(w, p.v, p.o) }

// Mermaid writes the picture as a Mermaid flowchart. Mermaid node IDs must
// be plain identifiers, so nodes are named n0, n1 … in order and the real ID
// is the first line of each label. States are classes ("classDef failed …").
func (p *Picture) Mermaid(w io.Writer) error { return writeMermaid(w, p.v, p.o) }

// SVG writes the picture as an SVG image laid out by Graphviz's dot.
func (p *Picture) SVG(ctx context.Context, w io.Writer) error { return svgOf(ctx, w, p.v, p.o) }

// PNG writes the picture as a PNG image: Graphviz's SVG, drawn in Go at two
// pixels per point (scaled down if the image would pass 16 megapixels).
func (p *Picture) PNG(ctx context.Context, w io.Writer) error { return pngOf(ctx, w, p.v, p.o) }

// DOT writes f in Graphviz's DOT language; see [Picture.DOT].
func DOT(ctx context.Context, w io.Writer, f *dag.Flow, opts *Options) error {
	p, err := Prepare(ctx, f, opts)
	if err != nil {
		return err
	}
	return p.DOT(w)
}

// Mermaid writes f as a Mermaid flowchart; see [Picture.Mermaid].
func Mermaid(ctx context.Context, w io.Writer, f *dag.Flow, opts *Options) error {
	p, err := Prepare(ctx, f, opts)
	if err != nil {
		return err
	}
	return p.Mermaid(w)
}

// SVG writes f as an SVG image; see [Picture.SVG].
func SVG(ctx context.Context, w io.Writer, f *dag.Flow, opts *Options) error {
	p, err := Prepare(ctx, f, opts)
	if err != nil {
		return err
	}
	return p.SVG(ctx, w)
}

// PNG writes f as a PNG image; see [Picture.PNG].
func PNG(ctx context.Context, w io.Writer, f *dag.Flow, opts *Options) error {
	p, err := Prepare(ctx, f, opts)
	if err != nil {
		return err
	}
	return p.PNG(ctx, w)
}
