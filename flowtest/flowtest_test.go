package flowtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/flowtest"
	"github.com/trellisflow/trellis/internal/testredis"
)

type Task struct {
	Name string `json:"name"`
	N    int    `json:"n,omitempty"`
}

func (Task) MessageType() string { return "TASK" }

type Email struct {
	To string `json:"to"`
}

func (Email) MessageType() string { return "EMAIL" }

// joinStep returns the task's name after its parents' results, so a
// result shows the path that led to it.
var joinStep = flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Task) (string, error) {
	parents, err := sc.Parents(ctx)
	if err != nil {
		return "", err
	}
	var in []string
	for _, p := range parents {
		var s string
		if len(p.Result) > 0 && json.Unmarshal(p.Result, &s) == nil {
			in = append(in, s)
		}
	}
	sort.Strings(in)
	if len(in) == 0 {
		return m.Name, nil
	}
	return m.Name + "(" + strings.Join(in, "+") + ")", nil
})

func task(g *flow.Graph, id string, opts *flow.NodeOpts) *flow.Node {
	var o flow.NodeOpts
	if opts != nil {
		o = *opts
	}
	o.ID = id
	return g.Add(Task{Name: id}, &o)
}

func diamond(priorityC int) *flow.Graph {
	g := flow.New()
	a := task(g, "a", nil)
	b := task(g, "b", nil).After(a)
	c := task(g, "c", &flow.NodeOpts{Priority: priorityC}).After(a)
	task(g, "d", nil).After(b, c)
	return g
}

func TestDiamondRunsInOrder(t *testing.T) {
	t.Parallel()
	h := flowtest.New(t, joinStep)
	f := h.Run(diamond(0))
	require.True(t, f.Done())
	h.RequireSucceeded("a", "b", "c", "d")
	h.RequireOrder("a", "b", "c", "d")
	var d string
	h.Result("d", &d)
	require.Equal(t, "d(b(a)+c(a))", d)
	require.Zero(t, h.Elapsed(), "nothing was delayed")
	require.Len(t, h.Runs(), 4)
}

func TestPriorityOrdersSiblings(t *testing.T) {
	t.Parallel()
	h := flowtest.New(t, joinStep)
	h.Run(diamond(10))
	h.RequireOrder("a", "c", "b", "d")
}

func TestRetryBackoffTakesFakeTime(t *testing.T) {
	t.Parallel()
	h := flowtest.New(t, joinStep, flowtest.FailsFirst[Email](3, errors.New("SMTP timeout"), "sent"))
	g := flow.New()
	send := g.Add(Email{To: "a@example.com"}, &flow.NodeOpts{ID: "send", Attempts: 4})
	task(g, "after", nil).After(send)

	start := time.Now()
	h.Run(g)
	require.Less(t, time.Since(start), 3*time.Second, "the 14s of backoff must not pass in real time")

	h.RequireSucceeded("send", "after")
	h.RequireAttempts("send", 4)
	require.Equal(t, 14*time.Second, h.Elapsed(), "2s + 4s + 8s")
	runs := h.RunsOf("send")
	require.Len(t, runs, 4)
	t0 := h.Clock().Now().Add(-h.Elapsed())
	for i, want := range []time.Duration{0, 2 * time.Second, 6 * time.Second, 14 * time.Second} {
		require.Equal(t, i+1, runs[i].Attempt)
		require.Equal(t, want, runs[i].At.Sub(t0), "attempt %d", i+1)
	}
	require.EqualError(t, runs[0].Err, "SMTP timeout")
	require.JSONEq(t, `"sent"`, string(runs[3].Result))
}

func TestFailurePolicies(t *testing.T) {
	t.Parallel()
	h := flowtest.New(t, joinStep, flowtest.Fails[Email](errors.New("mailbox full")))
	g := flow.New()
	send := g.Add(Email{To: "a@example.com"}, &flow.NodeOpts{ID: "send"}) // 3 attempts: 2s, 4s
	task(g, "require", nil).After(send)
	task(g, "ignore", &flow.NodeOpts{Policy: dag.Ignore}).After(send)
	task(g, "skip", &flow.NodeOpts{Policy: dag.Skip}).After(send)
	task(g, "grandchild", nil).After(g.Nodes()[1])
	h.Run(g)

	h.RequireState("send", dag.Failed)
	h.RequireAttempts("send", 3)
	require.Equal(t, 6*time.Second, h.Elapsed())
	h.RequireState("require", dag.Cancelled)
	h.RequireState("grandchild", dag.Cancelled)
	h.RequireState("skip", dag.Skipped)
	h.RequireSucceeded("ignore")
	h.RequireRan("send", "ignore")
	h.RequireNotRan("require", "skip", "grandchild")
	require.Equal(t, "parent send failed", h.Job("require").Reason)
	require.Equal(t, "mailbox full", h.Job("send").Error.Message)
}

func TestPermanentFailureDoesNotRetry(t *testing.T) {
	t.Parallel()
	h := flowtest.New(t, flowtest.Fails[Email](flow.Permanent(errors.New("no such address"))))
	g := flow.New()
	g.Add(Email{To: "nobody"}, &flow.NodeOpts{ID: "send", Attempts: 5})
	h.Run(g)
	h.RequireState("send", dag.Failed)
	h.RequireAttempts("send", 1)
	require.Zero(t, h.Elapsed())
}

func TestConditions(t *testing.T) {
	t.Parallel()
	count := flow.StepFunc(func(_ context.Context, _ *flow.StepContext, m Task) (map[string]int, error) {
		return map[string]int{"count": m.N}, nil
	})
	h := flowtest.New(t, count)
	g := flow.New()
	a := g.Add(Task{Name: "a", N: 3}, &flow.NodeOpts{ID: "a"})
	g.Add(Task{Name: "big"}, &flow.NodeOpts{ID: "big", When: `parents["a"].result.count > 5`}).After(a)
	small := g.Add(Task{Name: "small"}, &flow.NodeOpts{ID: "small", When: `parents["a"].result.count <= 5`}).After(a)
	g.Add(Task{Name: "after-small"}, &flow.NodeOpts{ID: "after-small"}).After(small)
	h.Run(g)

	h.RequireSucceeded("a", "small", "after-small")
	h.RequireState("big", dag.Skipped)
	h.RequireNotRan("big")
	h.RequireOrder("a", "small", "after-small")
}

func TestExpansion(t *testing.T) {
	t.Parallel()
	expand := flowtest.Wrap(joinStep, func(ctx context.Context, sc *flow.StepContext, next flowtest.Next) (json.RawMessage, error) {
		if sc.JobID == "plan" {
			sub := flow.New()
			s1 := task(sub, "session-1", nil)
			task(sub, "session-2", nil).After(s1)
			if err := sc.Expand(sub); err != nil {
				return nil, err
			}
		}
		return next(ctx)
	})
	h := flowtest.New(t, expand)
	g := flow.New()
	plan := task(g, "plan", nil)
	task(g, "notify", nil).After(plan)
	f := h.Run(g)

	require.Len(t, f.Nodes, 4)
	h.RequireSucceeded("plan", "session-1", "session-2", "notify")
	h.RequireOrder("plan", "session-1", "session-2", "notify")
	require.True(t, h.Job("plan").Expanded)
}

func TestDelayAndRetryAfter(t *testing.T) {
	t.Parallel()
	h := flowtest.New(t, flowtest.Wrap(joinStep, func(ctx context.Context, sc *flow.StepContext, next flowtest.Next) (json.RawMessage, error) {
		if sc.JobID == "later" && sc.Attempt == 1 {
			return nil, flow.RetryAfter(90*time.Minute, errors.New("rate limited"))
		}
		return next(ctx)
	}))
	g := flow.New()
	task(g, "later", &flow.NodeOpts{Delay: time.Hour})
	task(g, "now", nil)
	h.Run(g)
	h.RequireOrder("now", "later")
	h.RequireAttempts("later", 2)
	require.Equal(t, 150*time.Minute, h.Elapsed())
}

func TestStubBetweenRuns(t *testing.T) {
	t.Parallel()
	h := flowtest.New(t, flowtest.Returns[Email]("real"))
	g := flow.New()
	g.Add(Email{To: "a"}, &flow.NodeOpts{ID: "first"})
	h.Run(g)

	h.Stub(flowtest.Returns[Email]("stubbed"))
	g = flow.New()
	g.Add(Email{To: "b"}, &flow.NodeOpts{ID: "second"})
	h.Run(g)

	var first, second string
	h.Result("first", &first)
	h.Result("second", &second)
	require.Equal(t, "real", first)
	require.Equal(t, "stubbed", second)

	h.Stub(joinStep) // a new type after the runner started
	g = flow.New()
	task(g, "third", nil)
	h.Run(g)
	h.RequireSucceeded("third")
}

func TestAfterJobAndDrain(t *testing.T) {
	t.Parallel()
	h := flowtest.New(t, joinStep)
	ctx := context.Background()
	plan, err := h.Client().Add(ctx, Task{Name: "plan"}, &flow.NodeOpts{ID: "plan", Delay: time.Minute})
	require.NoError(t, err)
	_, err = h.Client().Add(ctx, Task{Name: "phase"}, &flow.NodeOpts{ID: "phase"}, plan.ID)
	require.NoError(t, err)
	h.Drain()
	h.RequireSucceeded("plan", "phase")
	var phase string
	h.Result("phase", &phase)
	require.Equal(t, "phase(plan)", phase)
	require.Equal(t, time.Minute, h.Elapsed())
}

func TestCancelAndRetry(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	broken := true
	flaky := flowtest.Wrap(joinStep, func(ctx context.Context, sc *flow.StepContext, next flowtest.Next) (json.RawMessage, error) {
		mu.Lock()
		defer mu.Unlock()
		if sc.JobID == "a" && broken {
			return nil, flow.Permanent(errors.New("down"))
		}
		return next(ctx)
	})
	h := flowtest.New(t, flaky)
	g := flow.New().WithID("f")
	a := task(g, "a", nil)
	task(g, "b", nil).After(a)
	h.Run(g)
	h.RequireState("a", dag.Failed)
	h.RequireState("b", dag.Cancelled)

	mu.Lock()
	broken = false
	mu.Unlock()
	_, err := h.Client().Retry(context.Background(), "a")
	require.NoError(t, err)
	h.Wait("f")
	h.RequireSucceeded("a", "b")
	require.Len(t, h.RunsOf("a"), 2)
}

func TestRateLimitWindowsPassInFakeTime(t *testing.T) {
	t.Parallel()
	h := flowtest.New(t, flowtest.Returns[Email]("sent"))
	require.NoError(t, h.Client().SetLimit(context.Background(), "EMAIL", dag.Limit{Rate: 2, Per: time.Second}))
	g := flow.New()
	for i := range 5 {
		g.Add(Email{To: fmt.Sprint(i)}, &flow.NodeOpts{ID: fmt.Sprintf("mail-%d", i)})
	}
	h.Run(g)
	var at []time.Duration
	for _, r := range h.Runs() {
		at = append(at, r.At.Sub(h.Now().Add(-h.Elapsed())))
	}
	require.Equal(t, []time.Duration{0, 0, time.Second, time.Second, 2 * time.Second}, at)
	h.RequireOrder("mail-0", "mail-1", "mail-2", "mail-3", "mail-4")
}

// fatalTB records a Fatal instead of failing the real test.
type fatalTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// fatal runs fn with a fatalTB and returns the message it failed with.
func fatal(t *testing.T, fn func(tb testing.TB)) string {
	tb := &fatalTB{TB: t}
	return tb.catch(func() { fn(tb) })
}

// catch runs fn on its own goroutine (Fatal ends it) and returns the
// message of the Fatal, or "".
func (f *fatalTB) catch(fn func()) string {
	f.mu.Lock()
	f.msg = ""
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.msg
}

func TestUnfinishedFlowFailsWithTheNodes(t *testing.T) {
	t.Parallel()
	msg := fatal(t, func(tb testing.TB) {
		h := flowtest.New(tb, joinStep)
		require.NoError(t, h.Client().Pause(context.Background(), "default"))
		g := flow.New().WithID("stuck")
		task(g, "waiting", nil)
		h.Run(g)
	})
	require.Contains(t, msg, "flow stuck is stuck: nothing can run, and nothing waits for the clock")
	require.Contains(t, msg, "paused queues: default")
	require.Contains(t, msg, "waiting (TASK, queue default): ready, attempt 0")

	release := make(chan struct{})
	defer close(release)
	hang := flow.StepFunc(func(ctx context.Context, _ *flow.StepContext, _ Email) (string, error) {
		<-release
		return "", nil
	})
	msg = fatal(t, func(tb testing.TB) {
		h := flowtest.NewWithConfig(tb, &flowtest.Config{Timeout: 200 * time.Millisecond}, hang)
		g := flow.New().WithID("slow")
		g.Add(Email{To: "x"}, &flow.NodeOpts{ID: "hangs"})
		h.Run(g)
	})
	require.Contains(t, msg, "flow slow did not finish within 200ms of real time (Config.Timeout)")
	require.Contains(t, msg, "hangs (EMAIL, queue default): active, attempt 1")
}

func TestDrainLeavesPausedQueues(t *testing.T) {
	t.Parallel()
	h := flowtest.NewWithConfig(t, &flowtest.Config{Queues: []string{"default", "mail"}}, joinStep, flowtest.Returns[Email]("sent"))
	ctx := context.Background()
	require.NoError(t, h.Client().Pause(ctx, "mail"))
	_, err := h.Client().Add(ctx, Email{To: "x"}, &flow.NodeOpts{ID: "mail", Queue: "mail"})
	require.NoError(t, err)
	_, err = h.Client().Add(ctx, Task{Name: "t"}, &flow.NodeOpts{ID: "task", Delay: time.Second})
	require.NoError(t, err)
	h.Drain()
	h.RequireSucceeded("task")
	h.RequireState("mail", dag.Ready)
	require.Equal(t, time.Second, h.Elapsed())

	require.NoError(t, h.Client().Resume(ctx, "mail"))
	h.Drain()
	h.RequireSucceeded("mail")
}

func TestMissingStepFailsAtOnce(t *testing.T) {
	t.Parallel()
	msg := fatal(t, func(tb testing.TB) {
		h := flowtest.New(tb, joinStep)
		g := flow.New()
		g.Add(Email{To: "x"}, &flow.NodeOpts{ID: "mail"})
		h.Run(g)
	})
	require.Equal(t, `flowtest: node "mail" is a EMAIL, which has no step; pass one to New, Register or Stub`, msg)

	msg = fatal(t, func(tb testing.TB) { flowtest.New(tb, joinStep, joinStep) })
	require.Contains(t, msg, "a step for TASK is already registered")
}

func TestAssertionsReportWhatHappened(t *testing.T) {
	t.Parallel()
	tb := &fatalTB{TB: t}
	h := flowtest.New(tb, joinStep)
	h.Run(diamond(0))
	require.Empty(t, tb.catch(func() { h.RequireOrder("a", "d") }))
	for _, c := range []struct {
		fn   func()
		want string
	}{
		{func() { h.RequireOrder("d", "a") }, "expected order d → a, but a ran before d; runs: a, b, c, d"},
		{func() { h.RequireRan("a", "x") }, "expected x to have run"},
		{func() { h.RequireNotRan("b") }, "expected b not to have run"},
		{func() { h.RequireAttempts("a", 2) }, `job "a" used 1 attempts, want 2`},
		{func() { h.RequireState("a", dag.Failed) }, `job "a" is succeeded, want failed`},
		{func() { h.Result("nope", new(string)) }, `job "nope": `},
	} {
		require.Contains(t, tb.catch(c.fn), c.want)
	}
}

func TestOnRealRedis(t *testing.T) {
	t.Parallel()
	rdb := testredis.Client(t)

	var ns string
	t.Run("diamond and backoff", func(t *testing.T) {
		h := flowtest.NewWithConfig(t, &flowtest.Config{Redis: rdb}, joinStep, flowtest.FailsFirst[Email](2, errors.New("busy"), "sent"))
		ns = h.Client().Config().Namespace
		require.True(t, strings.HasPrefix(ns, "flowtest-"), ns)
		g := diamond(0)
		g.Add(Email{To: "x"}, &flow.NodeOpts{ID: "mail"}).After(g.Nodes()[3])
		h.Run(g)
		h.RequireSucceeded("a", "b", "c", "d", "mail")
		h.RequireOrder("a", "b", "c", "d", "mail")
		h.RequireAttempts("mail", 3)
		require.Equal(t, 6*time.Second, h.Elapsed())
	})
	keys, err := rdb.Keys(context.Background(), "trellis:{"+ns+"}:*").Result()
	require.NoError(t, err)
	require.Empty(t, keys, "the harness removes its namespace")
}

func TestConcurrency(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	running, most := 0, 0
	step := flowtest.Wrap(joinStep, func(ctx context.Context, sc *flow.StepContext, next flowtest.Next) (json.RawMessage, error) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		return next(ctx)
	})
	h := flowtest.NewWithConfig(t, &flowtest.Config{Concurrency: 3}, step)
	g := flow.New()
	root := task(g, "root", nil)
	var leaves []*flow.Node
	for i := range 9 {
		leaves = append(leaves, task(g, fmt.Sprintf("leaf-%d", i), nil).After(root))
	}
	task(g, "sink", nil).After(leaves...)
	h.Run(g)
	h.RequireSucceeded("root", "sink")
	h.RequireOrder("root", "leaf-4", "sink")
	require.LessOrEqual(t, most, 3)
	require.Len(t, h.Runs(), 11)
}

func TestAdvanceInsideAStep(t *testing.T) {
	t.Parallel()
	var h *flowtest.Harness
	slow := flowtest.Wrap(joinStep, func(ctx context.Context, sc *flow.StepContext, next flowtest.Next) (json.RawMessage, error) {
		h.Clock().Advance(10 * time.Minute) // a slow step, in fake time
		return next(ctx)
	})
	h = flowtest.New(t, slow)
	g := flow.New()
	a := task(g, "a", nil)
	task(g, "b", nil).After(a)
	h.Run(g)
	h.RequireSucceeded("a", "b")
	h.RequireAttempts("a", 1)
	require.Equal(t, 20*time.Minute, h.Elapsed())
	require.Equal(t, 10*time.Minute, h.RunsOf("b")[0].At.Sub(h.RunsOf("a")[0].At))
	j := h.Job("a")
	require.Equal(t, 10*time.Minute, j.FinishedAt().Sub(j.StartedAt()))
}

func TestRunJob(t *testing.T) {
	t.Parallel()
	h := flowtest.New(t, joinStep)
	plan := h.RunJob(Task{Name: "plan"}, &flow.NodeOpts{ID: "plan"})
	require.Equal(t, dag.Succeeded, plan.State)
	require.JSONEq(t, `"plan"`, string(plan.Result))

	phase := h.RunJob(Task{Name: "phase"}, nil, "plan")
	require.Equal(t, dag.Succeeded, phase.State)
	require.JSONEq(t, `"phase(plan)"`, string(phase.Result))
	require.Equal(t, []string{"plan"}, phase.Parents)
}

// Batch steps run in the harness as on a runner: nodes of the type run
// together, each keeps its own outcome and retries on the fake clock, and
// a Stub may swap the batch step for a single one.
func TestBatchStep(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	bulk := flow.BatchFunc(flow.Batching{Size: 10, Linger: 20 * time.Millisecond}, func(ctx context.Context, items []flow.Item[Email]) ([]flow.ItemResult[string], error) {
		mu.Lock()
		sizes = append(sizes, len(items))
		mu.Unlock()
		out := make([]flow.ItemResult[string], len(items))
		for i, it := range items {
			if it.Msg.To == "flaky" && it.Attempt == 1 {
				out[i].Err = errors.New("mailbox busy")
				continue
			}
			out[i].Value = "sent to " + it.Msg.To
		}
		return out, nil
	})
	h := flowtest.New(t, bulk)
	g := flow.New()
	bo := flow.Fixed(time.Minute)
	for _, to := range []string{"a", "b", "c", "flaky"} {
		g.Add(Email{To: to}, &flow.NodeOpts{ID: to, Backoff: &bo})
	}
	f := h.Run(g)
	for _, n := range f.Nodes {
		require.Equal(t, dag.Succeeded, n.State, n.ID)
		require.JSONEq(t, fmt.Sprintf("%q", "sent to "+n.ID), string(n.Result))
	}
	require.Equal(t, 2, h.Job("flaky").Attempt)
	require.GreaterOrEqual(t, h.Elapsed(), time.Minute, "the retry waited its backoff on the fake clock")
	runs := h.RunsOf("flaky")
	require.Len(t, runs, 2)
	require.EqualError(t, runs[0].Err, "mailbox busy")
	require.NotEmpty(t, runs[0].Batch, "a run names its batch")
	mu.Lock()
	require.Equal(t, 4, sizes[0], "the four ran as one batch first")
	mu.Unlock()

	h.Stub(flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Email) (string, error) {
		return "stubbed " + m.To, nil
	}))
	g = flow.New()
	g.Add(Email{To: "d"}, &flow.NodeOpts{ID: "d"})
	g.Add(Email{To: "e"}, &flow.NodeOpts{ID: "e"})
	f = h.Run(g)
	for _, n := range f.Nodes {
		require.JSONEq(t, fmt.Sprintf("%q", "stubbed "+n.ID), string(n.Result))
	}
}
