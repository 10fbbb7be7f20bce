package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
	"github.com/trellisflow/trellis/steps/workout"
)

// bulkChunk is how many independent jobs go in one AddBulk (and, for BullMQ,
// one Queue.addBulk; for River, one InsertMany).
const bulkChunk = 500

// enqueuers is how many goroutines (or, for the peers, concurrent promises)
// enqueue at once in every scenario that enqueues more than one flow.
const enqueuers = 8

func waitTimeout(nodes int) time.Duration {
	return max(60*time.Second, time.Duration(nodes)*5*time.Millisecond)
}

func seconds(d time.Duration) float64 { return d.Seconds() }

// independent enqueues n single-node jobs, then starts a runner of
// concurrency c and waits until all ran.
func (b *bench) independent(ctx context.Context, n, c int) (Result, error) {
	t, err := b.newTrellisRun("independent", n)
	if err != nil {
		return Result{}, err
	}
	defer t.close()
	rec := t.rec
	var enqueued counter
	stop := b.progress(fmt.Sprintf("trellis independent C=%d", c), int64(2*n), func() int64 { return enqueued.Load() + rec.done.Load() })
	defer stop()

	s0, err := takeSnapshot(ctx, b.rdb)
	if err != nil {
		return Result{}, err
	}
	t0 := time.Now()
	chunks := (n + bulkChunk - 1) / bulkChunk
	err = parallel(ctx, chunks, enqueuers, func(k int) error {
		first, last := k*bulkChunk, min((k+1)*bulkChunk, n)
		jobs := make([]flow.BulkJob, last-first)
		for i := range jobs {
			jobs[i].Msg = noop{}
		}
		at := rec.now()
		res, err := t.client.AddBulk(ctx, jobs)
		if err != nil {
			return err
		}
		for i, j := range res {
			rec.enq[first+i] = at
			rec.name(j.ID, first+i) // the runner starts after the last enqueue
		}
		enqueued.Add(int64(len(res)))
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("enqueue: %w", err)
	}
	tEnq := time.Now()
	s1, err := takeSnapshot(ctx, b.rdb)
	if err != nil {
		return Result{}, err
	}
	tRun := time.Now()
	if err := t.startRunner(ctx, c, runner.Config{}); err != nil {
		return Result{}, err
	}
	if err := t.waitAll(ctx, waitTimeout(n)); err != nil {
		return Result{}, err
	}
	tEnd := time.Now()
	s2, err := takeSnapshot(ctx, b.rdb)
	if err != nil {
		return Result{}, err
	}
	if err := t.verify(ctx, n); err != nil {
		return Result{}, err
	}
	r := b.result("independent", "C="+strconv.Itoa(c), c, n)
	r.Seconds = seconds(tEnd.Sub(t0))
	r.NodesPerSec = float64(n) / r.Seconds
	r.EnqueueSeconds = seconds(tEnq.Sub(t0))
	r.EnqueuePerSec = float64(n) / r.EnqueueSeconds
	r.RunPerSec = float64(n) / seconds(tEnd.Sub(tRun))
	r.cost(s0, s2, n)
	r.EnqCmdsPerNode = perNode(s0.cmds, s1.cmds, n)
	r.RunCmdsPerNode = perNode(s1.cmds, s2.cmds, n)
	rec.fill(&r)
	return r, nil
}

// fanout adds flows of one parent and width children while a runner of
// concurrency c is already running.
func (b *bench) fanout(ctx context.Context, flows, width, c int) (Result, error) {
	per := 1 + width
	n := flows * per
	t, err := b.newTrellisRun("fanout", n)
	if err != nil {
		return Result{}, err
	}
	defer t.close()
	rec := t.rec
	stop := b.progress(fmt.Sprintf("trellis fanout C=%d", c), int64(n), rec.done.Load)
	defer stop()
	if err := t.startRunner(ctx, c, runner.Config{}); err != nil {
		return Result{}, err
	}
	m, err := b.runLive(ctx, t, n, flows, func(f int) *flow.Graph {
		g := flow.New()
		first := f * per
		p := rec.add(g, noop{}, first, nil)
		for k := 1; k <= width; k++ {
			rec.add(g, noop{}, first+k, nil, p)
		}
		at := rec.now()
		for k := 0; k < per; k++ {
			rec.enq[first+k] = at
		}
		return g
	})
	if err != nil {
		return Result{}, err
	}
	r := b.result("fanout", fmt.Sprintf("%d×(1+%d)", flows, width), c, n)
	m.fill(&r, n, flows)
	rec.fill(&r)
	return r, nil
}

// chain runs reps chains of depth nodes one after the other; ms per hop is
// the median over the chains.
func (b *bench) chain(ctx context.Context, depth, reps, c int) (Result, error) {
	n := depth * reps
	t, err := b.newTrellisRun("chain", n)
	if err != nil {
		return Result{}, err
	}
	defer t.close()
	rec := t.rec
	stop := b.progress(fmt.Sprintf("trellis chain %d×%d", reps, depth), int64(n), rec.done.Load)
	defer stop()
	if err := t.startRunner(ctx, c, runner.Config{}); err != nil {
		return Result{}, err
	}
	s0, err := takeSnapshot(ctx, b.rdb)
	if err != nil {
		return Result{}, err
	}
	t0 := time.Now()
	var enqTotal time.Duration
	perHop := make([]float64, reps)
	for k := 0; k < reps; k++ {
		g := flow.New()
		first := k * depth
		var prev *flow.Node
		for i := 0; i < depth; i++ {
			var nd *flow.Node
			if prev != nil {
				nd = rec.add(g, noop{}, first+i, nil, prev)
			} else {
				nd = rec.add(g, noop{}, first+i, nil)
			}
			prev = nd
		}
		at := rec.now()
		for i := 0; i < depth; i++ {
			rec.enq[first+i] = at
		}
		e0 := time.Now()
		if _, err := t.client.Enqueue(ctx, g); err != nil {
			return Result{}, fmt.Errorf("enqueue: %w", err)
		}
		enqTotal += time.Since(e0)
		deadline := time.Now().Add(waitTimeout(depth))
		for rec.done.Load() < int64(first+depth) {
			select {
			case <-rec.failed:
				return Result{}, rec.failure
			default:
			}
			if time.Now().After(deadline) {
				return Result{}, fmt.Errorf("chain %d: %d of %d nodes ran", k, rec.done.Load()-int64(first), depth)
			}
			time.Sleep(time.Millisecond)
		}
		span := rec.start[first+depth-1].Load() - rec.start[first].Load()
		perHop[k] = float64(span) / float64(depth-1) / 1e6
	}
	if err := t.stop(ctx); err != nil {
		return Result{}, err
	}
	tEnd := time.Now()
	s1, err := takeSnapshot(ctx, b.rdb)
	if err != nil {
		return Result{}, err
	}
	if err := t.verify(ctx, n); err != nil {
		return Result{}, err
	}
	r := b.result("chain", fmt.Sprintf("%d deep, median of %d", depth, reps), c, n)
	r.Seconds = seconds(tEnd.Sub(t0))
	r.NodesPerSec = float64(n) / r.Seconds
	r.EnqueueSeconds = seconds(enqTotal)
	r.EnqueuePerSec = float64(n) / r.EnqueueSeconds
	r.MsPerHop = median(perHop)
	r.cost(s0, s1, n)
	rec.fill(&r)
	return r, nil
}

// planShape is the full plan save graph: 1 plan → 4 phases → 5 sessions
// each → 6 exercises each: 145 nodes.
const (
	planPhases    = 4
	planSessions  = 5
	planExercises = 6
	planNodes     = 1 + planPhases*(1+planSessions*(1+planExercises))
)

// addPlan adds plan k's 145 nodes (workout messages, IDs from first on) to g
// and records their parents.
func addPlan(g *flow.Graph, rec *recorder, k, first int) {
	i := first
	planID := fmt.Sprintf("plan-%d", k)
	add := func(msg flow.Message, parent *flow.Node) *flow.Node {
		opts := &flow.NodeOpts{UserID: "trainer-1"}
		var nd *flow.Node
		if parent != nil {
			nd = rec.add(g, msg, i, opts, parent)
		} else {
			nd = rec.add(g, msg, i, opts)
		}
		i++
		return nd
	}
	plan := add(workout.PlanCreate{PlanID: planID, Name: "Strength block " + strconv.Itoa(k), ClientID: "client-1", TrainerID: "trainer-1", IsActive: true}, nil)
	for p := 0; p < planPhases; p++ {
		phaseID := fmt.Sprintf("%s-ph%d", planID, p)
		phase := add(workout.PhaseCreate{PlanID: planID, ClientID: "client-1", TrainerID: "trainer-1",
			Phase: workout.PhaseData{ID: phaseID, Name: "Phase " + strconv.Itoa(p+1), OrderNumber: p + 1, IsActive: p == 0}}, plan)
		for s := 0; s < planSessions; s++ {
			sessionID := fmt.Sprintf("%s-s%d", phaseID, s)
			session := add(workout.SessionCreate{PlanID: planID, PhaseID: phaseID,
				Session: workout.SessionData{ID: sessionID, Name: "Day " + strconv.Itoa(s+1), OrderNumber: s + 1}}, phase)
			for e := 0; e < planExercises; e++ {
				add(workout.ExerciseCreate{PlanID: planID, PhaseID: phaseID, SessionID: sessionID,
					Exercise: workout.ExerciseData{ID: fmt.Sprintf("%s-e%d", sessionID, e), Name: "Back squat", OrderNumber: e + 1,
						Sets: 4, Reps: 8, Weight: 80, Rest: 120, Tempo: "3-1-1-0"}}, session)
			}
		}
	}
}

// fullPlanSave enqueues plans plan graphs while a runner with no-op workout
// steps runs.
func (b *bench) fullPlanSave(ctx context.Context, plans, c int) (Result, error) {
	n := plans * planNodes
	t, err := b.newTrellisRun("fullplansave", n)
	if err != nil {
		return Result{}, err
	}
	defer t.close()
	rec := t.rec
	stop := b.progress(fmt.Sprintf("trellis fullplansave C=%d", c), int64(n), rec.done.Load)
	defer stop()
	if err := t.startRunner(ctx, c, runner.Config{}); err != nil {
		return Result{}, err
	}
	m, err := b.runLive(ctx, t, n, plans, planGraph(rec))
	if err != nil {
		return Result{}, err
	}
	r := b.result("fullplansave", fmt.Sprintf("%d plans × %d, no-op steps", plans, planNodes), c, n)
	m.fill(&r, n, plans)
	rec.fill(&r)
	return r, nil
}

// planGraph builds plan k's graph and records its nodes' enqueue time.
func planGraph(rec *recorder) func(k int) *flow.Graph {
	return func(k int) *flow.Graph {
		g := flow.New()
		addPlan(g, rec, k, k*planNodes)
		at := rec.now()
		for i := k * planNodes; i < (k+1)*planNodes; i++ {
			rec.enq[i] = at
		}
		return g
	}
}

// liveRun is what runLive measured.
type liveRun struct {
	t0, tEnq, tEnd time.Time
	s0, s1         snapshot
}

// runLive enqueues flows graphs from build, in parallel, while the runner
// works, then waits for all n nodes and checks them: the shared body of the
// scenarios whose runners are live during the enqueue.
func (b *bench) runLive(ctx context.Context, t *trellisRun, n, flows int, build func(k int) *flow.Graph) (liveRun, error) {
	var m liveRun
	var err error
	if m.s0, err = takeSnapshot(ctx, b.rdb); err != nil {
		return m, err
	}
	m.t0 = time.Now()
	err = parallel(ctx, flows, enqueuers, func(k int) error {
		_, err := t.client.Enqueue(ctx, build(k))
		return err
	})
	if err != nil {
		return m, fmt.Errorf("enqueue: %w", err)
	}
	m.tEnq = time.Now()
	if err := t.waitAll(ctx, waitTimeout(n)); err != nil {
		return m, err
	}
	m.tEnd = time.Now()
	if m.s1, err = takeSnapshot(ctx, b.rdb); err != nil {
		return m, err
	}
	return m, t.verify(ctx, n)
}

// fill sets the rates and costs of a live run.
func (m liveRun) fill(r *Result, n, flows int) {
	r.Seconds = seconds(m.tEnd.Sub(m.t0))
	r.NodesPerSec = float64(n) / r.Seconds
	r.FlowsPerSec = float64(flows) / r.Seconds
	r.EnqueueSeconds = seconds(m.tEnq.Sub(m.t0))
	r.EnqueuePerSec = float64(n) / r.EnqueueSeconds
	r.cost(m.s0, m.s1, n)
}

// largeLevels splits n nodes into four levels growing tenfold: 0.1%, 0.9%,
// 9% and the rest.
func largeLevels(n int) []int {
	l0 := max(1, n/1000)
	l1 := max(1, n/100-l0)
	l2 := max(1, n/10-l0-l1)
	return []int{l0, l1, l2, n - l0 - l1 - l2}
}

// large enqueues one graph of n nodes in four levels, each node after two
// of the level above, then runs it; it measures Redis memory per node
// queued, finished (kept by retention), and after retention trims the flow.
func (b *bench) large(ctx context.Context, n, c int) (Result, error) {
	t, err := b.newTrellisRun("large", n)
	if err != nil {
		return Result{}, err
	}
	defer t.close()
	rec := t.rec
	g := flow.New()
	var prev []*flow.Node
	i := 0
	for _, width := range largeLevels(n) {
		level := make([]*flow.Node, width)
		for j := range level {
			nd := g.Add(noop{}, &flow.NodeOpts{ID: nodeID(i)})
			if len(prev) > 0 {
				a, z := j%len(prev), (j*7+1)%len(prev)
				nd.After(prev[a])
				rec.parents[i] = []int32{int32(nodeIndex(prev[a].ID()))}
				if z != a {
					nd.After(prev[z])
					rec.parents[i] = append(rec.parents[i], int32(nodeIndex(prev[z].ID())))
				}
			}
			level[j] = nd
			i++
		}
		prev = level
	}
	m0, err := settledMemory(ctx, b.rdb)
	if err != nil {
		return Result{}, err
	}
	s0, err := takeSnapshot(ctx, b.rdb)
	if err != nil {
		return Result{}, err
	}
	b.status("trellis large: enqueueing %d nodes in one graph…", n)
	at := rec.now()
	for i := range rec.enq {
		rec.enq[i] = at
	}
	t0 := time.Now()
	enq, err := t.client.Enqueue(ctx, g)
	if err != nil {
		return Result{}, fmt.Errorf("enqueue: %w", err)
	}
	tEnq := time.Now()
	s1, err := takeSnapshot(ctx, b.rdb)
	if err != nil {
		return Result{}, err
	}
	m1, err := settledMemory(ctx, b.rdb)
	if err != nil {
		return Result{}, err
	}
	stop := b.progress(fmt.Sprintf("trellis large C=%d", c), int64(n), rec.done.Load)
	tRun := time.Now()
	if err := t.startRunner(ctx, c, runner.Config{}); err != nil {
		stop()
		return Result{}, err
	}
	err = t.waitAll(ctx, waitTimeout(n))
	stop()
	if err != nil {
		return Result{}, err
	}
	tEnd := time.Now()
	s2, err := takeSnapshot(ctx, b.rdb)
	if err != nil {
		return Result{}, err
	}
	if err := t.verify(ctx, n); err != nil {
		return Result{}, err
	}
	m2, err := settledMemory(ctx, b.rdb)
	if err != nil {
		return Result{}, err
	}
	r := b.result("large", fmt.Sprintf("1 graph, levels %v", largeLevels(n)), c, n)
	r.Seconds = seconds(tEnd.Sub(t0))
	r.NodesPerSec = float64(n) / r.Seconds
	r.EnqueueSeconds = seconds(tEnq.Sub(t0))
	r.EnqueuePerSec = float64(n) / r.EnqueueSeconds
	r.RunPerSec = float64(n) / seconds(tEnd.Sub(tRun))
	r.cost(s0, s2, n)
	r.EnqCmdsPerNode = perNode(s0.cmds, s1.cmds, n)
	r.RunCmdsPerNode = perNode(s1.cmds, s2.cmds, n)
	r.MemQueuedBPerNode = float64(m1-m0) / float64(n)
	r.MemDoneBPerNode = float64(m2-m0) / float64(n)
	rec.fill(&r)

	// Retention: a runner that keeps finished flows for 1ms trims this one
	// (10,000 nodes per call, back to back).
	time.Sleep(10 * time.Millisecond)
	b.status("trellis large: trimming the finished flow by retention…")
	if err := t.startRunner(ctx, 1, runner.Config{RetainAge: time.Millisecond, RetainCount: -1}); err != nil {
		return Result{}, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := t.client.Flow(ctx, enq.FlowID)
		if flow.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			r.Note = "retention did not trim the flow within 60s"
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := t.stop(ctx); err != nil {
		return Result{}, err
	}
	if m3, err := settledMemory(ctx, b.rdb); err == nil {
		r.MemTrimmedBPerNode = float64(m3-m0) / float64(n)
	}
	return r, nil
}
