package monitor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

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
// nodes' current states. ?dir=LR turns the layout, ?siblings=N sets how many
// siblings are drawn before they collapse, ?boxes=N the most boxes drawn.
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
		if v := q.Get("siblings"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n == 0 || n > 10000 {
				writeError(w, http.StatusBadRequest, "siblings: %q is not a whole number from 1 to 10000 (or negative for no collapsing)", v)
				return
			}
			opts.MaxSiblings = n
		}
		if v := q.Get("boxes"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 2 || n > render.HardMaxBoxes {
				writeError(w, http.StatusBadRequest, "boxes: %q is not a whole number from 2 to %d", v, render.HardMaxBoxes)
				return
			}
			opts.MaxBoxes = n
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

// collapsedValue is the X-Trellis-Collapsed header: what the picture draws,
// as key=value pairs.
func collapsedValue(i render.Info) string {
	return fmt.Sprintf("siblings=%d; boxes=%d; edges=%d; nodes=%d; not-drawn=%d; max-boxes=%d; max-edges=%d",
		i.Siblings, i.Boxes, i.Edges, i.Nodes, i.NotDrawn, i.MaxBoxes, i.MaxEdges)
}

// writeGraphError answers a failed picture; a request whose client went
// away gets nothing, and is not an error of the monitor.
func (h *Handler) writeGraphError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return
	}
	h.writeEngineError(w, r, err)
}
