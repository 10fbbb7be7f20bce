package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/internal/store"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
)

// Fan is a message whose step expands into N children and a join.
type Fan struct {
	N    int  `json:"n"`
	Fail bool `json:"fail,omitempty"` // one generated child fails for good
}

func (Fan) MessageType() string { return "TEST_FAN" }

func fanStep() flow.Step {
	return flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Fan) (string, error) {
		g := flow.New()
		var kids []*flow.Node
		for i := range m.N {
			kids = append(kids, g.Add(Task{Name: fmt.Sprint(i), Permanent: m.Fail && i == 0}, &flow.NodeOpts{ID: fmt.Sprintf("%s/kid-%d", sc.JobID, i)}))
		}
		g.Add(Task{Name: "join"}, &flow.NodeOpts{ID: sc.JobID + "/join"}).After(kids...)
		if err := sc.Expand(g); err != nil {
			return "", err
		}
		return "expanded", nil
	})
}

func TestDynamicExpansion(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		g := flow.New()
		fan := g.Add(Fan{N: 5}, &flow.NodeOpts{ID: "fan"})
		g.Add(Task{Name: "after"}, &flow.NodeOpts{ID: "after"}).After(fan)
		bad := g.Add(Fan{N: 2, Fail: true}, &flow.NodeOpts{ID: "bad-fan"})
		g.Add(Task{Name: "after-bad"}, &flow.NodeOpts{ID: "after-bad"}).After(bad)
		res := h.enqueue(g)
		h.runner(nil, h.taskStep(), fanStep())
		f := h.wait(res.FlowID)

		require.Len(t, f.Nodes, 4+6+3, "the sub-graphs joined the flow")
		fn := nodeByID(f, "fan")
		require.Equal(t, dag.Succeeded, fn.State)
		require.True(t, fn.Expanded)
		require.JSONEq(t, `"expanded"`, string(fn.Result))
		require.Equal(t, dag.Succeeded, nodeByID(f, "fan/join").State)
		require.Equal(t, dag.Succeeded, nodeByID(f, "after").State)
		// the child of the expanding node ran after the whole sub-graph
		require.Less(t, h.log.index("fan/join"), h.log.index("after"))
		for i := range 5 {
			require.Less(t, h.log.index(fmt.Sprintf("fan/kid-%d", i)), h.log.index("fan/join"))
		}
		// a failing sub-graph fails the node that expanded, and its children follow policy
		require.Equal(t, dag.Failed, nodeByID(f, "bad-fan/kid-0").State)
		require.Equal(t, dag.Cancelled, nodeByID(f, "bad-fan/join").State)
		bf := nodeByID(f, "bad-fan")
		require.Equal(t, dag.Failed, bf.State)
		require.Equal(t, "sub-graph node bad-fan/join cancelled", bf.Reason)
		require.Equal(t, dag.Cancelled, nodeByID(f, "after-bad").State)
	})
}

func TestExpansionOfASingleJob(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		h.runner(nil, h.taskStep(), fanStep())
		j, err := h.client.Add(ctx, Fan{N: 3}, &flow.NodeOpts{ID: "solo"})
		require.NoError(t, err)
		child, err := h.client.Add(ctx, Task{Name: "later"}, &flow.NodeOpts{ID: "later"}, j.ID)
		require.NoError(t, err)
		f := h.wait(j.ID)
		require.Len(t, f.Nodes, 5)
		require.Equal(t, 5, f.Counts()[dag.Succeeded])
		h.wait(child.ID)
		require.Less(t, h.log.index("solo/join"), h.log.index("later"))
	})
}

// A runner that claimed a node and died: another runner takes the node over
// once the lease expires, and the dead one's late completion is refused.
func TestDeadRunnerIsTakenOver(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		j, err := h.client.Add(ctx, Task{Name: "orphan"}, &flow.NodeOpts{ID: "orphan"})
		require.NoError(t, err)
		st := seam.Store(h.client)
		lease := 300 * time.Millisecond
		dead, err := st.Sync(ctx, time.Now(), store.SyncRequest{Worker: "dead-runner", Lease: lease, StallLimit: 3, Queues: []string{"default"}, Types: []string{"TEST_TASK"}, Want: 1, RetainCount: -1})
		require.NoError(t, err)
		require.Len(t, dead.Claimed, 1)
		cl := dead.Claimed[0]
		require.Equal(t, []any{j.ID, "TEST_TASK", "default", 3, dag.Require, 1, j.ID},
			[]any{cl.ID, cl.Type, cl.Queue, cl.MaxAttempts, cl.Policy, cl.Attempt, cl.FlowID}, "a claim carries the node's options")
		require.Equal(t, dag.Active, h.job(j.ID).State)

		h.runner(&runner.Config{Lease: lease, IdleWait: 50 * time.Millisecond})
		f := h.wait(j.ID)
		n := f.Nodes[0]
		require.Equal(t, dag.Succeeded, n.State)
		require.Equal(t, 1, n.Stalls)
		require.Equal(t, 2, n.Attempt)
		require.Equal(t, []dag.State{dag.Ready, dag.Active, dag.Ready, dag.Active, dag.Succeeded}, states(n))

		late, err := st.Sync(ctx, time.Now(), store.SyncRequest{Worker: "dead-runner", Lease: lease, StallLimit: 3,
			Queues: []string{"default"}, RetainCount: -1,
			Outcomes: []store.Outcome{{ID: j.ID, Token: dead.Claimed[0].Token, Kind: store.OutcomeFail, Err: &dag.ErrorInfo{Message: "too late"}}}})
		require.NoError(t, err)
		require.Equal(t, []bool{false}, late.Applied, "the expired lease's completion is rejected")
		require.Equal(t, dag.Succeeded, h.job(j.ID).State)
	})
}

func TestStallLimitFailsTheNode(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		j, err := h.client.Add(ctx, Task{Name: "cursed"}, nil)
		require.NoError(t, err)
		st := seam.Store(h.client)
		now := time.Now()
		req := store.SyncRequest{Worker: "flaky-host", Lease: time.Second, StallLimit: 1, Queues: []string{"default"}, Types: []string{"TEST_TASK"}, Want: 1, RetainCount: -1, Maintain: true}
		for i := range 2 {
			res, err := st.Sync(ctx, now.Add(time.Duration(i)*2*time.Second), req)
			require.NoError(t, err)
			require.Len(t, res.Claimed, 1, "claim %d", i)
		}
		_, err = st.Sync(ctx, now.Add(5*time.Second), req)
		require.NoError(t, err)
		n := h.job(j.ID)
		require.Equal(t, dag.Failed, n.State)
		require.Equal(t, "stalled 2 times (lease expired)", n.Reason)
	})
}

// NoStalls fails a node at its first stall, as BullMQ's maxStalledCount: 0.
func TestNoStallsFailsAtTheFirstStall(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		j, err := h.client.Add(ctx, Task{Name: "once"}, &flow.NodeOpts{ID: "once"})
		require.NoError(t, err)
		dead, err := seam.Store(h.client).Sync(ctx, time.Now(), store.SyncRequest{Worker: "dead-runner", Lease: 200 * time.Millisecond,
			Queues: []string{"default"}, Types: []string{"TEST_TASK"}, Want: 1, RetainCount: -1})
		require.NoError(t, err)
		require.Len(t, dead.Claimed, 1)
		_, err = runner.New(h.client, &runner.Config{StallLimit: -2})
		require.ErrorContains(t, err, "StallLimit -2")
		h.runner(&runner.Config{StallLimit: runner.NoStalls, Concurrency: 1})
		f := h.wait(j.ID)
		require.Equal(t, dag.Failed, f.Nodes[0].State)
		require.Equal(t, "stalled 1 times (lease expired)", f.Nodes[0].Reason)
		require.Zero(t, h.log.runs("once"), "not run again")
	})
}

func TestManyRunnersRunEveryNodeOnce(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		const flows, perFlow = 100, 100 // 10,000 nodes
		var runs sync.Map
		var dup atomic.Int64
		step := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Probe) (int, error) {
			if _, loaded := runs.LoadOrStore(sc.JobID, true); loaded {
				dup.Add(1)
			}
			return m.N, nil
		})
		var ids []string
		for f := range flows {
			g := flow.New().WithID(fmt.Sprintf("flow-%03d", f))
			root := g.Add(Probe{N: 0}, &flow.NodeOpts{ID: fmt.Sprintf("f%03d-root", f)})
			for i := 1; i < perFlow; i++ {
				g.Add(Probe{N: i}, &flow.NodeOpts{ID: fmt.Sprintf("f%03d-%03d", f, i)}).After(root)
			}
			ids = append(ids, h.enqueue(g).FlowID)
		}
		for range 4 {
			h.runner(&runner.Config{Concurrency: 16, Lease: time.Minute}, step) // no lease may expire, even on a starved machine
		}
		for _, id := range ids {
			f := h.wait(id)
			require.Equal(t, perFlow, f.Counts()[dag.Succeeded], id)
			for _, n := range f.Nodes {
				require.Equal(t, 1, n.Attempt, n.ID)
			}
		}
		count := 0
		runs.Range(func(_, _ any) bool { count++; return true })
		require.Equal(t, flows*perFlow, count)
		require.Zero(t, dup.Load(), "no node ran twice")
		st, err := h.client.Stats(context.Background(), nil)
		require.NoError(t, err)
		require.Equal(t, int64(flows*perFlow), st.Counts[dag.Succeeded])
		require.Equal(t, int64(flows*perFlow), st.Counts.Total())
	})
}

func TestStopDrainsInFlightSteps(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		var started sync.WaitGroup
		started.Add(3)
		step := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Probe) (int, error) {
			started.Done()
			time.Sleep(200 * time.Millisecond)
			return m.N, nil
		})
		r := h.runner(&runner.Config{Concurrency: 3}, step)
		for i := range 5 {
			_, err := h.client.Add(ctx, Probe{N: i}, nil)
			require.NoError(t, err)
		}
		started.Wait()
		require.NoError(t, r.Stop(ctx))
		require.NoError(t, r.Stop(ctx), "Stop twice is fine")
		st, err := h.client.Stats(ctx, nil)
		require.NoError(t, err)
		require.Equal(t, int64(3), st.Counts[dag.Succeeded], "the three in flight finished")
		require.Equal(t, int64(2), st.Counts[dag.Ready], "nothing new was claimed")
	})
}

func TestStopHandsBackAfterDeadline(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		started := make(chan struct{}, 1)
		step := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Probe) (int, error) {
			started <- struct{}{}
			<-ctx.Done()
			return 0, ctx.Err()
		})
		r := h.runner(&runner.Config{Concurrency: 1}, step)
		j, err := h.client.Add(ctx, Probe{N: 1}, nil)
		require.NoError(t, err)
		<-started
		sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		require.NoError(t, r.Stop(sctx))
		n := h.job(j.ID)
		require.Equal(t, dag.Ready, n.State, "handed back for another runner")
		require.Equal(t, 0, n.Attempt, "the interrupted attempt does not count")
	})
}

func TestPriorityAndDelay(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		for i, p := range []int{0, 5, -3, 10} {
			_, err := h.client.Add(ctx, Task{Name: fmt.Sprint(p)}, &flow.NodeOpts{ID: fmt.Sprintf("p%d", i), Priority: p})
			require.NoError(t, err)
		}
		d, err := h.client.Add(ctx, Task{Name: "late"}, &flow.NodeOpts{ID: "delayed", Delay: 300 * time.Millisecond, Priority: 1000})
		require.NoError(t, err)
		require.Equal(t, dag.Delayed, d.State)
		enqueued := time.Now()
		h.runner(&runner.Config{Concurrency: 1})
		h.wait("delayed")
		require.Equal(t, []string{"p3", "p1", "p0", "p2", "delayed"}, h.log.snapshot())
		require.GreaterOrEqual(t, activeTimes(h.job("delayed"))[0].Sub(enqueued), 250*time.Millisecond)
	})
}

func TestStatsAndClear(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		h.runner(nil)
		for i := range 4 {
			j, err := h.client.Add(ctx, Task{Name: "ok"}, &flow.NodeOpts{ID: fmt.Sprintf("ok-%d", i), Queue: "default"})
			require.NoError(t, err)
			h.wait(j.ID)
		}
		j, err := h.client.Add(ctx, Task{Name: "bad", Permanent: true}, &flow.NodeOpts{ID: "bad"})
		require.NoError(t, err)
		h.wait(j.ID)
		_, err = h.client.Add(ctx, Task{Name: "other"}, &flow.NodeOpts{ID: "elsewhere", Queue: "emails"})
		require.NoError(t, err)

		// runners add their run stats to Redis once a second
		var st *flow.Stats
		require.Eventually(t, func() bool {
			var err error
			st, err = h.client.Stats(ctx, &flow.StatsOpts{IncludeJobs: true, Limit: 3})
			require.NoError(t, err)
			return st.ErrorRate > 0
		}, 5*time.Second, 50*time.Millisecond)
		require.Equal(t, int64(4), st.Counts[dag.Succeeded])
		require.Equal(t, int64(1), st.Counts[dag.Failed])
		require.Equal(t, int64(1), st.ByQueue["emails"][dag.Ready])
		require.Equal(t, int64(5), st.ByType["TEST_TASK"][dag.Succeeded]+st.ByType["TEST_TASK"][dag.Failed])
		require.InDelta(t, 20.0, st.ErrorRate, 0.01)
		require.InDelta(t, 5.0/60, st.ProcessingRate, 0.001)
		require.Greater(t, st.AvgDuration, time.Duration(0))
		require.Greater(t, st.P95Duration, time.Duration(0))
		require.Len(t, st.Recent, 3)
		require.Equal(t, "elsewhere", st.Recent[0].ID, "newest first")
		out, err := json.Marshal(st)
		require.NoError(t, err)
		require.Contains(t, string(out), `"succeeded":4`)

		prod, err := flow.NewClient(h.rdb, &flow.Config{Namespace: h.ns})
		require.NoError(t, err)
		_, err = prod.Clear(ctx)
		require.ErrorIs(t, err, flow.ErrNotDevelopment)
		require.Positive(t, h.keys(), "refused clear deleted nothing")
		n, err := h.client.Clear(ctx)
		require.NoError(t, err)
		require.Positive(t, n)
		require.Zero(t, h.keys())
	})
}

func TestRetentionTrimsFinishedFlows(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		h.runner(&runner.Config{RetainCount: 2})
		var last string
		for i := range 6 {
			g := flow.New().WithID(fmt.Sprintf("r%d", i))
			a := g.Add(Task{Name: "a"}, &flow.NodeOpts{ID: fmt.Sprintf("r%d-a", i)})
			g.Add(Task{Name: "b"}, &flow.NodeOpts{ID: fmt.Sprintf("r%d-b", i)}).After(a)
			last = h.enqueue(g).FlowID
			h.wait(last)
		}
		// trimming happens on the runner's next round trip
		_, err := h.client.Add(ctx, Task{Name: "poke"}, &flow.NodeOpts{ID: "poke"})
		require.NoError(t, err)
		h.wait("poke")
		// an idle runner maintains too, so trimming converges to the two
		// newest flows (and poke), whenever the trims before it ran
		require.Eventually(t, func() bool {
			_, err := h.client.Flow(ctx, "r0")
			st, serr := h.client.Stats(ctx, nil)
			require.NoError(t, serr)
			return flow.IsNotFound(err) && st.Counts[dag.Succeeded] <= 2*2+1
		}, 30*time.Second, 20*time.Millisecond)
		_, err = h.client.Flow(ctx, last)
		require.NoError(t, err, "the newest finished flows are kept")
	})
}

func TestRemoveAndTrim(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		g := flow.New().WithID("done-flow")
		a := g.Add(Task{Name: "a"}, &flow.NodeOpts{ID: "rm-a"})
		g.Add(Task{Name: "b"}, &flow.NodeOpts{ID: "rm-b"}).After(a)
		h.enqueue(g)
		open := flow.New().WithID("open-flow")
		open.Add(Task{Name: "c"}, &flow.NodeOpts{ID: "rm-c", Delay: time.Hour})
		h.enqueue(open)
		_, err := h.client.Add(ctx, Task{Name: "solo"}, &flow.NodeOpts{ID: "rm-solo"})
		require.NoError(t, err)
		h.runner(nil)
		h.wait("done-flow")
		h.wait("rm-solo")

		require.ErrorIs(t, h.client.RemoveFlow(ctx, "open-flow"), flow.ErrState)
		require.ErrorIs(t, h.client.RemoveFlow(ctx, "no-such-flow"), flow.ErrNotFound)
		require.NoError(t, h.client.RemoveFlow(ctx, "done-flow"))
		_, err = h.client.Job(ctx, "rm-a")
		require.ErrorIs(t, err, flow.ErrNotFound)
		require.Zero(t, h.keysLike("f*:done-flow"))

		st, err := h.client.Stats(ctx, nil)
		require.NoError(t, err)
		require.Equal(t, int64(1), st.Counts[dag.Succeeded], "only the solo job is left finished")
		require.Equal(t, int64(1), st.Counts[dag.Delayed])

		n, err := h.client.Trim(ctx, time.Hour)
		require.NoError(t, err)
		require.Zero(t, n, "nothing finished an hour ago")
		time.Sleep(20 * time.Millisecond)
		n, err = h.client.Trim(ctx, 10*time.Millisecond)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		_, err = h.client.Job(ctx, "rm-solo")
		require.ErrorIs(t, err, flow.ErrNotFound)
		_, err = h.client.Job(ctx, "rm-c")
		require.NoError(t, err, "unfinished flows stay")
	})
}

func TestStepLogsAreKeptWithTheJob(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		step := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Probe) (int, error) {
			sc.Logger.Info("saving rows", "rows", m.N)
			sc.Logger.Debug("not kept: below Info")
			if sc.Attempt == 1 {
				sc.Logger.Warn("database busy")
				return 0, flow.RetryAfter(time.Millisecond, errors.New("busy"))
			}
			return m.N, nil
		})
		h.runner(nil, step)
		j, err := h.client.Add(context.Background(), Probe{N: 3}, nil)
		require.NoError(t, err)
		h.wait(j.ID)
		n := h.job(j.ID)
		require.Equal(t, dag.Succeeded, n.State)
		require.Contains(t, n.Logs, `msg="saving rows" rows=3`)
		require.NotContains(t, n.Logs, "database busy", "the last reported run's records")
		require.NotContains(t, n.Logs, "below Info")
	})
}

// A runner of 16 or more splits its concurrency over two lanes (two
// coordinating loops, each with its own round trip to Redis in flight).
// Together they still run exactly Concurrency steps at once, and a stop
// hands back what each lane holds.
func TestLanesShareConcurrency(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		const c = 20
		var running, peak atomic.Int64
		all := make(chan struct{})
		var once sync.Once
		step := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Probe) (int, error) {
			now := running.Add(1)
			for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
			}
			if now == c {
				once.Do(func() { close(all) })
			}
			<-ctx.Done() // held until the stop hands it back
			running.Add(-1)
			return 0, ctx.Err()
		})
		for i := range c + 5 {
			_, err := h.client.Add(ctx, Probe{N: i}, nil)
			require.NoError(t, err)
		}
		r := h.runner(&runner.Config{Concurrency: c}, step)
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d steps ran at once", running.Load(), c)
		}
		sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		require.NoError(t, r.Stop(sctx))
		require.Equal(t, int64(c), peak.Load(), "never more than Concurrency at once")
		st, err := h.client.Stats(ctx, nil)
		require.NoError(t, err)
		require.Equal(t, int64(c+5), st.Counts[dag.Ready], "both lanes handed their nodes back")
		require.Zero(t, st.Counts[dag.Active])
	})
}
