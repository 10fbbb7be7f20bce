package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/internal/clip"
)

// JobView is a job as the API shows it.
type JobView struct {
	ID          string           `json:"id"`
	FlowID      string           `json:"flowId"`
	Type        string           `json:"type"`
	Label       string           `json:"label,omitempty"`
	Queue       string           `json:"queue"`
	State       dag.State        `json:"state"`
	Attempt     int              `json:"attempt"`
	MaxAttempts int              `json:"maxAttempts"`
	Priority    int              `json:"priority"`
	Policy      dag.Policy       `json:"policy,omitempty"`
	When        string           `json:"when,omitempty"`
	Stalls      int              `json:"stalls"`
	Parents     []string         `json:"parents"`
	Children    []string         `json:"children"`
	Payload     json.RawMessage  `json:"payload,omitempty"`
	Result      json.RawMessage  `json:"result,omitempty"`
	Error       *dag.ErrorInfo   `json:"error,omitempty"`
	Errors      []dag.ErrorInfo  `json:"errors,omitempty"` // of each failed attempt, oldest first; in full views only
	Reason      string           `json:"reason,omitempty"`
	Cause       string           `json:"cause,omitempty"`
	Worker      string           `json:"worker,omitempty"`
	Batch       string           `json:"batch,omitempty"` // the batch its last reported run was part of
	Expanded    bool             `json:"expanded,omitempty"`
	CreatedAt   *time.Time       `json:"createdAt,omitempty"`
	StartedAt   *time.Time       `json:"startedAt,omitempty"`
	FinishedAt  *time.Time       `json:"finishedAt,omitempty"`
	UpdatedAt   *time.Time       `json:"updatedAt,omitempty"`
	DurationMS  *float64         `json:"durationMs,omitempty"`
	Timeline    []dag.Transition `json:"timeline,omitempty"`
	Logs        string           `json:"logs,omitempty"`
	// The job page's: every run, the parents and children with their
	// states, and why a job not yet running waits.
	Attempts   []AttemptView `json:"attempts,omitempty"`
	ParentJobs []RelatedView `json:"parentJobs,omitempty"`
	ChildJobs  []RelatedView `json:"childJobs,omitempty"`
	// RelatedMore counts the parents and children past the first 200 of each, not listed.
	RelatedMore int      `json:"relatedMore,omitempty"`
	WaitsFor    []string `json:"waitsFor,omitempty"`
}

func tp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// summaryError is the most of an error message a listing shows.
const summaryError = 300

// toView turns a node into its API form: a summary, whose size does not
// grow with the job's (no payload, result, timeline, logs or stack; the
// start of the error message); full is everything.
func toView(n *dag.Node, full bool) JobView {
	v := JobView{
		ID: n.ID, FlowID: n.FlowID, Type: n.Type, Label: n.Label, Queue: n.Queue, State: n.State,
		Attempt: n.Attempt, MaxAttempts: n.MaxAttempts, Priority: n.Priority, Policy: n.Policy, When: n.When,
		Stalls: n.Stalls, Parents: n.Parents, Children: n.Children, Error: n.Error,
		Reason: n.Reason, Cause: n.Cause, Worker: n.Worker, Batch: n.Batch, Expanded: n.Expanded,
		CreatedAt: tp(n.CreatedAt()), StartedAt: tp(n.StartedAt()), FinishedAt: tp(n.FinishedAt()),
		UpdatedAt: tp(lastChange(n)),
	}
	if v.Parents == nil {
		v.Parents = []string{}
	}
	if v.Children == nil {
		v.Children = []string{}
	}
	if s, f := n.StartedAt(), n.FinishedAt(); !s.IsZero() && !f.IsZero() && !f.Before(s) {
		d := ms(f.Sub(s))
		v.DurationMS = &d
	}
	if !full && n.Error != nil { // a summary: the message's start, no stack
		v.Error = &dag.ErrorInfo{Message: clip.Text(n.Error.Message, summaryError), Attempt: n.Error.Attempt}
	}
	if full {
		v.Logs = n.Logs
		v.Payload, v.Result, v.Timeline = n.Payload, n.Result, n.Timeline
		v.Errors, v.Attempts = n.Errors, attempts(n)
		if len(v.Payload) > 0 && !json.Valid(v.Payload) {
			v.Payload = nil
		}
		if len(v.Result) > 0 && !json.Valid(v.Result) {
			v.Result = nil
		}
	}
	return v
}

func lastChange(n *dag.Node) time.Time {
	if len(n.Timeline) == 0 {
		return time.Time{}
	}
	return n.Timeline[len(n.Timeline)-1].At
}

func (h *Handler) jobDetail(w http.ResponseWriter, r *http.Request) {
	n, err := h.client.Job(r.Context(), r.PathValue("id"))
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	v, err := h.detail(r.Context(), n)
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// FlowView is a flow with its nodes (in topological order) and edges.
type FlowView struct {
	ID     string            `json:"id"`
	Done   bool              `json:"done"`
	Counts map[dag.State]int `json:"counts"`
	Nodes  []JobView         `json:"nodes"`
	Edges  [][2]string       `json:"edges"`
	Graphs map[string]string `json:"graphs,omitempty"`
}

func (h *Handler) flowDetail(w http.ResponseWriter, r *http.Request) {
	f, err := h.client.Flow(r.Context(), r.PathValue("id"))
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toFlowView(f))
}

func toFlowView(f *dag.Flow) FlowView {
	v := FlowView{ID: f.ID, Done: f.Done(), Counts: f.Counts(), Nodes: make([]JobView, len(f.Nodes)), Edges: [][2]string{}}
	in := make(map[string]bool, len(f.Nodes))
	for _, n := range f.Nodes {
		in[n.ID] = true
	}
	for i, n := range f.Nodes {
		v.Nodes[i] = toView(n, false)
		for _, c := range n.Children {
			if in[c] {
				v.Edges = append(v.Edges, [2]string{n.ID, c})
			}
		}
	}
	return v
}

// JobList is the body of /api/jobs.
type JobList struct {
	Jobs   []JobView `json:"jobs"`
	Total  int       `json:"total"`  // matches, before paging
	Offset int       `json:"offset"` // of the first job returned
	Limit  int       `json:"limit"`
	// Scanned is how many jobs were read; Truncated says the scan stopped at
	// Config.ScanLimit, so Total is a lower bound.
	Scanned   int  `json:"scanned"`
	Truncated bool `json:"truncated"`
}

// JobFilter selects jobs in a listing.
type JobFilter struct {
	States []dag.State // any of these; empty: all
	Type   string
	Queue  string
	Flow   string
	Text   string // case-insensitive substring of ID, type, payload, error or reason
}

func (f JobFilter) match(n *dag.Node) bool {
	if len(f.States) > 0 {
		ok := false
		for _, s := range f.States {
			ok = ok || n.State == s
		}
		if !ok {
			return false
		}
	}
	if f.Type != "" && n.Type != f.Type || f.Queue != "" && n.Queue != f.Queue || f.Flow != "" && n.FlowID != f.Flow {
		return false
	}
	if f.Text == "" {
		return true
	}
	t := strings.ToLower(f.Text)
	hay := []string{n.ID, n.FlowID, n.Type, string(n.Payload), n.Reason}
	if n.Error != nil {
		hay = append(hay, n.Error.Message)
	}
	for _, s := range hay {
		if strings.Contains(strings.ToLower(s), t) {
			return true
		}
	}
	return false
}

func parseFilter(q map[string][]string) (JobFilter, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	f := JobFilter{Type: get("type"), Queue: get("queue"), Flow: get("flow"), Text: get("q")}
	if s := get("state"); s != "" {
		for _, part := range strings.Split(s, ",") {
			st := dag.State(strings.TrimSpace(part))
			switch st {
			case "waiting":
				st = dag.Ready
			case "completed":
				st = dag.Succeeded
			}
			known := false
			for _, k := range dag.States {
				known = known || k == st
			}
			if !known {
				return f, fmt.Errorf("state: %q is not one of %v", part, dag.States)
			}
			f.States = append(f.States, st)
		}
	}
	return f, nil
}

func (h *Handler) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilter(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%s", err.Error())
		return
	}
	offset, ok := intParam(w, q.Get("offset"), "offset", 0, 0, 1<<30)
	if !ok {
		return
	}
	limit, ok := intParam(w, q.Get("limit"), "limit", 50, 1, 500)
	if !ok {
		return
	}
	all, scanned, truncated, err := h.scanJobs(r.Context(), f)
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	out := JobList{Jobs: []JobView{}, Total: len(all), Offset: offset, Limit: limit, Scanned: scanned, Truncated: truncated}
	for i := offset; i < len(all) && i < offset+limit; i++ {
		out.Jobs = append(out.Jobs, toView(all[i], false))
	}
	writeJSON(w, http.StatusOK, out)
}

// scanJobs reads every job of the namespace (up to Config.ScanLimit) and
// returns the matching ones, most recently changed first.
//
// A filter on ready, delayed, active or failed jobs only reads those: the
// engine keeps them in sorted sets (Store.StateIDs). For any other filter
// the engine has per-state counters but no per-state index, so this SCANs
// the node hashes (Store.ScanNodeIDs) and reads them in pipelined batches
// through Store.Nodes: O(jobs kept) work per call. Retention bounds it.
func (h *Handler) scanJobs(ctx context.Context, f JobFilter) (matches []*dag.Node, scanned int, truncated bool, err error) {
	limit := h.cfg.ScanLimit
	ids, total, ok, err := h.indexedJobs(ctx, f.States, limit)
	if err != nil {
		return nil, 0, false, err
	}
	if ok {
		nodes, err := h.insp.Jobs(ctx, ids)
		if err != nil {
			return nil, 0, false, err
		}
		for _, n := range nodes {
			if n != nil && f.match(n) {
				matches = append(matches, n)
			}
		}
		sortByLastChange(matches)
		return matches, len(ids), total > int64(len(ids)), nil
	}
	err = h.insp.ScanJobIDs(ctx, 500, func(ids []string) (bool, error) {
		if room := limit - scanned; len(ids) > room {
			ids, truncated = ids[:room], true
		}
		scanned += len(ids)
		nodes, err := h.insp.Jobs(ctx, ids)
		if err != nil {
			return false, err
		}
		for _, n := range nodes {
			if n != nil && f.match(n) {
				matches = append(matches, n)
			}
		}
		return !truncated, nil
	})
	if err != nil {
		return nil, scanned, truncated, err
	}
	sortByLastChange(matches)
	return matches, scanned, truncated, nil
}

// indexedJobs lists up to limit jobs of states from the engine's sets, and
// how many there are; ok is false when one of states is not indexed, or an
// index is incomplete, and the jobs have to be scanned instead.
func (h *Handler) indexedJobs(ctx context.Context, states []dag.State, limit int) (ids []string, total int64, ok bool, err error) {
	if len(states) == 0 {
		return nil, 0, false, nil
	}
	for _, st := range states {
		if !h.insp.Indexed(st) {
			return nil, 0, false, nil
		}
	}
	seen := map[string]bool{} // a job that moved between two reads is listed once
	for i, st := range states {
		if slices.Contains(states[:i], st) {
			continue
		}
		some, n, complete, err := h.insp.JobIDs(ctx, st, max(limit-len(ids), 1))
		if err != nil || !complete {
			return nil, 0, false, err
		}
		for _, id := range some {
			if len(ids) < limit && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		total += n
	}
	return ids, total, true, nil
}

// sortByLastChange orders jobs most recently changed first.
func sortByLastChange(jobs []*dag.Node) {
	sort.SliceStable(jobs, func(i, j int) bool {
		a, b := lastChange(jobs[i]), lastChange(jobs[j])
		if !a.Equal(b) {
			return a.After(b)
		}
		return jobs[i].ID < jobs[j].ID
	})
}

// ViewJob is a job as the API shows it, with payload, result and timeline.
func ViewJob(n *dag.Node) JobView { return toView(n, true) }

// ViewFlow is a flow as the API shows it.
func ViewFlow(f *dag.Flow) FlowView { return toFlowView(f) }
