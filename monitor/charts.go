package monitor

import (
	"net/http"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
)

// Charts is the body of /api/charts: a queue's and message type's finished
// runs minute by minute, oldest first ("" for all queues or types).
type Charts struct {
	Queue   string       `json:"queue"`
	Type    string       `json:"type"`
	Minutes int          `json:"minutes"`
	Points  []ChartPoint `json:"points"`
	// Backlog is the ready and delayed jobs now; the points have the
	// runners' samples of it, minute by minute.
	Backlog Backlog `json:"backlog"`
	// Queues and Types are what the selectors offer: those with jobs now
	// or runs in the span.
	Queues []string `json:"queues"`
	Types  []string `json:"types"`
}

// ChartPoint is one minute of Charts.
type ChartPoint struct {
	Start time.Time `json:"start"`
	// Finished is the throughput: runs that succeeded or failed for good.
	Finished int64 `json:"finished"`
	Failed   int64 `json:"failed"`
	Retried  int64 `json:"retried"`
	// P50MS and P95MS are estimated from the duration histogram, as
	// /api/queue-stats' p95; 0 when no run finished.
	P50MS float64 `json:"p50Ms"`
	P95MS float64 `json:"p95Ms"`
	// P95Capped is true when the p95 is the histogram's last bound.
	P95Capped bool `json:"p95Capped"`
	// Backlog is the ready and delayed jobs a runner saw in this minute;
	// nil when no runner was there to sample it.
	Backlog *Backlog `json:"backlog,omitempty"`
}

// Backlog counts jobs waiting for a runner.
type Backlog struct {
	Ready   int64 `json:"ready"`
	Delayed int64 `json:"delayed"`
}

func (h *Handler) charts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := &flow.SeriesOpts{Queue: q.Get("queue"), Type: q.Get("type")}
	for name, v := range map[string]string{"queue": opts.Queue, "type": opts.Type} {
		if v == "" {
			continue
		}
		if err := dag.CheckName(v); err != nil {
			writeError(w, http.StatusBadRequest, "%s: %q %s", name, v, err.Error())
			return
		}
	}
	var ok bool
	if opts.Minutes, ok = intParam(w, q.Get("minutes"), "minutes", 60, 1, 120); !ok {
		return
	}
	s, err := h.insp.Series(r.Context(), opts)
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	out := Charts{
		Queue: s.Queue, Type: s.Type, Minutes: len(s.Minutes), Points: make([]ChartPoint, len(s.Minutes)),
		Backlog: Backlog{Ready: s.Ready, Delayed: s.Delayed}, Queues: s.Queues, Types: s.Types,
	}
	last := dag.DurationBuckets[len(dag.DurationBuckets)-1]
	for i, m := range s.Minutes {
		out.Points[i] = ChartPoint{
			Start: m.Start.UTC(), Finished: m.Finished, Failed: m.Failed, Retried: m.Retried,
			P50MS: ms(m.P50), P95MS: ms(m.P95), P95Capped: m.P95 >= last,
		}
		if m.Sampled {
			out.Points[i].Backlog = &Backlog{Ready: m.Ready, Delayed: m.Delayed}
		}
	}
	writeJSON(w, http.StatusOK, out)
}
