package flow

import (
	"context"
	"math"
	"sort"
	"time"

	"github.com/trellisflow/trellis/dag"
)

// StatsOpts selects what Stats returns.
type StatsOpts struct {
	// IncludeJobs adds the most recently changed jobs. Default false.
	IncludeJobs bool
	// Limit is how many recent jobs. Default 10.
	Limit int
	// Window is the span of the rates. Default 60 minutes, at most 120.
	Window time.Duration
}

// StateCounts counts jobs per state.
type StateCounts map[dag.State]int64

// Total is the number of jobs over all states.
func (s StateCounts) Total() int64 {
	var t int64
	for _, n := range s {
		t += n
	}
	return t
}

// Stats is the BullMQ system's getQueueStats, for the whole namespace.
type Stats struct {
	Counts  StateCounts            `json:"counts"`
	ByQueue map[string]StateCounts `json:"byQueue"`
	ByType  map[string]StateCounts `json:"byType"`
	// ProcessingRate is finished runs per minute over the window.
	ProcessingRate float64 `json:"processingRate"`
	// ErrorRate is the percentage of finished runs that failed for good.
	ErrorRate   float64       `json:"errorRate"`
	Retries     int64         `json:"retries"`
	AvgDuration time.Duration `json:"avgDuration"`
	P95Duration time.Duration `json:"p95Duration"`
	Window      time.Duration `json:"window"`
	Paused      []string      `json:"paused"`
	Recent      []*dag.Node   `json:"recent,omitempty"`
}

// Stats counts jobs per state, queue and type and measures rates. The p95
// duration is an estimate from the per-minute histogram (dag.DurationBuckets),
// interpolated within the bucket it falls in; past the last bound it is
// that bound.
func (c *Client) Stats(ctx context.Context, opts *StatsOpts) (*Stats, error) {
	var o StatsOpts
	if opts != nil {
		o = *opts
	}
	if o.Limit <= 0 {
		o.Limit = 10
	}
	if o.Window <= 0 {
		o.Window = time.Hour
	}
	if o.Window > 2*time.Hour {
		o.Window = 2 * time.Hour
	}
	counts, err := c.store.Counts(ctx)
	if err != nil {
		return nil, err
	}
	s := &Stats{Counts: StateCounts{}, ByQueue: map[string]StateCounts{}, ByType: map[string]StateCounts{}, Window: o.Window}
	for _, st := range dag.States {
		s.Counts[st] = 0
	}
	for _, k := range counts {
		s.Counts[k.State] += k.N
		if s.ByQueue[k.Queue] == nil {
			s.ByQueue[k.Queue] = StateCounts{}
		}
		s.ByQueue[k.Queue][k.State] += k.N
		if s.ByType[k.Type] == nil {
			s.ByType[k.Type] = StateCounts{}
		}
		s.ByType[k.Type][k.State] += k.N
	}
	minutes := int(math.Ceil(o.Window.Minutes()))
	ms, err := c.store.Minutes(ctx, c.at(), minutes)
	if err != nil {
		return nil, err
	}
	var ok, failed, runs int64
	var total time.Duration
	buckets := make([]int64, len(dag.DurationBuckets)+1)
	for _, m := range ms {
		for _, n := range m.OK {
			ok += n
		}
		for _, n := range m.Failed {
			failed += n
		}
		for _, n := range m.Retried {
			s.Retries += n
		}
		runs += m.Runs
		total += m.Total
		for i, b := range m.Buckets {
			buckets[i] += b
		}
	}
	s.ProcessingRate = float64(ok+failed) / float64(minutes)
	if ok+failed > 0 {
		s.ErrorRate = 100 * float64(failed) / float64(ok+failed)
	}
	if runs > 0 {
		s.AvgDuration = total / time.Duration(runs)
	}
	s.P95Duration = quantile(buckets, 0.95)
	if s.Paused, err = c.store.Paused(ctx); err != nil {
		return nil, err
	}
	if o.IncludeJobs {
		if s.Recent, err = c.recent(ctx, o.Limit); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// recent reads the jobs of the newest transitions, newest first.
func (c *Client) recent(ctx context.Context, limit int) ([]*dag.Node, error) {
	events, err := c.store.RecentEvents(ctx, int64(limit)*4)
	if err != nil {
		return nil, err
	}
	var ids []string
	seen := map[string]bool{}
	for _, e := range events {
		if !seen[e.Node] {
			seen[e.Node] = true
			ids = append(ids, e.Node)
		}
		if len(ids) == limit {
			break
		}
	}
	nodes, err := c.store.Nodes(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]*dag.Node, 0, len(nodes))
	for _, n := range nodes {
		if n != nil {
			out = append(out, n)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return lastChange(out[i]).After(lastChange(out[j]))
	})
	return out, nil
}

// quantile estimates the q-quantile of the run durations in a histogram
// over dag.DurationBuckets as Prometheus's histogram_quantile does: linear
// between the edges of the bucket it falls in, and the last bound when it
// falls past that. It is 0 for an empty histogram.
func quantile(buckets []int64, q float64) time.Duration {
	var n int64
	for _, b := range buckets {
		n += b
	}
	if n == 0 {
		return 0
	}
	rank, below := q*float64(n), int64(0)
	for i, b := range buckets {
		if float64(below+b) < rank || b == 0 {
			below += b
			continue
		}
		if i == len(dag.DurationBuckets) {
			return dag.DurationBuckets[i-1]
		}
		var lo time.Duration
		if i > 0 {
			lo = dag.DurationBuckets[i-1]
		}
		hi := dag.DurationBuckets[i]
		return lo + time.Duration(math.Round(float64(hi-lo)*(rank-float64(below))/float64(b)))
	}
	return dag.DurationBuckets[len(dag.DurationBuckets)-1]
}

func lastChange(n *dag.Node) time.Time {
	if len(n.Timeline) == 0 {
		return time.Time{}
	}
	return n.Timeline[len(n.Timeline)-1].At
}
