package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/trellisflow/trellis/dag"
)

// maxBulk bounds the IDs of one bulk action, so one request stays a short
// run of engine calls.
const maxBulk = 1000

// BulkRequest is the body of POST /api/jobs/bulk.
type BulkRequest struct {
	// Action is retry, cancel or remove (remove needs Config.Development).
	Action string   `json:"action"`
	IDs    []string `json:"ids"`
}

// BulkResponse lists each ID's outcome, in the order asked (an ID given
// twice is acted on once).
type BulkResponse struct {
	Action  string       `json:"action"`
	OK      int          `json:"ok"`
	Failed  int          `json:"failed"`
	Results []BulkResult `json:"results"`
}

// BulkResult is one job's outcome: ok, or the error that stopped it.
type BulkResult struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

func (h *Handler) bulkJobs(w http.ResponseWriter, r *http.Request) {
	var req BulkRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: %s", err.Error())
		return
	}
	var act func(ctx context.Context, n *dag.Node) error
	switch req.Action {
	case "retry":
		act = func(ctx context.Context, n *dag.Node) error { _, err := h.client.Retry(ctx, n.ID); return err }
	case "cancel":
		act = func(ctx context.Context, n *dag.Node) error {
			_, err := h.client.Cancel(ctx, n.ID, "cancelled from the monitor")
			return err
		}
	case "remove":
		if !h.cfg.Development {
			writeError(w, http.StatusForbidden, "remove is a development-only action (monitor Config.Development / --dev)")
			return
		}
		removed := map[string]bool{} // flows removed by an earlier ID of this request
		act = func(ctx context.Context, n *dag.Node) error {
			if removed[n.FlowID] {
				return nil
			}
			if err := removable(n); err != nil {
				return err
			}
			if err := h.client.RemoveFlow(ctx, n.FlowID); err != nil {
				return err
			}
			removed[n.FlowID] = true
			return nil
		}
	default:
		writeError(w, http.StatusBadRequest, "action: %q is not retry, cancel or remove", req.Action)
		return
	}
	switch {
	case len(req.IDs) == 0:
		writeError(w, http.StatusBadRequest, "ids: none given")
		return
	case len(req.IDs) > maxBulk:
		writeError(w, http.StatusBadRequest, "ids: %d given, over the limit of %d per request", len(req.IDs), maxBulk)
		return
	}
	ids := make([]string, 0, len(req.IDs))
	seen := make(map[string]bool, len(req.IDs))
	for _, id := range req.IDs {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	ctx := r.Context()
	nodes, err := h.insp.Jobs(ctx, ids) // one read: a removed flow's later jobs are known still
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	out := BulkResponse{Action: req.Action, Results: make([]BulkResult, len(ids))}
	for i, id := range ids {
		res := BulkResult{ID: id, OK: true}
		if nodes[i] == nil {
			res.OK, res.Error = false, fmt.Sprintf("job %q not found", id)
		} else if err := act(ctx, nodes[i]); err != nil {
			res.OK, res.Error = false, err.Error()
		}
		if res.OK {
			out.OK++
		} else {
			out.Failed++
		}
		out.Results[i] = res
	}
	h.log.Info("trellis monitor: bulk action", "action", req.Action, "ok", out.OK, "failed", out.Failed)
	writeJSON(w, http.StatusOK, out)
}

// removable says why a job's flow cannot be removed: the job is unfinished.
func removable(n *dag.Node) error {
	if !n.State.Terminal() {
		return fmt.Errorf("job %q is %s; cancel it before removing it", n.ID, n.State)
	}
	return nil
}
