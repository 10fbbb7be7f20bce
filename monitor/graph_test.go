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
	// A rank bound; a fan-out goes left to right unless asked otherwise.
	w = e.get("/api/flows/big/graph.dot?rank=10")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.Contains(t, w.Header().Get("X-Trellis-Collapsed"), "max-rank=10;")
	require.Contains(t, w.Body.String(), `rankdir="LR"`)
	require.Contains(t, e.get("/api/flows/big/graph.dot?dir=TB").Body.String(), `rankdir="TB"`)
	for _, bad := range []string{"0", "10001", "x"} {
		w = e.get("/api/flows/big/graph.svg?rank=" + bad)
		require.Equal(t, http.StatusBadRequest, w.Code)
		require.Equal(t, `rank: "`+bad+`" is not a whole number from 1 to 10000 (or negative for no bound)`, errorOf(t, w))
		w = e.get("/api/flows/big/graph.svg?siblings=" + bad)
		require.Equal(t, http.StatusBadRequest, w.Code)
		require.Equal(t, `siblings: "`+bad+`" is not a whole number from 1 to 10000 (or negative for no collapsing)`, errorOf(t, w))
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

// Named names itself for pictures (flow.Labeler).
type Named struct {
	Name string `json:"name"`
}

func (Named) MessageType() string { return "NAMED" }
func (m Named) Label() string     { return m.Name }

// planShaped enqueues flow id shaped like the example's full plan save:
// a plan, 4 phases, 5 sessions each, 6 exercises each (145 nodes), named;
// one exercise fails when run.
func planShaped(t *testing.T, e *env, id string) {
	t.Helper()
	g := flow.New().WithID(id)
	plan := g.Add(Echo{Text: "plan"}, &flow.NodeOpts{ID: id + "/plan", Label: "12-week strength block"})
	for p := range 4 {
		phase := g.Add(Echo{Text: "phase"}, &flow.NodeOpts{ID: fmt.Sprintf("%s/p%d", id, p), Label: fmt.Sprintf("Phase %d", p+1)}).After(plan)
		for s := range 5 {
			session := g.Add(Echo{Text: "session"}, &flow.NodeOpts{ID: fmt.Sprintf("%s/p%d/s%d", id, p, s), Label: fmt.Sprintf("Session %d.%d", p+1, s+1)}).After(phase)
			for x := range 6 {
				text := "exercise"
				if p == 1 && s == 2 && x == 3 {
					text = "fail: no such exercise"
				}
				g.Add(Echo{Text: text}, &flow.NodeOpts{ID: fmt.Sprintf("%s/p%d/s%d/x%d", id, p, s, x), Label: fmt.Sprintf("Exercise %d", x+1)}).After(session)
			}
		}
	}
	_, err := e.client.Enqueue(t.Context(), g)
	require.NoError(t, err)
}

// The live view's layout: the 145-node plan save drawn whole down to its
// sessions, each session's exercises as one group that expands; labels
// in place of IDs; bad parameters named.
func TestFlowViewAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	planShaped(t, e, "fps")
	w := e.get("/api/flow/view?id=fps&w=1280&h=800")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	v := decode[monitor.FlowScene](t, w)
	require.Equal(t, 145, v.Nodes)
	require.Len(t, v.Members, 145)
	require.Equal(t, "LR", v.Scene.Direction)
	kinds := map[string]int{}
	var group string
	for _, b := range v.Scene.Boxes {
		kinds[b.Kind]++
		if b.Kind == "group" && group == "" {
			group = b.Group
		}
		if b.ID == "fps/plan" {
			require.Equal(t, "12-week strength block", b.Lines[0])
		}
		if b.ID == "fps/p0" {
			require.Equal(t, "Phase 1", b.Lines[0])
		}
	}
	require.Equal(t, map[string]int{"node": 25, "group": 20}, kinds)
	require.Len(t, v.Scene.Edges, 44)

	w = e.get("/api/flows/fps/view?expand=" + group)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	v = decode[monitor.FlowScene](t, w)
	members := 0
	for _, b := range v.Scene.Boxes {
		if b.Group == group {
			require.True(t, b.Expanded)
			require.Regexp(t, `^Exercise \d$`, b.Lines[0])
			members++
		}
	}
	require.Equal(t, 6, members)

	for q, want := range map[string]string{
		"w=abc":        `w: "abc" is not a whole number from 200 to 20000`,
		"h=50":         `h: "50" is not a whole number`,
		"dir=UP":       `dir: "UP" is not TB or LR`,
		"expand=zz":    `expand: "zz" is not a group key`,
		"boxes=100000": `boxes: "100000" is not a whole number`,
	} {
		w := e.get("/api/flow/view?id=fps&" + q)
		require.Equal(t, http.StatusBadRequest, w.Code, q)
		require.Contains(t, errorOf(t, w), want, q)
	}
	require.Equal(t, http.StatusNotFound, e.get("/api/flow/view?id=nope").Code)
}

// A label is for people: it shows on the job, and the same job enqueued
// again with another label is still the same job.
func TestLabelsShowAndLeaveIdentityAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	_, err := e.client.Add(t.Context(), Echo{Text: "x"}, &flow.NodeOpts{ID: "lab", Label: "  first\n"})
	require.NoError(t, err)
	_, err = e.client.Add(t.Context(), Echo{Text: "x"}, &flow.NodeOpts{ID: "lab", Label: "second"})
	require.NoError(t, err, "a new label is not a new job")
	_, err = e.client.Add(t.Context(), Echo{Text: "y"}, &flow.NodeOpts{ID: "lab"})
	require.ErrorIs(t, err, flow.ErrConflict, "other data still is")
	j := decode[monitor.JobView](t, e.get("/api/job?id=lab"))
	require.Equal(t, "first", j.Label)

	_, err = e.client.Add(t.Context(), Named{Name: strings.Repeat("é", 100)}, &flow.NodeOpts{ID: "named"})
	require.NoError(t, err)
	j = decode[monitor.JobView](t, e.get("/api/job?id=named"))
	require.Equal(t, strings.Repeat("é", flow.MaxLabel-1)+"…", j.Label)
}
