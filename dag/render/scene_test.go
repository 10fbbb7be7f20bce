package render

import (
	"math"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
)

// requireLaidOut checks what a reader of a scene relies on: boxes inside
// the scene and apart, every edge starting and ending on the borders of
// its own two boxes and passing under none.
func requireLaidOut(t *testing.T, s *Scene) {
	t.Helper()
	require.NotEmpty(t, s.Boxes)
	for i, b := range s.Boxes {
		require.True(t, b.X >= 0 && b.Y >= 0 && b.X+b.W <= s.Width && b.Y+b.H <= s.Height, "box %d (%s) outside the scene", i, b.ID)
		for j := i + 1; j < len(s.Boxes); j++ {
			c := s.Boxes[j]
			overlap := b.X < c.X+c.W && c.X < b.X+b.W && b.Y < c.Y+c.H && c.Y < b.Y+b.H
			require.False(t, overlap, "boxes %s and %s overlap", b.ID, c.ID)
		}
	}
	for k, e := range s.Edges {
		require.GreaterOrEqual(t, len(e.Points), 2)
		require.True(t, onBorder(s.Boxes[e.From], e.Points[0]), "edge %d starts off its box %s", k, s.Boxes[e.From].ID)
		require.True(t, onBorder(s.Boxes[e.To], e.Points[len(e.Points)-1]), "edge %d ends off its box %s", k, s.Boxes[e.To].ID)
		for p := 1; p < len(e.Points); p++ {
			a, b := e.Points[p-1], e.Points[p]
			for i, box := range s.Boxes {
				require.False(t, crosses(box, a, b), "edge %d (%s → %s) passes under box %d (%s)", k, s.Boxes[e.From].ID, s.Boxes[e.To].ID, i, box.ID)
			}
		}
	}
}

func onBorder(b SceneBox, p [2]float64) bool {
	const eps = 0.01
	in := p[0] >= b.X-eps && p[0] <= b.X+b.W+eps && p[1] >= b.Y-eps && p[1] <= b.Y+b.H+eps
	edge := math.Abs(p[0]-b.X) < eps || math.Abs(p[0]-b.X-b.W) < eps || math.Abs(p[1]-b.Y) < eps || math.Abs(p[1]-b.Y-b.H) < eps
	return in && edge
}

// crosses reports whether segment a-b enters box's interior (Liang–Barsky
// clipping against the box shrunk by half a pixel).
func crosses(box SceneBox, a, b [2]float64) bool {
	x0, y0, x1, y1 := box.X+0.5, box.Y+0.5, box.X+box.W-0.5, box.Y+box.H-0.5
	dx, dy := b[0]-a[0], b[1]-a[1]
	lo, hi := 0.0, 1.0
	for _, c := range [][2]float64{{-dx, a[0] - x0}, {dx, x1 - a[0]}, {-dy, a[1] - y0}, {dy, y1 - a[1]}} {
		p, q := c[0], c[1]
		if p == 0 {
			if q < 0 {
				return false
			}
			continue
		}
		r := q / p
		if p < 0 {
			lo = max(lo, r)
		} else {
			hi = min(hi, r)
		}
		if lo > hi {
			return false
		}
	}
	return true
}

func TestLayoutOfAPlanSave(t *testing.T) {
	t.Parallel()
	s, err := Layout(t.Context(), bigFlow(4, 5, 6), nil, 1280, 800)
	require.NoError(t, err)
	requireLaidOut(t, s)
	require.Equal(t, "LR", s.Direction)
	kinds := map[string]int{}
	for _, b := range s.Boxes {
		kinds[b.Kind+" "+b.Type]++
	}
	// every phase and session drawn, each session's exercises as one group
	require.Equal(t, map[string]int{"node WORKOUT_PLAN_CREATE": 1, "node WORKOUT_PHASE_CREATE": 4, "node WORKOUT_SESSION_CREATE": 20,
		"group WORKOUT_EXERCISE_CREATE": 20}, kinds)
	require.GreaterOrEqual(t, min(1280/s.Width, 800/s.Height), sceneMinScale, "fits the viewport at half scale")

	// Expanding one session's exercises draws all six, and nothing else changes.
	var g string
	for _, b := range s.Boxes {
		if b.Kind == "group" {
			g = b.Group
			require.Equal(t, 6, b.More)
			break
		}
	}
	s2, err := Layout(t.Context(), bigFlow(4, 5, 6), &Options{Expand: []string{g}}, 1280, 800)
	require.NoError(t, err)
	requireLaidOut(t, s2)
	expanded := 0
	for _, b := range s2.Boxes {
		if b.Group == g {
			require.Equal(t, "node", b.Kind)
			require.True(t, b.Expanded)
			expanded++
		}
	}
	require.Equal(t, 6, expanded)
	require.Len(t, s2.Boxes, len(s.Boxes)+5)
}

func TestLayoutOfLargeFlows(t *testing.T) {
	t.Parallel()
	for _, f := range []*dag.Flow{large5k(), tangled5k(), bigFlow(10, 10, 49)} {
		t.Run(f.ID, func(t *testing.T) {
			t.Parallel()
			s, err := Layout(t.Context(), f, nil, 1280, 800)
			require.NoError(t, err)
			requireLaidOut(t, s)
			require.LessOrEqual(t, len(s.Boxes), DefaultMaxBoxes)
			require.Greater(t, len(s.Boxes), 10)
		})
	}
}

// A job of an earlier flow is a box of its own, linked to the job it holds
// back, and the sub-graph an expansion added is marked grown.
func TestLayoutDrawsEarlierJobsAndGrownNodes(t *testing.T) {
	t.Parallel()
	f := expandedFlow()
	f.Nodes[0].Parents = []string{"other-flow/job"} // AfterJob
	s, err := Layout(t.Context(), f, nil, 1280, 800)
	require.NoError(t, err)
	requireLaidOut(t, s)
	byID := map[string]int{}
	for i, b := range s.Boxes {
		byID[b.ID] = i
	}
	ext, ok := byID["other-flow/job"]
	require.True(t, ok)
	require.Equal(t, "external", s.Boxes[ext].Kind)
	linked := false
	for _, e := range s.Edges {
		if e.From == ext && s.Boxes[e.To].ID == "f/phase/1" {
			linked = true
		}
	}
	require.True(t, linked)
	grown := map[string]bool{}
	for _, b := range s.Boxes {
		if b.Grown {
			grown[b.ID] = true
		}
	}
	require.Equal(t, map[string]bool{"f/phase/1": true, "f/phase/2": true, "f/session/1": true, "f/session/2": true, "f/x/1": true}, grown)
	require.False(t, s.Boxes[byID["f/save"]].Grown)
}

func TestLayoutKeepsAGivenDirectionAndChecksOptions(t *testing.T) {
	t.Parallel()
	s, err := Layout(t.Context(), bigFlow(2, 2, 2), &Options{Direction: "TB"}, 0, 0)
	require.NoError(t, err)
	requireLaidOut(t, s)
	require.Equal(t, "TB", s.Direction)
	_, err = Layout(t.Context(), bigFlow(1, 1, 1), &Options{Direction: "UP"}, 0, 0)
	require.ErrorContains(t, err, `Options.Direction is "UP"`)
	_, err = Layout(t.Context(), nil, nil, 0, 0)
	require.Error(t, err)
	// one node: no edges, as an empty list
	s, err = Layout(t.Context(), &dag.Flow{ID: "one", Nodes: []*dag.Node{node("one", "T", dag.Ready, 0, 1)}}, nil, 0, 0)
	require.NoError(t, err)
	requireLaidOut(t, s)
	require.NotNil(t, s.Edges)
	require.Len(t, s.Boxes, 1)
}

func BenchmarkLayout(b *testing.B) {
	for _, f := range []*dag.Flow{bigFlow(4, 5, 6), large5k(), tangled5k(), large100k()} {
		b.Run(f.ID+"-"+strconv.Itoa(len(f.Nodes)), func(b *testing.B) {
			for b.Loop() {
				if _, err := Layout(b.Context(), f, nil, 1280, 800); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
