package faults_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/redistest"
	"github.com/trellisflow/trellis/runner"
)

// A runner deletes the scripts libraries of Trellis versions that no live
// runner calls (each costs every call some garbage collection), keeps its
// own and those of other programs, and says which it calls.
func TestRunnerDropsStaleLibraries(t *testing.T) {
	t.Parallel()
	srv := redistest.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	for _, lib := range []string{
		"#!lua name=trellis_0000000000000000\nredis.register_function('trellis_old', function() return 1 end)",
		"#!lua name=other_app\nredis.register_function('other_fn', function() return 2 end)",
	} {
		require.NoError(t, rdb.FunctionLoad(ctx, lib).Err())
	}
	client := newClient(t, rdb, "libs", &redistest.Logs{})
	_, err := client.Add(ctx, Work{Name: "x"}, &flow.NodeOpts{ID: "x"}) // loads this version's library
	require.NoError(t, err)
	startRunner(t, client, runner.Config{Concurrency: 1}, newRuns())

	names := func() map[string]bool {
		libs, err := rdb.FunctionList(ctx, redis.FunctionListQuery{}).Result()
		require.NoError(t, err)
		out := map[string]bool{}
		for _, l := range libs {
			out[l.Name] = true
		}
		return out
	}
	require.Eventually(t, func() bool { return !names()["trellis_0000000000000000"] }, 30*time.Second, 20*time.Millisecond)
	have := names()
	require.True(t, have["other_app"], "another program's library stays")
	require.Len(t, have, 2, "this version's and the other program's: %v", have)
	var runners []dag.Heartbeat
	require.Eventually(t, func() bool { // its first heartbeat may come after the drop
		runners, err = client.Inspector().Runners(ctx, time.Now().Add(-time.Minute))
		require.NoError(t, err)
		return len(runners) == 1 && runners[0].Info != nil
	}, 30*time.Second, 20*time.Millisecond)
	require.True(t, have[runners[0].Info.Library], "the runner says which library it calls: %q", runners[0].Info.Library)
}
