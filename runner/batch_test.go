package runner_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/internal/store"
	"github.com/trellisflow/trellis/internal/testredis"
	"github.com/trellisflow/trellis/runner"
)

// Bulk is the batch step's test message.
type Bulk struct {
	Name      string        `json:"name"`
	FailTimes int           `json:"failTimes,omitempty"` // fails its first attempts, alone
	Permanent bool          `json:"permanent,omitempty"` // fails for good, alone
	FailBatch int           `json:"failBatch,omitempty"` // fails the whole batch on its first attempts
	Panic     bool          `json:"panic,omitempty"`     // panics the batch on its first attempt
	Sleep     time.Duration `json:"sleep,omitempty"`     // the batch sleeps this long
}

func (Bulk) MessageType() string { return "TEST_BULK" }

// batches records the batches a batch step ran.
type batches struct {
	mu      sync.Mutex
	sizes   []int
	names   map[string]string // job -> the batch label its last run saw
	running int               // items running now
	most    int               // the most items running at once
}

func (b *batches) start(items []flow.Item[Bulk]) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sizes = append(b.sizes, len(items))
	if b.names == nil {
		b.names = map[string]string{}
	}
	for _, it := range items {
		b.names[it.JobID] = it.Batch
	}
	b.running += len(items)
	b.most = max(b.most, b.running)
}

func (b *batches) end(n int) {
	b.mu.Lock()
	b.running -= n
	b.mu.Unlock()
}

func (b *batches) snapshot() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.sizes)
}

func bulkStep(bt flow.Batching, rec *batches) flow.BatchStep {
	return flow.BatchFunc(bt, func(ctx context.Context, items []flow.Item[Bulk]) ([]flow.ItemResult[TaskResult], error) {
		rec.start(items)
		defer rec.end(len(items))
		var sleep time.Duration
		for _, it := range items {
			sleep = max(sleep, it.Msg.Sleep)
			if it.Attempt <= it.Msg.FailBatch {
				return nil, fmt.Errorf("%s broke the batch on attempt %d", it.Msg.Name, it.Attempt)
			}
			if it.Msg.Panic && it.Attempt == 1 {
				panic("boom in the batch of " + it.Msg.Name)
			}
		}
		select {
		case <-time.After(sleep):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		out := make([]flow.ItemResult[TaskResult], len(items))
		for i, it := range items {
			switch {
			case it.Msg.Permanent:
				out[i].Err = flow.Permanent(fmt.Errorf("%s refuses", it.Msg.Name))
			case it.Attempt <= it.Msg.FailTimes:
				out[i].Err = fmt.Errorf("%s failed attempt %d", it.Msg.Name, it.Attempt)
			default:
				out[i].Value = TaskResult{Name: it.Msg.Name}
			}
		}
		return out, nil
	})
}

var batchName = regexp.MustCompile(`^.+/\d+ of (\d+)$`)

// A batch step gets its ready nodes together, up to its size; each node
// keeps its own result and names its batch; single steps beside it run as
// before.
func TestBatchStepRunsJobsTogether(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		rec := &batches{}
		g := flow.New()
		for i := range 60 {
			g.Add(Bulk{Name: fmt.Sprintf("b%d", i)}, &flow.NodeOpts{ID: fmt.Sprintf("b%d", i)})
		}
		for i := range 10 {
			g.Add(Task{Name: fmt.Sprintf("t%d", i)}, &flow.NodeOpts{ID: fmt.Sprintf("t%d", i)})
		}
		res := h.enqueue(g)
		h.runner(&runner.Config{Concurrency: 4, Lease: 5 * time.Second}, bulkStep(flow.Batching{Size: 20, Linger: 50 * time.Millisecond}, rec), h.taskStep())
		f := h.wait(res.FlowID)
		for _, n := range f.Nodes {
			require.Equal(t, dag.Succeeded, n.State, n.ID)
			require.Equal(t, 1, n.Attempt, n.ID)
			require.JSONEq(t, fmt.Sprintf(`{"name":%q}`, n.ID), string(n.Result), n.ID)
			if n.Type == "TEST_BULK" {
				m := batchName.FindStringSubmatch(n.Batch)
				require.NotNil(t, m, "node %s names its batch: %q", n.ID, n.Batch)
				require.Equal(t, rec.names[n.ID], n.Batch, "the step saw the batch the node names")
			} else {
				require.Empty(t, n.Batch, "a single step's node is in no batch")
			}
		}
		sizes := rec.snapshot()
		total := 0
		for _, s := range sizes {
			require.LessOrEqual(t, s, 20)
			total += s
		}
		require.Equal(t, 60, total)
		require.Greater(t, slices.Max(sizes), 1, "batches hold several nodes: %v", sizes)
		require.Less(t, len(sizes), 60)
	})
}

// A bad item fails only itself, by its own policy; the others of its batch
// succeed at their first attempt.
func TestBatchItemsEndOnTheirOwn(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		rec := &batches{}
		bo := flow.Fixed(10 * time.Millisecond)
		g := flow.New()
		for _, m := range []Bulk{{Name: "ok1"}, {Name: "ok2"}, {Name: "ok3"}, {Name: "flaky1", FailTimes: 1}, {Name: "flaky2", FailTimes: 2}, {Name: "bad", Permanent: true}} {
			g.Add(m, &flow.NodeOpts{ID: m.Name, Backoff: &bo})
		}
		res := h.enqueue(g)
		h.runner(&runner.Config{Concurrency: 2, Lease: 5 * time.Second}, bulkStep(flow.Batching{Size: 10, Linger: 100 * time.Millisecond}, rec))
		f := h.wait(res.FlowID)
		want := map[string]struct {
			st      dag.State
			attempt int
		}{"ok1": {dag.Succeeded, 1}, "ok2": {dag.Succeeded, 1}, "ok3": {dag.Succeeded, 1},
			"flaky1": {dag.Succeeded, 2}, "flaky2": {dag.Succeeded, 3}, "bad": {dag.Failed, 1}}
		for _, n := range f.Nodes {
			require.Equal(t, want[n.ID].st, n.State, n.ID)
			require.Equal(t, want[n.ID].attempt, n.Attempt, n.ID)
		}
		bad := nodeByID(f, "bad")
		require.Equal(t, "bad refuses", bad.Error.Message)
		flaky := nodeByID(f, "flaky2")
		var ran []string // the batch of each attempt, from the timeline
		for _, tr := range flaky.Timeline {
			if tr.Batch != "" {
				ran = append(ran, tr.Batch)
			}
		}
		require.Len(t, ran, 3, "each attempt names its batch: %+v", flaky.Timeline)
		require.Equal(t, flaky.Batch, ran[2])
		require.NotEqual(t, ran[0], ran[1])
		require.Equal(t, 6, rec.snapshot()[0], "the six ran as one batch first")
	})
}

// An error of the whole batch, or a panic in it, retries every item, each
// by its own backoff and attempts.
func TestBatchWideErrorRetriesEveryItem(t *testing.T) {
	for _, tc := range []struct {
		name   string
		breaks Bulk
		msg    string
	}{
		{"error", Bulk{Name: "breaker", FailBatch: 1}, "breaker broke the batch on attempt 1"},
		{"panic", Bulk{Name: "breaker", Panic: true}, "step panicked: boom in the batch of breaker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backends(t, func(t *testing.T, h *harness) {
				rec := &batches{}
				fast, slow := flow.Fixed(10*time.Millisecond), flow.Fixed(300*time.Millisecond)
				g := flow.New()
				g.Add(tc.breaks, &flow.NodeOpts{ID: "breaker", Backoff: &fast})
				for i := range 4 {
					g.Add(Bulk{Name: fmt.Sprintf("x%d", i)}, &flow.NodeOpts{ID: fmt.Sprintf("x%d", i), Backoff: &fast})
				}
				g.Add(Bulk{Name: "once"}, &flow.NodeOpts{ID: "once", Attempts: 1, Backoff: &slow})
				res := h.enqueue(g)
				h.runner(&runner.Config{Concurrency: 2, Lease: 5 * time.Second}, bulkStep(flow.Batching{Size: 10, Linger: 100 * time.Millisecond}, rec))
				f := h.wait(res.FlowID)
				require.Equal(t, 6, rec.snapshot()[0], "the six ran as one batch first")
				for _, n := range f.Nodes {
					if n.ID == "once" {
						require.Equal(t, dag.Failed, n.State, "its one attempt went with the batch")
						require.Equal(t, tc.msg, n.Error.Message)
						continue
					}
					require.Equal(t, dag.Succeeded, n.State, n.ID)
					require.Equal(t, 2, n.Attempt, "%s ran again after the batch failed", n.ID)
				}
				if tc.name == "panic" {
					require.Contains(t, nodeByID(f, "once").Error.Stack, "panic", "a panic keeps its stack")
				}
			})
		})
	}
}

// A batch that runs longer than the lease keeps every item's lease alive.
func TestBatchLeasesAreRenewed(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		rec := &batches{}
		g := flow.New()
		for i := range 5 {
			g.Add(Bulk{Name: fmt.Sprintf("s%d", i), Sleep: 1200 * time.Millisecond}, &flow.NodeOpts{ID: fmt.Sprintf("s%d", i)})
		}
		res := h.enqueue(g)
		h.runner(&runner.Config{Concurrency: 2, Lease: 300 * time.Millisecond, IdleWait: 50 * time.Millisecond}, bulkStep(flow.Batching{Size: 10, Linger: 100 * time.Millisecond}, rec))
		f := h.wait(res.FlowID)
		for _, n := range f.Nodes {
			require.Equal(t, dag.Succeeded, n.State, n.ID)
			require.Equal(t, 1, n.Attempt, n.ID)
			require.Equal(t, 0, n.Stalls, n.ID)
		}
		require.Equal(t, []int{5}, rec.snapshot())
	})
}

// The nodes of a batch claimed by a runner that died are recovered, each
// of them, and the dead runner's late completions are refused.
func TestBatchOfADeadRunnerIsRecovered(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		g := flow.New()
		for i := range 12 {
			g.Add(Bulk{Name: fmt.Sprintf("d%d", i)}, &flow.NodeOpts{ID: fmt.Sprintf("d%d", i)})
		}
		res := h.enqueue(g)
		st := seam.Store(h.client)
		lease := 300 * time.Millisecond
		dead, err := st.Sync(ctx, time.Time{}, store.SyncRequest{Worker: "dead-runner", Lease: lease, StallLimit: 3, Queues: []string{"default"},
			Batches: []store.TypeWant{{Type: "TEST_BULK", Want: 10}}, RetainCount: -1})
		require.NoError(t, err)
		require.Len(t, dead.Claimed, 10, "a batch claim takes its own count")

		rec := &batches{}
		h.runner(&runner.Config{Concurrency: 2, Lease: lease, IdleWait: 50 * time.Millisecond}, bulkStep(flow.Batching{Size: 20}, rec))
		f := h.wait(res.FlowID)
		stalled := 0
		for _, n := range f.Nodes {
			require.Equal(t, dag.Succeeded, n.State, n.ID)
			stalled += n.Stalls
		}
		require.Equal(t, 10, stalled, "every node of the dead batch was recovered")

		var late []store.Outcome
		for _, c := range dead.Claimed {
			late = append(late, store.Outcome{ID: c.ID, Token: c.Token, Kind: store.OutcomeOK, Result: []byte(`"late"`), Batch: "dead-runner/1 of 10"})
		}
		again, err := st.Sync(ctx, time.Time{}, store.SyncRequest{Worker: "dead-runner", Lease: lease, StallLimit: 3, Queues: []string{"default"}, Outcomes: late, RetainCount: -1})
		require.NoError(t, err)
		require.Equal(t, slices.Repeat([]bool{false}, 10), again.Applied, "late completions of expired leases are refused")
		for _, c := range dead.Claimed {
			require.NotEqual(t, `"late"`, string(h.job(c.ID).Result))
		}
	})
}

// Conditions are evaluated per node: a false one skips its node, and the
// batch runs the rest.
func TestBatchConditions(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		rec := &batches{}
		g := flow.New()
		p := g.Add(Task{Name: "p"}, &flow.NodeOpts{ID: "p"})
		g.Add(Bulk{Name: "yes"}, &flow.NodeOpts{ID: "yes", When: `parents.p.result.name == "p"`}).After(p)
		g.Add(Bulk{Name: "no"}, &flow.NodeOpts{ID: "no", When: `parents.p.result.name == "q"`}).After(p)
		g.Add(Bulk{Name: "plain"}, &flow.NodeOpts{ID: "plain"}).After(p)
		res := h.enqueue(g)
		h.runner(&runner.Config{Concurrency: 2}, bulkStep(flow.Batching{Size: 10, Linger: 100 * time.Millisecond}, rec), h.taskStep())
		f := h.wait(res.FlowID)
		require.Equal(t, dag.Succeeded, nodeByID(f, "yes").State)
		require.Equal(t, dag.Succeeded, nodeByID(f, "plain").State)
		require.Equal(t, dag.Skipped, nodeByID(f, "no").State)
		require.Equal(t, []int{2}, rec.snapshot(), "the skipped node is not given to the step")
	})
}

// A type's concurrency limit bounds how many of its nodes run, however
// many a batch could hold.
func TestBatchRespectsTypeLimit(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		require.NoError(t, h.client.SetLimit(ctx, "TEST_BULK", dag.Limit{Concurrency: 3}))
		rec := &batches{}
		g := flow.New()
		for i := range 15 {
			g.Add(Bulk{Name: fmt.Sprintf("l%d", i), Sleep: 30 * time.Millisecond}, &flow.NodeOpts{ID: fmt.Sprintf("l%d", i)})
		}
		res := h.enqueue(g)
		h.runner(&runner.Config{Concurrency: 8}, bulkStep(flow.Batching{Size: 10}, rec))
		f := h.wait(res.FlowID)
		for _, n := range f.Nodes {
			require.Equal(t, dag.Succeeded, n.State, n.ID)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		require.LessOrEqual(t, rec.most, 3, "at most the limit runs at once")
	})
}

// A runner told to stop hands back the nodes waiting for their batch to
// fill: they never started, so their attempt does not count.
func TestBatchStopHandsBackBufferedNodes(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		rec := &batches{}
		g := flow.New()
		for i := range 3 {
			g.Add(Bulk{Name: fmt.Sprintf("w%d", i)}, &flow.NodeOpts{ID: fmt.Sprintf("w%d", i)})
		}
		h.enqueue(g)
		r := h.runner(&runner.Config{Concurrency: 2, IdleWait: 50 * time.Millisecond}, bulkStep(flow.Batching{Size: 100, Linger: time.Hour}, rec))
		require.Eventually(t, func() bool {
			for i := range 3 {
				if h.job(fmt.Sprintf("w%d", i)).State != dag.Active {
					return false
				}
			}
			return true
		}, 30*time.Second, 20*time.Millisecond, "the runner holds the three, lingering for more")
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		require.NoError(t, r.Stop(sctx))
		for i := range 3 {
			n := h.job(fmt.Sprintf("w%d", i))
			require.Equal(t, dag.Ready, n.State)
			require.Equal(t, 0, n.Attempt, "a handed-back node's attempt does not count")
		}
		require.Empty(t, rec.snapshot(), "no batch ran")
	})
}

// Cancelling one node of a running batch refuses its completion; the
// others of the batch complete.
func TestBatchItemCancelled(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		rec := &batches{}
		g := flow.New()
		for i := range 4 {
			g.Add(Bulk{Name: fmt.Sprintf("c%d", i), Sleep: 1500 * time.Millisecond}, &flow.NodeOpts{ID: fmt.Sprintf("c%d", i)})
		}
		res := h.enqueue(g)
		h.runner(&runner.Config{Concurrency: 2, Lease: 600 * time.Millisecond}, bulkStep(flow.Batching{Size: 10, Linger: 100 * time.Millisecond}, rec))
		require.Eventually(t, func() bool { return len(rec.snapshot()) == 1 }, 30*time.Second, 10*time.Millisecond)
		n, err := h.client.Cancel(ctx, "c2", "not wanted")
		require.NoError(t, err)
		require.Equal(t, 1, n)
		f := h.wait(res.FlowID)
		for _, n := range f.Nodes {
			if n.ID == "c2" {
				require.Equal(t, dag.Cancelled, n.State)
				require.Empty(t, n.Result)
				continue
			}
			require.Equal(t, dag.Succeeded, n.State, n.ID)
			require.Equal(t, 1, n.Attempt, n.ID)
		}
	})
}

// Batching that cannot work is refused with what is wrong.
func TestRegisterBatchStepErrors(t *testing.T) {
	h := newHarness(t, testredis.Embedded(t))
	_, err := runner.New(h.client, &runner.Config{Batching: map[string]flow.Batching{"TEST_BULK": {Size: -1}}})
	require.ErrorContains(t, err, `Config.Batching["TEST_BULK"]: flow: Batching.Size -1 must be at least 1`)

	r, err := runner.New(h.client, &runner.Config{Batching: map[string]flow.Batching{"TEST_TASK": {Size: 5}}})
	require.NoError(t, err)
	require.EqualError(t, r.Register(h.taskStep()), "runner: Config.Batching names TEST_TASK, whose step is not a batch step")

	r, err = runner.New(h.client, nil)
	require.NoError(t, err)
	err = r.Register(bulkStep(flow.Batching{Size: flow.MaxBatch + 1}, &batches{}))
	require.EqualError(t, err, "runner: the batch step of TEST_BULK: flow: Batching.Size 1001 is over 1000")
	err = r.Register(bulkStep(flow.Batching{Linger: -time.Second}, &batches{}))
	require.EqualError(t, err, "runner: the batch step of TEST_BULK: flow: Batching.Linger -1s is negative")
	require.NoError(t, r.Register(bulkStep(flow.Batching{}, &batches{})))
	require.Equal(t, []string{"TEST_BULK"}, r.Types())
	require.ErrorContains(t, r.Register(h.taskStep(), h.taskStep()), "a step for TEST_TASK is already registered")
	require.Equal(t, []string{"TEST_BULK"}, r.Types(), "a refused Register adds nothing")
}

// Each node of a batch has its own run span, in its enqueuer's trace,
// naming the batch.
func TestBatchTracing(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		client, err := flow.NewClient(h.rdb, &flow.Config{Namespace: h.ns, Logger: quietLogger(), TracerProvider: tp})
		require.NoError(t, err)
		reqCtx, req := tp.Tracer("test").Start(ctx, "POST /bulk")
		g := flow.New()
		for i := range 3 {
			g.Add(Bulk{Name: fmt.Sprintf("t%d", i)}, &flow.NodeOpts{ID: fmt.Sprintf("t%d", i)})
		}
		res, err := client.Enqueue(reqCtx, g)
		require.NoError(t, err)
		req.End()
		r, err := runner.New(client, &runner.Config{Concurrency: 2})
		require.NoError(t, err)
		require.NoError(t, r.Register(bulkStep(flow.Batching{Size: 10, Linger: 50 * time.Millisecond}, &batches{})))
		require.NoError(t, r.Start(ctx))
		defer func() { _ = r.Stop(ctx) }()
		h.wait(res.FlowID)
		require.NoError(t, r.Stop(ctx))
		named := map[string]string{}
		for _, s := range rec.Ended() {
			if s.Name() != "trellis.run TEST_BULK" {
				continue
			}
			require.Equal(t, req.SpanContext().TraceID(), s.SpanContext().TraceID())
			var job, batch string
			for _, kv := range s.Attributes() {
				switch kv.Key {
				case "trellis.job":
					job = kv.Value.AsString()
				case "trellis.batch":
					batch = kv.Value.AsString()
				}
			}
			named[job] = batch
		}
		require.Len(t, named, 3)
		for id, batch := range named {
			require.Equal(t, h.job(id).Batch, batch, "%s's span names its batch", id)
		}
	})
}

// countObserver counts the runs an Observer hears of, by outcome.
type countObserver struct {
	mu       sync.Mutex
	started  int
	finished map[runner.Outcome]int
}

func (o *countObserver) StepStarted(runner.Run, time.Duration) {
	o.mu.Lock()
	o.started++
	o.mu.Unlock()
}

func (o *countObserver) StepFinished(_ runner.Run, out runner.Outcome, _ time.Duration, _ error) {
	o.mu.Lock()
	o.finished[out]++
	o.mu.Unlock()
}

func (o *countObserver) Stalled([]string) {}

// A paused queue holds a batch step's nodes; once resumed, the best
// priorities go first; each node keeps its own step logs, and the
// observer hears of every node's run.
func TestBatchPausePriorityLogsAndMetrics(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		require.NoError(t, h.client.Pause(ctx, "default"))
		var mu sync.Mutex
		var order [][]string
		step := flow.BatchFunc(flow.Batching{Size: 2}, func(ctx context.Context, items []flow.Item[Bulk]) ([]flow.ItemResult[string], error) {
			var ids []string
			out := make([]flow.ItemResult[string], len(items))
			for i, it := range items {
				ids = append(ids, it.JobID)
				it.Logger.Info("wrote the row", "name", it.Msg.Name)
				out[i].Value = it.Msg.Name
			}
			mu.Lock()
			order = append(order, ids)
			mu.Unlock()
			return out, nil
		})
		g := flow.New()
		for i, p := range []int{1, 5, 3, 9, 7} {
			g.Add(Bulk{Name: fmt.Sprintf("p%d", i)}, &flow.NodeOpts{ID: fmt.Sprintf("p%d", p), Priority: p})
		}
		res := h.enqueue(g)
		obs := &countObserver{finished: map[runner.Outcome]int{}}
		h.runner(&runner.Config{Concurrency: 1, IdleWait: 50 * time.Millisecond, Observer: obs}, step)
		require.Never(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(order) > 0
		}, 300*time.Millisecond, 20*time.Millisecond, "nothing of a paused queue runs")
		require.NoError(t, h.client.Resume(ctx, "default"))
		f := h.wait(res.FlowID)
		mu.Lock()
		require.Equal(t, []string{"p9", "p7"}, order[0], "the best priorities first")
		mu.Unlock()
		for _, n := range f.Nodes {
			require.Equal(t, dag.Succeeded, n.State)
			require.Contains(t, n.Logs, "wrote the row", n.ID)
			require.Equal(t, 1, strings.Count(n.Logs, "wrote the row"), "%s keeps its own logs only", n.ID)
		}
		obs.mu.Lock()
		defer obs.mu.Unlock()
		require.Equal(t, 5, obs.started)
		require.Equal(t, map[runner.Outcome]int{runner.OutcomeOK: 5}, obs.finished)
	})
}
