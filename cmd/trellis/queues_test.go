package main_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
)

func TestPauseResumeAndLimit(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	opt, err := redis.ParseURL(redisURL())
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	client, err := flow.NewClient(rdb, &flow.Config{Namespace: c.ns, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx := context.Background()

	r := c.run("", "pause", "default", "emails")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "emails: paused")
	st, err := client.Stats(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"default", "emails"}, st.Paused)
	require.Equal(t, 0, c.run("", "resume", "emails").code)
	st, err = client.Stats(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"default"}, st.Paused)
	r = c.run("", "pause", "bad queue")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `queue "bad queue"`)
	require.Equal(t, 2, c.run("", "pause").code)

	r = c.run("", "limit", "--concurrency", "5", "EMAIL")
	require.Equal(t, 0, r.code, r.stderr)
	r = c.run("", "limit", "--rate", "100", "--per", "1s", "NOTIFICATION")
	require.Equal(t, 0, r.code, r.stderr)
	lim, err := client.Limits(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]dag.Limit{"EMAIL": {Concurrency: 5}, "NOTIFICATION": {Rate: 100, Per: time.Second}}, lim)
	require.Equal(t, 0, c.run("", "limit", "EMAIL").code, "no caps: the limit is removed")
	lim, err = client.Limits(ctx)
	require.NoError(t, err)
	require.NotContains(t, lim, "EMAIL")
}
