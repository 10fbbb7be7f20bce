package faults_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/redistest"
	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/internal/store"
	"github.com/trellisflow/trellis/runner"
)

// TestMinuteStatsCountExpandedRuns runs a step that expands into three
// nodes and checks that the minute statistics (Stats' processing rate and
// durations) count its run like any other successful run: four runs, four
// succeeded nodes. The 200,000-node load test found them one short per
// expansion.
func TestMinuteStatsCountExpandedRuns(t *testing.T) {
	t.Parallel()
	srv := redistest.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	c := newClient(t, rdb, "minutes", &redistest.Logs{})
	ctx := context.Background()
	r, err := runner.New(c, &runner.Config{ID: "minutes-runner", Concurrency: 4, Lease: 5 * time.Second, IdleWait: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, r.Register(spreadStep(newRuns(), &atomic.Bool{})))
	require.NoError(t, r.Start(ctx))

	_, err = c.Add(ctx, Spread{Name: "parent", Expand: 3}, &flow.NodeOpts{ID: "parent"})
	require.NoError(t, err)
	f := waitFlow(t, c, "parent", 30*time.Second)
	require.Equal(t, 4, f.Counts()[dag.Succeeded])
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, r.Stop(sctx)) // a stopping runner flushes its minute

	minutes, err := seam.Store(c).Minutes(ctx, time.Now(), 5)
	require.NoError(t, err)
	var ok, runs, laneOK int64
	for _, m := range minutes {
		ok += m.OK["FAULT_SPREAD"]
		runs += m.Runs
		if l := m.Lanes[store.Lane{Queue: c.Config().DefaultQueue, Type: "FAULT_SPREAD"}]; l != nil {
			laneOK += l.OK
		}
	}
	t.Logf("FIGURES minute stats: succeeded_nodes=4 ok_runs=%d runs_with_duration=%d", ok, runs)
	require.Equal(t, int64(4), ok, "every successful run is counted, the expanding one too")
	require.Equal(t, int64(4), runs)
	require.Equal(t, int64(4), laneOK, "and counted in their queue's lane")
}
