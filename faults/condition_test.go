package faults_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/redistest"
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

	srv := redistest.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	logs := &redistest.Logs{}
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

// Expand's step adds a sub-graph of one node, ID+"-child", with the
// condition When. A refused sub-graph will not do better on a retry, so the
// step fails for good.
type Expand struct {
	ID   string `json:"id"`
	When string `json:"when"`
}

func (Expand) MessageType() string { return "FAULT_EXPAND" }

func expandStep(refused *atomic.Int32) flow.Step {
	return flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Expand) (string, error) {
		sub := flow.New()
		sub.Add(Work{Name: "child"}, &flow.NodeOpts{ID: m.ID + "-child", When: m.When})
		if err := sc.Expand(sub); err != nil {
			if errors.Is(err, flow.ErrInvalidCondition) {
				refused.Add(1)
			}
			return "", flow.Permanent(err)
		}
		return "expanded", nil
	})
}

// TestConditionConstantFailureRefused: a condition with a sub-expression
// that reads no data and fails is refused at enqueue, the graph as a whole
// and with nothing written; so is a step's expansion holding one, which
// fails its node. A condition that fails on its parents' data fails its
// node at run time, with a one-line error.
func TestConditionConstantFailureRefused(t *testing.T) {
	t.Parallel()
	srv := redistest.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	logs := &redistest.Logs{}
	c := newClient(t, rdb, "constcond", logs)
	ctx := context.Background()

	before, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	g := flow.New().WithID("bad")
	a := g.Add(Work{Name: "a"}, &flow.NodeOpts{ID: "bad-a"})
	g.Add(Work{Name: "b"}, &flow.NodeOpts{ID: "bad-b", When: `parents["bad-a"].state == "succeeded" && int("abc") > 0`}).After(a)
	_, err = c.Enqueue(ctx, g)
	require.ErrorIs(t, err, flow.ErrInvalidCondition)
	require.ErrorContains(t, err, `node "bad-b": condition "parents[\"bad-a\"].state == \"succeeded\" && int(\"abc\") > 0": int("abc"): invalid operation: int(abc) (1:42); it reads no data, so it would fail on every run`)
	after, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	require.ElementsMatch(t, before, after, "nothing written")
	_, err = c.Job(ctx, "bad-a")
	require.ErrorIs(t, err, flow.ErrNotFound, "the graph is refused as a whole")

	r, err := runner.New(c, &runner.Config{ID: "constcond-runner", Concurrency: 2, Lease: 5 * time.Second, IdleWait: 50 * time.Millisecond})
	require.NoError(t, err)
	var refused atomic.Int32
	require.NoError(t, r.Register(workStep(newRuns(), "constcond-runner"), expandStep(&refused)))
	require.NoError(t, r.Start(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Stop(ctx)
	})

	// an expansion goes through the same check
	_, err = c.Add(ctx, Expand{ID: "ok", When: `1 < 2`}, &flow.NodeOpts{ID: "ok"})
	require.NoError(t, err)
	_, err = c.Add(ctx, Expand{ID: "x", When: `[1, 2][5] == 1`}, &flow.NodeOpts{ID: "x"})
	require.NoError(t, err)
	f := waitFlow(t, c, "ok", 10*time.Second)
	require.Len(t, f.Nodes, 2, "a constant condition that does not fail expands")
	for _, n := range f.Nodes {
		require.Equal(t, dag.Succeeded, n.State, n.ID)
	}
	waitFlow(t, c, "x", 10*time.Second)
	require.Equal(t, int32(1), refused.Load(), "Expand refused the sub-graph as an invalid condition")
	x, err := c.Job(ctx, "x")
	require.NoError(t, err)
	require.Equal(t, dag.Failed, x.State)
	require.NotNil(t, x.Error)
	require.Contains(t, x.Error.Message, `node "x-child": condition "[1, 2][5] == 1": [1, 2][5]: index out of range: 5 (array length is 2) (1:7)`)
	_, err = c.Job(ctx, "x-child")
	require.ErrorIs(t, err, flow.ErrNotFound, "the refused expansion wrote nothing")

	// a failure on the parents' data comes at run time, on one line
	g = flow.New().WithID("data")
	a = g.Add(Work{Name: "abc"}, &flow.NodeOpts{ID: "data-a"})
	g.Add(Work{Name: "b"}, &flow.NodeOpts{ID: "data-b", When: `int(parents["data-a"].result.name) > 0`}).After(a)
	_, err = c.Enqueue(ctx, g)
	require.NoError(t, err)
	waitFlow(t, c, "data", 10*time.Second)
	b, err := c.Job(ctx, "data-b")
	require.NoError(t, err)
	require.Equal(t, dag.Failed, b.State)
	require.NotNil(t, b.Error)
	require.Equal(t, `condition "int(parents[\"data-a\"].result.name) > 0": invalid operation: int(abc) (1:1)`, b.Error.Message)
}
