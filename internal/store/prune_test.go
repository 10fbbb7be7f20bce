package store

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/internal/testredis"
)

// Entries a Trellis without the indexes leaves behind (its job deleted, or
// moved to another state) are listed until Prune takes them out; an entry
// whose job is still in the index's state stays.
func TestPruneTakesStaleEntriesOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := testredis.Client(t)
	s := testStore(t, rdb)
	spec := func(id string, parents ...string) dag.Spec {
		return dag.Spec{ID: id, Type: "T", Queue: "q", Payload: json.RawMessage(`{}`), MaxAttempts: 1, Parents: parents}
	}
	_, err := s.Enqueue(ctx, time.Now(), FlowWrite{FlowID: "f", Specs: []dag.Spec{spec("a"), spec("b", "a")}})
	require.NoError(t, err)
	blocked := s.k.index(dag.Blocked, "q", "T")
	require.NoError(t, rdb.ZAdd(ctx, blocked, redis.Z{Score: 1, Member: "ghost"}, redis.Z{Score: 2, Member: "a"}).Err())

	q := ListQuery{States: []dag.State{dag.Blocked}, Limit: 10}
	p, err := s.List(ctx, q)
	require.NoError(t, err)
	require.Len(t, p.Entries, 3)
	for _, e := range p.Entries {
		require.Equal(t, dag.Blocked, e.State)
	}
	n, err := s.Prune(ctx, p.Entries)
	require.NoError(t, err)
	require.Equal(t, 2, n, "ghost is gone, a is ready")
	p, err = s.List(ctx, q)
	require.NoError(t, err)
	require.Len(t, p.Entries, 1)
	require.Equal(t, "b", p.Entries[0].ID)
	n, err = s.Prune(ctx, p.Entries)
	require.NoError(t, err)
	require.Zero(t, n, "b is blocked: its entry stays")

	ready, err := s.List(ctx, ListQuery{States: []dag.State{dag.Ready}, Limit: 10})
	require.NoError(t, err)
	require.Equal(t, dag.Ready, ready.Entries[0].State)
	n, err = s.Prune(ctx, []ListEntry{{ID: "a", State: dag.Blocked, set: "rq:q|T"}})
	require.NoError(t, err)
	require.Zero(t, n, "the engine's own sets are not pruned")
}
