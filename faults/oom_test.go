package faults_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/redistest"
	"github.com/trellisflow/trellis/runner"
)

// usedMemory is Redis's used_memory in bytes.
func usedMemory(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			var n int64
			_, err := fmt.Sscan(v, &n)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no used_memory in INFO memory")
	return 0
}

// A Redis at its maxmemory (noeviction) refuses an enqueue cleanly, with
// ErrRedisFull and nothing written, while everything that frees memory or
// finishes work still runs: cancel, remove, trim, runners draining the
// backlog with retention. Then enqueues work again.
func TestFullRedisFreesItself(t *testing.T) {
	t.Parallel()
	srv := redistest.StartRedis(t, "--maxmemory-policy", "noeviction")
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	limit := usedMemory(t, rdb) + 3<<20
	require.NoError(t, rdb.ConfigSet(ctx, "maxmemory", fmt.Sprint(limit)).Err())
	logs := &redistest.Logs{}
	c, err := flow.NewClient(rdb, &flow.Config{Namespace: "full", Logger: logs.Logger()})
	require.NoError(t, err)

	pad := strings.Repeat("x", 2000)
	enqueue := func(i int) error {
		g := flow.New().WithID(fmt.Sprintf("f%d", i))
		var prev *flow.Node
		for k := range 20 {
			n := g.Add(Work{Name: fmt.Sprintf("%d-%d-%s", i, k, pad)}, &flow.NodeOpts{ID: fmt.Sprintf("f%d-%d", i, k)})
			if prev != nil && k%2 == 1 {
				n.After(prev)
			}
			prev = n
		}
		_, err := c.Enqueue(ctx, g)
		return err
	}
	flows := 0
	for ; ; flows++ {
		err := enqueue(flows)
		if err != nil {
			require.ErrorIs(t, err, flow.ErrRedisFull)
			require.Contains(t, err.Error(), "maxmemory")
			break
		}
		require.Less(t, flows, 10000, "Redis never filled up")
	}
	require.Positive(t, flows)
	// nothing of the refused flow was written
	_, err = c.Job(ctx, fmt.Sprintf("f%d-0", flows))
	require.ErrorIs(t, err, flow.ErrNotFound)
	_, err = c.Inspector().FlowStatus(ctx, fmt.Sprintf("f%d", flows))
	require.ErrorIs(t, err, flow.ErrNotFound)
	require.ErrorIs(t, enqueue(flows), flow.ErrRedisFull, "still full")

	// cancel and remove work at the limit
	n, err := c.CancelFlow(ctx, "f0", "making room")
	require.NoError(t, err)
	require.Equal(t, 20, n)
	require.NoError(t, c.RemoveFlow(ctx, "f0"))
	_, err = c.Job(ctx, "f0-0")
	require.ErrorIs(t, err, flow.ErrNotFound)
	// a retry too (of a cancelled job of a flow cancelled at the limit)
	_, err = c.CancelFlow(ctx, "f1", "")
	require.NoError(t, err)
	_, err = c.Retry(ctx, "f1-0")
	require.NoError(t, err)
	_, err = c.CancelFlow(ctx, "f1", "")
	require.NoError(t, err)
	time.Sleep(10 * time.Millisecond) // past Trim's age
	_, err = c.Trim(ctx, time.Millisecond)
	require.NoError(t, err)
	_, err = c.Inspector().FlowStatus(ctx, "f1")
	require.ErrorIs(t, err, flow.ErrNotFound, "trimmed at the limit")

	// fill up again, then let a runner drain the backlog and its retention
	// free the memory
	for i := flows; enqueue(i) == nil; i++ {
		flows = i + 1
	}
	r, err := runner.New(c, &runner.Config{Concurrency: 8, IdleWait: 100 * time.Millisecond, RetainAge: time.Millisecond, Logger: logs.Logger()})
	require.NoError(t, err)
	require.NoError(t, runner.Handle(r, func(ctx context.Context, sc *flow.StepContext, m Work) (WorkResult, error) {
		return WorkResult{Name: m.Name[:5]}, nil
	}))
	require.NoError(t, r.Start(ctx))
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	require.Eventually(t, func() bool {
		for i := 2; i < flows; i++ {
			st, err := c.Inspector().FlowStatus(ctx, fmt.Sprintf("f%d", i))
			if err == nil && !st.Done {
				return false // still running
			}
		}
		return true
	}, 120*time.Second, 100*time.Millisecond, "the runner drains the backlog of a full Redis")
	require.Eventually(t, func() bool { return enqueue(flows) == nil }, 60*time.Second, 100*time.Millisecond,
		"retention frees the memory and enqueues work again")
}
