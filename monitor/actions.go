package monitor

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/clip"
)

func (h *Handler) retryJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n, err := h.client.Retry(r.Context(), id)
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	h.log.Info("trellis monitor: job retried", "job", id, "reopened", n)
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "reopened": n})
}

func (h *Handler) cancelJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	reason := strings.TrimSpace(r.URL.Query().Get("reason"))
	if reason == "" {
		reason = "cancelled from the monitor"
	}
	n, err := h.client.Cancel(r.Context(), id, reason)
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	h.log.Info("trellis monitor: job cancelled", "job", id, "ended", n)
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "cancelled": true, "ended": n})
}

func (h *Handler) cancelFlow(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	reason := strings.TrimSpace(r.URL.Query().Get("reason"))
	if reason == "" {
		reason = "flow cancelled from the monitor"
	}
	n, err := h.client.CancelFlow(r.Context(), id, reason)
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	h.log.Info("trellis monitor: flow cancelled", "flow", id, "jobs", n)
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "cancelled": n})
}

func (h *Handler) pauseQueue(w http.ResponseWriter, r *http.Request) {
	q := r.PathValue("queue")
	if err := h.client.Pause(r.Context(), q); err != nil {
		writeError(w, http.StatusBadRequest, "%s", err.Error())
		return
	}
	h.log.Info("trellis monitor: queue paused", "queue", q)
	writeJSON(w, http.StatusOK, map[string]any{"queue": q, "paused": true})
}

func (h *Handler) resumeQueue(w http.ResponseWriter, r *http.Request) {
	q := r.PathValue("queue")
	if err := h.client.Resume(r.Context(), q); err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	h.log.Info("trellis monitor: queue resumed", "queue", q)
	writeJSON(w, http.StatusOK, map[string]any{"queue": q, "paused": false})
}

// removeJob deletes a finished job together with its flow (a flow's jobs
// go together, so the graph never loses a node).
func (h *Handler) removeJob(w http.ResponseWriter, r *http.Request) {
	if !h.cfg.Development {
		writeError(w, http.StatusForbidden, "remove is a development-only action (monitor Config.Development / --dev)")
		return
	}
	n, err := h.client.Job(r.Context(), r.PathValue("id"))
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	if err := removable(n); err != nil {
		writeError(w, http.StatusConflict, "%s", err.Error())
		return
	}
	if err := h.client.RemoveFlow(r.Context(), n.FlowID); err != nil {
		if errors.Is(err, flow.ErrState) {
			writeError(w, http.StatusConflict, "%s", err.Error())
			return
		}
		h.writeEngineError(w, r, err)
		return
	}
	h.log.Info("trellis monitor: flow removed", "job", n.ID, "flow", n.FlowID)
	writeJSON(w, http.StatusOK, map[string]any{"removed": n.ID, "flow": n.FlowID})
}

// retryFailed retries every failed job (of ?type= when given).
func (h *Handler) retryFailed(w http.ResponseWriter, r *http.Request) {
	f := JobFilter{States: []dag.State{dag.Failed}, Type: strings.TrimSpace(r.URL.Query().Get("type"))}
	jobs, _, truncated, err := h.collect(r.Context(), f)
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	retried, reopened := 0, 0
	errs := []string{}
	for _, j := range jobs {
		n, err := h.client.Retry(r.Context(), j.ID)
		switch {
		case err == nil:
			retried++
			reopened += n
		case errors.Is(err, flow.ErrState), errors.Is(err, flow.ErrNotFound):
			// retried through another job, or removed meanwhile
		default:
			errs = append(errs, j.ID+": "+err.Error())
		}
	}
	h.log.Info("trellis monitor: failed jobs retried", "retried", retried, "type", f.Type)
	writeJSON(w, http.StatusOK, map[string]any{"retried": retried, "reopened": reopened, "errors": errs, "truncated": truncated})
}

// clean deletes finished flows that finished longer ago than ?olderThan.
func (h *Handler) clean(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query().Get("olderThan")
	if v == "" {
		v = r.FormValue("olderThan")
	}
	age, err := time.ParseDuration(v)
	if err != nil || age < time.Second {
		writeError(w, http.StatusBadRequest, "olderThan: %q is not a duration of at least 1s (e.g. 1h, 30m)", v)
		return
	}
	ctx := r.Context()
	terminal := func() (int64, error) {
		counts, err := h.insp.Counts(ctx)
		if err != nil {
			return 0, err
		}
		var t int64
		for _, c := range counts {
			if c.State.Terminal() {
				t += c.N
			}
		}
		return t, nil
	}
	before, err := terminal()
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	if _, err := h.client.Trim(ctx, age); err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	prev, err := terminal()
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	removed := max(before-prev, 0)
	h.log.Info("trellis monitor: finished jobs cleaned", "olderThan", age, "removed", removed)
	writeJSON(w, http.StatusOK, map[string]any{"removed": removed, "olderThan": age.String()})
}

func (h *Handler) clear(w http.ResponseWriter, r *http.Request) {
	if !h.cfg.Development {
		writeError(w, http.StatusForbidden, "clear is a development-only action (monitor Config.Development / --dev)")
		return
	}
	n, err := h.client.Clear(r.Context())
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deletedKeys": n})
}

// EnqueueRequest is the body of POST /api/enqueue: the BullMQ system's
// addJobToQueue(message, options) plus dependencies.
type EnqueueRequest struct {
	Message json.RawMessage `json:"message"`
	Options *EnqueueOptions `json:"options,omitempty"`
	After   []string        `json:"after,omitempty"`
}

// EnqueueOptions are the per-job options; durations are milliseconds, as in
// the BullMQ system.
type EnqueueOptions struct {
	ID       string `json:"jobId,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
	Priority int    `json:"priority,omitempty"`
	Delay    int64  `json:"delay,omitempty"`
	Timeout  int64  `json:"timeout,omitempty"`
	Backoff  int64  `json:"backoff,omitempty"`
	Queue    string `json:"queue,omitempty"`
}

func (o *EnqueueOptions) nodeOpts() (*flow.NodeOpts, error) {
	if o == nil {
		return nil, nil
	}
	if o.Delay < 0 || o.Timeout < 0 || o.Backoff < 0 || o.Attempts < 0 {
		return nil, errors.New("options: delay, timeout, backoff and attempts must not be negative")
	}
	n := &flow.NodeOpts{ID: o.ID, Attempts: o.Attempts, Priority: o.Priority, Queue: o.Queue,
		Delay: time.Duration(o.Delay) * time.Millisecond, Timeout: time.Duration(o.Timeout) * time.Millisecond}
	if o.Backoff > 0 {
		b := flow.Exponential(time.Duration(o.Backoff) * time.Millisecond)
		n.Backoff = &b
	}
	return n, nil
}

func (h *Handler) enqueue(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Registry == nil {
		writeError(w, http.StatusNotImplemented, "enqueue needs a registry of message types (monitor Config.Registry)")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "body: over the limit of %d bytes", tooBig.Limit)
			return
		}
		writeError(w, http.StatusBadRequest, "body: %s", err.Error())
		return
	}
	var req EnqueueRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: %s", err.Error())
		return
	}
	if len(req.Message) == 0 {
		writeError(w, http.StatusBadRequest, "message: is missing")
		return
	}
	opts, err := req.Options.nodeOpts()
	if err != nil {
		writeError(w, http.StatusBadRequest, "%s", err.Error())
		return
	}
	job, err := h.client.AddJSON(r.Context(), h.cfg.Registry, req.Message, opts, req.After...)
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	status := http.StatusCreated
	if job.Existed {
		status = http.StatusOK
	}
	writeJSON(w, status, map[string]any{"jobId": job.ID, "state": job.State, "existed": job.Existed})
}

// FailureGroup is failed jobs of one type with one error message.
type FailureGroup struct {
	Type   string    `json:"type"`
	Error  string    `json:"error"`
	Count  int       `json:"count"`
	JobIDs []string  `json:"jobIds"` // up to 20, newest first
	LastAt time.Time `json:"lastAt"`
}

// failures groups failed jobs by type and error: the failed-job analysis.
func (h *Handler) failures(w http.ResponseWriter, r *http.Request) {
	jobs, scanned, truncated, err := h.collect(r.Context(), JobFilter{States: []dag.State{dag.Failed}})
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	groups := map[[2]string]*FailureGroup{}
	var order []*FailureGroup
	for _, j := range jobs {
		msg := j.Reason
		if j.Error != nil {
			msg = j.Error.Message
		}
		msg = clip.Text(msg, summaryError) // grouped by the start of the message
		k := [2]string{j.Type, msg}
		g := groups[k]
		if g == nil {
			g = &FailureGroup{Type: j.Type, Error: msg, LastAt: lastChange(j).UTC(), JobIDs: []string{}}
			groups[k] = g
			order = append(order, g)
		}
		g.Count++
		if len(g.JobIDs) < 20 {
			g.JobIDs = append(g.JobIDs, j.ID)
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return order[i].Count > order[j].Count })
	byType := map[string]int{}
	for _, j := range jobs {
		byType[j.Type]++
	}
	if order == nil {
		order = []*FailureGroup{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"total": len(jobs), "byType": byType, "groups": order, "scanned": scanned, "truncated": truncated})
}
