package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/internal/store"

	"github.com/stretchr/testify/require"
)

// bigFlow enqueues a finished flow of n nodes: enqueued, then cancelled.
func bigFlow(t *testing.T, s *store.Store, flow string, n int) {
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

// A finished flow larger than one call may delete (10,000 nodes: Redis
// runs a script alone) is deleted over several calls, with its counters and
// nothing else: by a runner's retention, which calls again at once, by
// Trim and by Remove.
func TestLargeFlowDeletedInParts(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
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
		gone := func(flow string) bool {
			_, err := s.Flow(ctx, flow)
			if err != nil {
				require.ErrorIs(t, err, dag.ErrNotFound)
			}
			return err != nil
		}
		enqueue(t, s, "small", hspec("small-a", 0))
		later := time.Now().Add(time.Hour).Truncate(time.Millisecond)

		bigFlow(t, s, "big", 21_000)
		retention := store.SyncRequest{Worker: "w", Lease: time.Minute, StallLimit: 1, Queues: []string{"other"}, Maintain: true, RetainAge: time.Millisecond, RetainCount: -1}
		for _, left := range []int64{11_000, 1_000} {
			res, err := s.Sync(ctx, later, retention)
			require.NoError(t, err)
			require.Equal(t, left, cancelled())
			require.False(t, gone("big"), "the flow stays until its last node is gone")
			require.True(t, res.NextDue.Equal(later), "maintenance is due again at once: %v", res.NextDue)
		}
		res, err := s.Sync(ctx, later, retention)
		require.NoError(t, err)
		require.Zero(t, cancelled())
		require.True(t, gone("big"))
		require.True(t, res.NextDue.IsZero(), "no delayed node, nothing left to delete")

		bigFlow(t, s, "big2", 11_000)
		n, more, err := s.Trim(ctx, later, time.Millisecond, 500)
		require.NoError(t, err)
		require.Zero(t, n, "the flow is not deleted yet")
		require.True(t, more)
		require.Equal(t, int64(1_000), cancelled())
		n, more, err = s.Trim(ctx, later, time.Millisecond, 500)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.False(t, more)
		require.True(t, gone("big2"))

		bigFlow(t, s, "big3", 11_000)
		require.NoError(t, s.Remove(ctx, time.Now(), "big3"))
		require.True(t, gone("big3"))
		require.Zero(t, cancelled())

		small, err := s.Nodes(ctx, []string{"small-a"})
		require.NoError(t, err)
		require.NotNil(t, small[0], "an unfinished flow is kept")
	})
}

// The event stream is bounded by events, not entries: a call records at
// most 1,000 transitions, and the stream keeps about the last 20,000,
// however many calls wrote them.
func TestEventStreamIsBoundedByEvents(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		for call := range 40 {
			flows := make([]store.FlowWrite, 1500) // 1,500 jobs: 1,000 events
			for i := range flows {
				id := fmt.Sprintf("ev-%d-%d", call, i)
				flows[i] = store.FlowWrite{FlowID: id, Single: true, Specs: []dag.Spec{{ID: id, Type: "T", Queue: "q", Payload: json.RawMessage(`{}`), MaxAttempts: 1}}}
			}
			_, err := s.EnqueueAll(ctx, time.Now(), flows)
			require.NoError(t, err)
		}
		events, err := s.RecentEvents(ctx, 1_000_000)
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(events), 20_000)
		require.LessOrEqual(t, len(events), 21_000, "40 calls of 1,000 events each: the stream keeps the last 20,000 or so")
		require.True(t, strings.HasPrefix(events[0].Node, "ev-39-"), "the newest are kept: %s", events[0].Node)
		ids, err := s.Redis().XRevRangeN(ctx, "trellis:{"+s.Namespace()+"}:events", "+", "-", 1).Result()
		require.NoError(t, err)
		require.Len(t, ids, 1)
		last, err := s.LastEventID(ctx)
		require.NoError(t, err)
		require.Equal(t, ids[0].ID, last)
		// reading on from the last ID sees only new events
		more, next, err := s.Events(ctx, last, 100, 0)
		require.NoError(t, err)
		require.Empty(t, more)
		require.Equal(t, last, next)
	})
}
