package runner_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
)

func TestConcurrencyLimitHoldsAcrossRunners(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		require.NoError(t, h.client.SetLimit(ctx, "TEST_PROBE", dag.Limit{Concurrency: 2}))
		var running, peak atomic.Int64
		step := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Probe) (int, error) {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
			running.Add(-1)
			return m.N, nil
		})
		g := flow.New()
		for i := range 24 {
			g.Add(Probe{N: i}, nil)
		}
		g.Add(Task{Name: "unlimited"}, &flow.NodeOpts{ID: "free"})
		res := h.enqueue(g)
		for range 3 {
			h.runner(&runner.Config{Concurrency: 8, IdleWait: 20 * time.Millisecond}, step, h.taskStep())
		}
		f := h.wait(res.FlowID)
		require.Equal(t, 25, f.Counts()[dag.Succeeded])
		require.Equal(t, int64(2), peak.Load(), "never more than 2 at once over 3 runners with 24 slots")
		lim, err := h.client.Limits(ctx)
		require.NoError(t, err)
		require.Equal(t, dag.Limit{Concurrency: 2}, lim["TEST_PROBE"])
		require.NoError(t, h.client.SetLimit(ctx, "TEST_PROBE", dag.Limit{}))
		lim, err = h.client.Limits(ctx)
		require.NoError(t, err)
		require.Empty(t, lim)
	})
}

func TestRateLimitHoldsAcrossRunners(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		per := 400 * time.Millisecond
		require.NoError(t, h.client.SetLimit(ctx, "TEST_TASK", dag.Limit{Rate: 5, Per: per}))
		g := flow.New()
		for range 15 {
			g.Add(Task{Name: "n"}, nil)
		}
		res := h.enqueue(g)
		for range 2 {
			h.runner(&runner.Config{Concurrency: 8, IdleWait: 20 * time.Millisecond})
		}
		f := h.wait(res.FlowID)
		require.Equal(t, 15, f.Counts()[dag.Succeeded])
		windows := map[int64]int{}
		for _, n := range f.Nodes {
			windows[activeTimes(n)[0].UnixMilli()/per.Milliseconds()]++
		}
		require.GreaterOrEqual(t, len(windows), 3, "15 starts at 5 per window take at least 3 windows")
		for w, n := range windows {
			require.LessOrEqual(t, n, 5, "window %d", w)
		}
		require.Error(t, h.client.SetLimit(ctx, "TEST_TASK", dag.Limit{Rate: 5}), "a rate needs a window")
	})
}
