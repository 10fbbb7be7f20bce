package monitor

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/trellisflow/trellis/dag"
)

// RelatedView is a parent or child of a job, with its state; State is
// empty for a job that no longer exists.
type RelatedView struct {
	ID    string    `json:"id"`
	Type  string    `json:"type,omitempty"`
	State dag.State `json:"state,omitempty"`
}

// relatedShown bounds the parents, and the children, a job page reads.
const relatedShown = 200

// detail is the job's full view with what the job page shows beside it:
// its parents and children with their states (one read) and, for a job not
// yet running, why it waits.
func (h *Handler) detail(ctx context.Context, n *dag.Node) (JobView, error) {
	v := toView(n, true)
	parents, children := n.Parents[:min(len(n.Parents), relatedShown)], n.Children[:min(len(n.Children), relatedShown)]
	v.RelatedMore = len(n.Parents) + len(n.Children) - len(parents) - len(children)
	ids := append(slices.Clone(parents), children...)
	nodes, err := h.insp.Jobs(ctx, ids)
	if err != nil {
		return v, err
	}
	rel := make([]RelatedView, len(ids))
	for i, id := range ids {
		rel[i] = RelatedView{ID: id}
		if i < len(nodes) && nodes[i] != nil {
			rel[i].Type, rel[i].State = nodes[i].Type, nodes[i].State
		}
	}
	v.ParentJobs, v.ChildJobs = rel[:len(parents)], rel[len(parents):]
	if n.State == dag.Blocked || n.State == dag.Ready || n.State == dag.Delayed {
		if v.WaitsFor, err = h.waiting(ctx, n, v.ParentJobs); err != nil {
			return v, err
		}
	}
	return v, nil
}

// waiting says why n, blocked, ready or delayed, has not started.
func (h *Handler) waiting(ctx context.Context, n *dag.Node, parents []RelatedView) ([]string, error) {
	why := []string{}
	if n.State == dag.Blocked {
		for _, p := range parents {
			switch {
			case p.State == "":
				why = append(why, fmt.Sprintf("parent %s no longer exists", p.ID))
			case !p.State.Terminal():
				why = append(why, fmt.Sprintf("parent %s is %s", p.ID, p.State))
			}
		}
		if more := len(n.Parents) - len(parents); more > 0 {
			why = append(why, fmt.Sprintf("%d unfinished parents in all (%d not shown)", n.Pending, more))
		}
		if n.Expanded {
			why = append(why, "its sub-graph is unfinished")
		}
	}
	if n.State == dag.Delayed {
		due, ok, err := h.insp.DueAt(ctx, n.ID)
		if err != nil {
			return nil, err
		}
		if ok {
			why = append(why, "delayed until "+due.UTC().Format(time.RFC3339Nano))
		}
	}
	paused, err := h.insp.Paused(ctx)
	if err != nil {
		return nil, err
	}
	if slices.Contains(paused, n.Queue) {
		why = append(why, fmt.Sprintf("queue %s is paused", n.Queue))
	}
	limits, err := h.client.Limits(ctx)
	if err != nil {
		return nil, err
	}
	if l, ok := limits[n.Type]; ok {
		if why, err = h.limitReasons(ctx, why, n.Type, l); err != nil {
			return nil, err
		}
	}
	if n.When != "" {
		why = append(why, fmt.Sprintf("condition %q is evaluated when a runner claims it", n.When))
	}
	now, err := h.client.Now(ctx) // Redis's clock: the one heartbeats are stamped with
	if err != nil {
		return nil, err
	}
	runners, err := h.insp.Runners(ctx, now.Add(-h.cfg.Thresholds.RunnerTimeout))
	if err != nil {
		return nil, err
	}
	served := slices.ContainsFunc(runners, func(rn dag.Heartbeat) bool {
		return rn.Info == nil || rn.Info.Serves(n.Queue, n.Type) // a runner without a record may serve anything
	})
	if !served {
		why = append(why, fmt.Sprintf("no live runner serves queue %s and type %s", n.Queue, n.Type))
	}
	return why, nil
}

// limitReasons adds typ's limits, with how much of each is in use.
func (h *Handler) limitReasons(ctx context.Context, why []string, typ string, l dag.Limit) ([]string, error) {
	if l.Concurrency > 0 {
		counts, err := h.insp.Counts(ctx)
		if err != nil {
			return nil, err
		}
		var active int64
		for _, c := range counts {
			if c.State == dag.Active && c.Type == typ {
				active += c.N
			}
		}
		why = append(why, fmt.Sprintf("type %s has a concurrency limit of %d (%d active)", typ, l.Concurrency, active))
	}
	if l.Rate > 0 {
		used, err := h.insp.RateUsed(ctx, typ, l.Per)
		if err != nil {
			return nil, err
		}
		why = append(why, fmt.Sprintf("type %s has a rate limit of %d per %s (%d started in this window)", typ, l.Rate, l.Per, used))
	}
	return why, nil
}
