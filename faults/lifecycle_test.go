package faults_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/redistest"
	"github.com/trellisflow/trellis/runner"
)

// TestStopWhileRedisIsDown stops an idle runner whose Redis went away: with
// no step in flight and nothing to report, Stop has nothing to wait for and
// should return at once rather than at its context's deadline.
func TestStopWhileRedisIsDown(t *testing.T) {
	t.Parallel()
	srv := redistest.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: 1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	logs := &redistest.Logs{}
	c := newClient(t, rdb, "stop", logs)
	r, err := runner.New(c, &runner.Config{ID: "stopper", Lease: time.Second, IdleWait: 100 * time.Millisecond})
	require.NoError(t, err)
	rec := newRuns()
	require.NoError(t, r.Register(workStep(rec, "stopper")))
	require.NoError(t, r.Start(context.Background()))
	_, err = c.Add(context.Background(), Work{Name: "one"}, &flow.NodeOpts{ID: "one"})
	require.NoError(t, err)
	waitFlow(t, c, "one", 30*time.Second)

	srv.Kill()
	require.True(t, logs.WaitFor(20*time.Second, "sync with Redis failed"), "the runner noticed Redis is gone")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, r.Stop(ctx))
	took := time.Since(start)
	t.Logf("FIGURES stop with Redis down: in_flight=0 stop_took=%s", took.Round(time.Millisecond))
	require.Less(t, took, 3*time.Second, "an idle runner stops without waiting for Stop's deadline while Redis is down")
}
