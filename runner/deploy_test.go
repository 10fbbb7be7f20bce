package runner_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
)

// NewKind is a message type only the newer runner of a rolling deploy knows.
type NewKind struct {
	Name string `json:"name"`
}

func (NewKind) MessageType() string { return "TEST_NEW_KIND" }

// countCalls counts the commands a client sends.
type countCalls struct{ n atomic.Int64 }

func (c *countCalls) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *countCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.n.Add(1); return next(ctx, cmd) }
}
func (c *countCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.n.Add(int64(len(cmds))); return next(ctx, cmds) }
}

// A rolling deploy: the older runner has no step for the new message type.
// It claims none of those jobs (so it cannot fail them, nor cancel their
// dependents), does not spin on them, and says which types it serves in
// its heartbeat record; the jobs wait until a runner that can run them
// comes.
func TestRollingDeployOldRunnerLeavesNewTypes(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		base, ok := h.rdb.(*redis.Client)
		if !ok {
			t.Skip("counts the commands of a single-node client")
		}
		calls := &countCalls{}
		bo := base.Options()
		oldRDB := redis.NewClient(&redis.Options{Addr: bo.Addr, Username: bo.Username, Password: bo.Password, DB: bo.DB})
		oldRDB.AddHook(calls)
		t.Cleanup(func() { _ = oldRDB.Close() })
		oldClient, err := flow.NewClient(oldRDB, &flow.Config{Namespace: h.ns, Logger: quietLogger()})
		require.NoError(t, err)
		old, err := runner.New(oldClient, &runner.Config{ID: "old", Concurrency: 4, IdleWait: 200 * time.Millisecond, Lease: 5 * time.Second})
		require.NoError(t, err)
		require.NoError(t, old.Register(h.taskStep()))
		require.NoError(t, old.Start(ctx))
		t.Cleanup(func() { _ = old.Stop(context.Background()) })

		g := flow.New()
		for _, id := range []string{"new-1", "new-2", "new-3"} {
			n := g.Add(NewKind{Name: id}, &flow.NodeOpts{ID: id})
			g.Add(Task{Name: "after-" + id}, &flow.NodeOpts{ID: "after-" + id}).After(n)
		}
		g.Add(Task{Name: "plain"}, &flow.NodeOpts{ID: "plain"})
		res := h.enqueue(g)

		require.Eventually(t, func() bool { return h.job("plain").State == dag.Succeeded }, 30*time.Second, 20*time.Millisecond)
		// the old runner is now idle with three ready jobs it cannot run
		before := calls.n.Load()
		time.Sleep(2 * time.Second)
		idle := calls.n.Load() - before
		require.Less(t, idle, int64(100), "an idle runner must not spin on jobs it has no step for (%d commands in 2 s)", idle)
		for _, id := range []string{"new-1", "new-2", "new-3"} {
			n := h.job(id)
			require.Equal(t, dag.Ready, n.State, id)
			require.Zero(t, n.Attempt, "%s: no attempt spent", id)
			require.Equal(t, dag.Blocked, h.job("after-"+id).State)
		}
		runners, err := h.client.Inspector().Runners(ctx, time.Time{})
		require.NoError(t, err)
		require.Len(t, runners, 1)
		require.NotNil(t, runners[0].Info)
		require.Equal(t, []string{"TEST_TASK"}, runners[0].Info.Types)
		require.Equal(t, []string{"default"}, runners[0].Info.Queues)
		require.False(t, runners[0].Info.Serves("default", "TEST_NEW_KIND"))

		// the new version arrives and runs them
		h.runner(&runner.Config{ID: "new", Concurrency: 4}, h.taskStep(),
			flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m NewKind) (string, error) { return m.Name, nil }))
		f := h.wait(res.FlowID)
		for _, n := range f.Nodes {
			require.Equal(t, dag.Succeeded, n.State, n.ID)
			require.Equal(t, 1, n.Attempt, n.ID)
		}
	})
}
