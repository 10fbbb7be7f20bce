package monitor

import (
	"net/http"
	"strconv"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
)

// QueueStats is the body of /api/queue-stats: the BullMQ system's getQueueStats with
// the engine's states alongside BullMQ's names (waiting = ready,
// completed = succeeded).
type QueueStats struct {
	Namespace string                         `json:"namespace"`
	Counts    map[dag.State]int64            `json:"counts"`
	Waiting   int64                          `json:"waiting"`
	Delayed   int64                          `json:"delayed"`
	Active    int64                          `json:"active"`
	Blocked   int64                          `json:"blocked"`
	Completed int64                          `json:"completed"`
	Failed    int64                          `json:"failed"`
	Skipped   int64                          `json:"skipped"`
	Cancelled int64                          `json:"cancelled"`
	Total     int64                          `json:"total"`
	ByQueue   map[string]map[dag.State]int64 `json:"byQueue"`
	ByType    map[string]map[dag.State]int64 `json:"byType"`
	// ProcessingRate is finished runs per minute over the window.
	ProcessingRate float64 `json:"processingRate"`
	// ErrorRate is the percentage of finished runs that failed for good.
	ErrorRate     float64 `json:"errorRate"`
	Retries       int64   `json:"retries"`
	AvgDurationMS float64 `json:"avgDurationMs"`
	// P95DurationMS estimates the 95th percentile of step durations from the
	// per-minute histogram, linear within the bucket it falls in.
	P95DurationMS float64 `json:"p95DurationMs"`
	// P95Capped is true when the estimate is the histogram's last bound
	// (1 min): the 95th percentile may be longer.
	P95Capped     bool      `json:"p95Capped"`
	WindowMinutes int       `json:"windowMinutes"`
	Paused        []string  `json:"paused"`
	Jobs          []JobView `json:"jobs,omitempty"`
}

func (h *Handler) queueStats(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := &flow.StatsOpts{}
	if v := q.Get("includeJobs"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "includeJobs: %q is not true or false", v)
			return
		}
		opts.IncludeJobs = b
	}
	var ok bool
	if opts.Limit, ok = intParam(w, q.Get("limit"), "limit", 10, 1, 100); !ok {
		return
	}
	win, ok := intParam(w, q.Get("window"), "window", 60, 1, 120)
	if !ok {
		return
	}
	opts.Window = time.Duration(win) * time.Minute
	st, err := h.client.Stats(r.Context(), opts)
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toQueueStats(h.insp.Namespace(), st))
}

func toQueueStats(ns string, st *flow.Stats) QueueStats {
	out := QueueStats{
		Namespace: ns, Counts: map[dag.State]int64(st.Counts),
		Waiting: st.Counts[dag.Ready], Delayed: st.Counts[dag.Delayed], Active: st.Counts[dag.Active],
		Blocked: st.Counts[dag.Blocked], Completed: st.Counts[dag.Succeeded], Failed: st.Counts[dag.Failed],
		Skipped: st.Counts[dag.Skipped], Cancelled: st.Counts[dag.Cancelled], Total: st.Counts.Total(),
		ByQueue: map[string]map[dag.State]int64{}, ByType: map[string]map[dag.State]int64{},
		ProcessingRate: st.ProcessingRate, ErrorRate: st.ErrorRate, Retries: st.Retries,
		AvgDurationMS: ms(st.AvgDuration), P95DurationMS: ms(st.P95Duration),
		P95Capped:     st.P95Duration >= dag.DurationBuckets[len(dag.DurationBuckets)-1],
		WindowMinutes: int(st.Window / time.Minute), Paused: st.Paused,
	}
	if out.Paused == nil {
		out.Paused = []string{}
	}
	for k, v := range st.ByQueue {
		out.ByQueue[k] = v
	}
	for k, v := range st.ByType {
		out.ByType[k] = v
	}
	for _, j := range st.Recent {
		out.Jobs = append(out.Jobs, toView(j, false))
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// intParam parses an optional integer query parameter within [lo, hi]; on a
// bad value it writes a 400 that names the parameter.
func intParam(w http.ResponseWriter, v, name string, def, lo, hi int) (int, bool) {
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		writeError(w, http.StatusBadRequest, "%s: %q is not a whole number from %d to %d", name, v, lo, hi)
		return 0, false
	}
	return n, true
}
