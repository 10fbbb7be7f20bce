package main_test

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/trellisflow/trellis/internal/seam"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
)

// `trellis stats` shows the p95 as an estimate, interpolated within its
// histogram bucket rather than the bucket's upper edge.
func TestStatsP95IsAnEstimate(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	opt, err := redis.ParseURL(redisURL())
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	client, err := flow.NewClient(rdb, &flow.Config{Namespace: c.ns, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	// half the runs in the (10, 25] ms bucket, half in (100, 250] ms: p95 lies
	// 90% of the way through the upper bucket
	var took []time.Duration
	for i := range 100 {
		d := 20 * time.Millisecond
		if i%2 == 1 {
			d = 200 * time.Millisecond
		}
		took = append(took, d)
	}
	require.NoError(t, seam.ObserveRuns(client, "TEST", took...))

	r := c.run("", "stats")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `p95 time\s+≈ 235ms \(estimated from a histogram of durations\)`, r.stdout)

	r = c.run("", "stats", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var v struct {
		P95     float64 `json:"p95DurationMs"`
		Capped  bool    `json:"p95Capped"`
		Average float64 `json:"avgDurationMs"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &v), r.stdout)
	require.InDelta(t, 235.0, v.P95, 0.01)
	require.False(t, v.Capped)
	require.InDelta(t, 110.0, v.Average, 0.01)
}
