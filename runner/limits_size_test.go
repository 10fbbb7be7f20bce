package runner_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
)

// Big asks its step for a result, an error message or a panic of Size
// bytes, and logs Logs records.
type Big struct {
	What string `json:"what"` // result | error | panic
	Size int    `json:"size"`
	Logs int    `json:"logs,omitempty"`
}

func (Big) MessageType() string { return "TEST_BIG" }

func bigStep() flow.Step {
	return flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Big) (string, error) {
		for i := range m.Logs {
			sc.Logger.Info("a record of the step", "i", i, "pad", strings.Repeat("l", 100))
		}
		big := strings.Repeat("é", m.Size/2)
		switch m.What {
		case "error":
			return "", errors.New(big)
		case "panic":
			var deep func(n int) string
			deep = func(n int) string {
				if n == 0 {
					panic(big)
				}
				return deep(n-1) + "."
			}
			return deep(200), nil
		}
		return big, nil
	})
}

// A result over flow.Config.MaxResult fails the attempt for good with an
// error naming the limit, and nothing of it is stored; error messages,
// stacks and step logs are cut to their limits with a visible marker,
// in Redis and in the logs; a condition that fails on a parent's big
// result does not copy it whole.
func TestStoredValuesAreBounded(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		client, err := flow.NewClient(h.rdb, &flow.Config{Namespace: h.ns, Logger: quietLogger(),
			MaxResult: 64 << 10, MaxError: 1 << 10, MaxStack: 2 << 10, MaxLogs: 1 << 10})
		require.NoError(t, err)
		r, err := runner.New(client, &runner.Config{Concurrency: 4})
		require.NoError(t, err)
		require.NoError(t, r.Register(bigStep()))
		require.NoError(t, r.Start(ctx))
		t.Cleanup(func() { _ = r.Stop(context.Background()) })

		g := flow.New()
		g.Add(Big{What: "result", Size: 200 << 10}, &flow.NodeOpts{ID: "result", Attempts: 3})
		g.Add(Big{What: "result", Size: 60 << 10, Logs: 100}, &flow.NodeOpts{ID: "fits", Attempts: 1})
		g.Add(Big{What: "error", Size: 3 << 20}, &flow.NodeOpts{ID: "error", Attempts: 1})
		g.Add(Big{What: "panic", Size: 100 << 10}, &flow.NodeOpts{ID: "panic", Attempts: 1})
		p := g.Add(Big{What: "result", Size: 50 << 10}, &flow.NodeOpts{ID: "parent", Attempts: 1})
		g.Add(Big{What: "result", Size: 1}, &flow.NodeOpts{ID: "cond", Attempts: 1, When: `int(parents.parent.result) > 0`}).After(p)
		res, err := client.Enqueue(ctx, g)
		require.NoError(t, err)
		f := h.wait(res.FlowID)

		n := nodeByID(f, "result")
		require.Equal(t, dag.Failed, n.State)
		require.Equal(t, 1, n.Attempt, "failed for good: no retry")
		require.Empty(t, n.Result)
		require.Contains(t, n.Error.Message, "result of 204802 bytes is over the limit of 65536 bytes (flow.Config.MaxResult)")

		n = nodeByID(f, "fits")
		require.Equal(t, dag.Succeeded, n.State)
		require.Len(t, n.Result, 60<<10+2)
		require.LessOrEqual(t, len(n.Logs), 1<<10+100)
		require.Contains(t, n.Logs, "more records not kept")

		for _, id := range []string{"error", "panic", "cond"} {
			n = nodeByID(f, id)
			require.Equal(t, dag.Failed, n.State, id)
			require.LessOrEqual(t, len(n.Error.Message), 1<<10, id)
			require.Contains(t, n.Error.Message, "more bytes]", id)
		}
		n = nodeByID(f, "panic")
		require.LessOrEqual(t, len(n.Error.Stack), 2<<10)
		require.Contains(t, n.Error.Stack, "more bytes]")
		require.Contains(t, nodeByID(f, "cond").Error.Message, "condition")
	})
}
