package monitor_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag/render"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/monitor"
)

var (
	svgNode = regexp.MustCompile(`<g id="node\d+" class="node">`)
	dotNode = regexp.MustCompile(`(?m)^\t"(?:[^"\\]|\\.)*" \[`)
)

// A 5,011-node plan save in Redis, drawn with "expand everything": every
// format stays within the default box limit and says it collapsed.
func TestFlowGraphOfALargeFlowIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	g := flow.New().WithID("big")
	plan := g.Add(Echo{Text: "plan"}, &flow.NodeOpts{ID: "big/plan"})
	for p := range 10 {
		phase := g.Add(Echo{Text: "phase"}, &flow.NodeOpts{ID: fmt.Sprintf("big/p%d", p)}).After(plan)
		for s := range 20 {
			session := g.Add(Echo{Text: "session"}, &flow.NodeOpts{ID: fmt.Sprintf("big/p%d/s%d", p, s)}).After(phase)
			for x := range 24 {
				g.Add(Echo{Text: "exercise"}, &flow.NodeOpts{ID: fmt.Sprintf("big/p%d/s%d/x%d", p, s, x)}).After(session)
			}
		}
	}
	require.Equal(t, 5011, g.Len())
	_, err := e.client.Enqueue(context.Background(), g)
	require.NoError(t, err)

	boxes := regexp.MustCompile(`\bboxes=(\d+);`)
	for _, tc := range []struct {
		format string
		count  func(string) int
	}{
		{"svg", func(b string) int { return len(svgNode.FindAllString(b, -1)) }},
		{"dot", func(b string) int { return len(dotNode.FindAllString(b, -1)) }},
		{"mmd", func(b string) int { return len(regexp.MustCompile(`(?m)^  n\d+\[`).FindAllString(b, -1)) }},
		{"png", nil},
	} {
		w := e.get("/api/flows/big/graph." + tc.format + "?siblings=-1")
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		hdr := w.Header().Get("X-Trellis-Collapsed")
		require.Contains(t, hdr, "nodes=5011;", tc.format)
		m := boxes.FindStringSubmatch(hdr)
		require.NotNil(t, m, hdr)
		var n int
		_, _ = fmt.Sscan(m[1], &n)
		require.LessOrEqual(t, n, render.DefaultMaxBoxes)
		if tc.count != nil {
			require.Equal(t, n, tc.count(w.Body.String()), "%s boxes", tc.format)
			require.Contains(t, w.Body.String(), "collapsed to stay within 300 boxes")
		}
	}

	// A lower limit; out-of-range limits are refused.
	w := e.get("/api/flows/big/graph.svg?boxes=40")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.LessOrEqual(t, len(svgNode.FindAllString(w.Body.String(), -1)), 40)
	require.Contains(t, w.Header().Get("X-Trellis-Collapsed"), "max-boxes=40;")
	for _, bad := range []string{"1", "1001", "x"} {
		w = e.get("/api/flows/big/graph.svg?boxes=" + bad)
		require.Equal(t, http.StatusBadRequest, w.Code)
		require.Contains(t, errorOf(t, w), "boxes:")
	}
	// A small flow is not collapsed and says nothing.
	e.add("small", "x")
	w = e.get("/api/flows/small/graph.dot")
	require.Equal(t, http.StatusOK, w.Code)
	require.Empty(t, w.Header().Get("X-Trellis-Collapsed"))
}

// Not parallel: it holds the process's slots for pictures, which the other
// tests' requests would wait for.
func TestFlowGraphBusyAnswers503(t *testing.T) {
	e := newEnv(t, monitor.Config{})
	e.add("f", "x")
	release := monitor.HoldGraphSlots(50 * time.Millisecond)
	w := e.get("/api/flows/f/graph.svg")
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.Contains(t, errorOf(t, w), "pictures are being drawn")

	// A client that gives up while waiting gets nothing, at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	release()
	release = monitor.HoldGraphSlots(time.Minute)
	r := httptest.NewRequest(http.MethodGet, "/api/flows/f/graph.svg", nil).WithContext(ctx)
	r.RemoteAddr = "127.0.0.1:40000"
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, r)
	require.Empty(t, rec.Body.String())
	release()

	w = e.get("/api/flows/f/graph.svg")
	require.Equal(t, http.StatusOK, w.Code)
	require.True(t, strings.HasPrefix(w.Body.String(), "<?xml") || strings.Contains(w.Body.String(), "<svg"))
}
