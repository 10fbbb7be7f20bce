package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/internal/store"
)

// listAll pages through q, limit at a time, and returns the IDs in order;
// it fails on a repeated ID.
func listAll(t *testing.T, s *store.Store, q store.ListQuery) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	for range 10_000 {
		p, err := s.List(context.Background(), q)
		require.NoError(t, err)
		require.True(t, p.Complete)
		require.LessOrEqual(t, len(p.Entries), q.Limit)
		for _, e := range p.Entries {
			require.False(t, seen[e.ID], "%s listed twice", e.ID)
			seen[e.ID] = true
			out = append(out, e.ID)
		}
		if p.Next == "" {
			return out
		}
		require.Len(t, p.Entries, q.Limit, "a page before the last is full")
		q.After = p.Next
	}
	t.Fatal("the listing does not end")
	return nil
}

// Failed nodes are indexed as they fail, latest first; a retry takes a node
// out of the index and removing its flow drops it.
func TestListFailed(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		enqueue(t, s, "f1", hspec("a", 0), hspec("b", 0))
		enqueue(t, s, "f2", hspec("c", 0))
		got := syncOK(t, s, 3)
		require.Len(t, got, 3)
		for _, id := range []string{"b", "c"} {
			for _, x := range got {
				if x.ID == id {
					failAll(t, s, x)
					time.Sleep(2 * time.Millisecond) // distinct failure times
				}
			}
		}
		failed := store.ListQuery{States: []dag.State{dag.Failed}, Limit: 10}
		p, err := s.List(ctx, failed)
		require.NoError(t, err)
		require.Equal(t, []string{"c", "b"}, entryIDs(p), "latest failure first")
		require.EqualValues(t, 2, p.Total)
		require.True(t, p.Complete)
		require.Empty(t, p.Next)
		failed.Limit = 1
		p, err = s.List(ctx, failed)
		require.NoError(t, err)
		require.Equal(t, []string{"c"}, entryIDs(p))
		require.EqualValues(t, 2, p.Total)
		require.NotEmpty(t, p.Next)

		_, err = s.Retry(ctx, time.Now(), "b")
		require.NoError(t, err)
		require.NoError(t, s.Remove(ctx, time.Now(), "f2"))
		failed.Limit = 10
		p, err = s.List(ctx, failed)
		require.NoError(t, err)
		require.Empty(t, p.Entries, "b was retried, c removed with its flow")
		require.Zero(t, p.Total)
		require.True(t, p.Complete)
		b, err := s.Node(ctx, "b")
		require.NoError(t, err)
		require.Contains(t, listAll(t, s, store.ListQuery{States: []dag.State{b.State}, Limit: 5}), "b", "the retried b is listed as %s", b.State)
	})
}

func entryIDs(p store.ListPage) []string {
	out := []string{}
	for _, e := range p.Entries {
		out = append(out, e.ID)
	}
	return out
}

// Every state is listed, in segments (active, ready, delayed, then
// blocked and finished latest first); a queue or a type narrows it, and the
// pages' cursors go on where the last page stopped even though many jobs
// share one time (one call's) and the cursor's own job moved meanwhile.
func TestListSegmentsAndCursors(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		t0 := time.Now()
		// 30 ready jobs made in one call: one score in their lane
		var specs []dag.Spec
		for i := range 30 {
			specs = append(specs, hspec(fmt.Sprintf("r%02d", i), 0))
		}
		_, err := s.Enqueue(ctx, t0, store.FlowWrite{FlowID: "ready", Specs: specs})
		require.NoError(t, err)
		// a chain: its root runs, its 12 children wait for it (blocked)
		specs = []dag.Spec{hspec("root", 10)}
		for i := range 12 {
			specs = append(specs, hspec(fmt.Sprintf("b%02d", i), 0, "root"))
		}
		specs = append(specs, dag.Spec{ID: "other", Type: "T", Queue: "q2", Payload: []byte(`{}`), MaxAttempts: 1, Parents: []string{"root"}})
		_, err = s.Enqueue(ctx, t0, store.FlowWrite{FlowID: "chain", Specs: specs})
		require.NoError(t, err)
		got := syncOK(t, s, 1)
		require.Equal(t, "root", got[0].ID, "the higher priority first")

		all := listAll(t, s, store.ListQuery{Limit: 7})
		require.Len(t, all, 1+30+13)
		require.Equal(t, "root", all[0], "active first")
		require.Equal(t, "r00", all[1], "then ready, in the order they start")
		require.Equal(t, "r29", all[30])
		require.ElementsMatch(t, append(ids13(), "other"), all[31:])

		require.Equal(t, []string{"other"}, listAll(t, s, store.ListQuery{Queue: "q2", Limit: 3}))
		require.Len(t, listAll(t, s, store.ListQuery{States: []dag.State{dag.Blocked}, Type: "T", Queue: "q", Limit: 5}), 12)
		require.Empty(t, listAll(t, s, store.ListQuery{Type: "NONE", Limit: 5}))
		p, err := s.List(ctx, store.ListQuery{Queue: "q2", Limit: 3})
		require.NoError(t, err)
		require.False(t, p.Mixed, "no job of q2 is active or delayed")
		require.EqualValues(t, 1, p.Total)
		p, err = s.List(ctx, store.ListQuery{Queue: "q", Limit: 3})
		require.NoError(t, err)
		require.True(t, p.Mixed, "the active set holds every lane's jobs")
		require.EqualValues(t, 1+30+12, p.Total)

		// page through the 30 ready jobs while the one each page ended at
		// is claimed: none is listed twice, and every job still ready is
		ready := store.ListQuery{States: []dag.State{dag.Ready}, Limit: 4}
		seen := map[string]bool{}
		for {
			p, err := s.List(ctx, ready)
			require.NoError(t, err)
			for _, e := range p.Entries {
				require.False(t, seen[e.ID], e.ID)
				seen[e.ID] = true
			}
			if p.Next == "" {
				break
			}
			ready.After = p.Next
			claimed := syncOK(t, s, 1) // the lane's first: r00, r01, … (listed already)
			require.True(t, seen[claimed[0].ID], "%s claimed before it was listed", claimed[0].ID)
		}
		require.Len(t, seen, 30)

		// the root ends: its children become ready together, in one call
		syncOK(t, s, 0, got...)
		p, err = s.List(ctx, store.ListQuery{States: []dag.State{dag.Succeeded}, Limit: 5})
		require.NoError(t, err)
		require.Equal(t, []string{"root"}, entryIDs(p))
		require.Len(t, listAll(t, s, store.ListQuery{States: []dag.State{dag.Ready, dag.Blocked}, Limit: 5}), 30-7+13)
	})
}

func ids13() []string {
	var out []string
	for i := range 12 {
		out = append(out, fmt.Sprintf("b%02d", i))
	}
	return out
}

// Ties of one time in a latest-first index are paged by member; a cursor
// whose own job has left the index still goes on after it.
func TestListTiesAfterTheCursorLeft(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		at := time.Now()
		specs := []dag.Spec{hspec("gate", 0)}
		for i := range 25 {
			specs = append(specs, hspec(fmt.Sprintf("w%02d", i), 0, "gate"))
		}
		_, err := s.Enqueue(ctx, at, store.FlowWrite{FlowID: "ties", Specs: specs})
		require.NoError(t, err)
		q := store.ListQuery{States: []dag.State{dag.Blocked}, Limit: 10}
		p, err := s.List(ctx, q)
		require.NoError(t, err)
		require.Equal(t, "w24", p.Entries[0].ID, "ties: the greater ID first, latest first")
		require.Equal(t, "w15", p.Entries[9].ID)
		// w15, the cursor's job, leaves the index (its flow's gate is
		// cancelled, so every w is): the listing of cancelled ones pages on
		_, err = s.CancelFlow(ctx, at, "ties", "test")
		require.NoError(t, err)
		p, err = s.List(ctx, store.ListQuery{States: []dag.State{dag.Blocked}, After: p.Next, Limit: 10})
		require.NoError(t, err)
		require.Empty(t, p.Entries)
		require.Empty(t, p.Next)
		// a cursor of a job gone from a set of ties: the page starts after it
		cancelled := listAll(t, s, store.ListQuery{States: []dag.State{dag.Cancelled}, Limit: 3})
		require.Len(t, cancelled, 26)
	})
}

func TestListRefusesBadQueries(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		for _, c := range []struct {
			q    store.ListQuery
			want string
		}{
			{store.ListQuery{Limit: 0}, "limit 0 is not between 1 and 1000"},
			{store.ListQuery{Limit: 1001}, "limit 1001"},
			{store.ListQuery{Limit: 5, States: []dag.State{"nope"}}, `"nope" is not one of`},
			{store.ListQuery{Limit: 5, After: "%%%"}, "not a cursor a listing returned"},
			{store.ListQuery{Limit: 5, After: "OXg"}, "not a cursor a listing returned"},
		} {
			_, err := s.List(ctx, c.q)
			require.ErrorContains(t, err, c.want)
		}
		_, err := s.List(ctx, store.ListQuery{Limit: 5, After: "%%%"})
		require.ErrorIs(t, err, store.ErrCursor)
	})
}
