package faults_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/faults"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
)

// TestConditionCannotHangRunner enqueues a node whose When condition is
// short and well within the node limit but loops 125 million times
// (nested quantifiers over one 500-element range). Either enqueue refuses
// it, or the runner gives up on it quickly: a condition must not hold a
// runner's slot for seconds or hours (with 1..5000 this one would run for
// about a day).
func TestConditionCannotHangRunner(t *testing.T) {
	t.Parallel()
	const evil = `let a = 1..500; all(a, all(a, all(a, # > 0)))`
	require.Less(t, len(evil), flow.MaxConditionLen)

	srv := faults.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	logs := &faults.Logs{}
	c := newClient(t, rdb, "cond", logs)
	ctx := context.Background()

	g := flow.New().WithID("cond")
	g.Add(Work{Name: "evil"}, &flow.NodeOpts{ID: "evil", When: evil})
	_, err := c.Enqueue(ctx, g)
	if err != nil {
		require.True(t, errors.Is(err, flow.ErrInvalidCondition), "refused as an invalid condition: %v", err)
		t.Logf("FIGURES condition: refused at enqueue: %v", err)
		return
	}
	startRunner(t, c, runner.Config{ID: "cond-runner", Concurrency: 1, Lease: 5 * time.Second}, newRuns())
	start := time.Now()
	ctxW, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	f, err := c.Wait(ctxW, "cond")
	took := time.Since(start)
	t.Logf("FIGURES condition: evaluation_bound=3s took=%s err=%v", took.Round(10*time.Millisecond), err)
	require.NoError(t, err, "the node with an endless condition is settled within 3 s instead of holding the runner")
	require.True(t, f.Nodes[0].State.Terminal())
}
