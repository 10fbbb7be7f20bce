package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
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

// JobList is the body of /api/jobs: one page.
type JobList struct {
	Jobs []JobView `json:"jobs"`
	// Total is how many jobs the filter's states, queue and type select. A
	// search (q, flow) finds some of them: its Total is the jobs it found
	// when it ended on its first page, else -1 (not known).
	Total int64 `json:"total"`
	Limit int   `json:"limit"`
	// Next is the ?cursor= of the next page; empty after the last.
	Next string `json:"next,omitempty"`
	// Scanned is how many jobs were read for the page; Truncated says a
	// scan (of jobs in no index yet) stopped at Config.ScanLimit.
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

// searches says whether f looks for jobs by more than their states, queue
// and type, which the indexes select by.
func (f JobFilter) searches() bool { return f.Text != "" || f.Flow != "" }

// listQuery is the Inspector's listing of the jobs f selects.
func (f JobFilter) listQuery() flow.ListQuery {
	lq := flow.ListQuery{States: f.States, Queue: f.Queue, Type: f.Type}
	if f.searches() {
		lq.Match = f.match
	}
	return lq
}

// keepsByID says whether job n, found by its ID, passes f's other parts.
func (f JobFilter) keepsByID(n *dag.Node) bool {
	g := f
	g.Text = ""
	return g.match(n)
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
	if q.Get("offset") != "" {
		writeError(w, http.StatusBadRequest, "offset: pages go by ?cursor=, the next of the page before")
		return
	}
	limit, ok := intParam(w, q.Get("limit"), "limit", 50, 1, 500)
	if !ok {
		return
	}
	list, err := h.listPage(r.Context(), f, q.Get("cursor"), limit)
	if err != nil {
		if errors.Is(err, flow.ErrCursor) {
			writeError(w, http.StatusBadRequest, "cursor: %s", err.Error())
			return
		}
		h.writeEngineError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// scanCursor starts the cursors of a listing served by a scan (see scanJobs).
const scanCursor = "scan:"

// listPage reads one page of the jobs f selects from the engine's indexes
// (Inspector.List), or, while some jobs are in no index yet, from a scan.
func (h *Handler) listPage(ctx context.Context, f JobFilter, cursor string, limit int) (JobList, error) {
	out := JobList{Jobs: []JobView{}, Limit: limit}
	search := f.searches()
	if off, ok := strings.CutPrefix(cursor, scanCursor); ok {
		n, err := strconv.Atoi(off)
		if err != nil || n < 0 {
			return out, fmt.Errorf("%w: %q", flow.ErrCursor, cursor)
		}
		return h.scanPage(ctx, f, n, limit)
	}
	if f.Text != "" && cursor == "" { // a job's ID: that job
		if n, err := h.client.Job(ctx, f.Text); err == nil && f.keepsByID(n) {
			out.Jobs, out.Total, out.Scanned = append(out.Jobs, toView(n, false)), 1, 1
			return out, nil
		}
	}
	lq := f.listQuery()
	lq.After, lq.Limit = cursor, limit
	p, err := h.insp.List(ctx, lq)
	if err != nil {
		return out, err
	}
	if !p.Complete {
		return h.scanPage(ctx, f, 0, limit)
	}
	for _, n := range p.Jobs {
		out.Jobs = append(out.Jobs, toView(n, false))
	}
	out.Total, out.Next, out.Scanned = p.Total, p.Next, p.Scanned
	if search {
		out.Total = -1
		if cursor == "" && p.Next == "" {
			out.Total = int64(len(p.Jobs))
		}
	}
	return out, nil
}

// scanPage is the page from offset of a scan of every job (scanJobs).
func (h *Handler) scanPage(ctx context.Context, f JobFilter, offset, limit int) (JobList, error) {
	all, scanned, truncated, err := h.scanJobs(ctx, f)
	if err != nil {
		return JobList{}, err
	}
	out := JobList{Jobs: []JobView{}, Total: int64(len(all)), Limit: limit, Scanned: scanned, Truncated: truncated}
	for i := offset; i < len(all) && i < offset+limit; i++ {
		out.Jobs = append(out.Jobs, toView(all[i], false))
	}
	if offset+limit < len(all) {
		out.Next = scanCursor + strconv.Itoa(offset+limit)
	}
	return out, nil
}

// collect reads the jobs f selects, up to Config.ScanLimit of them, for
// the actions and analyses over many jobs (failures, retry-failed).
func (h *Handler) collect(ctx context.Context, f JobFilter) (jobs []*dag.Node, scanned int, truncated bool, err error) {
	lq := f.listQuery()
	for {
		lq.Limit = min(flow.MaxListLimit, h.cfg.ScanLimit-scanned)
		if lq.Limit <= 0 {
			return jobs, scanned, true, nil
		}
		p, err := h.insp.List(ctx, lq)
		if err != nil {
			return nil, 0, false, err
		}
		if !p.Complete {
			return h.scanJobs(ctx, f)
		}
		jobs, scanned = append(jobs, p.Jobs...), scanned+p.Scanned
		if p.Next == "" {
			return jobs, scanned, false, nil
		}
		lq.After = p.Next
	}
}

// scanJobs reads every job of the namespace (up to Config.ScanLimit) and
// returns the matching ones, most recently changed first. It serves the
// listings while some jobs are in no index (written by a Trellis without
// the state indexes, until `trellis reindex` or retention): it SCANs the node
// hashes (Store.ScanNodeIDs) and reads them in pipelined batches, O(jobs
// kept) per call.
func (h *Handler) scanJobs(ctx context.Context, f JobFilter) (matches []*dag.Node, scanned int, truncated bool, err error) {
	limit := h.cfg.ScanLimit
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
