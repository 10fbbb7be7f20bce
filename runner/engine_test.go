package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
)

func TestDiamond(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		g := flow.New()
		a := g.Add(Task{Name: "a"}, &flow.NodeOpts{ID: "a"})
		b := g.Add(Task{Name: "b"}, &flow.NodeOpts{ID: "b"}).After(a)
		c := g.Add(Task{Name: "c"}, &flow.NodeOpts{ID: "c"}).After(a)
		d := g.Add(Task{Name: "d"}, &flow.NodeOpts{ID: "d"}).After(b, c)
		res := h.enqueue(g)
		require.Len(t, res.Jobs, 4)
		st, _ := res.Job("d")
		require.Equal(t, dag.Blocked, st.State)
		h.runner(nil)
		f := h.wait(res.FlowID)
		for _, n := range f.Nodes {
			require.Equal(t, dag.Succeeded, n.State, n.ID)
		}
		require.Equal(t, 1, h.log.runs("d"), "d runs once")
		require.Less(t, h.log.index("a"), h.log.index("b"))
		require.Less(t, h.log.index("a"), h.log.index("c"))
		require.Less(t, h.log.index("b"), h.log.index("d"))
		require.Less(t, h.log.index("c"), h.log.index("d"))
		var dr TaskResult
		require.NoError(t, json.Unmarshal(nodeByID(f, d.ID()).Result, &dr))
		require.Equal(t, map[string]string{"b": "succeeded", "c": "succeeded"}, dr.Parents)
		require.ElementsMatch(t, []string{"b", "c"}, nodeByID(f, "a").Children)
		require.Equal(t, []string{"a"}, nodeByID(f, "b").Parents)
		require.Equal(t, "a", f.Nodes[0].ID, "flow nodes come in topological order")
		require.Equal(t, "d", f.Nodes[3].ID)
	})
}

func TestFanOutFanIn(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		g := flow.New()
		root := g.Add(Task{Name: "root"}, &flow.NodeOpts{ID: "root"})
		var mids []*flow.Node
		for i := range 1000 {
			mids = append(mids, g.Add(Task{Name: "mid"}, &flow.NodeOpts{ID: fmt.Sprintf("mid-%04d", i)}).After(root))
		}
		g.Add(Task{Name: "sink"}, &flow.NodeOpts{ID: "sink"}).After(mids...)
		res := h.enqueue(g)
		h.runner(&runner.Config{Concurrency: 32})
		f := h.wait(res.FlowID)
		require.Len(t, f.Nodes, 1002)
		require.Equal(t, int(1002), f.Counts()[dag.Succeeded])
		require.Equal(t, 1, h.log.runs("sink"))
		require.Equal(t, 1001, h.log.index("sink"), "the sink runs last")
		require.Equal(t, 0, h.log.index("root"))
	})
}

func TestChain(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		g := flow.New()
		prev := g.Add(Task{Name: "0"}, &flow.NodeOpts{ID: "n000"})
		for i := 1; i < 100; i++ {
			prev = g.Add(Task{Name: fmt.Sprint(i)}, &flow.NodeOpts{ID: fmt.Sprintf("n%03d", i)}).After(prev)
		}
		res := h.enqueue(g)
		h.runner(nil)
		f := h.wait(res.FlowID)
		require.Equal(t, 100, f.Counts()[dag.Succeeded])
		order := h.log.snapshot()
		require.Len(t, order, 100)
		for i, id := range order {
			require.Equal(t, fmt.Sprintf("n%03d", i), id)
		}
	})
}

func TestFailurePolicies(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		g := flow.New()
		bad := g.Add(Task{Name: "bad", Permanent: true}, &flow.NodeOpts{ID: "bad"})
		good := g.Add(Task{Name: "good"}, &flow.NodeOpts{ID: "good"})
		req := g.Add(Task{Name: "req"}, &flow.NodeOpts{ID: "req"}).After(bad, good)
		reqChild := g.Add(Task{Name: "req-child"}, &flow.NodeOpts{ID: "req-child"}).After(req)
		ign := g.Add(Task{Name: "ign"}, &flow.NodeOpts{ID: "ign", Policy: dag.Ignore}).After(bad, good)
		skp := g.Add(Task{Name: "skp"}, &flow.NodeOpts{ID: "skp", Policy: dag.Skip}).After(bad, good)
		g.Add(Task{Name: "skp-child"}, &flow.NodeOpts{ID: "skp-child"}).After(skp)
		_ = reqChild
		_ = ign
		res := h.enqueue(g)
		h.runner(nil)
		f := h.wait(res.FlowID)

		require.Equal(t, dag.Failed, nodeByID(f, "bad").State)
		require.Equal(t, 1, nodeByID(f, "bad").Attempt, "a permanent error does not retry")
		require.Contains(t, nodeByID(f, "bad").Error.Message, "bad refuses")

		require.Equal(t, dag.Cancelled, nodeByID(f, "req").State)
		require.Equal(t, "parent bad failed", nodeByID(f, "req").Reason)
		require.Equal(t, dag.Cancelled, nodeByID(f, "req-child").State)
		require.Equal(t, "parent req cancelled", nodeByID(f, "req-child").Reason)
		require.Equal(t, "bad", nodeByID(f, "req-child").Cause)

		ignNode := nodeByID(f, "ign")
		require.Equal(t, dag.Succeeded, ignNode.State)
		var ir TaskResult
		require.NoError(t, json.Unmarshal(ignNode.Result, &ir))
		require.Equal(t, map[string]string{"bad": "failed", "good": "succeeded"}, ir.Parents, "ignore sees which parents failed")

		require.Equal(t, dag.Skipped, nodeByID(f, "skp").State)
		require.Equal(t, dag.Skipped, nodeByID(f, "skp-child").State, "skips propagate under require")
		for _, id := range []string{"req", "req-child", "skp", "skp-child"} {
			require.Zero(t, h.log.runs(id), id)
		}
	})
}

func TestConditions(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		g := flow.New()
		p := g.Add(Task{Name: "plan"}, &flow.NodeOpts{ID: "plan"})
		g.Add(Task{Name: "yes"}, &flow.NodeOpts{ID: "yes", When: `parents["plan"].state == "succeeded" && parents["plan"].result.name == "plan"`}).After(p)
		no := g.Add(Task{Name: "no"}, &flow.NodeOpts{ID: "no", When: `parents.plan.result.name == "other"`}).After(p)
		g.Add(Task{Name: "after-no"}, &flow.NodeOpts{ID: "after-no"}).After(no)
		g.Add(Task{Name: "msg"}, &flow.NodeOpts{ID: "msg", When: `message.name == "msg"`})
		res := h.enqueue(g)
		h.runner(nil)
		f := h.wait(res.FlowID)
		require.Equal(t, dag.Succeeded, nodeByID(f, "yes").State)
		require.Equal(t, dag.Succeeded, nodeByID(f, "msg").State)
		require.Equal(t, dag.Skipped, nodeByID(f, "no").State)
		require.Contains(t, nodeByID(f, "no").Reason, "condition false")
		require.Equal(t, dag.Skipped, nodeByID(f, "after-no").State)
		require.Zero(t, h.log.runs("no"))
	})
}

func TestRetriesWithBackoffThenFailure(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		g := flow.New()
		base := 40 * time.Millisecond
		bo := flow.Exponential(base)
		flaky := g.Add(Task{Name: "flaky", FailTimes: 2}, &flow.NodeOpts{ID: "flaky", Backoff: &bo})
		doomed := g.Add(Task{Name: "doomed", FailTimes: 100}, &flow.NodeOpts{ID: "doomed", Backoff: &bo, Attempts: 3})
		g.Add(Task{Name: "child"}, &flow.NodeOpts{ID: "child"}).After(doomed, flaky)
		res := h.enqueue(g)
		h.runner(nil)
		f := h.wait(res.FlowID)

		fl := nodeByID(f, "flaky")
		require.Equal(t, dag.Succeeded, fl.State)
		require.Equal(t, 3, fl.Attempt)
		d := nodeByID(f, "doomed")
		require.Equal(t, dag.Failed, d.State)
		require.Equal(t, 3, d.Attempt)
		require.Equal(t, "doomed failed attempt 3", d.Error.Message)
		require.Equal(t, 3, h.log.runs("doomed"))
		// the gaps between runs follow the backoff: base, then 2·base
		starts := activeTimes(d)
		require.Len(t, starts, 3)
		require.GreaterOrEqual(t, starts[1].Sub(starts[0]), base)
		require.GreaterOrEqual(t, starts[2].Sub(starts[1]), 2*base)
		require.Contains(t, states(d), dag.Delayed)

		c := nodeByID(f, "child")
		require.Equal(t, dag.Cancelled, c.State)
		require.Equal(t, "parent doomed failed", c.Reason)

		// stats count 4 retries (2 + 2) and one failure out of two finished runs
		require.Eventually(t, func() bool {
			st, err := h.client.Stats(context.Background(), nil)
			require.NoError(t, err)
			return st.Retries == 4 && st.ErrorRate == 50
		}, 5*time.Second, 50*time.Millisecond)
	})
}

func activeTimes(n *dag.Node) []time.Time {
	var out []time.Time
	for _, tr := range n.Timeline {
		if tr.To == dag.Active {
			out = append(out, tr.At)
		}
	}
	return out
}

func states(n *dag.Node) []dag.State {
	var out []dag.State
	for _, tr := range n.Timeline {
		out = append(out, tr.To)
	}
	return out
}

func TestRetryAfterPanicAndTimeout(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		retryAfter := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Probe) (string, error) {
			switch m.Mode {
			case "retry-after":
				if sc.Attempt == 1 {
					return "", flow.RetryAfter(150*time.Millisecond, errors.New("rate limited"))
				}
			case "timeout":
				<-ctx.Done()
				return "", ctx.Err()
			}
			return "ok", nil
		})
		g := flow.New()
		g.Add(Probe{Mode: "retry-after"}, &flow.NodeOpts{ID: "ra"})
		g.Add(Task{Name: "panics", Panic: true}, &flow.NodeOpts{ID: "panics", Attempts: 1})
		g.Add(Probe{Mode: "timeout"}, &flow.NodeOpts{ID: "slow", Attempts: 1, Timeout: 50 * time.Millisecond})
		res := h.enqueue(g)
		h.runner(nil, h.taskStep(), retryAfter)
		f := h.wait(res.FlowID)

		ra := nodeByID(f, "ra")
		require.Equal(t, dag.Succeeded, ra.State)
		starts := activeTimes(ra)
		require.GreaterOrEqual(t, starts[1].Sub(starts[0]), 150*time.Millisecond)

		p := nodeByID(f, "panics")
		require.Equal(t, dag.Failed, p.State)
		require.Equal(t, "step panicked: boom in panics", p.Error.Message)
		require.Contains(t, p.Error.Stack, "runtime/debug.Stack")
		require.Contains(t, p.Error.Stack, "harness_test.go")

		s := nodeByID(f, "slow")
		require.Equal(t, dag.Failed, s.State)
		require.Contains(t, s.Error.Message, "step timed out after 50ms")
	})
}

// An ordinary error keeps a stack when it has one (flow.WithStack, or an
// error that prints one with %+v); one without keeps none.
func TestErrorStacks(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		step := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Probe) (string, error) {
			switch m.Mode {
			case "with-stack":
				return "", flow.Permanent(fmt.Errorf("saving: %w", flow.WithStack(errors.New("row refused"))))
			case "formatter":
				return "", flow.Permanent(stackPrinter{})
			case "twice":
				if sc.Attempt <= 2 {
					return "", flow.WithStack(fmt.Errorf("attempt %d refused", sc.Attempt))
				}
				return "ok", nil
			}
			return "", flow.Permanent(errors.New("plain"))
		})
		g := flow.New()
		g.Add(Probe{Mode: "with-stack"}, &flow.NodeOpts{ID: "with-stack", Attempts: 1})
		g.Add(Probe{Mode: "formatter"}, &flow.NodeOpts{ID: "formatter", Attempts: 1})
		g.Add(Probe{Mode: "plain"}, &flow.NodeOpts{ID: "plain", Attempts: 1})
		g.Add(Probe{Mode: "twice"}, &flow.NodeOpts{ID: "twice", Attempts: 3, Backoff: &dag.Backoff{Kind: dag.Fixed, Base: time.Millisecond}})
		res := h.enqueue(g)
		h.runner(nil, step)
		f := h.wait(res.FlowID)

		ws := nodeByID(f, "with-stack")
		require.Equal(t, "saving: row refused", ws.Error.Message)
		require.Contains(t, ws.Error.Stack, "TestErrorStacks")
		require.Contains(t, ws.Error.Stack, "engine_test.go:")
		require.Equal(t, "step failed\nat the place it was made", nodeByID(f, "formatter").Error.Stack)
		require.Empty(t, nodeByID(f, "plain").Error.Stack)
		// each failed attempt keeps its own in the error history
		tw := nodeByID(f, "twice")
		require.Equal(t, dag.Succeeded, tw.State)
		require.Len(t, tw.Errors, 2)
		for i, e := range tw.Errors {
			require.Equal(t, fmt.Sprintf("attempt %d refused", i+1), e.Message)
			require.Contains(t, e.Stack, "TestErrorStacks")
		}
	})
}

// stackPrinter prints a stack with %+v, as github.com/pkg/errors does.
type stackPrinter struct{}

func (stackPrinter) Error() string { return "step failed" }
func (e stackPrinter) Format(s fmt.State, verb rune) {
	if verb == 'v' && s.Flag('+') {
		_, _ = io.WriteString(s, "step failed\nat the place it was made")
		return
	}
	_, _ = io.WriteString(s, e.Error())
}

// Probe is a second message type for steps defined inside tests.
type Probe struct {
	Mode string `json:"mode"`
	N    int    `json:"n,omitempty"`
}

func (Probe) MessageType() string { return "TEST_PROBE" }

func TestManualRetry(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		var broken = make(chan struct{})
		step := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Probe) (int, error) {
			h.log.add(sc.JobID)
			select {
			case <-broken:
				return m.N, nil
			default:
				return 0, flow.Permanent(errors.New("database down"))
			}
		})
		g := flow.New()
		a := g.Add(Probe{N: 1}, &flow.NodeOpts{ID: "a"})
		b := g.Add(Task{Name: "b"}, &flow.NodeOpts{ID: "b"}).After(a)
		g.Add(Task{Name: "c"}, &flow.NodeOpts{ID: "c"}).After(b)
		other := g.Add(Task{Name: "other"}, &flow.NodeOpts{ID: "other"})
		g.Add(Task{Name: "ign"}, &flow.NodeOpts{ID: "ign", Policy: dag.Ignore}).After(a, other)
		res := h.enqueue(g)
		h.runner(nil, h.taskStep(), step)
		f := h.wait(res.FlowID)
		require.Equal(t, dag.Failed, nodeByID(f, "a").State)
		require.Equal(t, dag.Cancelled, nodeByID(f, "c").State)
		require.Equal(t, dag.Succeeded, nodeByID(f, "ign").State)

		_, err := h.client.Retry(context.Background(), "other")
		require.ErrorIs(t, err, flow.ErrState)
		_, err = h.client.Retry(context.Background(), "nope")
		require.ErrorIs(t, err, flow.ErrNotFound)

		close(broken)
		n, err := h.client.Retry(context.Background(), "a")
		require.NoError(t, err)
		require.Equal(t, 3, n, "a and the two nodes cancelled because of it")
		f = h.wait(res.FlowID)
		for _, id := range []string{"a", "b", "c"} {
			require.Equal(t, dag.Succeeded, nodeByID(f, id).State, id)
		}
		require.Equal(t, 1, nodeByID(f, "a").Attempt, "attempts start over")
		require.Equal(t, dag.Succeeded, nodeByID(f, "ign").State)
		require.Equal(t, 1, h.log.runs("ign"), "a child that already ran is not run again")
	})
}

func TestCancel(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		g := flow.New()
		a := g.Add(Task{Name: "a", Sleep: 10 * time.Second}, &flow.NodeOpts{ID: "a"})
		b := g.Add(Task{Name: "b"}, &flow.NodeOpts{ID: "b"}).After(a)
		g.Add(Task{Name: "c"}, &flow.NodeOpts{ID: "c"}).After(b)
		g.Add(Task{Name: "d"}, &flow.NodeOpts{ID: "d", Policy: dag.Ignore}).After(a, b)
		res := h.enqueue(g)
		ended, err := h.client.Cancel(ctx, "b", "user changed their mind")
		require.NoError(t, err)
		require.Positive(t, ended)
		f, err := h.client.Flow(ctx, res.FlowID)
		require.NoError(t, err)
		require.Equal(t, dag.Cancelled, nodeByID(f, "b").State)
		require.Equal(t, "user changed their mind", nodeByID(f, "b").Reason)
		require.Equal(t, dag.Cancelled, nodeByID(f, "c").State)
		require.Equal(t, "parent b cancelled", nodeByID(f, "c").Reason)
		require.Equal(t, dag.Blocked, nodeByID(f, "d").State, "an ignore child still waits for its other parents")

		h.runner(nil)
		require.Eventually(t, func() bool { return h.job("a").State == dag.Active }, 10*time.Second, 10*time.Millisecond)
		n, err := h.client.CancelFlow(ctx, res.FlowID, "")
		require.NoError(t, err)
		require.Equal(t, 2, n, "a (active) and d (blocked)")
		f = h.wait(res.FlowID)
		require.Equal(t, dag.Cancelled, nodeByID(f, "a").State)
		require.Equal(t, "flow cancelled", nodeByID(f, "a").Reason)
		// the running step loses its lease at the next heartbeat; its result is refused
		_, err = h.client.Cancel(ctx, "nope", "")
		require.ErrorIs(t, err, flow.ErrNotFound)
	})
}

func TestDependencyOnEarlierJobs(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		h.runner(nil)
		ok, err := h.client.Add(ctx, Task{Name: "ok"}, &flow.NodeOpts{ID: "plan-ok"})
		require.NoError(t, err)
		bad, err := h.client.Add(ctx, Task{Name: "bad", Permanent: true}, &flow.NodeOpts{ID: "plan-bad"})
		require.NoError(t, err)
		h.wait(ok.ID)
		h.wait(bad.ID)

		// succeeded parent: satisfied at once
		j, err := h.client.Add(ctx, Task{Name: "p1"}, &flow.NodeOpts{ID: "phase-1", Delay: time.Hour}, "plan-ok")
		require.NoError(t, err)
		require.Equal(t, dag.Delayed, j.State, "no unfinished parent: straight to delayed/ready")
		// failed parent: the child's policy applies at enqueue
		j, err = h.client.Add(ctx, Task{Name: "p2"}, &flow.NodeOpts{ID: "phase-2"}, "plan-bad")
		require.NoError(t, err)
		require.Equal(t, dag.Cancelled, j.State)
		require.Equal(t, "parent plan-bad failed", h.job("phase-2").Reason)
		j, err = h.client.Add(ctx, Task{Name: "p3"}, &flow.NodeOpts{ID: "phase-3", Policy: dag.Ignore}, "plan-bad")
		require.NoError(t, err)
		require.Equal(t, dag.Ready, j.State)
		// unfinished parent: waits for it
		slow, err := h.client.Add(ctx, Task{Name: "slow", Sleep: 300 * time.Millisecond}, &flow.NodeOpts{ID: "plan-slow"})
		require.NoError(t, err)
		j, err = h.client.Add(ctx, Task{Name: "p4"}, &flow.NodeOpts{ID: "phase-4"}, slow.ID)
		require.NoError(t, err)
		require.Equal(t, dag.Blocked, j.State)
		h.wait("phase-4")
		require.Equal(t, dag.Succeeded, h.job("phase-4").State)
		require.Less(t, h.log.index("plan-slow"), h.log.index("phase-4"))
		// unknown parent: an error, nothing written (the runner may add its
		// minute stats meanwhile, so count nodes)
		before := h.keysLike("n:*")
		_, err = h.client.Add(ctx, Task{Name: "p5"}, &flow.NodeOpts{ID: "phase-5"}, "no-such-plan")
		var ue *dag.UnknownDependencyError
		require.ErrorAs(t, err, &ue)
		require.Equal(t, "no-such-plan", ue.Dependency)
		require.Equal(t, before, h.keysLike("n:*"))
	})
}

func TestIdempotentEnqueue(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		first, err := h.client.Add(ctx, Task{Name: "x"}, &flow.NodeOpts{ID: "job-1"})
		require.NoError(t, err)
		require.False(t, first.Existed)
		again, err := h.client.Add(ctx, Task{Name: "x"}, &flow.NodeOpts{ID: "job-1"})
		require.NoError(t, err)
		require.True(t, again.Existed)
		_, err = h.client.Add(ctx, Task{Name: "y"}, &flow.NodeOpts{ID: "job-1"})
		var ce *dag.ConflictError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "job-1", ce.ID)
		require.ErrorIs(t, err, flow.ErrConflict)
	})
}

func TestBadInputWritesNothing(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		big := strings.Repeat("x", 1<<20)
		cases := []struct {
			name  string
			graph func() *flow.Graph
			is    error
			msg   string
		}{
			{"cycle", func() *flow.Graph {
				g := flow.New()
				a := g.Add(Task{Name: "a"}, &flow.NodeOpts{ID: "a"})
				b := g.Add(Task{Name: "b"}, &flow.NodeOpts{ID: "b"}).After(a)
				c := g.Add(Task{Name: "c"}, &flow.NodeOpts{ID: "c"}).After(b)
				a.After(c)
				return g
			}, flow.ErrCycle, `dependency cycle: "a" → "b" → "c" → "a"`},
			{"self", func() *flow.Graph {
				g := flow.New()
				a := g.Add(Task{Name: "a"}, &flow.NodeOpts{ID: "a"})
				a.After(a)
				return g
			}, flow.ErrCycle, `"a" → "a"`},
			{"duplicate", func() *flow.Graph {
				g := flow.New()
				g.Add(Task{Name: "a"}, &flow.NodeOpts{ID: "a"})
				g.Add(Task{Name: "a2"}, &flow.NodeOpts{ID: "a"})
				return g
			}, flow.ErrDuplicateNode, `duplicate node ID "a"`},
			{"unknown dependency", func() *flow.Graph {
				g := flow.New()
				g.Add(Task{Name: "a"}, &flow.NodeOpts{ID: "a"})
				g.Add(Task{Name: "b"}, &flow.NodeOpts{ID: "b"}).AfterJob("ghost")
				return g
			}, flow.ErrUnknownDependency, `node "b" depends on unknown job "ghost"`},
			{"bad condition", func() *flow.Graph {
				g := flow.New()
				a := g.Add(Task{Name: "a"}, &flow.NodeOpts{ID: "a"})
				g.Add(Task{Name: "b"}, &flow.NodeOpts{ID: "b", When: `parents["a"].state ==`}).After(a)
				return g
			}, flow.ErrInvalidCondition, `node "b": condition`},
			{"condition not bool", func() *flow.Graph {
				g := flow.New()
				g.Add(Task{Name: "b"}, &flow.NodeOpts{ID: "b", When: `1 + 2`})
				return g
			}, flow.ErrInvalidCondition, `node "b"`},
			{"condition on a non-parent", func() *flow.Graph {
				g := flow.New()
				g.Add(Task{Name: "b"}, &flow.NodeOpts{ID: "b", When: `parents["zzz"].state == "succeeded"`})
				return g
			}, flow.ErrInvalidCondition, `parents["zzz"]`},
			{"condition calls a forbidden function", func() *flow.Graph {
				g := flow.New()
				g.Add(Task{Name: "b"}, &flow.NodeOpts{ID: "b", When: `now() != nil`})
				return g
			}, flow.ErrInvalidCondition, `now`},
			{"payload too large", func() *flow.Graph {
				g := flow.New()
				g.Add(Task{Name: "ok"}, &flow.NodeOpts{ID: "ok"})
				g.Add(Task{Name: big}, &flow.NodeOpts{ID: "big"})
				return g
			}, flow.ErrPayloadTooLarge, `node "big": payload of`},
			{"nil message", func() *flow.Graph {
				g := flow.New()
				g.Add(Task{Name: "ok"}, &flow.NodeOpts{ID: "ok"})
				g.Add(nil, &flow.NodeOpts{ID: "nil"})
				return g
			}, flow.ErrNilMessage, `node "nil"`},
			{"control character in ID", func() *flow.Graph {
				g := flow.New()
				g.Add(Task{Name: "ok"}, &flow.NodeOpts{ID: "a\x1fb"})
				return g
			}, flow.ErrInvalidNode, `control character`},
			{"bad policy", func() *flow.Graph {
				g := flow.New()
				g.Add(Task{Name: "ok"}, &flow.NodeOpts{ID: "a", Policy: "sometimes"})
				return g
			}, flow.ErrInvalidNode, `policy`},
			{"empty", func() *flow.Graph { return flow.New() }, flow.ErrEmptyGraph, `no nodes`},
		}
		// an earlier job that the unknown-dependency case must not touch
		_, err := h.client.Add(ctx, Task{Name: "keep"}, &flow.NodeOpts{ID: "keep"})
		require.NoError(t, err)
		before := h.keys()
		dump := h.dump()
		for _, tc := range cases {
			_, err := h.client.Enqueue(ctx, tc.graph())
			require.ErrorIs(t, err, tc.is, tc.name)
			require.Contains(t, err.Error(), tc.msg, tc.name)
			require.Equal(t, before, h.keys(), "%s wrote to Redis", tc.name)
		}
		require.Equal(t, dump, h.dump(), "Redis is untouched")
	})
}

// dump reads every key of the namespace with its type and contents.
func (h *harness) dump() map[string]string {
	ctx := context.Background()
	out := map[string]string{}
	iter := h.rdb.Scan(ctx, 0, "trellis:{"+h.ns+"}:*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		typ := h.rdb.Type(ctx, k).Val()
		var v any
		switch typ {
		case "hash":
			v = h.rdb.HGetAll(ctx, k).Val()
		case "set":
			v = h.rdb.SMembers(ctx, k).Val()
		case "zset":
			v = h.rdb.ZRangeWithScores(ctx, k, 0, -1).Val()
		case "list":
			v = h.rdb.LRange(ctx, k, 0, -1).Val()
		case "stream":
			v = h.rdb.XLen(ctx, k).Val()
		default:
			v = h.rdb.Get(ctx, k).Val()
		}
		out[k] = fmt.Sprint(typ, v)
	}
	require.NoError(h.t, iter.Err())
	return out
}

// Concurrent enqueues share script calls; each still gets its own result,
// and a bad one neither fails nor blocks the others.
func TestConcurrentEnqueuesCoalesce(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		_, err := h.client.Add(ctx, Task{Name: "taken"}, &flow.NodeOpts{ID: "taken"})
		require.NoError(t, err)
		const n = 300
		errs := make([]error, n)
		jobs := make([]flow.EnqueuedJob, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch i % 10 {
				case 3: // a conflict
					jobs[i], errs[i] = h.client.Add(ctx, Task{Name: "other"}, &flow.NodeOpts{ID: "taken"})
				case 7: // an unknown dependency
					jobs[i], errs[i] = h.client.Add(ctx, Task{Name: "orphan"}, &flow.NodeOpts{ID: fmt.Sprintf("orphan-%d", i)}, "ghost")
				default:
					jobs[i], errs[i] = h.client.Add(ctx, Task{Name: "ok"}, &flow.NodeOpts{ID: fmt.Sprintf("job-%d", i)})
				}
			}()
		}
		wg.Wait()
		for i := range n {
			switch i % 10 {
			case 3:
				require.ErrorIs(t, errs[i], flow.ErrConflict, i)
			case 7:
				require.ErrorIs(t, errs[i], flow.ErrUnknownDependency, i)
				require.False(t, flow.IsNotFound(errs[i]))
			default:
				require.NoError(t, errs[i], i)
				require.Equal(t, fmt.Sprintf("job-%d", i), jobs[i].ID)
				require.Equal(t, dag.Ready, jobs[i].State)
			}
		}
		require.Equal(t, n-2*n/10+1, h.keysLike("n:*"), "every good job and nothing else")
		st, err := h.client.Stats(ctx, nil)
		require.NoError(t, err)
		require.Equal(t, int64(n-2*n/10+1), st.Counts[dag.Ready])
	})
}

// AddBulk writes every job or none: a conflict, an unknown dependency, a
// repeated ID or a bad message anywhere in the bulk leaves nothing behind,
// and the error names the job.
func TestAddBulk(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		_, err := h.client.Add(ctx, Task{Name: "taken"}, &flow.NodeOpts{ID: "taken"})
		require.NoError(t, err)
		bulk := func(bad flow.BulkJob, at int) []flow.BulkJob {
			jobs := make([]flow.BulkJob, 20)
			for i := range jobs {
				jobs[i] = flow.BulkJob{Msg: Task{Name: fmt.Sprint(i)}, Opts: &flow.NodeOpts{ID: fmt.Sprintf("b-%d", i)}}
			}
			if at >= 0 {
				jobs[at] = bad
			}
			return jobs
		}
		for _, c := range []struct {
			name string
			bad  flow.BulkJob
			is   error
			msg  string
		}{
			{"conflict", flow.BulkJob{Msg: Task{Name: "other"}, Opts: &flow.NodeOpts{ID: "taken"}}, flow.ErrConflict, "job 7: "},
			{"unknown dependency", flow.BulkJob{Msg: Task{Name: "orphan"}, After: []string{"ghost"}}, flow.ErrUnknownDependency, "job 7: "},
			{"repeated ID", flow.BulkJob{Msg: Task{Name: "again"}, Opts: &flow.NodeOpts{ID: "b-1"}}, nil, "b-1"},
			{"nil message", flow.BulkJob{}, flow.ErrNilMessage, "job 7: "},
		} {
			_, err := h.client.AddBulk(ctx, bulk(c.bad, 7))
			require.Error(t, err, c.name)
			if c.is != nil {
				require.ErrorIs(t, err, c.is, c.name)
			}
			require.Contains(t, err.Error(), c.msg, c.name)
			require.Equal(t, 1, h.keysLike("n:*"), "%s: nothing of the bulk was written", c.name)
		}

		jobs, err := h.client.AddBulk(ctx, append(bulk(flow.BulkJob{}, -1), flow.BulkJob{Msg: Task{Name: "after"}, After: []string{"taken"}}))
		require.NoError(t, err)
		require.Len(t, jobs, 21)
		for i, j := range jobs[:20] {
			require.Equal(t, fmt.Sprintf("b-%d", i), j.ID)
			require.Equal(t, dag.Ready, j.State)
			require.False(t, j.Existed)
		}
		require.Equal(t, dag.Blocked, jobs[20].State, "waits for the earlier job it names")
		again, err := h.client.AddBulk(ctx, bulk(flow.BulkJob{}, -1)[:3])
		require.NoError(t, err)
		require.True(t, again[0].Existed && again[1].Existed && again[2].Existed, "the same jobs again are the existing ones")

		h.runner(nil)
		for i := range 20 {
			require.Eventually(t, func() bool { return h.job(fmt.Sprintf("b-%d", i)).State == dag.Succeeded }, 30*time.Second, 10*time.Millisecond)
		}
		f := h.wait(jobs[20].ID)
		require.Equal(t, dag.Succeeded, f.Nodes[0].State)
		st, err := h.client.Stats(ctx, nil)
		require.NoError(t, err)
		require.Equal(t, int64(22), st.Counts[dag.Succeeded])
	})
}

// A step that fails because a dependency is down (flow.Unavailable) makes
// its runner claim no new job until that retry is due, so the jobs waiting
// keep their attempts; then everything runs, each waiting job once.
func TestUnavailableHoldsClaims(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		var down atomic.Bool
		down.Store(true)
		var mu sync.Mutex
		runs := map[string]int{}
		ran := func(id string) int {
			mu.Lock()
			defer mu.Unlock()
			return runs[id]
		}
		step := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Probe) (string, error) {
			mu.Lock()
			runs[sc.JobID]++
			mu.Unlock()
			if sc.JobID == "first" && down.Load() {
				return "", flow.Unavailable(errors.New("database is down"))
			}
			return "ok", nil
		})
		hold := flow.Fixed(2 * time.Second)
		ctx := context.Background()
		_, err := h.client.Add(ctx, Probe{Mode: "first"}, &flow.NodeOpts{ID: "first", Priority: 10, Backoff: &hold})
		require.NoError(t, err)
		for i := range 5 {
			_, err := h.client.Add(ctx, Probe{Mode: "later"}, &flow.NodeOpts{ID: fmt.Sprintf("later%d", i)})
			require.NoError(t, err)
		}
		h.runner(&runner.Config{Concurrency: 1, Lease: 5 * time.Second}, step)
		require.Eventually(t, func() bool { return ran("first") == 1 }, 10*time.Second, 5*time.Millisecond)
		time.Sleep(300 * time.Millisecond) // well inside the 2 s hold
		for i := range 5 {
			id := fmt.Sprintf("later%d", i)
			require.Zero(t, ran(id), "%s is not claimed while the dependency is down", id)
			require.Equal(t, dag.Ready, h.job(id).State)
		}
		down.Store(false)
		for _, id := range []string{"first", "later0", "later1", "later2", "later3", "later4"} {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			j, err := h.client.Wait(wctx, id)
			cancel()
			require.NoError(t, err)
			require.Equal(t, dag.Succeeded, nodeByID(j, id).State, id)
		}
		require.Equal(t, 2, ran("first"), "the failed attempt and its retry")
		for i := range 5 {
			require.Equal(t, 1, ran(fmt.Sprintf("later%d", i)), "each waiting job ran once, on its first attempt")
		}
	})
}

// A node keeps the error of each failed attempt, oldest first, the last
// 25; a retry by hand starts its history again.
func TestErrorHistory(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		bo := flow.CustomBackoff("now") // retried at once
		g := flow.New()
		g.Add(Task{Name: "twice", FailTimes: 2}, &flow.NodeOpts{ID: "twice", Backoff: &bo})
		g.Add(Task{Name: "often", FailTimes: 29}, &flow.NodeOpts{ID: "often", Attempts: 30, Backoff: &bo})
		g.Add(Task{Name: "never", Permanent: true}, &flow.NodeOpts{ID: "never", Backoff: &bo})
		res := h.enqueue(g)
		r := h.runner(&runner.Config{Concurrency: 4, IdleWait: 20 * time.Millisecond,
			Backoffs: map[string]flow.BackoffFunc{"now": func(int) time.Duration { return 0 }}})
		f := h.wait(res.FlowID)
		require.NoError(t, r.Stop(ctx))

		twice := nodeByID(f, "twice")
		require.Equal(t, dag.Succeeded, twice.State)
		require.Equal(t, []dag.ErrorInfo{{Message: "twice failed attempt 1", Attempt: 1}, {Message: "twice failed attempt 2", Attempt: 2}}, twice.Errors)

		often := nodeByID(f, "often")
		require.Equal(t, dag.Succeeded, often.State)
		require.Len(t, often.Errors, 25, "the last 25 attempts' errors are kept")
		require.Equal(t, 5, often.Errors[0].Attempt)
		require.Equal(t, "often failed attempt 29", often.Errors[24].Message)

		never := nodeByID(f, "never")
		require.Equal(t, dag.Failed, never.State)
		require.Equal(t, []dag.ErrorInfo{{Message: "never refuses", Attempt: 1}}, never.Errors)
		_, err := h.client.Retry(ctx, "never")
		require.NoError(t, err)
		require.Empty(t, h.job("never").Errors, "a retry by hand starts the history again")
	})
}
