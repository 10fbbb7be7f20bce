package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/trellisflow/trellis/internal/store"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
)

// TestRandomRuns drives the store the way runners do, with random graphs,
// priorities, policies, type limits, outcomes and batch sizes, from three
// workers in turn, and checks the engine's promises after every call and at
// the end: a claimed node was ready with its parents resolved by its
// policy, no node is held twice, a type's limit holds, every node ends
// terminal, and the counters and the failed index agree with the nodes.
// Now and then a worker crashes: its nodes come back through lease
// recovery; an operator cancels or retries a job; some retries wait 20 s
// (the clock skips ahead when nothing else can run); and in some runs
// retention trims finished flows as they go; new flows keep arriving, some
// after jobs enqueued before, some as all-or-nothing bulks; a second queue
// is paused and resumed. Some steps expand into sub-graphs (which may
// depend on jobs enqueued before, and are refused when that would close a
// cycle), whose nodes fail, are retried and cancelled like any others, and
// expanding jobs are retried and cancelled too; every flow's counters must
// still agree with its nodes at the end.
// TRELLIS_RANDOM_SEED replays a failure.
func TestRandomRuns(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("TRELLIS_RANDOM_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	stores(t, func(t *testing.T, s *store.Store) {
		for round := range 4 {
			seed := seed + uint64(round)
			t.Logf("seed %d (TRELLIS_RANDOM_SEED=%d replays it)", seed, seed)
			randomRun(t, s, rand.New(rand.NewPCG(seed, 7)), fmt.Sprintf("r%d", round))
		}
	})
}

func randomRun(t *testing.T, s *store.Store, rng *rand.Rand, prefix string) {
	ctx := context.Background()
	types := []string{"A", "B", "C"}
	require.NoError(t, s.SetLimit(ctx, "C", dag.Limit{Concurrency: 2}))
	specs := map[string]dag.Spec{}
	var flows, ids []string
	// addFlow enqueues a random flow; its nodes may also depend on jobs
	// enqueued before (running, finished or failed ones too).
	addFlow := func(now time.Time, external bool) {
		flow := fmt.Sprintf("%s-f%d", prefix, len(flows))
		var nodes []dag.Spec
		for i := range 1 + rng.IntN(10) {
			sp := dag.Spec{
				ID: fmt.Sprintf("%s-%d", flow, i), Type: types[rng.IntN(len(types))], Queue: []string{"q", "q", "q2"}[rng.IntN(3)],
				Payload: []byte(`{}`), MaxAttempts: 1 + rng.IntN(2), Priority: []int{-5, 0, 0, 5, 50}[rng.IntN(5)],
				Policy: []dag.Policy{dag.Require, dag.Require, dag.Skip, dag.Ignore}[rng.IntN(4)],
			}
			for k := range i {
				if rng.IntN(4) == 0 && len(sp.Parents) < 3 {
					sp.Parents = append(sp.Parents, nodes[k].ID)
				}
			}
			if external && len(ids) > 0 && rng.IntN(3) == 0 {
				sp.Parents = append(sp.Parents, ids[rng.IntN(len(ids))])
			}
			nodes = append(nodes, sp)
		}
		write := []store.FlowWrite{{FlowID: flow, Specs: nodes}}
		if external && rng.IntN(3) == 0 {
			// with a bulk of single jobs, all or nothing; now and then one
			// names a job that does not exist, and none may be written
			for k := range 1 + rng.IntN(4) {
				sp := dag.Spec{ID: fmt.Sprintf("%s-b%d", flow, k), Type: "A", Queue: "q", Payload: []byte(`{}`), MaxAttempts: 1, Policy: dag.Ignore}
				if rng.IntN(5) == 0 {
					sp.Parents = []string{"ghost"}
				}
				write = append(write, store.FlowWrite{FlowID: sp.ID, Single: true, Specs: []dag.Spec{sp}})
			}
			res, err := s.EnqueueAll(ctx, now, write)
			require.NoError(t, err)
			for _, r := range res {
				if r.Err != nil {
					for _, f := range write {
						for _, sp := range f.Specs {
							_, err := s.Node(ctx, sp.ID)
							require.ErrorIs(t, err, dag.ErrNotFound, "a failed bulk wrote %s", sp.ID)
						}
					}
					return
				}
			}
		} else {
			_, err := s.Enqueue(ctx, now, store.FlowWrite{FlowID: flow, Specs: nodes})
			if errors.Is(err, dag.ErrUnknownDependency) {
				return // retention removed the job it named
			}
			require.NoError(t, err)
		}
		for _, f := range write {
			flows = append(flows, f.FlowID)
			for _, sp := range f.Specs {
				specs[sp.ID] = sp
				ids = append(ids, sp.ID)
			}
		}
	}
	for range 25 {
		addFlow(time.Now(), false)
	}

	retain := -1
	if rng.IntN(3) == 0 {
		retain = 3 // maintenance trims all but the last 3 finished flows
	}
	// expand completes claimed node c by a random sub-graph, which may
	// depend on earlier jobs; one that would close a cycle is refused with
	// nothing written, and c stays active (false)
	expansions := 0
	expand := func(now time.Time, c store.Claimed) bool {
		expansions++
		var sub []dag.Spec
		for i := range 1 + rng.IntN(4) {
			sp := dag.Spec{
				ID: fmt.Sprintf("%s-x%d-%d", c.ID, expansions, i), Type: types[rng.IntN(len(types))], Queue: "q",
				Payload: []byte(`{}`), MaxAttempts: 1 + rng.IntN(2), Policy: []dag.Policy{dag.Require, dag.Require, dag.Ignore}[rng.IntN(3)],
			}
			if i > 0 && rng.IntN(2) == 0 {
				sp.Parents = append(sp.Parents, sub[rng.IntN(i)].ID)
			}
			if rng.IntN(4) == 0 {
				if p := ids[rng.IntN(len(ids))]; p != c.ID {
					sp.Parents = append(sp.Parents, p)
				}
			}
			sub = append(sub, sp)
		}
		_, err := s.Expand(ctx, now, store.Expansion{ID: c.ID, Token: c.Token, Result: []byte(`"grown"`), Specs: sub})
		if errors.Is(err, dag.ErrCycle) {
			for _, sp := range sub {
				_, err := s.Node(ctx, sp.ID)
				require.ErrorIs(t, err, dag.ErrNotFound, "a refused expansion wrote %s", sp.ID)
			}
			n, err := s.Node(ctx, c.ID)
			require.NoError(t, err)
			require.Equal(t, dag.Active, n.State)
			return false
		}
		if retain >= 0 && errors.Is(err, dag.ErrUnknownDependency) {
			return false // retention removed the job it named
		}
		require.NoError(t, err)
		for _, sp := range sub {
			specs[sp.ID] = sp
			ids = append(ids, sp.ID)
		}
		return true
	}

	held := map[string]map[string]store.Claimed{} // worker -> node -> claim
	owner := map[string]string{}                  // node -> worker holding it
	claims, stalled := map[string]int{}, map[string]int{}
	var offset time.Duration // the clock skips ahead when a worker crashes
	crashes, steps, cancels, retries := 0, 0, 0, 0
	mayReject := map[string]bool{} // claims (id, token) cancelled while held: their reports are refused
	claim := func(id, token string) string { return id + "\x00" + token }
	paused := false // q2
	workers := []string{"w1", "w2", "w3"}
	for _, w := range workers {
		held[w] = map[string]store.Claimed{}
	}
	for step := 0; ; step++ {
		if step >= 5000 {
			peeks, _ := s.Peek(ctx, ids)
			for _, p := range peeks {
				if !p.State.Terminal() {
					n, _ := s.Node(ctx, p.ID)
					t.Logf("unfinished %s: %s pending %d owner %q timeline %v", p.ID, p.State, n.Pending, owner[p.ID], n.Timeline)
				}
			}
			t.Fatal("the run does not finish")
		}
		steps = step
		if step%97 == 0 {
			requireIndexes(t, s, ids)
		}
		w := workers[rng.IntN(len(workers))]
		if rng.IntN(40) == 0 && len(held[w]) > 0 {
			// w crashes: its nodes are never reported; once their leases
			// expire, maintenance hands them to ready (or fails them)
			for _, id := range sortedKeys(held[w]) {
				if owner[id] == w { // not a stale claim of a job another worker holds now
					stalled[id]++
					delete(owner, id)
				}
			}
			held[w] = map[string]store.Claimed{}
			offset += 2 * time.Minute
			crashes++
			for _, alive := range workers { // the others renew their leases in time
				var leases []store.Lease
				for id, c := range held[alive] {
					leases = append(leases, store.Lease{ID: id, Token: c.Token})
				}
				lost, _, err := s.Heartbeat(ctx, time.Now().Add(offset), alive, time.Minute, nil, leases)
				require.NoError(t, err)
				for _, id := range lost {
					require.True(t, mayReject[claim(id, held[alive][id].Token)], "%s lost its lease to nobody", id)
				}
			}
			continue
		}
		now := time.Now().Add(offset)
		operator := step < 300 // then the run winds down
		if operator && rng.IntN(10) == 0 {
			addFlow(now, true)
		}
		if rng.IntN(25) == 0 || (paused && !operator) { // an operator pauses or resumes q2
			if paused {
				require.NoError(t, s.Resume(ctx, "q2"))
			} else if operator {
				require.NoError(t, s.Pause(ctx, "q2"))
			}
			paused = !paused && operator
		}
		if operator && rng.IntN(60) == 0 { // an operator cancels a job
			id := ids[rng.IntN(len(ids))]
			before, _ := s.Peek(ctx, []string{id})
			_, err := s.Cancel(ctx, now, id, "operator")
			switch {
			case retain >= 0 && errors.Is(err, dag.ErrNotFound): // retention removed it
			case before[0].State.Terminal():
				var se *dag.StateError
				require.ErrorAs(t, err, &se, "cancel of a %s job", before[0].State)
				require.Equal(t, before[0].State, se.State)
			default:
				require.NoError(t, err)
			}
			cancels++
			// held jobs the cascade reached are no longer active: their
			// workers' reports will be refused, and they no longer count
			// against the type's limit
			heldIDs := sortedKeys(owner)
			peeks, err := s.Peek(ctx, heldIDs)
			require.NoError(t, err)
			for _, p := range peeks {
				if p.State != dag.Active {
					mayReject[claim(p.ID, held[owner[p.ID]][p.ID].Token)] = true
					delete(owner, p.ID)
				}
			}
		}
		if operator && rng.IntN(15) == 0 { // an operator retries a failed or cancelled job
			before, err := s.Peek(ctx, ids)
			require.NoError(t, err)
			var ended []string
			for _, p := range before {
				if p.State == dag.Failed || p.State == dag.Cancelled {
					ended = append(ended, p.ID)
				}
			}
			if len(ended) > 0 {
				_, err = s.Retry(ctx, now, ended[rng.IntN(len(ended))])
				require.NoError(t, err)
				retries++
				// the jobs it reopened run again from their first attempt;
				// a retried expansion's old sub-graph is gone
				after, err := s.Nodes(ctx, ids)
				require.NoError(t, err)
				kept := ids[:0]
				for i, n := range after {
					switch {
					case n == nil:
						delete(specs, ids[i])
						continue
					case before[i].State.Terminal() && !n.State.Terminal() && n.Attempt == 0:
						claims[n.ID], stalled[n.ID] = 0, 0
					}
					kept = append(kept, ids[i])
				}
				ids = kept
				// held jobs of a discarded sub-graph: their reports are refused
				for _, id := range sortedKeys(owner) {
					if n, err := s.Node(ctx, id); err != nil || n.State != dag.Active {
						mayReject[claim(id, held[owner[id]][id].Token)] = true
						delete(owner, id)
					}
				}
			}
		}
		req := store.SyncRequest{Worker: w, Lease: time.Minute, StallLimit: 1, Queues: []string{"q", "q2"}, Types: []string{"A", "B", "C"},
			Want: rng.IntN(7), Maintain: rng.IntN(5) == 0, RetainCount: retain}
		if rng.IntN(2) == 0 { // B is a batch step's type on this runner: claimed apart
			req.Types = []string{"A", "C"}
			req.Batches = []store.TypeWant{{Type: "B", Want: rng.IntN(10)}}
		}
		for _, id := range sortedKeys(held[w]) { // sorted: a seed replays exactly
			c := held[w][id]
			if rng.IntN(3) == 0 {
				continue // still running
			}
			if rng.IntN(8) == 0 && owner[id] == w && expand(now, c) {
				delete(held[w], id)
				delete(owner, id)
				continue
			}
			o := store.Outcome{ID: id, Token: c.Token}
			if c.Type == "B" && rng.IntN(2) == 0 {
				o.Batch = w + "/1 of 3"
			}
			switch r := rng.IntN(20); {
			case r < 14:
				o.Kind, o.Result = store.OutcomeOK, []byte(`1`)
			case r < 17:
				o.Kind, o.Err = store.OutcomeRetry, &dag.ErrorInfo{Message: "again", Attempt: c.Attempt}
				o.Delay = time.Duration(rng.IntN(2)) * 20 * time.Second
			case r < 19:
				o.Kind, o.Err = store.OutcomeFail, &dag.ErrorInfo{Message: "no", Attempt: c.Attempt}
			default:
				o.Kind, o.Reason = store.OutcomeSkip, "condition false"
			}
			req.Outcomes = append(req.Outcomes, o)
			delete(held[w], id)
			delete(owner, id)
		}
		res, err := s.Sync(ctx, now, req)
		require.NoError(t, err)
		for i, ok := range res.Applied {
			id, tk := req.Outcomes[i].ID, claim(req.Outcomes[i].ID, req.Outcomes[i].Token)
			if !ok && !mayReject[tk] {
				n, _ := s.Node(ctx, id)
				t.Logf("refused %s from %s (token %s): %s, timeline %v", id, w, req.Outcomes[i].Token, n.State, n.Timeline)
			}
			require.True(t, ok || mayReject[tk], "outcome of %s", id)
			delete(mayReject, tk)
		}
		got := map[bool]int{} // claimed: of a batch type, of the others
		for _, c := range res.Claimed {
			got[len(req.Batches) > 0 && c.Type == "B"]++
		}
		require.LessOrEqual(t, got[false], req.Want, "the single steps' claim keeps to Want")
		if len(req.Batches) > 0 {
			require.LessOrEqual(t, got[true], req.Batches[0].Want, "a batch type's claim keeps to its own want")
		}
		for _, c := range res.Claimed {
			require.Empty(t, owner[c.ID], "%s claimed while %s holds it", c.ID, owner[c.ID])
			owner[c.ID] = w
			require.False(t, paused && c.Queue == "q2", "%s claimed from a paused queue", c.ID)
			held[w][c.ID] = c
			claims[c.ID]++
			require.LessOrEqual(t, claims[c.ID], specs[c.ID].MaxAttempts+stalled[c.ID], "%s claimed more often than its attempts and stalls", c.ID)
			if c.Attempt > 1 {
				continue // a retry of a run that started: its parents may have been reopened since
			}
			peeks, err := s.Peek(ctx, c.Parents)
			require.NoError(t, err)
			for _, p := range peeks {
				if !p.State.Terminal() {
					cn, _ := s.Node(ctx, c.ID)
					pn, _ := s.Node(ctx, p.ID)
					t.Logf("child %s (%s) pending %d timeline %v", c.ID, specs[c.ID].Policy, cn.Pending, cn.Timeline)
					t.Logf("parent %s timeline %v", p.ID, pn.Timeline)
				}
				require.True(t, p.State.Terminal(), "%s started before its parent %s ended (%s)", c.ID, p.ID, p.State)
				if specs[c.ID].Policy != dag.Ignore {
					require.Equal(t, dag.Succeeded, p.State, "%s (%s) started after its parent %s %s", c.ID, specs[c.ID].Policy, p.ID, p.State)
				}
			}
		}
		limited := map[string]int{} // a type's limit holds per queue
		for id := range owner {
			if specs[id].Type == "C" {
				limited[specs[id].Queue]++
			}
		}
		for q, n := range limited {
			require.LessOrEqual(t, n, 2, "type C runs at most 2 at a time in queue %s", q)
		}
		if len(owner) == 0 && len(res.Claimed) == 0 && req.Want > 0 && (len(req.Batches) == 0 || req.Batches[0].Want > 0) {
			done := true
			for _, f := range flows {
				st, err := s.FlowStatus(ctx, f)
				if retain >= 0 && errors.Is(err, dag.ErrNotFound) {
					continue // trimmed: it had finished
				}
				require.NoError(t, err)
				done = done && st.Done
			}
			if done {
				break
			}
			offset += 21 * time.Second // nothing to run: let delayed retries fall due
		}
	}

	want := map[dag.State]int64{}
	trimmed := 0
	for id := range specs {
		n, err := s.Node(ctx, id)
		if retain >= 0 && errors.Is(err, dag.ErrNotFound) {
			trimmed++
			continue
		}
		require.NoError(t, err)
		require.True(t, n.State.Terminal(), "%s ended %s", id, n.State)
		want[n.State]++
	}
	requireIndexes(t, s, ids)
	counts, err := s.Counts(ctx)
	require.NoError(t, err)
	got := map[dag.State]int64{}
	for _, c := range counts {
		got[c.State] += c.N
	}
	require.Equal(t, want, got, "the counters agree with the nodes")
	for _, f := range flows { // Wait returns: every flow's counters agree with its nodes
		st, err := s.FlowStatus(ctx, f)
		if retain >= 0 && errors.Is(err, dag.ErrNotFound) {
			continue
		}
		require.NoError(t, err)
		require.True(t, st.Done, "flow %s", f)
		require.Zero(t, st.Unfinished, "flow %s", f)
		members, err := s.FlowIDs(ctx, f)
		require.NoError(t, err)
		require.Equal(t, len(members), st.Nodes, "flow %s counts its nodes", f)
	}
	// every transition the run made is a legal one
	events, _, err := s.Events(ctx, "0", 1_000_000, 0)
	require.NoError(t, err)
	require.NotEmpty(t, events)
	for _, e := range events {
		require.True(t, dag.CanMove(e.From, e.To), "%s moved %q → %q, not in dag.Transitions", e.Node, e.From, e.To)
	}
	t.Logf("%d nodes (%d trimmed), %d calls, %d crashes, %d cancels, %d retries, %d expansions, end states %v", len(specs), trimmed, steps, crashes, cancels, retries, expansions, want)
	_, err = s.Clear(ctx)
	require.NoError(t, err)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// requireIndexes checks that the listing of each state with an index of
// its own (blocked and the finished states) holds exactly the nodes of ids
// in that state: none missing, none left behind by a move or a removal.
func requireIndexes(t *testing.T, s *store.Store, ids []string) {
	t.Helper()
	nodes, err := s.Nodes(context.Background(), ids)
	require.NoError(t, err)
	byState := map[dag.State][]string{}
	for _, n := range nodes {
		if n != nil {
			byState[n.State] = append(byState[n.State], n.ID)
		}
	}
	for _, st := range []dag.State{dag.Blocked, dag.Failed, dag.Succeeded, dag.Skipped, dag.Cancelled} {
		listed := listAll(t, s, store.ListQuery{States: []dag.State{st}, Limit: 7})
		require.ElementsMatch(t, byState[st], listed, "the %s index holds exactly the %s nodes", st, st)
	}
}
