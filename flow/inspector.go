package flow

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/internal/store"
)

// Inspector reads what a namespace holds and does, for dashboards, tools
// and tests: one read API that the monitor, the CLI and flowtest share (in
// the spirit of asynq's Inspector). The Client has the control side
// (Cancel, Retry, Pause, SetLimit, RemoveFlow, Trim, Clear). Get one with
// Client.Inspector; it is safe for concurrent use.
type Inspector struct{ c *Client }

// Inspector returns the client's inspector.
func (c *Client) Inspector() *Inspector { return &Inspector{c: c} }

// Namespace is the namespace the inspector reads.
func (i *Inspector) Namespace() string { return i.c.cfg.Namespace }

// Counts reads the live per-state counters by queue and message type
// (finished jobs count until retention removes them).
func (i *Inspector) Counts(ctx context.Context) ([]dag.Count, error) { return i.c.store.Counts(ctx) }

// Jobs reads many jobs in one round trip; a missing one is nil.
func (i *Inspector) Jobs(ctx context.Context, ids []string) ([]*dag.Node, error) {
	return i.c.store.Nodes(ctx, ids)
}

// FlowStatus reads a flow's progress without reading its jobs.
func (i *Inspector) FlowStatus(ctx context.Context, flowID string) (dag.FlowStatus, error) {
	return i.c.store.FlowStatus(ctx, flowID)
}

// Events reads transitions after the stream ID after ("$" for new ones
// only, "0" for all kept), waiting up to block for some (0: no wait), and
// returns the ID to pass next time. The stream keeps about the last 20,000
// transitions; each job's own timeline is complete.
func (i *Inspector) Events(ctx context.Context, after string, count int64, block time.Duration) ([]dag.Event, string, error) {
	return i.c.store.Events(ctx, after, count, block)
}

// LastEventID is the newest stream ID, to follow events from now on.
func (i *Inspector) LastEventID(ctx context.Context) (string, error) {
	return i.c.store.LastEventID(ctx)
}

// Runners lists the runners that sent a heartbeat since the given time
// (zero: any), with what each says it serves.
func (i *Inspector) Runners(ctx context.Context, since time.Time) ([]dag.Heartbeat, error) {
	return i.c.store.Runners(ctx, since)
}

// OldestReady is when the longest-waiting ready job of queue became
// ready, or zero when none is.
func (i *Inspector) OldestReady(ctx context.Context, queue string) (time.Time, error) {
	return i.c.store.OldestReady(ctx, queue)
}

// Stalled counts active jobs whose lease has expired and that no runner
// has recovered yet.
func (i *Inspector) Stalled(ctx context.Context) (int64, error) {
	return i.c.store.Stalled(ctx, i.c.at())
}

// ListQuery selects the jobs Inspector.List pages through.
type ListQuery struct {
	States []dag.State // any of these; none: every state
	Queue  string      // "": any
	Type   string      // "": any
	// Match, when set, keeps only the jobs it accepts (a search). A page
	// then reads at most Budget jobs, so it may end with fewer than Limit
	// and a Next to go on from.
	Match  func(*dag.Node) bool
	Budget int    // jobs one page of a Match reads at most; default 1000
	After  string // JobPage.Next of the page before; "": the first page
	Limit  int    // jobs per page, 1 to MaxListLimit; default 50
}

// MaxListLimit bounds ListQuery.Limit.
const MaxListLimit = store.MaxListLimit

// ErrCursor is the error of a ListQuery.After that no listing returned.
var ErrCursor = store.ErrCursor

// JobPage is one page of a listing.
type JobPage struct {
	Jobs []*dag.Node
	// Next is the cursor of the next page ("" after the last). It stays
	// valid while jobs change: the next page starts after this page's last
	// job, wherever that job is now.
	Next string
	// Total is how many jobs of the query's states, queue and type there
	// are (before Match), from the per-state counters.
	Total   int64
	Scanned int // jobs read for this page
	// Complete is false when some jobs are in no index yet: ones written by
	// a Trellis without the state indexes, until Reindex puts them in or
	// retention removes them. ScanJobIDs finds every job.
	Complete bool
}

// List returns a page of the jobs q selects, in O(page) whatever the
// number of jobs kept: active jobs soonest lease end first, then ready
// ones in the order they will start, delayed ones soonest due, then
// blocked and finished ones latest change first. Each state and lane has
// its index, kept by the state machine.
func (i *Inspector) List(ctx context.Context, q ListQuery) (JobPage, error) {
	if q.Limit == 0 {
		q.Limit = 50
	}
	if q.Budget <= 0 {
		q.Budget = 1000
	}
	q.Budget = max(q.Budget, q.Limit)
	page := JobPage{Complete: true}
	after := q.After
	for {
		n := q.Limit - len(page.Jobs)
		if q.Match != nil { // read ahead: most jobs may not match
			n = min(max(n, 200), q.Budget-page.Scanned, store.MaxListLimit)
		}
		p, err := i.c.store.List(ctx, store.ListQuery{States: q.States, Queue: q.Queue, Type: q.Type, After: after, Limit: n})
		if err != nil {
			return JobPage{}, err
		}
		page.Total, page.Complete = p.Total, page.Complete && p.Complete
		ids := make([]string, len(p.Entries))
		for k, e := range p.Entries {
			ids[k] = e.ID
		}
		nodes, err := i.c.store.Nodes(ctx, ids)
		if err != nil {
			return JobPage{}, err
		}
		var stale []store.ListEntry
		for k, nd := range nodes {
			if nd == nil || nd.State != p.Entries[k].State {
				stale = append(stale, p.Entries[k])
			}
		}
		if len(stale) > 0 {
			// best effort: a job that just moved is kept; the page stands either way
			_, _ = i.c.store.Prune(ctx, stale)
		}
		for k, nd := range nodes {
			page.Scanned++
			after = p.Entries[k].Cursor
			if !q.keeps(nd) {
				continue
			}
			page.Jobs = append(page.Jobs, nd)
			if len(page.Jobs) == q.Limit {
				if k < len(nodes)-1 || p.Next != "" {
					page.Next = after
				}
				return page, nil
			}
		}
		if p.Next == "" {
			return page, nil
		}
		if page.Scanned >= q.Budget {
			page.Next = after
			return page, nil
		}
		after = p.Next
	}
}

// keeps says whether a listed job is one q asks for: it is (still) in
// one of q's states, of q's queue and type, and Match accepts it.
func (q ListQuery) keeps(n *dag.Node) bool {
	switch {
	case n == nil: // deleted since it was listed
		return false
	case len(q.States) > 0 && !slices.Contains(q.States, n.State):
		return false
	case q.Queue != "" && n.Queue != q.Queue, q.Type != "" && n.Type != q.Type:
		return false
	}
	return q.Match == nil || q.Match(n)
}

// Reindex puts every job missing from its state's index into it: jobs a
// Trellis without the state indexes wrote or moved, which List does not
// find (JobPage.Complete is false) until then. It reads every job once, in
// batches, and returns how many it added; running it again adds none. It
// also deletes such a Trellis's failed set: run it once no runner of an
// older Trellis is left.
func (i *Inspector) Reindex(ctx context.Context) (int, error) {
	added := 0
	err := i.c.store.ScanNodeIDs(ctx, 500, func(ids []string) (bool, error) {
		n, err := i.c.store.Reindex(ctx, i.c.at(), ids)
		added += n
		return true, err
	})
	if err != nil {
		return added, err
	}
	return added, i.c.store.DropOldFailed(ctx)
}

// ScanJobIDs calls fn with the IDs of every job of the namespace, batch at
// a time, until fn says stop (false) or fails.
func (i *Inspector) ScanJobIDs(ctx context.Context, batch int, fn func(ids []string) (more bool, err error)) error {
	return i.c.store.ScanNodeIDs(ctx, batch, fn)
}

// RateUsed is how many jobs of message type typ started in the current
// window of its rate limit, of length per.
func (i *Inspector) RateUsed(ctx context.Context, typ string, per time.Duration) (int64, error) {
	return i.c.store.RateUsed(ctx, typ, per, i.c.at())
}

// MaxmemoryPolicy is Redis's eviction policy (it must be noeviction).
func (i *Inspector) MaxmemoryPolicy(ctx context.Context) (string, error) {
	res, err := i.c.store.Redis().ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		return "", err
	}
	p, ok := res["maxmemory-policy"]
	if !ok {
		return "", errors.New("flow: CONFIG GET returned no maxmemory-policy")
	}
	return p, nil
}

// Ping checks that Redis answers.
func (i *Inspector) Ping(ctx context.Context) error { return i.c.store.Redis().Ping(ctx).Err() }

// Paused lists the paused queues.
func (i *Inspector) Paused(ctx context.Context) ([]string, error) { return i.c.store.Paused(ctx) }

// DueAt is when the delayed job id becomes ready; ok is false when it is
// not delayed.
func (i *Inspector) DueAt(ctx context.Context, id string) (due time.Time, ok bool, err error) {
	return i.c.store.DueAt(ctx, id)
}
