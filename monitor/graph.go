package monitor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/dag/render"
)

// graphFormats maps the graph endpoints' extensions to a writer and a
// content type.
var graphFormats = map[string]struct {
	contentType string
	draw        func(ctx context.Context, p *render.Picture, w io.Writer) error
}{
	"svg": {"image/svg+xml", func(ctx context.Context, p *render.Picture, w io.Writer) error { return p.SVG(ctx, w) }},
	"png": {"image/png", func(ctx context.Context, p *render.Picture, w io.Writer) error { return p.PNG(ctx, w) }},
	"dot": {"text/vnd.graphviz; charset=utf-8", func(_ context.Context, p *render.Picture, w io.Writer) error { return p.DOT(w) }},
	"mmd": {"text/plain; charset=utf-8", func(_ context.Context, p *render.Picture, w io.Writer) error { return p.Mermaid(w) }},
}

// Pictures drawn at once in this process. Each holds a flow read from Redis
// and its picture's buffers, and Graphviz lays out one at a time anyway
// (its WebAssembly instance is per process), so the bound is per process,
// not per Handler.
var graphSlots = make(chan struct{}, 2)

// graphWait is how long a request waits for a slot before it is answered
// 503.
var graphWait = 2 * time.Second

// collapsedHeader is set on a picture that was collapsed further than the
// request asked, to stay within its box and edge limits.
const collapsedHeader = "X-Trellis-Collapsed"

// flowGraph serves /api/flows/{id}/graph.{svg,png,dot,mmd}, colored by the
// nodes' current states. ?dir=LR turns the layout (default: chosen for the
// flow's shape), ?siblings=N sets how many siblings are drawn before they
// collapse, ?boxes=N the most boxes drawn, ?rank=N the most in one rank.
func (h *Handler) flowGraph(format string) http.HandlerFunc {
	f := graphFormats[format]
	return func(w http.ResponseWriter, r *http.Request) {
		opts := &render.Options{}
		q := r.URL.Query()
		if d := strings.ToUpper(q.Get("dir")); d != "" {
			switch d {
			case "TB", "LR", "BT", "RL":
				opts.Direction = d
			default:
				writeError(w, http.StatusBadRequest, "dir: %q is not TB, LR, BT or RL", q.Get("dir"))
				return
			}
		}
		var ok bool
		if opts.MaxSiblings, ok = signedParam(w, q.Get("siblings"), "siblings", "no collapsing"); !ok {
			return
		}
		if v := q.Get("boxes"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 2 || n > render.HardMaxBoxes {
				writeError(w, http.StatusBadRequest, "boxes: %q is not a whole number from 2 to %d", v, render.HardMaxBoxes)
				return
			}
			opts.MaxBoxes = n
		}
		if opts.MaxRank, ok = signedParam(w, q.Get("rank"), "rank", "no bound"); !ok {
			return
		}
		ctx := r.Context()
		wait := time.NewTimer(graphWait)
		defer wait.Stop()
		select {
		case graphSlots <- struct{}{}:
			defer func() { <-graphSlots }()
		case <-wait.C:
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "graph: %d pictures are being drawn; try again shortly", cap(graphSlots))
			return
		case <-ctx.Done():
			return // the client has gone
		}
		fl, err := h.client.Flow(ctx, r.PathValue("id"))
		if err != nil {
			h.writeGraphError(w, r, err)
			return
		}
		pic, err := render.Prepare(ctx, fl, opts)
		if err != nil {
			h.writeGraphError(w, r, err)
			return
		}
		var buf bytes.Buffer
		if err := f.draw(ctx, pic, &buf); err != nil {
			h.writeGraphError(w, r, err)
			return
		}
		if info := pic.Info(); info.Collapsed {
			w.Header().Set(collapsedHeader, collapsedValue(info))
		}
		w.Header().Set("Content-Type", f.contentType)
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(buf.Bytes())
	}
}

// signedParam reads a limit from 1 to 10000 where a negative value means
// none (negative, what that is); 0 when v is empty (the default). It
// answers 400 and returns false for anything else.
func signedParam(w http.ResponseWriter, v, name, negative string) (int, bool) {
	if v == "" {
		return 0, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n == 0 || n > 10000 {
		writeError(w, http.StatusBadRequest, "%s: %q is not a whole number from 1 to 10000 (or negative for %s)", name, v, negative)
		return 0, false
	}
	return n, true
}

// collapsedValue is the X-Trellis-Collapsed header: what the picture draws,
// as key=value pairs.
func collapsedValue(i render.Info) string {
	return fmt.Sprintf("siblings=%d; boxes=%d; edges=%d; nodes=%d; not-drawn=%d; max-boxes=%d; max-edges=%d; max-rank=%d; rank-siblings=%d",
		i.Siblings, i.Boxes, i.Edges, i.Nodes, i.NotDrawn, i.MaxBoxes, i.MaxEdges, i.MaxRank, i.RankSiblings)
}

// writeGraphError answers a failed picture; a request whose client went
// away gets nothing, and is not an error of the monitor.
func (h *Handler) writeGraphError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return
	}
	h.writeEngineError(w, r, err)
}

// FlowScene is the body of /api/flows/{id}/view: the flow laid out for
// the live view (render.Layout), bounded however large the flow.
type FlowScene struct {
	ID     string            `json:"id"`
	Done   bool              `json:"done"`
	Counts map[dag.State]int `json:"counts"`
	Nodes  int               `json:"nodes"`
	// Members are the flow's node IDs, so the page knows which live events
	// are its own; left out past sceneMembers nodes (the page then
	// refreshes on any event, at most every few seconds).
	Members []string      `json:"members,omitempty"`
	Scene   *render.Scene `json:"scene"`
}

// sceneMembers is the most node IDs a FlowScene lists.
const sceneMembers = 20000

// groupKey is the form of a group's key (render.SceneBox.Group).
var groupKey = regexp.MustCompile(`^g[0-9a-f]{16}$`)

// flowScene serves /api/flows/{id}/view: ?w= and ?h= are the viewport in
// pixels, ?expand= the groups drawn whole (comma-separated keys), ?dir=
// TB or LR (default: chosen for the flow), ?boxes= the most boxes.
func (h *Handler) flowScene(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	vw, ok := intParam(w, q.Get("w"), "w", 1280, 200, 20000)
	if !ok {
		return
	}
	vh, ok := intParam(w, q.Get("h"), "h", 800, 200, 20000)
	if !ok {
		return
	}
	opts := &render.Options{}
	if opts.MaxBoxes, ok = intParam(w, q.Get("boxes"), "boxes", render.DefaultMaxBoxes, 2, render.HardMaxBoxes); !ok {
		return
	}
	switch d := strings.ToUpper(q.Get("dir")); d {
	case "", "TB", "LR":
		opts.Direction = d
	default:
		writeError(w, http.StatusBadRequest, "dir: %q is not TB or LR", q.Get("dir"))
		return
	}
	if v := q.Get("expand"); v != "" {
		keys := strings.Split(v, ",")
		if len(keys) > 500 {
			writeError(w, http.StatusBadRequest, "expand: %d groups; at most 500", len(keys))
			return
		}
		for _, k := range keys {
			if !groupKey.MatchString(k) {
				writeError(w, http.StatusBadRequest, "expand: %q is not a group key (g and 16 hex digits)", k)
				return
			}
		}
		opts.Expand = keys
	}
	fl, err := h.client.Flow(r.Context(), r.PathValue("id"))
	if err != nil {
		h.writeGraphError(w, r, err)
		return
	}
	s, err := render.Layout(r.Context(), fl, opts, vw, vh)
	if err != nil {
		h.writeGraphError(w, r, err)
		return
	}
	out := FlowScene{ID: fl.ID, Done: fl.Done(), Counts: fl.Counts(), Nodes: len(fl.Nodes), Scene: s}
	if len(fl.Nodes) <= sceneMembers {
		out.Members = make([]string, len(fl.Nodes))
		for i, n := range fl.Nodes {
			out.Members[i] = n.ID
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}
