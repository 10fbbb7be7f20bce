package flow

import (
	"context"
	"sort"
	"time"

	"github.com/trellisflow/trellis/dag"
)

// SeriesOpts selects the lane and span of Series.
type SeriesOpts struct {
	// Queue limits the series to one queue. Default all queues.
	Queue string
	// Type limits the series to one message type. Default all types.
	Type string
	// Minutes is how many minutes, the current one last. Default 60, at
	// most 120 (the minute stats expire after two hours).
	Minutes int
}

// MinuteStats are one minute's finished runs.
type MinuteStats struct {
	Start time.Time `json:"start"`
	// Finished counts runs that ended their job: succeeded or failed for good.
	Finished int64 `json:"finished"`
	// Failed counts runs that failed for good; Retried those that will run again.
	Failed  int64 `json:"failed"`
	Retried int64 `json:"retried"`
	// P50 and P95 estimate the median and 95th percentile of the finished
	// runs' durations from the minute's histogram, as Stats' p95; zero
	// when none finished.
	P50 time.Duration `json:"p50"`
	P95 time.Duration `json:"p95"`
	// Sampled says a runner sampled the backlog in this minute; Ready and
	// Delayed are that sample. No runner, no sample.
	Sampled bool  `json:"sampled"`
	Ready   int64 `json:"ready"`
	Delayed int64 `json:"delayed"`
}

// Series is a lane's minute stats over time, oldest minute first.
type Series struct {
	Queue   string        `json:"queue"`
	Type    string        `json:"type"`
	Minutes []MinuteStats `json:"minutes"`
	// Ready and Delayed are the lane's backlog now, from the per-state
	// counters (the minutes have the runners' samples of it).
	Ready   int64 `json:"ready"`
	Delayed int64 `json:"delayed"`
	// Queues and Types are those with jobs now or runs in the span, sorted.
	Queues []string `json:"queues"`
	Types  []string `json:"types"`
}

// Series reads the minute stats of a queue and message type (or all of
// them) over the last minutes. Filtered series count the runs by lane,
// which runners from before lanes were kept did not record.
func (i *Inspector) Series(ctx context.Context, opts *SeriesOpts) (*Series, error) {
	var o SeriesOpts
	if opts != nil {
		o = *opts
	}
	if o.Minutes <= 0 {
		o.Minutes = 60
	}
	o.Minutes = min(o.Minutes, 120)
	c := i.c
	ms, err := c.store.Minutes(ctx, c.at(), o.Minutes)
	if err != nil {
		return nil, err
	}
	counts, err := c.store.Counts(ctx)
	if err != nil {
		return nil, err
	}
	s := &Series{Queue: o.Queue, Type: o.Type, Minutes: make([]MinuteStats, len(ms))}
	queues, types := map[string]bool{}, map[string]bool{}
	match := func(queue, typ string) bool {
		return (o.Queue == "" || queue == o.Queue) && (o.Type == "" || typ == o.Type)
	}
	for _, k := range counts {
		queues[k.Queue], types[k.Type] = true, true
		if !match(k.Queue, k.Type) {
			continue
		}
		switch k.State {
		case dag.Ready:
			s.Ready += k.N
		case dag.Delayed:
			s.Delayed += k.N
		}
	}
	filtered := o.Queue != "" || o.Type != ""
	for j, m := range ms {
		out := MinuteStats{Start: m.Start, Sampled: m.Sampled}
		for l, w := range m.Waiting {
			queues[l.Queue], types[l.Type] = true, true
			if match(l.Queue, l.Type) {
				out.Ready += w[0]
				out.Delayed += w[1]
			}
		}
		buckets := m.Buckets
		if filtered {
			buckets = make([]int64, len(dag.DurationBuckets)+1)
		}
		for l, r := range m.Lanes {
			queues[l.Queue], types[l.Type] = true, true
			if !filtered || !match(l.Queue, l.Type) {
				continue
			}
			out.Finished += r.OK + r.Failed
			out.Failed += r.Failed
			out.Retried += r.Retried
			for b, n := range r.Buckets {
				buckets[b] += n
			}
		}
		if !filtered { // the whole namespace: older runners' runs too
			out.Finished, out.Failed, out.Retried = sum(m.OK)+sum(m.Failed), sum(m.Failed), sum(m.Retried)
			for t := range m.OK {
				types[t] = true
			}
			for t := range m.Failed {
				types[t] = true
			}
		}
		out.P50, out.P95 = quantile(buckets, 0.5), quantile(buckets, 0.95)
		s.Minutes[j] = out
	}
	s.Queues, s.Types = sorted(queues), sorted(types)
	return s, nil
}

func sum(by map[string]int64) int64 {
	var n int64
	for _, v := range by {
		n += v
	}
	return n
}

func sorted(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
