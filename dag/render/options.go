package render

import "fmt"

// The limits on one picture. Graphviz's layout time grows faster than the
// boxes and edges it places, and it cannot be interrupted once started, so
// these bound the time and memory of every picture.
const (
	// DefaultMaxBoxes is Options.MaxBoxes's default.
	DefaultMaxBoxes = 300
	// HardMaxBoxes is the most Options.MaxBoxes may be.
	HardMaxBoxes = 1000
	// HardMaxEdges is the most Options.MaxEdges may be.
	HardMaxEdges = 1000
	// DefaultMaxRank is Options.MaxRank's default.
	DefaultMaxRank = 40
)

// Options steer a picture. A nil *Options means the defaults.
type Options struct {
	// MaxSiblings is how many siblings (nodes with the same parents, message
	// type and state) are drawn one by one. A larger group shows
	// MaxSiblings-1 members (those with trouble below them first) and one
	// "+N more" node. Default 8; a negative value never collapses, as far
	// as MaxBoxes and MaxEdges allow.
	MaxSiblings int
	// MaxBoxes is the most boxes one picture draws. A flow that would need
	// more is collapsed further (see "Bounds" in the package doc).
	// Default DefaultMaxBoxes (300); from 2 to HardMaxBoxes (1,000).
	MaxBoxes int
	// MaxEdges is the most edges one picture draws, collapsing further like
	// MaxBoxes. Default twice MaxBoxes, at most HardMaxEdges; from 1 to
	// HardMaxEdges (1,000).
	MaxEdges int
	// MaxLabel is the most characters of one label line (an ID, an error, a
	// reason) before it is cut with "…". Default 48; from 8 to 200.
	MaxLabel int
	// MaxRank is the most boxes one rank (a row top to bottom, a column
	// left to right) holds: wider ranks collapse their groups of siblings
	// further, so a picture stays readable at any size. Default
	// DefaultMaxRank; negative for no bound.
	MaxRank int
	// Expand names groups of siblings (SceneBox.Group) that are drawn
	// whole, however large, as far as MaxBoxes and MaxEdges allow.
	Expand []string
	// Direction is the direction of the layout: "TB" (top to bottom),
	// "LR", "BT" or "RL". Default: "LR" when the flow's widest rank holds
	// more than twice as many boxes as it has ranks (a fan-out), else "TB".
	Direction string
	// Title is written above the graph, over a line that counts the nodes
	// by state. Default: "flow " and the flow's ID; "-" for none.
	Title string
}

// WithDefaults returns a copy of o (nil allowed) with zero fields filled.
func (o *Options) WithDefaults() Options {
	var c Options
	if o != nil {
		c = *o
	}
	if c.MaxSiblings == 0 {
		c.MaxSiblings = 8
	}
	if c.MaxBoxes == 0 {
		c.MaxBoxes = DefaultMaxBoxes
	}
	if c.MaxEdges == 0 {
		c.MaxEdges = min(2*c.MaxBoxes, HardMaxEdges)
	}
	if c.MaxLabel == 0 {
		c.MaxLabel = 48
	}
	if c.MaxRank == 0 {
		c.MaxRank = DefaultMaxRank
	}
	return c
}

func (o Options) validate() error {
	switch o.Direction {
	case "", "TB", "LR", "BT", "RL":
	default:
		return fmt.Errorf("render: Options.Direction is %q; use TB, LR, BT or RL", o.Direction)
	}
	if o.MaxLabel < 8 || o.MaxLabel > 200 {
		return fmt.Errorf("render: Options.MaxLabel is %d; use 8 to 200", o.MaxLabel)
	}
	if o.MaxBoxes < 2 || o.MaxBoxes > HardMaxBoxes {
		return fmt.Errorf("render: Options.MaxBoxes is %d; use 2 to %d", o.MaxBoxes, HardMaxBoxes)
	}
	if o.MaxEdges < 1 || o.MaxEdges > HardMaxEdges {
		return fmt.Errorf("render: Options.MaxEdges is %d; use 1 to %d", o.MaxEdges, HardMaxEdges)
	}
	return nil
}
