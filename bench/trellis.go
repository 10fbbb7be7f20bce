package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
	"github.com/trellisflow/trellis/steps/workout"
)

// noop is the benchmark's no-op message. Its job ID carries the node's index.
type noop struct {
	Pad string `json:"pad,omitempty"`
}

func (noop) MessageType() string { return "BENCH_NOOP" }

// recorder keeps, per node index, when its enqueue call started and when
// its step started and returned, in nanoseconds since base, as seen inside
// the benchmark process. Latencies come from these, not from the node
// timelines in Redis, whose resolution is a millisecond.
//
// Nodes get the IDs Trellis generates, as the peers' jobs get theirs (an
// explicit ID costs one more read per node: the idempotency check); the
// recorder maps them to indexes. Only large names its nodes n0, n1, …, so
// its memory per node does not measure the length of generated IDs.
type recorder struct {
	base    time.Time
	idMu    sync.RWMutex
	ids     map[string]int32
	enq     []int64
	start   []atomic.Int64
	end     []atomic.Int64
	parents [][]int32
	done    atomic.Int64
	want    int64
	all     chan struct{}

	failOnce sync.Once
	failed   chan struct{}
	failure  error

	mu      sync.Mutex
	batches map[string]*batchSizes  // by message type
	waiters map[int64]chan struct{} // closed once done reaches the key
	waiting atomic.Bool
}

// batchSizes counts the RunBatch calls of one batch step and their jobs.
type batchSizes struct{ calls, jobs, max int }

// batch records a RunBatch call of type typ with n jobs.
func (r *recorder) batch(typ string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.batches[typ]
	if b == nil {
		b = &batchSizes{}
		r.batches[typ] = b
	}
	b.calls++
	b.jobs += n
	b.max = max(b.max, n)
}

// reached is closed once n nodes ran.
func (r *recorder) reached(n int64) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan struct{})
	if r.done.Load() >= n {
		close(ch)
		return ch
	}
	r.waiters[n] = ch
	r.waiting.Store(true)
	return ch
}

func newRecorder(n int) *recorder {
	return &recorder{
		base: time.Now(), ids: make(map[string]int32, n), enq: make([]int64, n), start: make([]atomic.Int64, n), end: make([]atomic.Int64, n),
		parents: make([][]int32, n), want: int64(n), all: make(chan struct{}), failed: make(chan struct{}),
		batches: map[string]*batchSizes{}, waiters: map[int64]chan struct{}{},
	}
}

func (r *recorder) now() int64 { return int64(time.Since(r.base)) }

// name records that the node with ID id is node i.
func (r *recorder) name(id string, i int) {
	r.idMu.Lock()
	r.ids[id] = int32(i)
	r.idMu.Unlock()
}

// add adds msg to g as node i, after parents (given by index).
func (r *recorder) add(g *flow.Graph, msg flow.Message, i int, opts *flow.NodeOpts, parents ...*flow.Node) *flow.Node {
	nd := g.Add(msg, opts)
	r.name(nd.ID(), i)
	for _, p := range parents {
		nd.After(p)
		r.parents[i] = append(r.parents[i], int32(r.index(p.ID())))
	}
	return nd
}

// index is the index of the node with ID id.
func (r *recorder) index(id string) int {
	r.idMu.RLock()
	i, ok := r.ids[id]
	r.idMu.RUnlock()
	if !ok {
		return nodeIndex(id)
	}
	return int(i)
}

// ran records one step run of node i.
func (r *recorder) ran(i int, start int64) {
	r.start[i].Store(start)
	r.end[i].Store(r.now())
	d := r.done.Add(1)
	if d == r.want {
		close(r.all)
	}
	if r.waiting.Load() {
		r.mu.Lock()
		for n, ch := range r.waiters {
			if d >= n {
				close(ch)
				delete(r.waiters, n)
			}
		}
		r.mu.Unlock()
	}
}

// latencies returns the enqueue→start durations of root nodes and the last
// parent done→child start durations of the others, sorted.
func (r *recorder) latencies() (enqStart, hop []time.Duration) {
	for i := range r.enq {
		s := r.start[i].Load()
		if len(r.parents[i]) == 0 {
			enqStart = append(enqStart, time.Duration(s-r.enq[i]))
			continue
		}
		var last int64
		for _, p := range r.parents[i] {
			last = max(last, r.end[p].Load())
		}
		hop = append(hop, time.Duration(s-last))
	}
	return sortDurations(enqStart), sortDurations(hop)
}

func (r *recorder) fill(res *Result) {
	enqStart, hop := r.latencies()
	res.EnqStartP50MS, res.EnqStartP99MS = percentile(enqStart, 0.50), percentile(enqStart, 0.99)
	res.HopP50MS, res.HopP99MS = percentile(hop, 0.50), percentile(hop, 0.99)
	r.mu.Lock()
	defer r.mu.Unlock()
	for typ, b := range r.batches {
		if res.BatchMean == nil {
			res.BatchCalls, res.BatchMean, res.BatchMax = map[string]float64{}, map[string]float64{}, map[string]float64{}
		}
		res.BatchCalls[typ] = float64(b.calls)
		res.BatchMean[typ] = float64(b.jobs) / float64(b.calls)
		res.BatchMax[typ] = float64(b.max)
	}
}

func nodeID(i int) string { return "n" + strconv.Itoa(i) }

func nodeIndex(id string) int {
	i, err := strconv.Atoi(id[1:])
	if err != nil {
		panic("bench: foreign job ID " + id)
	}
	return i
}

// trellisRun is one scenario's namespace, client, recorder and runner.
type trellisRun struct {
	b      *bench
	ns     string
	client *flow.Client
	rec    *recorder
	runner *runner.Runner
}

func (b *bench) newTrellisRun(scenario string, nodes int) (*trellisRun, error) {
	ns := fmt.Sprintf("bench-%s-%06x", scenario, rand.IntN(1<<24))
	c, err := flow.NewClient(b.rdb, &flow.Config{Namespace: ns, Development: true, Logger: b.quiet, DefaultAttempts: 1, MaxNodes: max(nodes, flow.DefaultMaxNodes)})
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.namespaces = append(b.namespaces, ns)
	b.mu.Unlock()
	return &trellisRun{b: b, ns: ns, client: c, rec: newRecorder(nodes)}, nil
}

// startRunner starts one runner of concurrency c with the no-op steps.
func (t *trellisRun) startRunner(ctx context.Context, c int, cfg runner.Config) error {
	rec := t.rec
	steps := []flow.Step{flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m noop) (struct{}, error) {
		rec.ran(rec.index(sc.JobID), rec.now())
		return struct{}{}, nil
	})}
	return t.startRunnerWith(ctx, c, cfg, append(steps, workoutNoops(rec)...))
}

// startRunnerWith starts one runner of concurrency c with steps; a step
// that fails for good ends the scenario (see waitAll).
func (t *trellisRun) startRunnerWith(ctx context.Context, c int, cfg runner.Config, steps []flow.Step) error {
	cfg.Concurrency = c
	cfg.Logger = t.b.quiet
	cfg.Observer = t.rec
	r, err := runner.New(t.client, &cfg)
	if err != nil {
		return err
	}
	if err := r.Register(steps...); err != nil {
		return err
	}
	t.runner = r
	return r.Start(ctx)
}

// timedStep wraps a real step so that its successful runs are recorded; a
// batch step stays a batch step, with its batching, and its batches'
// sizes are recorded too.
func timedStep(s flow.Step, rec *recorder) flow.Step {
	if b, ok := s.(flow.BatchStep); ok {
		return timedBatch{timed{s, rec}, b}
	}
	return timed{s, rec}
}

type timed struct {
	flow.Step
	rec *recorder
}

func (s timed) Run(ctx context.Context, sc *flow.StepContext) (json.RawMessage, error) {
	start := s.rec.now()
	res, err := s.Step.Run(ctx, sc)
	if err == nil {
		s.rec.ran(s.rec.index(sc.JobID), start)
	}
	return res, err
}

type timedBatch struct {
	timed
	b flow.BatchStep
}

func (s timedBatch) Batching() flow.Batching { return s.b.Batching() }

func (s timedBatch) Run(ctx context.Context, sc *flow.StepContext) (json.RawMessage, error) {
	s.rec.batch(sc.Type, 1) // a batch of one
	return s.timed.Run(ctx, sc)
}

func (s timedBatch) RunBatch(ctx context.Context, jobs []*flow.StepContext) ([]flow.BatchResult, error) {
	start := s.rec.now()
	out, err := s.b.RunBatch(ctx, jobs)
	s.rec.batch(s.MessageType(), len(jobs))
	if err == nil {
		for i, o := range out {
			if o.Err == nil {
				s.rec.ran(s.rec.index(jobs[i].JobID), start)
			}
		}
	}
	return out, err
}

func workoutNoops(rec *recorder) []flow.Step {
	mark := func(sc *flow.StepContext) { rec.ran(rec.index(sc.JobID), rec.now()) }
	return []flow.Step{
		flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m workout.PlanCreate) (struct{}, error) {
			mark(sc)
			return struct{}{}, nil
		}),
		flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m workout.PhaseCreate) (struct{}, error) {
			mark(sc)
			return struct{}{}, nil
		}),
		flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m workout.SessionCreate) (struct{}, error) {
			mark(sc)
			return struct{}{}, nil
		}),
		flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m workout.ExerciseCreate) (struct{}, error) {
			mark(sc)
			return struct{}{}, nil
		}),
	}
}

// The recorder is the runner's Observer: the first step that fails for
// good ends the scenario instead of leaving it to time out.
func (r *recorder) StepStarted(runner.Run, time.Duration) {}
func (r *recorder) Stalled([]string)                      {}
func (r *recorder) StepFinished(job runner.Run, outcome runner.Outcome, _ time.Duration, err error) {
	if outcome == runner.OutcomeOK || outcome == runner.OutcomeSkip {
		return
	}
	r.failOnce.Do(func() {
		r.failure = fmt.Errorf("job %s (%s) %s: %v", job.JobID, job.Type, outcome, err)
		close(r.failed)
	})
}

// waitAll waits until every node ran, then stops the runner, which reports
// the last outcomes before it returns.
func (t *trellisRun) waitAll(ctx context.Context, timeout time.Duration) error {
	select {
	case <-t.rec.all:
	case <-t.rec.failed:
		return t.rec.failure
	case <-time.After(timeout):
		return fmt.Errorf("%s: only %d of %d nodes ran within %s", t.ns, t.rec.done.Load(), t.rec.want, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	return t.stop(ctx)
}

func (t *trellisRun) stop(ctx context.Context) error {
	if t.runner == nil {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := t.runner.Stop(sctx)
	t.runner = nil
	return err
}

// verify checks that every node of the namespace succeeded.
func (t *trellisRun) verify(ctx context.Context, nodes int) error {
	counts, err := t.client.Inspector().Counts(ctx)
	if err != nil {
		return err
	}
	var ok, total int64
	for _, c := range counts {
		total += c.N
		if c.State == dag.Succeeded {
			ok += c.N
		}
	}
	if ok != int64(nodes) || total != int64(nodes) {
		return fmt.Errorf("%s: %d of %d nodes succeeded (%d counted)", t.ns, ok, nodes, total)
	}
	return nil
}

// close stops the runner and deletes the namespace.
func (t *trellisRun) close() {
	ctx := context.Background()
	_ = t.stop(ctx)
	if _, err := t.client.Clear(ctx); err != nil {
		t.b.warnf("clearing namespace %s: %v", t.ns, err)
	}
}

// parallel runs fn(i) for i in [0, n) on k goroutines.
func parallel(ctx context.Context, n, k int, fn func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, k)
	for w := 0; w < k; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}
