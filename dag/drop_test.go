package dag_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
)

// bigFlow enqueues a finished flow of n nodes: enqueued, then cancelled.
func bigFlow(t *testing.T, s *dag.Store, flow string, n int) {
	ctx := context.Background()
	specs := make([]dag.Spec, n)
	for i := range specs {
		specs[i] = hspec(fmt.Sprintf("%s-%d", flow, i), 0)
	}
	enqueue(t, s, flow, specs...)
	cancelled, err := s.CancelFlow(ctx, time.Now(), flow, "test")
	require.NoError(t, err)
	require.Equal(t, n, cancelled)
}

// A finished flow larger than one call may delete (5,000 nodes: Redis runs
// a script alone) is deleted over several calls, by trim and by remove,
// with its counters, and nothing else.
func TestLargeFlowDeletedInParts(t *testing.T) {
	stores(t, func(t *testing.T, s *dag.Store) {
		ctx := context.Background()
		bigFlow(t, s, "big", 12_000)
		enqueue(t, s, "small", hspec("small-a", 0))
		cancelled := func() int64 {
			counts, err := s.Counts(ctx)
			require.NoError(t, err)
			var n int64
			for _, c := range counts {
				if c.State == dag.Cancelled {
					n += c.N
				}
			}
			return n
		}
		require.Equal(t, int64(12_000), cancelled())

		later := time.Now().Add(time.Hour)
		for _, left := range []int64{7_000, 2_000} {
			n, more, err := s.Trim(ctx, later, time.Millisecond, 500)
			require.NoError(t, err)
			require.Zero(t, n, "the flow is not deleted yet")
			require.True(t, more)
			require.Equal(t, left, cancelled())
			_, err = s.Flow(ctx, "big")
			require.NoError(t, err, "the flow stays until its last node is gone")
		}
		n, more, err := s.Trim(ctx, later, time.Millisecond, 500)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.False(t, more)
		require.Zero(t, cancelled())
		_, err = s.Flow(ctx, "big")
		require.ErrorIs(t, err, dag.ErrNotFound)
		small, err := s.Nodes(ctx, []string{"small-a"})
		require.NoError(t, err)
		require.NotNil(t, small[0], "an unfinished flow is kept")

		bigFlow(t, s, "big2", 6_000)
		require.NoError(t, s.Remove(ctx, time.Now(), "big2"))
		_, err = s.Flow(ctx, "big2")
		require.ErrorIs(t, err, dag.ErrNotFound)
		require.Zero(t, cancelled())
	})
}
