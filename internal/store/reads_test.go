package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/internal/store"

	"github.com/stretchr/testify/require"
)

// DueAt is when a delayed node becomes ready; a node that is not delayed,
// or not there, has none.
func TestDueAt(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		later := hspec("later", 0)
		later.Delay = time.Hour
		before := time.Now().Truncate(time.Millisecond)
		enqueue(t, s, "due", later, hspec("now", 0))
		after := time.Now()
		due, ok, err := s.DueAt(ctx, "later")
		require.NoError(t, err)
		require.True(t, ok)
		require.False(t, due.Before(before.Add(time.Hour)), "%v", due)
		require.False(t, due.After(after.Add(time.Hour)), "%v", due)
		for _, id := range []string{"now", "missing"} {
			_, ok, err = s.DueAt(ctx, id)
			require.NoError(t, err)
			require.False(t, ok, id)
		}
	})
}

// A node's label is kept with it, and is not part of what makes a
// re-enqueue of its ID the same job.
func TestLabelKeptOutOfIdentity(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a := hspec("labelled", 0)
		a.Label = "Back squat"
		enqueue(t, s, "lab", a)
		a.Label = "Front squat"
		_, err := s.Enqueue(ctx, time.Now(), store.FlowWrite{FlowID: "lab", Specs: []dag.Spec{a}})
		require.NoError(t, err, "the same job under another label")
		f, err := s.Flow(ctx, "lab")
		require.NoError(t, err)
		require.Len(t, f.Nodes, 1)
		require.Equal(t, "Back squat", f.Nodes[0].Label, "the first write stands")
	})
}
