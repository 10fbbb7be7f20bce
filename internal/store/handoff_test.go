package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/trellisflow/trellis/internal/store"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/internal/testredis"
)

// stores runs fn on the real Redis (REDIS_URL) and on the in-process one,
// each in a fresh namespace.
func stores(t *testing.T, fn func(t *testing.T, s *store.Store)) {
	testredis.Backends(t, func(t *testing.T, rdb redis.UniversalClient) { fn(t, newStore(t, rdb)) })
}

func newStore(t *testing.T, rdb redis.UniversalClient) *store.Store {
	s, err := store.New(rdb, fmt.Sprintf("dagtest-%06x", rand.IntN(1<<24)))
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = s.Clear(context.Background()) })
	return s
}

func hspec(id string, prio int, parents ...string) dag.Spec {
	return dag.Spec{ID: id, Type: "T", Queue: "q", Payload: json.RawMessage(`{}`), MaxAttempts: 1, Priority: prio, Parents: parents}
}

func enqueue(t *testing.T, s *store.Store, flow string, specs ...dag.Spec) {
	_, err := s.Enqueue(context.Background(), time.Now(), store.FlowWrite{FlowID: flow, Specs: specs})
	require.NoError(t, err)
}

// syncOK completes done (all succeeded) and claims up to want nodes in one
// call, returning the claimed nodes.
func syncOK(t *testing.T, s *store.Store, want int, done ...store.Claimed) []store.Claimed {
	req := store.SyncRequest{Worker: "w", Lease: time.Minute, StallLimit: 1, Queues: []string{"q"}, Types: []string{"T", "LIMITED"}, Want: want, RetainCount: -1}
	for _, c := range done {
		req.Outcomes = append(req.Outcomes, store.Outcome{ID: c.ID, Token: c.Token, Kind: store.OutcomeOK, Result: []byte(`"r-` + c.ID + `"`)})
	}
	res, err := s.Sync(context.Background(), time.Now(), req)
	require.NoError(t, err)
	for i, ok := range res.Applied {
		require.True(t, ok, "outcome of %s applied", done[i].ID)
	}
	return res.Claimed
}

// runInTurn claims and completes the given nodes one call after the
// other, each being the only node ready at its turn.
func runInTurn(t *testing.T, s *store.Store, order ...string) {
	var got []store.Claimed
	for _, id := range order {
		got = syncOK(t, s, 5, got...)
		require.Equal(t, []string{id}, ids(got), "only %s is ready", id)
	}
	syncOK(t, s, 0, got...)
}

// failAll reports every node of done as failed for good.
func failAll(t *testing.T, s *store.Store, done ...store.Claimed) {
	req := store.SyncRequest{Worker: "w", Lease: time.Minute, StallLimit: 1, Queues: []string{"q"}, RetainCount: -1}
	for _, c := range done {
		req.Outcomes = append(req.Outcomes, store.Outcome{ID: c.ID, Token: c.Token, Kind: store.OutcomeFail, Err: &dag.ErrorInfo{Message: "no"}})
	}
	res, err := s.Sync(context.Background(), time.Now(), req)
	require.NoError(t, err)
	for i, ok := range res.Applied {
		require.True(t, ok, "failure of %s applied", done[i].ID)
	}
}

func ids(cs []store.Claimed) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// A completion releases children that the same call then claims. They
// take their place among the nodes already ready by priority and age: an
// older node of equal priority goes first, a more urgent child overtakes.
func TestReleasedChildrenKeepPriorityOrder(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		enqueue(t, s, "f1", hspec("p", 100))
		got := syncOK(t, s, 1)
		require.Equal(t, []string{"p"}, ids(got))
		// ready now: old (priority 0); p's children wait for it
		enqueue(t, s, "f2", hspec("old", 0))
		enqueue(t, s, "f3", hspec("urgent", 50, "p"), hspec("plain", 0, "p"))

		got = syncOK(t, s, 2, got...)
		require.Equal(t, []string{"urgent", "old"}, ids(got), "the urgent child overtakes; the older node of equal priority precedes plain")
		require.Equal(t, "r-p", resultOf(t, s, "p"))

		// plain went into the ready set, not lost
		n, err := s.Node(ctx, "plain")
		require.NoError(t, err)
		require.Equal(t, dag.Ready, n.State)
		rest := syncOK(t, s, 5, got...)
		require.Equal(t, []string{"plain"}, ids(rest))
		syncOK(t, s, 0, rest...)
		assertCounts(t, s, map[dag.State]int64{dag.Succeeded: 4})
		for _, id := range []string{"p", "old", "urgent", "plain"} {
			n, err := s.Node(ctx, id)
			require.NoError(t, err)
			require.Equal(t, dag.Succeeded, n.State, id)
			require.Equal(t, 1, n.Attempt, id)
		}
	})
}

// Two parents of one child finish in the same call: the child is released
// once, claimed in that call, and its timeline shows ready then active.
func TestFanInWithinOneCall(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		enqueue(t, s, "f", hspec("a", 0), hspec("b", 0), hspec("c", 0, "a", "b"))
		got := syncOK(t, s, 2)
		require.ElementsMatch(t, []string{"a", "b"}, ids(got))
		got = syncOK(t, s, 3, got...)
		require.Equal(t, []string{"c"}, ids(got), "released once, claimed at once")
		c, err := s.Node(ctx, "c")
		require.NoError(t, err)
		require.Equal(t, dag.Active, c.State)
		require.Equal(t, 0, c.Pending)
		var states []dag.State
		for _, tr := range c.Timeline {
			states = append(states, tr.To)
		}
		require.Equal(t, []dag.State{dag.Blocked, dag.Ready, dag.Active}, states)
		assertCounts(t, s, map[dag.State]int64{dag.Succeeded: 2, dag.Active: 1})

		syncOK(t, s, 0, got...)
		st, err := s.FlowStatus(ctx, "f")
		require.NoError(t, err)
		require.True(t, st.Done, "the flow is finished: %+v", st)
	})
}

// A child released while its queue is paused stays ready in the set.
func TestReleasedChildOfPausedQueueWaits(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		enqueue(t, s, "f", hspec("a", 0), hspec("b", 0, "a"))
		got := syncOK(t, s, 1)
		require.NoError(t, s.Pause(ctx, "q"))
		require.Empty(t, syncOK(t, s, 5, got...))
		n, err := s.Node(ctx, "b")
		require.NoError(t, err)
		require.Equal(t, dag.Ready, n.State)
		require.NoError(t, s.Resume(ctx, "q"))
		require.Equal(t, []string{"b"}, ids(syncOK(t, s, 5)))
	})
}

func resultOf(t *testing.T, s *store.Store, id string) string {
	n, err := s.Node(context.Background(), id)
	require.NoError(t, err)
	var r string
	require.NoError(t, json.Unmarshal(n.Result, &r))
	return r
}

func assertCounts(t *testing.T, s *store.Store, want map[dag.State]int64) {
	counts, err := s.Counts(context.Background())
	require.NoError(t, err)
	got := map[dag.State]int64{}
	for _, c := range counts {
		got[c.State] += c.N
	}
	require.Equal(t, want, got)
}

// A flow whose ID the client just generated is written without reading its
// node count first; its status is the same as any flow's.
func TestFreshFlowCounts(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		specs := []dag.Spec{hspec("a", 0), hspec("b", 0, "a"), hspec("c", 0, "a")}
		res, err := s.EnqueueBatch(ctx, time.Now(), []store.FlowWrite{{FlowID: "fresh-flow", Fresh: true, Specs: specs}})
		require.NoError(t, err)
		require.NoError(t, res[0].Err)
		st, err := s.FlowStatus(ctx, "fresh-flow")
		require.NoError(t, err)
		require.Equal(t, dag.FlowStatus{Nodes: 3, Unfinished: 3}, st)
		got := syncOK(t, s, 5)
		got = syncOK(t, s, 5, got...)
		syncOK(t, s, 0, got...)
		st, err = s.FlowStatus(ctx, "fresh-flow")
		require.NoError(t, err)
		require.Equal(t, dag.FlowStatus{Nodes: 3, Unfinished: 0, Done: true}, st)
		f, err := s.Flow(ctx, "fresh-flow")
		require.NoError(t, err)
		require.Len(t, f.Nodes, 3)
		require.True(t, f.Done())
	})
}

// Children released in a call that their type's limit keeps from starting
// stay ready, in the set, and start once the limit allows.
func TestReleasedChildrenRespectTypeLimits(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		kid := func(id string) dag.Spec {
			sp := hspec(id, 0, "p")
			sp.Type = "LIMITED"
			return sp
		}
		enqueue(t, s, "f", hspec("p", 0), kid("k1"), kid("k2"), kid("k3"))
		require.NoError(t, s.SetLimit(ctx, "LIMITED", dag.Limit{Concurrency: 1}))
		got := syncOK(t, s, 5)
		require.Equal(t, []string{"p"}, ids(got))
		got = syncOK(t, s, 5, got...)
		require.Len(t, got, 1, "one child at a time")
		for _, id := range []string{"k1", "k2", "k3"} {
			n, err := s.Node(ctx, id)
			require.NoError(t, err)
			if id == got[0].ID {
				require.Equal(t, dag.Active, n.State)
			} else {
				require.Equal(t, dag.Ready, n.State, id)
			}
		}
		require.Empty(t, syncOK(t, s, 5), "the limit holds while one runs")
		seen := map[string]bool{got[0].ID: true}
		for range 2 {
			got = syncOK(t, s, 5, got...)
			require.Len(t, got, 1)
			require.False(t, seen[got[0].ID], "each child once")
			seen[got[0].ID] = true
		}
		syncOK(t, s, 0, got...)
		assertCounts(t, s, map[dag.State]int64{dag.Succeeded: 4})
	})
}

// A released child that overtakes nodes already ready, in a call that
// leaves some of them in the set, hands nothing to the wake-up list and
// loses nothing.
func TestOvertakingChildLeavesTheRestReady(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		enqueue(t, s, "f1", hspec("p", 100))
		got := syncOK(t, s, 1)
		enqueue(t, s, "f2", hspec("old1", 0), hspec("old2", 0))
		enqueue(t, s, "f3", hspec("urgent", 50, "p"))
		got = syncOK(t, s, 2, got...)
		require.Equal(t, []string{"urgent", "old1"}, ids(got))
		rest := syncOK(t, s, 5, got...)
		require.Equal(t, []string{"old2"}, ids(rest))
		syncOK(t, s, 0, rest...)
		assertCounts(t, s, map[dag.State]int64{dag.Succeeded: 4})
	})
}

// Retrying a failed job makes a child its failure released, and that has
// not started, wait for it again.
func TestRetryReblocksAReleasedChild(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		child := hspec("c", 0, "p")
		child.Policy = dag.Ignore
		enqueue(t, s, "f", hspec("p", 0), child)
		failAll(t, s, syncOK(t, s, 1)...)
		c, err := s.Node(ctx, "c")
		require.NoError(t, err)
		require.Equal(t, dag.Ready, c.State, "ignore: released by the failure")

		n, err := s.Retry(ctx, time.Now(), "p")
		require.NoError(t, err)
		require.Equal(t, 1, n)
		c, err = s.Node(ctx, "c")
		require.NoError(t, err)
		require.Equal(t, dag.Blocked, c.State, "waits for p again")
		require.Equal(t, 1, c.Pending)

		runInTurn(t, s, "p", "c")
		assertCounts(t, s, map[dag.State]int64{dag.Succeeded: 2})
	})
}

// A job enqueued after a parent that had already failed is cancelled at
// once; retrying the parent brings it back, and it runs after the parent.
func TestRetryReachesChildrenEnqueuedAfterTheFailure(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		enqueue(t, s, "f1", hspec("p", 0))
		failAll(t, s, syncOK(t, s, 1)...)

		enqueue(t, s, "f2", hspec("late", 0, "p"))
		n, err := s.Node(ctx, "late")
		require.NoError(t, err)
		require.Equal(t, dag.Cancelled, n.State)
		require.Equal(t, "p", n.Cause)

		reopened, err := s.Retry(ctx, time.Now(), "p")
		require.NoError(t, err)
		require.Equal(t, 2, reopened, "p and the job its failure cancelled")
		got := syncOK(t, s, 5)
		require.Equal(t, []string{"p"}, ids(got))
		got = syncOK(t, s, 5, got...)
		require.Equal(t, []string{"late"}, ids(got))
		syncOK(t, s, 0, got...)
		assertCounts(t, s, map[dag.State]int64{dag.Succeeded: 2})
	})
}

// nodeState reads one node, failing the test on an error.
func nodeState(t *testing.T, s *store.Store, id string) *dag.Node {
	n, err := s.Node(context.Background(), id)
	require.NoError(t, err)
	return n
}

// A child of two parents that finish in different calls waits for the
// second: the first parent's success only counts down (the scripts do it
// without reading the child), the second releases it, once.
func TestFanInAcrossCalls(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		enqueue(t, s, "f", hspec("a", 0), hspec("b", 0), hspec("c", 0, "a", "b"), hspec("d", 0, "a"))
		got := syncOK(t, s, 2)
		require.ElementsMatch(t, []string{"a", "b"}, ids(got))
		var a, b store.Claimed
		for _, c := range got {
			if c.ID == "a" {
				a = c
			} else {
				b = c
			}
		}
		require.Empty(t, syncOK(t, s, 0, a), "nothing claimed: d waits in the ready set")
		c := nodeState(t, s, "c")
		require.Equal(t, dag.Blocked, c.State)
		require.Equal(t, 1, c.Pending, "waits for b")
		require.Equal(t, []string{"c", "d"}, nodeState(t, s, "a").Children, "children read without their marks")

		got = syncOK(t, s, 5, b)
		require.ElementsMatch(t, []string{"c", "d"}, ids(got), "c released by its last parent")
		require.Equal(t, 0, nodeState(t, s, "c").Pending)
		syncOK(t, s, 0, got...)
		assertCounts(t, s, map[dag.State]int64{dag.Succeeded: 4})
	})
}

// A child of two parents ended by one of them (cancelled by a failure)
// stays as it ended when the other succeeds; retrying the failed parent
// brings it back to wait for that parent alone.
func TestFanInChildEndedByAnotherParent(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		enqueue(t, s, "f", hspec("a", 0), hspec("b", 0), hspec("c", 0, "a", "b"))
		got := syncOK(t, s, 2)
		for _, x := range got {
			if x.ID == "a" {
				failAll(t, s, x)
			}
		}
		require.Equal(t, dag.Cancelled, nodeState(t, s, "c").State)
		for _, x := range got {
			if x.ID == "b" {
				require.Empty(t, syncOK(t, s, 5, x), "nothing is ready")
			}
		}
		c := nodeState(t, s, "c")
		require.Equal(t, dag.Cancelled, c.State, "b's success does not revive it")
		require.Equal(t, 0, c.Pending)
		assertCounts(t, s, map[dag.State]int64{dag.Succeeded: 1, dag.Failed: 1, dag.Cancelled: 1})

		n, err := s.Retry(ctx, time.Now(), "a")
		require.NoError(t, err)
		require.Equal(t, 2, n, "a and the child it cancelled")
		c = nodeState(t, s, "c")
		require.Equal(t, dag.Blocked, c.State)
		require.Equal(t, 1, c.Pending, "b has succeeded: c waits for a alone")
		runInTurn(t, s, "a", "c")
		assertCounts(t, s, map[dag.State]int64{dag.Succeeded: 3})
	})
}

// A parent that succeeds after its fan-in child's flow was removed leaves
// nothing of the child behind.
func TestFanInChildRemovedWithItsFlow(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		enqueue(t, s, "f1", hspec("a", 0), hspec("b", 0))
		enqueue(t, s, "f2", hspec("c", 0, "a", "b"))
		got := syncOK(t, s, 2)
		var b store.Claimed
		for _, x := range got {
			if x.ID == "a" {
				failAll(t, s, x)
			} else {
				b = x
			}
		}
		require.Equal(t, dag.Cancelled, nodeState(t, s, "c").State)
		require.NoError(t, s.Remove(ctx, time.Now(), "f2"))
		_, err := s.Node(ctx, "c")
		require.ErrorIs(t, err, dag.ErrNotFound)

		require.Empty(t, syncOK(t, s, 5, b))
		_, err = s.Node(ctx, "c")
		require.ErrorIs(t, err, dag.ErrNotFound, "the parent's success wrote no key for the removed child")
		assertCounts(t, s, map[dag.State]int64{dag.Succeeded: 1, dag.Failed: 1})
	})
}

// A client may send a script call again when it timed out waiting for the
// reply (go-redis retries a read timeout), so Redis runs it twice. An
// enqueue of generated IDs run again finds its own nodes and writes
// nothing: the counters, the flow's count and the ready set stay as the
// first run left them.
func TestEnqueueRunTwiceWritesOnce(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		now := time.Now()
		fresh := func(id string, parents ...string) dag.Spec {
			sp := hspec(id, 0, parents...)
			sp.Fresh = true
			return sp
		}
		bulk := []store.FlowWrite{
			{Single: true, Specs: []dag.Spec{fresh("g1")}},
			{Single: true, Specs: []dag.Spec{fresh("g2")}},
			{FlowID: "gf", Fresh: true, Specs: []dag.Spec{fresh("g3"), fresh("g4", "g3")}},
		}
		for run := range 2 {
			res, err := s.EnqueueAll(ctx, now, bulk)
			require.NoError(t, err)
			for _, f := range res {
				require.NoError(t, f.Err)
				for _, n := range f.Nodes {
					require.Equal(t, run == 1, n.Existed, "run %d: %s", run, n.ID)
				}
			}
			assertCounts(t, s, map[dag.State]int64{dag.Ready: 3, dag.Blocked: 1})
		}
		st, err := s.FlowStatus(ctx, "gf")
		require.NoError(t, err)
		require.False(t, st.Done)
		got := syncOK(t, s, 10)
		require.ElementsMatch(t, []string{"g1", "g2", "g3"}, ids(got), "each node once in the ready set")
		got = syncOK(t, s, 10, got...)
		require.Equal(t, []string{"g4"}, ids(got))
		syncOK(t, s, 0, got...)
		assertCounts(t, s, map[dag.State]int64{dag.Succeeded: 4})
		st, err = s.FlowStatus(ctx, "gf")
		require.NoError(t, err)
		require.True(t, st.Done, "the flow counted its two nodes once: %+v", st)
	})
}

// Ready nodes are listed queue by queue in claim order, active and delayed
// ones from the sets the engine works from.
func TestListReadyActiveDelayed(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		other := hspec("o1", 0)
		other.Queue = "q0"
		later := hspec("later", 0)
		later.Delay = time.Hour
		enqueue(t, s, "f", hspec("a", 0), hspec("b", 5), other, later, hspec("child", 0, "a"))
		ready := store.ListQuery{States: []dag.State{dag.Ready}, Limit: 10}
		p, err := s.List(ctx, ready)
		require.NoError(t, err)
		require.ElementsMatch(t, []string{"b", "a", "o1"}, entryIDs(p))
		q := entryIDs(p)
		require.Less(t, slices.Index(q, "b"), slices.Index(q, "a"), "queue q by priority")
		require.EqualValues(t, 3, p.Total)
		require.True(t, p.Complete)
		ready.Limit = 2
		p, err = s.List(ctx, ready)
		require.NoError(t, err)
		require.Len(t, p.Entries, 2)
		require.EqualValues(t, 3, p.Total)
		require.NotEmpty(t, p.Next)

		got := syncOK(t, s, 1) // claims b or o1: the first of a lane
		p, err = s.List(ctx, store.ListQuery{States: []dag.State{dag.Active}, Limit: 10})
		require.NoError(t, err)
		require.Equal(t, ids(got), entryIDs(p))
		require.EqualValues(t, 1, p.Total)
		p, err = s.List(ctx, store.ListQuery{States: []dag.State{dag.Delayed}, Limit: 10})
		require.NoError(t, err)
		require.Equal(t, []string{"later"}, entryIDs(p))
		p, err = s.List(ctx, store.ListQuery{States: []dag.State{dag.Blocked}, Limit: 10})
		require.NoError(t, err)
		require.Equal(t, []string{"child"}, entryIDs(p))
	})
}

// A node made ready by a caller whose clock is ahead (another machine, or a
// test's fake clock moved while the claim was on its way) does not start
// before it became ready in its timeline.
func TestClaimStartsNoEarlierThanReady(t *testing.T) {
	stores(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		ready := time.Now().Truncate(time.Millisecond)
		_, err := s.Enqueue(ctx, ready, store.FlowWrite{FlowID: "clock", Single: true, Specs: []dag.Spec{hspec("late", 0)}})
		require.NoError(t, err)
		res, err := s.Sync(ctx, ready.Add(-5*time.Second), store.SyncRequest{Worker: "w", Lease: time.Minute, StallLimit: 1, Queues: []string{"q"}, Types: []string{"T", "LIMITED"}, Want: 1, RetainCount: -1})
		require.NoError(t, err)
		require.Len(t, res.Claimed, 1)
		require.True(t, res.Claimed[0].ReadyAt.Equal(ready))
		n, err := s.Node(ctx, "late")
		require.NoError(t, err)
		require.Len(t, n.Timeline, 2)
		require.Equal(t, dag.Active, n.Timeline[1].To)
		require.True(t, n.Timeline[1].At.Equal(ready), "started %v, ready %v", n.Timeline[1].At, ready)

		// a claim whose clock is ahead keeps its own time
		_, err = s.Enqueue(ctx, ready, store.FlowWrite{FlowID: "clock2", Single: true, Specs: []dag.Spec{hspec("early", 0)}})
		require.NoError(t, err)
		later := ready.Add(3 * time.Second)
		_, err = s.Sync(ctx, later, store.SyncRequest{Worker: "w", Lease: time.Minute, StallLimit: 1, Queues: []string{"q"}, Types: []string{"T", "LIMITED"}, Want: 1, RetainCount: -1})
		require.NoError(t, err)
		n, err = s.Node(ctx, "early")
		require.NoError(t, err)
		require.True(t, n.Timeline[1].At.Equal(later))
	})
}
