package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/trellisflow/trellis/internal/store"

	"github.com/stretchr/testify/require"
)

// A minute's runs are kept by lane as well as by type, and read back so.
func TestMinuteKeepsLanes(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		now := time.Now()
		m := store.NewMinute(now)
		m.Observe("q1", "A", store.OutcomeOK, false, 3*time.Millisecond)
		m.Observe("q1", "A", store.OutcomeOK, false, 30*time.Millisecond)
		m.Observe("q2", "A", store.OutcomeFail, false, 2*time.Second)
		m.Observe("q2", "A", store.OutcomeRetry, false, time.Second) // retried: no duration
		m.Observe("q2", "B:x", store.OutcomeRetry, true, 90*time.Second)
		require.NoError(t, s.AddMinute(ctx, m))
		require.NoError(t, s.AddMinute(ctx, m)) // runners add up

		ms, err := s.Minutes(ctx, now, 2)
		require.NoError(t, err)
		require.Len(t, ms, 2)
		require.Empty(t, ms[0].Lanes)
		got := ms[1]
		require.Equal(t, map[string]int64{"A": 4}, got.OK)
		require.Equal(t, map[string]int64{"A": 2, "B:x": 2}, got.Failed)
		require.Equal(t, int64(8), got.Runs)
		require.Len(t, got.Lanes, 3)

		bucket := func(d time.Duration, n int64) []int64 {
			b := make([]int64, len(m.Buckets))
			b[store.Bucket(d)] = n
			return b
		}
		q1 := bucket(3*time.Millisecond, 2)
		q1[store.Bucket(30*time.Millisecond)] = 2
		require.Equal(t, &store.LaneRuns{OK: 4, Total: 66 * time.Millisecond, Buckets: q1}, got.Lanes[store.Lane{Queue: "q1", Type: "A"}])
		require.Equal(t, &store.LaneRuns{Failed: 2, Retried: 2, Total: 4 * time.Second, Buckets: bucket(2*time.Second, 2)},
			got.Lanes[store.Lane{Queue: "q2", Type: "A"}])
		require.Equal(t, &store.LaneRuns{Failed: 2, Total: 180 * time.Second, Buckets: bucket(90*time.Second, 2)},
			got.Lanes[store.Lane{Queue: "q2", Type: "B:x"}])
	})
}
