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
	_, err := s.Enqueue(ctx, time.Now(), FlowWrite{FlowID: "f", Specs: []dag.Spec{tspec("a"), tspec("b", "a")}})
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

// Reindex puts the nodes an older Trellis wrote, which are in no index,
// into their state's, at the time of their last transition: the listing is
// complete again, and a second run adds nothing.
func TestReindexRestoresTheIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := testredis.Client(t)
	s := testStore(t, rdb)
	at := time.UnixMilli(time.Now().UnixMilli())
	_, err := s.Enqueue(ctx, at, FlowWrite{FlowID: "f", Specs: []dag.Spec{tspec("a"), tspec("b", "a"), tspec("c", "a")}})
	require.NoError(t, err)
	_, err = s.Cancel(ctx, at.Add(time.Second), "c", "test")
	require.NoError(t, err)
	// as an older Trellis leaves them: in no index
	require.NoError(t, rdb.Del(ctx, s.k.index(dag.Blocked, "q", "T"), s.k.index(dag.Cancelled, "q", "T")).Err())
	p, err := s.List(ctx, ListQuery{Limit: 10})
	require.NoError(t, err)
	require.False(t, p.Complete)

	n, err := s.Reindex(ctx, time.Now(), []string{"a", "b", "c", "ghost"})
	require.NoError(t, err)
	require.Equal(t, 2, n, "b blocked, c cancelled; a is in its ready set")
	p, err = s.List(ctx, ListQuery{Limit: 10})
	require.NoError(t, err)
	require.True(t, p.Complete)
	require.Len(t, p.Entries, 3)
	score, err := rdb.ZScore(ctx, s.k.index(dag.Cancelled, "q", "T"), "c").Result()
	require.NoError(t, err)
	require.EqualValues(t, at.Add(time.Second).UnixMilli(), score, "at the time it was cancelled")
	n, err = s.Reindex(ctx, time.Now(), []string{"a", "b", "c"})
	require.NoError(t, err)
	require.Zero(t, n)
}

// tspec is a node of queue q and type T, after parents.
func tspec(id string, parents ...string) dag.Spec {
	return dag.Spec{ID: id, Type: "T", Queue: "q", Payload: json.RawMessage(`{}`), MaxAttempts: 1, Parents: parents}
}
