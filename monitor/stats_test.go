package monitor_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/trellisflow/trellis/internal/seam"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/monitor"
)

// observe records runs of the given durations in the current minute's stats.
func (e *env) observe(took ...time.Duration) {
	e.t.Helper()
	require.NoError(e.t, seam.ObserveRuns(e.client, "ECHO", took...))
}

func repeat(n int, d time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

// The p95 is interpolated within its histogram bucket, not the bucket's
// upper edge, and says when it hit the histogram's end.
func TestP95IsInterpolated(t *testing.T) {
	t.Parallel()
	stats := func(e *env) monitor.QueueStats {
		w := e.get("/api/queue-stats")
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		return decode[monitor.QueueStats](t, w)
	}
	e := newEnv(t, monitor.Config{})
	require.Zero(t, stats(e).P95DurationMS, "no runs, no p95")

	// half the runs in the (10, 25] ms bucket, half in (100, 250] ms: the
	// 95th is the 45th of the upper half, 90% of the way through its bucket
	e.observe(append(repeat(50, 20*time.Millisecond), repeat(50, 200*time.Millisecond)...)...)
	st := stats(e)
	require.InDelta(t, 235.0, st.P95DurationMS, 0.01)
	require.False(t, st.P95Capped)

	// all in the first bucket (0, 1] ms
	e1 := newEnv(t, monitor.Config{})
	e1.observe(repeat(20, 300*time.Microsecond)...)
	require.InDelta(t, 0.95, stats(e1).P95DurationMS, 0.001)

	// past the last bound: the bound, capped
	e2 := newEnv(t, monitor.Config{})
	e2.observe(append(repeat(10, 2*time.Minute), repeat(90, 40*time.Second)...)...)
	st = stats(e2)
	require.InDelta(t, 60_000.0, st.P95DurationMS, 0.01)
	require.True(t, st.P95Capped)
}
