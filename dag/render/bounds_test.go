package render

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trellisflow/trellis/dag"
)

// planShaped is a full plan save of 1 + phases·(1 + sessions·(1 + exercises))
// nodes caught mid-run: half of each phase's sessions done, the rest
// running with their exercises blocked, one exercise failed.
func planShaped(id string, phases, sessions, exercises int) *dag.Flow {
	f := &dag.Flow{ID: id, Nodes: []*dag.Node{node(id+"/plan", "WORKOUT_PLAN_CREATE", dag.Succeeded, 1, 3)}}
	for p := range phases {
		pid := fmt.Sprintf("%s/phase-%d", id, p)
		f.Nodes = append(f.Nodes, node(pid, "WORKOUT_PHASE_CREATE", dag.Succeeded, 1, 3, id+"/plan"))
		for s := range sessions {
			sid := fmt.Sprintf("%s/session-%d", pid, s)
			st, est := dag.Succeeded, dag.Succeeded
			if s >= sessions/2 {
				st, est = dag.Active, dag.Blocked
			}
			f.Nodes = append(f.Nodes, node(sid, "WORKOUT_SESSION_CREATE", st, 1, 3, pid))
			for e := range exercises {
				n := node(fmt.Sprintf("%s/ex-%d", sid, e), "WORKOUT_EXERCISE_CREATE", est, 1, 3, sid)
				if p == phases-1 && s == 1 && e == 3 {
					n.State = dag.Failed
					n.Error = &dag.ErrorInfo{Message: "pq: deadlock detected"}
				}
				f.Nodes = append(f.Nodes, n)
			}
		}
	}
	return withChildren(f)
}

// tangled is n nodes each depending on up to two earlier ones picked at
// random (a fixed seed): no two share their parents, so no siblings
// collapse, and Graphviz's layout of it grows fastest with its size.
func tangled(id string, n int) *dag.Flow {
	f := &dag.Flow{ID: id}
	x := uint64(1)
	pick := func(m int) int {
		x = x*6364136223846793005 + 1442695040888963407
		return int((x >> 33) % uint64(m))
	}
	for i := range n {
		var ps []string
		if i > 0 {
			ps = append(ps, fmt.Sprintf("n%d", pick(i)))
			if q := fmt.Sprintf("n%d", pick(i)); q != ps[0] {
				ps = append(ps, q)
			}
		}
		st := dag.Succeeded
		if i%997 == 0 {
			st = dag.Failed
		}
		f.Nodes = append(f.Nodes, node(fmt.Sprintf("n%d", i), "STEP", st, 1, 3, ps...))
	}
	return withChildren(f)
}

// The large flows are made once, on first use, and only read.
var (
	large5k     = sync.OnceValue(func() *dag.Flow { return planShaped("save", 10, 20, 24) }) // 5,011 nodes
	large100k   = sync.OnceValue(func() *dag.Flow { return planShaped("save", 20, 50, 99) }) // 100,021 nodes
	tangled5k   = sync.OnceValue(func() *dag.Flow { return tangled("t", 5000) })
	tangled100k = sync.OnceValue(func() *dag.Flow { return tangled("t", 100_000) })
)

var dotNode = regexp.MustCompile(`(?m)^\t"(?:[^"\\]|\\.)*" \[`)
var dotEdge = regexp.MustCompile(`(?m)^\t"(?:[^"\\]|\\.)*" -> `)

// requireBounded checks what a picture of f claims and what its DOT holds.
func requireBounded(t *testing.T, f *dag.Flow, opts *Options) Info {
	t.Helper()
	o := opts.WithDefaults()
	p, err := Prepare(t.Context(), f, opts)
	require.NoError(t, err)
	info := p.Info()
	require.Equal(t, len(f.Nodes), info.Nodes)
	require.LessOrEqual(t, info.Boxes, o.MaxBoxes)
	require.LessOrEqual(t, info.Edges, o.MaxEdges)
	var dot bytes.Buffer
	require.NoError(t, p.DOT(&dot))
	require.Len(t, dotNode.FindAllIndex(dot.Bytes(), -1), info.Boxes, "node statements")
	require.Len(t, dotEdge.FindAllIndex(dot.Bytes(), -1), info.Edges, "edge statements")
	if info.Collapsed {
		require.Contains(t, dot.String(), "collapsed to stay within", "the picture says so")
	}
	// Every node of the flow is in exactly one box.
	held := 0
	for _, vn := range p.v.nodes {
		switch vn.kind {
		case kindNode:
			held++
		case kindMore:
			held += vn.more + vn.below
		case kindRest:
			held += vn.more
		}
	}
	require.Equal(t, len(f.Nodes), held)
	return info
}

func TestLargeFlowsStayWithinTheBoxLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		flow *dag.Flow
	}{
		{"plan-5k", large5k()}, {"plan-100k", large100k()}, {"tangled-5k", tangled5k()}, {"tangled-100k", tangled100k()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// "Expand everything" is overridden.
			info := requireBounded(t, tc.flow, &Options{MaxSiblings: -1})
			require.True(t, info.Collapsed)
			require.Less(t, info.Siblings, 24)
			require.Contains(t, info.Note(), fmt.Sprintf("%d nodes in %d boxes", len(tc.flow.Nodes), info.Boxes))
			requireBounded(t, tc.flow, nil)
			if len(tc.flow.Nodes) > 10_000 {
				return // the limits below cost the same at any size
			}
			// Lower and higher limits hold too.
			requireBounded(t, tc.flow, &Options{MaxSiblings: -1, MaxBoxes: 40, MaxEdges: 50})
			requireBounded(t, tc.flow, &Options{MaxSiblings: 100, MaxBoxes: HardMaxBoxes})
		})
	}
}

func TestCollapsesOnlyAsFarAsNeeded(t *testing.T) {
	t.Parallel()
	// A plan save at 9 siblings draws 250 boxes, at 10 it would draw 308.
	info := requireBounded(t, bigFlow(12, 3, 20), &Options{MaxSiblings: -1, MaxRank: -1})
	require.True(t, info.Collapsed)
	require.Equal(t, 9, info.Siblings)
	require.Equal(t, 250, info.Boxes)
	require.Zero(t, info.NotDrawn)
	require.Equal(t, "collapsed to stay within 300 boxes and 600 edges: 769 nodes in 250 boxes, 9 siblings per group", info.Note())

	// Within the limits nothing changes.
	info = requireBounded(t, bigFlow(4, 5, 6), &Options{MaxRank: -1})
	require.False(t, info.Collapsed)
	require.Equal(t, 145, info.Boxes)
	require.Empty(t, info.Note())
}

// By default a rank holds at most DefaultMaxRank boxes and a fan-out is
// drawn left to right: the 145-node plan save keeps its phases and
// sessions whole and collapses only the exercises, its widest rank.
func TestWideRanksCollapse(t *testing.T) {
	t.Parallel()
	p, err := Prepare(t.Context(), bigFlow(4, 5, 6), nil)
	require.NoError(t, err)
	info := p.Info()
	require.True(t, info.Collapsed)
	require.True(t, info.Wide)
	require.Equal(t, "LR", info.Direction)
	require.Equal(t, 2, info.RankSiblings)
	require.LessOrEqual(t, widest(p.v), DefaultMaxRank)
	require.Equal(t, []int{1, 4, 20, 40}, perRank(p.v))
	require.Equal(t, "collapsed to stay within 300 boxes, 600 edges and 40 boxes per rank: 145 nodes in 65 boxes, down to 2 siblings per group in the widest ranks", info.Note())

	// A direction given is kept; a small flow stays top to bottom.
	p, err = Prepare(t.Context(), bigFlow(4, 5, 6), &Options{Direction: "TB"})
	require.NoError(t, err)
	require.Equal(t, "TB", p.Info().Direction)
	p, err = Prepare(t.Context(), bigFlow(1, 2, 1), nil)
	require.NoError(t, err)
	require.Equal(t, "TB", p.Info().Direction)
	require.False(t, p.Info().Collapsed)
}

func TestTheRestGoesIntoOneBox(t *testing.T) {
	t.Parallel()
	// A chain has no siblings: one box per node however far it collapses.
	f := &dag.Flow{ID: "chain"}
	for i := range 1000 {
		var ps []string
		if i > 0 {
			ps = []string{fmt.Sprintf("c%d", i-1)}
		}
		st := dag.Succeeded
		if i == 700 {
			st = dag.Failed
		}
		f.Nodes = append(f.Nodes, node(fmt.Sprintf("c%d", i), "STEP", st, 1, 1, ps...))
	}
	info := requireBounded(t, withChildren(f), &Options{MaxBoxes: 100})
	require.True(t, info.Collapsed)
	require.Equal(t, 100, info.Boxes)
	require.Equal(t, 901, info.NotDrawn)
	p, err := Prepare(t.Context(), f, &Options{MaxBoxes: 100})
	require.NoError(t, err)
	last := p.v.nodes[len(p.v.nodes)-1]
	require.Equal(t, []string{"+901 not drawn", "past 100 boxes, 200 edges", "900 succeeded · 1 failed"}, last.lines)
	require.Equal(t, "c98", p.v.nodes[p.v.edges[len(p.v.edges)-1][0]].name, "the last box drawn leads to the rest")

	// The edge limit alone can force it too.
	info = requireBounded(t, tangled5k(), &Options{MaxBoxes: HardMaxBoxes, MaxEdges: 100})
	require.Positive(t, info.NotDrawn)
	require.LessOrEqual(t, info.Edges, 100)
}

// perRank counts v's boxes rank by rank.
func perRank(v *view) []int {
	ranks := ranksOf(v)
	_, deep := shape(ranks)
	out := make([]int, deep)
	for _, r := range ranks {
		out[r]++
	}
	return out
}

// svgNodes counts the node groups in Graphviz's SVG.
func svgNodes(t *testing.T, svg []byte) int {
	t.Helper()
	return len(nodesOf(parseSVG(t, svg)))
}

// The images share one Graphviz instance: these run one after another.
func TestLargeFlowImagesAreBounded(t *testing.T) {
	t.Parallel()
	// A safety net only: the box limit is what bounds the time.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	for _, f := range []*dag.Flow{large5k(), tangled5k(), large100k(), tangled100k()} {
		var svg bytes.Buffer
		require.NoError(t, SVG(ctx, &svg, f, &Options{MaxSiblings: -1, MaxRank: -1}))
		n := svgNodes(t, svg.Bytes())
		require.LessOrEqual(t, n, DefaultMaxBoxes, "%s, %d nodes", f.ID, len(f.Nodes))
		require.Greater(t, n, DefaultMaxBoxes/2, "collapsed only as far as needed")
		require.Contains(t, svg.String(), "collapsed to stay within")
	}
	var buf bytes.Buffer
	require.NoError(t, PNG(ctx, &buf, tangled100k(), &Options{MaxSiblings: -1, MaxRank: -1}))
	img, err := png.Decode(&buf)
	require.NoError(t, err)
	require.LessOrEqual(t, img.Bounds().Dx()*img.Bounds().Dy(), maxPixels+img.Bounds().Dx()+img.Bounds().Dy()+1)
}

func TestLimitsAreValidated(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{MaxBoxes: HardMaxBoxes + 1}, "Options.MaxBoxes is 1001; use 2 to 1000"},
		{Options{MaxBoxes: 1}, "Options.MaxBoxes"},
		{Options{MaxBoxes: -5}, "Options.MaxBoxes"},
		{Options{MaxEdges: HardMaxEdges + 1}, "Options.MaxEdges is 1001; use 1 to 1000"},
		{Options{MaxEdges: -1}, "Options.MaxEdges"},
		{Options{MaxLabel: 201}, "Options.MaxLabel"},
	} {
		_, err := Prepare(t.Context(), planFlow(), &tc.opts)
		require.ErrorContains(t, err, tc.want)
	}
	require.Equal(t, HardMaxEdges, (&Options{MaxBoxes: HardMaxBoxes}).WithDefaults().MaxEdges)
}

// waitErr waits for a render's error, failing the test if it has not come
// within a generous limit: a safety net, not a timing.
func waitErr(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the render did not stop when its context ended")
		return nil
	}
}

func TestCancelStopsTheWork(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for name, draw := range map[string]func(context.Context) error{
		"prepare": func(ctx context.Context) error { _, err := Prepare(ctx, large100k(), nil); return err },
		"dot":     func(ctx context.Context) error { return DOT(ctx, &bytes.Buffer{}, tangled100k(), nil) },
		"mermaid": func(ctx context.Context) error { return Mermaid(ctx, &bytes.Buffer{}, large5k(), nil) },
		"svg":     func(ctx context.Context) error { return SVG(ctx, &bytes.Buffer{}, large100k(), nil) },
		"png":     func(ctx context.Context) error { return PNG(ctx, &bytes.Buffer{}, tangled5k(), nil) },
	} {
		require.ErrorIs(t, draw(ctx), context.Canceled, name)
	}

	// A render waiting for Graphviz, which another holds, gives up when its
	// context ends.
	gvTurn <- struct{}{}
	defer func() { <-gvTurn }()
	ctx, cancel = context.WithCancel(t.Context())
	p, err := Prepare(ctx, tangled100k(), nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- p.PNG(ctx, &bytes.Buffer{}) }()
	cancel()
	require.ErrorIs(t, waitErr(t, done), context.Canceled)

	// A deadline that passes while the flow is being laid out.
	ctx, cancel = context.WithTimeout(t.Context(), time.Millisecond)
	defer cancel()
	go func() { done <- SVG(ctx, &bytes.Buffer{}, tangled100k(), &Options{MaxSiblings: -1}) }()
	require.ErrorIs(t, waitErr(t, done), context.DeadlineExceeded)
}

func TestRasterizeStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	var svg strings.Builder
	svg.WriteString(`<svg width="200pt" height="200pt"><g>`)
	for i := range 500 {
		fmt.Fprintf(&svg, `<polygon fill="#000000" points="%d,0 %d,10 0,10"/>`, i%200, i%200)
	}
	svg.WriteString(`</g></svg>`)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := rasterize(ctx, []byte(svg.String()))
	require.ErrorIs(t, err, context.Canceled)
	_, err = rasterize(t.Context(), []byte(svg.String()))
	require.NoError(t, err)
}

// BenchmarkRender draws large flows with "expand everything" asked for and
// reports, next to the time per picture, the peak of the Go heap in use
// while drawing and the heap in use before (the flows, and Graphviz's
// WebAssembly memory once grown, which it keeps). One run of one of them
// (-bench 'BenchmarkRender/tangled-5k/svg$' -benchtime 1x) under
// /usr/bin/time gives the process's peak RSS for one picture.
func BenchmarkRender(b *testing.B) {
	for _, bc := range []struct {
		name   string
		flow   func() *dag.Flow // made on first use: a run of one benchmark holds only its flow
		format string
	}{
		{"plan-5k/svg", large5k, "svg"}, {"plan-5k/png", large5k, "png"},
		{"tangled-5k/svg", tangled5k, "svg"}, {"tangled-5k/png", tangled5k, "png"},
		{"plan-100k/dot", large100k, "dot"}, {"plan-100k/svg", large100k, "svg"}, {"plan-100k/png", large100k, "png"},
		{"tangled-100k/dot", tangled100k, "dot"}, {"tangled-100k/svg", tangled100k, "svg"}, {"tangled-100k/png", tangled100k, "png"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f, opts := bc.flow(), &Options{MaxSiblings: -1}
			draw := map[string]func(context.Context, *bytes.Buffer) error{
				"dot": func(ctx context.Context, w *bytes.Buffer) error { return DOT(ctx, w, f, opts) },
				"svg": func(ctx context.Context, w *bytes.Buffer) error { return SVG(ctx, w, f, opts) },
				"png": func(ctx context.Context, w *bytes.Buffer) error { return PNG(ctx, w, f, opts) },
			}[bc.format]
			base, peak := heapPeak(b)
			b.ReportAllocs()
			for b.Loop() {
				var buf bytes.Buffer
				if err := draw(b.Context(), &buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(peak()>>20), "peak-heap-MB")
			b.ReportMetric(float64(base>>20), "base-heap-MB")
		})
	}
}

// heapPeak returns the in-use heap after a GC, and samples it until the
// returned function is called, which returns the highest sample.
func heapPeak(b *testing.B) (uint64, func() uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	peak := make(chan uint64, 1)
	peak <- ms.HeapInuse
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				p := <-peak
				peak <- max(p, ms.HeapInuse)
			}
		}
	}()
	return ms.HeapInuse, func() uint64 {
		close(stop)
		p := <-peak
		peak <- p
		return p
	}
}
