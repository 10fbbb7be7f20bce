package monitor_test

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/monitor"
	"github.com/trellisflow/trellis/runner"
)

// /api/runners lists each live runner with what it says of itself, and
// drops one whose heartbeat is older than the health's RunnerTimeout.
func TestRunners(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{Thresholds: monitor.Thresholds{RunnerTimeout: time.Minute}})
	w := e.get("/api/runners")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	v := decode[monitor.RunnersView](t, w)
	require.Empty(t, v.Runners)
	require.NotNil(t, v.Runners, "an empty list, not null")
	require.Equal(t, 60.0, v.TimeoutSeconds)

	e.run()
	side, err := runner.New(e.client, &runner.Config{Queues: []string{"side", "bulk"}, Concurrency: 2,
		IdleWait: 100 * time.Millisecond, Logger: quiet()})
	require.NoError(t, err)
	require.NoError(t, runner.Handle(side, func(ctx context.Context, sc *flow.StepContext, m Echo) (string, error) { return m.Text, nil }))
	require.NoError(t, side.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = side.Stop(ctx)
	})
	require.Eventually(t, func() bool {
		return len(decode[monitor.RunnersView](t, e.get("/api/runners")).Runners) == 2
	}, 5*time.Second, 20*time.Millisecond)

	v = decode[monitor.RunnersView](t, e.get("/api/runners"))
	host, err := os.Hostname()
	require.NoError(t, err)
	byQueues := map[string]int{}
	for i, rn := range v.Runners {
		require.NotEmpty(t, rn.ID)
		require.NotNil(t, rn.Info, rn.ID)
		require.Equal(t, host, rn.Info.Host)
		require.Equal(t, os.Getpid(), rn.Info.PID)
		require.NotEmpty(t, rn.Info.Version)
		require.WithinDuration(t, v.CheckedAt, rn.LastSeen, time.Minute)
		require.False(t, rn.Info.Started.IsZero())
		byQueues[rn.Info.Queues[0]] = i
	}
	def, sd := v.Runners[byQueues["default"]].Info, v.Runners[byQueues["side"]].Info
	require.Equal(t, []string{"side", "bulk"}, sd.Queues)
	require.Equal(t, []string{"ECHO"}, sd.Types)
	require.Equal(t, 2, sd.Concurrency)
	require.ElementsMatch(t, []string{"ECHO", "OTHER"}, def.Types)
	require.Equal(t, 4, def.Concurrency)
	require.Equal(t, 0, def.InFlight)

	// a stopped runner beats no more: two minutes on (by the client's
	// clock, which heartbeats are stamped with) only the running one is live
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, side.Stop(ctx))
	e.offset.Store(int64(2 * time.Minute))
	require.Eventually(t, func() bool {
		rs := decode[monitor.RunnersView](t, e.get("/api/runners")).Runners
		return len(rs) == 1 && rs[0].Info.Queues[0] == "default"
	}, 10*time.Second, 50*time.Millisecond)
}
