package monitor

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/dag/render"
)

// graphFormats maps the graph endpoints' extensions to a renderer and a
// content type.
var graphFormats = map[string]struct {
	contentType string
	draw        func(ctx context.Context, w io.Writer, f *dag.Flow, o *render.Options) error
}{
	"svg": {"image/svg+xml", render.SVG},
	"png": {"image/png", render.PNG},
	"dot": {"text/vnd.graphviz; charset=utf-8", func(_ context.Context, w io.Writer, f *dag.Flow, o *render.Options) error {
		return render.DOT(w, f, o)
	}},
	"mmd": {"text/plain; charset=utf-8", func(_ context.Context, w io.Writer, f *dag.Flow, o *render.Options) error {
		return render.Mermaid(w, f, o)
	}},
}

// flowGraph serves /api/flows/{id}/graph.{svg,png,dot,mmd}, colored by the
// nodes' current states. ?dir=LR turns the layout, ?siblings=N sets how many
// siblings are drawn before they collapse.
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
		fl, err := h.client.Flow(r.Context(), r.PathValue("id"))
		if err != nil {
			h.writeEngineError(w, r, err)
			return
		}
		var buf bytes.Buffer
		if err := f.draw(r.Context(), &buf, fl, opts); err != nil {
			h.writeEngineError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", f.contentType)
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(buf.Bytes())
	}
}
