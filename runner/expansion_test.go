package runner_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
)

// Grow expands into Kids nodes that run Flaky, and a join after them; a
// node of the sub-graph may depend on an earlier job (After).
type Grow struct {
	Kids  int    `json:"kids"`
	After string `json:"after,omitempty"`
}

func (Grow) MessageType() string { return "TEST_GROW" }

// Flaky fails for good while its name is broken.
type Flaky struct {
	Name string `json:"name"`
}

func (Flaky) MessageType() string { return "TEST_FLAKY" }

// growth is the steps of Grow and Flaky, with the names that fail and a
// count of each job's runs.
type growth struct {
	mu     sync.Mutex
	broken map[string]bool
	runs   map[string]int
}

func newGrowth(broken ...string) *growth {
	g := &growth{broken: map[string]bool{}, runs: map[string]int{}}
	for _, b := range broken {
		g.broken[b] = true
	}
	return g
}

func (g *growth) fix(name string) { g.mu.Lock(); delete(g.broken, name); g.mu.Unlock() }

func (g *growth) ran(id string) int { g.mu.Lock(); defer g.mu.Unlock(); return g.runs[id] }

func (g *growth) steps() []flow.Step {
	return []flow.Step{
		flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Grow) (string, error) {
			g.mu.Lock()
			g.runs[sc.JobID]++
			run := g.runs[sc.JobID]
			g.mu.Unlock()
			sub := flow.New()
			var kids []*flow.Node
			for i := range m.Kids {
				k := sub.Add(Flaky{Name: fmt.Sprintf("kid-%d", i)}, &flow.NodeOpts{ID: fmt.Sprintf("%s/kid-%d", sc.JobID, i), Attempts: 1})
				if i == 0 && m.After != "" {
					k.AfterJob(m.After)
				}
				kids = append(kids, k)
			}
			sub.Add(Flaky{Name: "join"}, &flow.NodeOpts{ID: sc.JobID + "/join", Attempts: 1}).After(kids...)
			if err := sc.Expand(sub); err != nil {
				return "", err
			}
			return fmt.Sprintf("run %d", run), nil
		}),
		flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Flaky) (string, error) {
			g.mu.Lock()
			g.runs[sc.JobID]++
			bad := g.broken[m.Name]
			g.mu.Unlock()
			if bad {
				return "", flow.Permanent(errors.New(m.Name + " is broken"))
			}
			return m.Name, nil
		}),
	}
}

// growFlow is a flow x → after, x expanding into kid-0, kid-1 → join.
func growFlow(h *harness) *flow.Enqueued {
	g := flow.New()
	x := g.Add(Grow{Kids: 2}, &flow.NodeOpts{ID: "x"})
	g.Add(Task{Name: "after"}, &flow.NodeOpts{ID: "after"}).After(x)
	return h.enqueue(g)
}

// requireConsistent checks that the flows are finished and that their
// counters, and the namespace's (which holds only these flows), agree with
// their nodes; it returns the first flow.
func requireConsistent(t *testing.T, h *harness, flowIDs ...string) *dag.Flow {
	t.Helper()
	var first *dag.Flow
	want := map[dag.State]int{}
	for _, id := range flowIDs {
		f := h.wait(id)
		if first == nil {
			first = f
		}
		st, err := h.client.Inspector().FlowStatus(context.Background(), id)
		require.NoError(t, err)
		require.True(t, st.Done)
		require.Equal(t, len(f.Nodes), st.Nodes, "flow %s counts its nodes", id)
		for _, n := range f.Nodes {
			want[n.State]++
		}
	}
	counts, err := h.client.Inspector().Counts(context.Background())
	require.NoError(t, err)
	got := map[dag.State]int{}
	for _, c := range counts {
		got[c.State] += int(c.N)
	}
	require.Equal(t, want, got, "the counters agree with the nodes")
	return first
}

// Retrying a failed node inside an expansion: once it succeeds, the
// expanding job finishes and everything downstream runs as if nothing had
// failed; the expanding job's own step does not run again.
func TestRetryInsideAnExpansion(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		gr := newGrowth("kid-1")
		h.runner(nil, append(gr.steps(), h.taskStep())...)
		res := growFlow(h)
		f := requireConsistent(t, h, res.FlowID)
		require.Equal(t, dag.Failed, nodeByID(f, "x/kid-1").State)
		require.Equal(t, dag.Cancelled, nodeByID(f, "x/join").State)
		require.Equal(t, dag.Failed, nodeByID(f, "x").State)
		require.Equal(t, dag.Cancelled, nodeByID(f, "after").State)

		gr.fix("kid-1")
		n, err := h.client.Retry(ctx, "x/kid-1")
		require.NoError(t, err)
		require.Equal(t, 4, n, "kid-1, join, x and after reopen")
		f = requireConsistent(t, h, res.FlowID)
		for _, id := range []string{"x", "x/kid-0", "x/kid-1", "x/join", "after"} {
			require.Equal(t, dag.Succeeded, nodeByID(f, id).State, id)
		}
		x := nodeByID(f, "x")
		require.True(t, x.Expanded)
		require.JSONEq(t, `"run 1"`, string(x.Result), "the expanding job keeps its run")
		require.Equal(t, 1, gr.ran("x"))
		require.Equal(t, 1, gr.ran("x/kid-0"), "what succeeded does not run again")
		require.Equal(t, 2, gr.ran("x/kid-1"))
	})
}

// Retrying the expanding job itself runs its step again: its old
// sub-graph is discarded and the new run expands anew.
func TestRetryOfAnExpandingJob(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		gr := newGrowth("kid-0")
		h.runner(nil, append(gr.steps(), h.taskStep())...)
		res := growFlow(h)
		f := requireConsistent(t, h, res.FlowID)
		require.Equal(t, dag.Failed, nodeByID(f, "x").State)
		require.Len(t, f.Nodes, 5)

		gr.fix("kid-0")
		_, err := h.client.Retry(ctx, "x")
		require.NoError(t, err)
		f = requireConsistent(t, h, res.FlowID)
		require.Len(t, f.Nodes, 5, "the old sub-graph was replaced, not added to")
		for _, n := range f.Nodes {
			require.Equal(t, dag.Succeeded, n.State, n.ID)
		}
		require.Equal(t, 2, gr.ran("x"), "the step ran again")
		require.JSONEq(t, `"run 2"`, string(nodeByID(f, "x").Result))
		require.Equal(t, 2, gr.ran("x/kid-1"), "the new sub-graph ran whole")
		require.Equal(t, 1, nodeByID(f, "x/kid-1").Attempt)
	})
}

// Cancelling an expanding job cancels the unfinished part of its
// sub-graph; a retry brings the whole flow back.
func TestCancelOfAnExpandingJob(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		gr := newGrowth()
		g := flow.New()
		block := g.Add(Task{Name: "slow", Sleep: time.Hour}, &flow.NodeOpts{ID: "slow"})
		x := g.Add(Grow{Kids: 2, After: "slow"}, &flow.NodeOpts{ID: "x"})
		g.Add(Task{Name: "after"}, &flow.NodeOpts{ID: "after"}).After(x)
		_ = block
		res := h.enqueue(g)
		h.runner(nil, append(gr.steps(), h.taskStep())...)
		require.Eventually(t, func() bool { return h.job("x").State == dag.Blocked && h.job("x").Expanded }, 30*time.Second, 10*time.Millisecond)
		ended, err := h.client.Cancel(ctx, "x", "not now")
		require.NoError(t, err)
		// x, after, and the unfinished sub-graph: kid-0 (waits for slow) and
		// join; kid-1 may have finished already
		require.GreaterOrEqual(t, ended, 4)
		_, err = h.client.Cancel(ctx, "x", "again")
		var se *dag.StateError
		require.ErrorAs(t, err, &se, "a finished job cannot be cancelled")
		require.Equal(t, dag.Cancelled, se.State)
		require.Equal(t, dag.Cancelled, h.job("x/kid-0").State)
		require.Equal(t, dag.Cancelled, h.job("x/join").State)
		_, err = h.client.Cancel(ctx, "slow", "")
		require.NoError(t, err)
		f := requireConsistent(t, h, res.FlowID)
		require.Equal(t, dag.Cancelled, nodeByID(f, "after").State)
	})
}

// An expansion whose new node depends on a job downstream of the
// expanding one would close a cycle: refused with ErrCycle naming the
// path, nothing written, the attempt failed; nothing waits forever.
func TestExpansionCycleIsRefused(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		gr := newGrowth()
		h.runner(nil, append(gr.steps(), h.taskStep())...)
		g := flow.New()
		x := g.Add(Grow{Kids: 1, After: "down"}, &flow.NodeOpts{ID: "x", Attempts: 1})
		g.Add(Task{Name: "down"}, &flow.NodeOpts{ID: "down"}).After(x)
		res := h.enqueue(g)
		f := requireConsistent(t, h, res.FlowID)
		require.Len(t, f.Nodes, 2, "nothing of the sub-graph was written")
		xn := nodeByID(f, "x")
		require.Equal(t, dag.Failed, xn.State)
		require.NotNil(t, xn.Error)
		require.Contains(t, xn.Error.Message, `dependency cycle: "x" → "down" → "x/kid-0" → "x"`)
		require.False(t, xn.Expanded)
		require.Equal(t, dag.Cancelled, nodeByID(f, "down").State)
		_, err := h.client.Job(context.Background(), "x/kid-0")
		require.ErrorIs(t, err, flow.ErrNotFound)
	})
}

// A flow ID is one flow's: a flow of several jobs cannot take the ID of a
// one-job flow (keyed by its job's ID), nor the other way round.
func TestFlowIDsDoNotCollide(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		_, err := h.client.Add(ctx, Task{Name: "solo"}, &flow.NodeOpts{ID: "taken"})
		require.NoError(t, err)
		before := h.keys()
		g := flow.New().WithID("taken")
		g.Add(Task{Name: "a"}, &flow.NodeOpts{ID: "fa"})
		g.Add(Task{Name: "b"}, &flow.NodeOpts{ID: "fb"})
		_, err = h.client.Enqueue(ctx, g)
		require.ErrorIs(t, err, flow.ErrConflict)
		require.Contains(t, err.Error(), `flow ID "taken"`)
		require.Equal(t, before, h.keys(), "nothing written")

		g = flow.New().WithID("multi")
		g.Add(Task{Name: "a"}, &flow.NodeOpts{ID: "ma"})
		g.Add(Task{Name: "b"}, &flow.NodeOpts{ID: "mb"})
		h.enqueue(g)
		before = h.keys()
		_, err = h.client.Add(ctx, Task{Name: "solo"}, &flow.NodeOpts{ID: "multi"})
		require.ErrorIs(t, err, flow.ErrConflict)
		require.Equal(t, before, h.keys(), "nothing written")

		h.runner(nil)
		f := requireConsistent(t, h, "multi", "taken")
		require.Len(t, f.Nodes, 2)
	})
}

// CancelFlow says how many jobs it ended, the same number every time for
// the same shape.
func TestCancelFlowCountIsDeterministic(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		for i := range 5 {
			g := flow.New().WithID(fmt.Sprintf("shape-%d", i))
			a := g.Add(Task{Name: "a"}, &flow.NodeOpts{ID: fmt.Sprintf("a-%d", i)})
			b := g.Add(Task{Name: "b"}, &flow.NodeOpts{ID: fmt.Sprintf("b-%d", i)}).After(a)
			g.Add(Task{Name: "c"}, &flow.NodeOpts{ID: fmt.Sprintf("c-%d", i)}).After(b)
			g.Add(Task{Name: "d"}, &flow.NodeOpts{ID: fmt.Sprintf("d-%d", i), Policy: dag.Skip}).After(a)
			h.enqueue(g)
			n, err := h.client.CancelFlow(ctx, g.ID(), "")
			require.NoError(t, err)
			require.Equal(t, 4, n, "every unfinished job of the flow")
			n, err = h.client.CancelFlow(ctx, g.ID(), "")
			require.NoError(t, err)
			require.Zero(t, n, "a finished flow ends none")
		}
	})
}
