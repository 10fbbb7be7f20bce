package flow

import (
	"context"
	"errors"
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

// Indexed reports whether JobIDs can list the jobs in state st.
func (i *Inspector) Indexed(st dag.State) bool { return store.Indexed(st) }

// JobIDs lists up to limit jobs in state st (see Indexed) and how many
// there are, in O(limit): failed ones latest first, delayed ones soonest
// due, active ones soonest lease end, ready ones in the order they will be
// claimed. complete is false when the counters know of more than the index
// holds; ScanJobIDs then finds them all.
func (i *Inspector) JobIDs(ctx context.Context, st dag.State, limit int) (ids []string, total int64, complete bool, err error) {
	return i.c.store.StateIDs(ctx, st, limit)
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
