package render

import "fmt"

// Options steer a picture. A nil *Options means the defaults.
type Options struct {
	// MaxSiblings is how many siblings (nodes with the same parents, message
	// type and state) are drawn one by one. A larger group shows
	// MaxSiblings-1 members (those with trouble below them first) and one
	// "+N more" node. Default 8; a negative value never collapses.
	MaxSiblings int
	// MaxLabel is the most characters of one label line (an ID, an error, a
	// reason) before it is cut with "…". Default 48; at least 8.
	MaxLabel int
	// Direction is the direction of the layout: "TB" (top to bottom),
	// "LR", "BT" or "RL". Default "TB".
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
	if c.MaxLabel == 0 {
		c.MaxLabel = 48
	}
	if c.Direction == "" {
		c.Direction = "TB"
	}
	return c
}

func (o Options) validate() error {
	switch o.Direction {
	case "TB", "LR", "BT", "RL":
	default:
		return fmt.Errorf("render: Options.Direction is %q; use TB, LR, BT or RL", o.Direction)
	}
	if o.MaxLabel < 8 {
		return fmt.Errorf("render: Options.MaxLabel is %d; use at least 8", o.MaxLabel)
	}
	return nil
}
