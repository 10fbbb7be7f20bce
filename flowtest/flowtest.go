package flowtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/embedded"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
)

// Config configures a Harness. The zero value works; comments give defaults.
type Config struct {
	// Redis is where the flows live. Default: a fresh in-process Redis
	// (embedded.NewRedis) per harness, closed when the test ends.
	Redis redis.UniversalClient
	// Namespace isolates the harness on a shared Redis. Default "flowtest"
	// on the in-process Redis, "flowtest-<random>" on Config.Redis, deleted
	// when the test ends.
	Namespace string
	// Start is the fake clock's starting time. Default 2026-01-01T00:00:00Z.
	Start time.Time
	// Concurrency is how many steps run at once. Default 1, so ready nodes
	// run one at a time in the engine's order: priority, ready time, ID.
	Concurrency int
	// Queues are the queues the harness's runner serves. Default: the
	// client's default queue.
	Queues []string
	// Timeout bounds how long, in real time, one Run, Wait or Drain may
	// take. Default 10s.
	Timeout time.Duration
	// MaxAdvances bounds how often one Run, Wait or Drain may move the fake
	// clock forward to the next delayed node. Default 1000.
	MaxAdvances int
	// Logger receives the client's and runner's records. Default: warnings
	// and errors go to t.Log, so they show with -v or when the test fails.
	Logger *slog.Logger
	// Client sets the client's other fields (DefaultAttempts, DefaultBackoff,
	// DefaultQueue, MaxPayload, Development). Its Namespace, Logger and
	// Clock are replaced by the harness's.
	Client flow.Config
	// Runner sets the runner's other fields (StallLimit, DefaultTimeout,
	// Backoffs, Jitter, Observer, …). Its Concurrency, Queues, IdleWait,
	// RetainAge, RetainCount and Logger are replaced by the harness's. Its
	// Lease defaults to an hour of fake time, so moving the clock while a
	// step runs does not expire the step's lease.
	Runner runner.Config
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = "flowtest"
		if c.Redis != nil {
			var b [6]byte
			_, _ = rand.Read(b[:])
			c.Namespace = "flowtest-" + hex.EncodeToString(b[:])
		}
	}
	if c.Start.IsZero() {
		c.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MaxAdvances == 0 {
		c.MaxAdvances = 1000
	}
	return c
}

func (c Config) validate() error {
	if c.Concurrency < 1 {
		return fmt.Errorf("flowtest: Config.Concurrency %d must be at least 1", c.Concurrency)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("flowtest: Config.Timeout %s is negative", c.Timeout)
	}
	if c.MaxAdvances < 0 {
		return fmt.Errorf("flowtest: Config.MaxAdvances %d is negative", c.MaxAdvances)
	}
	return nil
}

// Clock is the harness's fake clock. The client, the runner and the Redis
// scripts all read it, so delays and retry backoffs fall due when it passes
// them, not when real time does. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// Now is the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d (a negative d is ignored). Run,
// Wait and Drain move it themselves; call Advance between them, or from a
// step to make it look slow. Moving it past a running step's lease
// (Config.Runner.Lease, an hour by default) makes the step look stalled.
func (c *Clock) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// advanceTo moves the clock to t unless it is already past it.
func (c *Clock) advanceTo(t time.Time) {
	c.mu.Lock()
	if t.After(c.now) {
		c.now = t.In(c.now.Location())
	}
	c.mu.Unlock()
}

// Run is one run of a step, as the harness recorded it.
type Run struct {
	Job     string
	Type    string
	Attempt int             // 1 on the first run
	At      time.Time       // fake time the run started
	Result  json.RawMessage // the step's result; nil when it failed
	Err     error           // the step's error; nil when it succeeded
	Batch   string          // the batch it ran in, for a batch step's job
}

// Harness runs whole graphs in process with a fake clock and records what
// ran. Create it with New or NewWithConfig; it cleans up when the test ends.
// Its methods must be called from the test's goroutine.
type Harness struct {
	t      testing.TB
	cfg    Config
	clock  *Clock
	client *flow.Client

	mu    sync.Mutex
	steps map[string]flow.Step // the step each message type runs now
	runs  []*Run

	runner     *runner.Runner
	registered map[string]bool // types registered on the runner
}

// New returns a harness on a fresh in-process Redis that runs steps. Steps
// registered twice for one message type fail the test; use Stub to replace
// one.
func New(t testing.TB, steps ...flow.Step) *Harness {
	t.Helper()
	return NewWithConfig(t, nil, steps...)
}

// NewWithConfig is New with a configuration; cfg may be nil.
func NewWithConfig(t testing.TB, cfg *Config, steps ...flow.Step) *Harness {
	t.Helper()
	var c Config
	if cfg != nil {
		c = *cfg
	}
	ownNamespace := c.Namespace == ""
	c = c.WithDefaults()
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if c.Logger == nil {
		w := &testWriter{t: t}
		t.Cleanup(w.close) // registered first, so it runs last
		c.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	rdb := c.Redis
	if rdb == nil {
		er, err := embedded.NewRedis()
		if err != nil {
			t.Fatalf("flowtest: %v", err)
		}
		t.Cleanup(func() { _ = er.Close() })
		rdb = er.Client()
	}
	h := &Harness{
		t: t, cfg: c, clock: &Clock{now: c.Start},
		steps: map[string]flow.Step{}, registered: map[string]bool{},
	}
	fc := c.Client
	fc.Namespace, fc.Logger, fc.Clock = c.Namespace, c.Logger, h.clock.Now
	client, err := flow.NewClient(rdb, &fc)
	if err != nil {
		t.Fatalf("flowtest: %v", err)
	}
	h.client = client
	if c.Redis != nil && ownNamespace {
		// the namespace is the harness's own: remove it when the test ends
		dev := fc
		dev.Development, dev.Logger = true, slog.New(slog.NewTextHandler(io.Discard, nil))
		if cleaner, err := flow.NewClient(rdb, &dev); err == nil {
			t.Cleanup(func() { _, _ = cleaner.Clear(context.Background()) })
		}
	}
	h.Register(steps...)
	return h
}

// Client is the harness's client: enqueue, inspect, cancel, retry, pause.
func (h *Harness) Client() *flow.Client { return h.client }

// Clock is the fake clock.
func (h *Harness) Clock() *Clock { return h.clock }

// Now is the fake time.
func (h *Harness) Now() time.Time { return h.clock.Now() }

// Elapsed is the fake time that passed since the harness started.
func (h *Harness) Elapsed() time.Duration { return h.clock.Now().Sub(h.cfg.Start) }

// Register adds steps. A message type registered twice fails the test.
func (h *Harness) Register(steps ...flow.Step) {
	h.t.Helper()
	h.mu.Lock()
	for _, s := range steps {
		if _, dup := h.steps[s.MessageType()]; dup {
			h.mu.Unlock()
			h.t.Fatalf("flowtest: a step for %s is already registered; use Stub to replace it", s.MessageType())
			return
		}
		h.steps[s.MessageType()] = s
	}
	h.mu.Unlock()
	h.sync()
}

// Stub registers steps in place of the ones of the same message types (or
// adds them). It takes effect for runs that start after it, so a test may
// stub between Runs.
func (h *Harness) Stub(steps ...flow.Step) {
	h.t.Helper()
	h.mu.Lock()
	for _, s := range steps {
		h.steps[s.MessageType()] = s
	}
	h.mu.Unlock()
	h.sync()
}

// sync registers a dispatcher on the runner for every new message type.
func (h *Harness) sync() {
	h.t.Helper()
	if h.runner == nil {
		return
	}
	h.mu.Lock()
	var add []flow.Step
	for typ := range h.steps {
		if !h.registered[typ] {
			h.registered[typ] = true
			d := &dispatch{h: h, typ: typ}
			if bs, ok := h.steps[typ].(flow.BatchStep); ok {
				add = append(add, &batchDispatch{dispatch: d, b: bs.Batching()})
			} else {
				add = append(add, d)
			}
		}
	}
	h.mu.Unlock()
	if err := h.runner.Register(add...); err != nil {
		h.t.Fatalf("flowtest: %v", err)
	}
}

// start creates and starts the runner on first use.
func (h *Harness) start() {
	h.t.Helper()
	if h.runner != nil {
		return
	}
	rc := h.cfg.Runner
	rc.Concurrency, rc.Queues, rc.Logger = h.cfg.Concurrency, h.cfg.Queues, h.cfg.Logger
	// The runner sleeps in real time; the harness moves the fake clock.
	rc.IdleWait = 5 * time.Millisecond
	// Leases run on the fake clock: a long one lets a step or the test
	// move the clock while steps run without their leases expiring.
	if rc.Lease == 0 {
		rc.Lease = time.Hour
	}
	// Keep finished flows, however far the fake clock moves, for assertions.
	rc.RetainAge, rc.RetainCount = -1, -1
	r, err := runner.New(h.client, &rc)
	if err != nil {
		h.t.Fatalf("flowtest: %v", err)
	}
	h.runner = r
	h.sync()
	if err := r.Start(context.Background()); err != nil {
		h.t.Fatalf("flowtest: %v", err)
	}
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.Stop(ctx)
	})
}

// dispatch is what the runner runs for a message type: the step the
// harness holds for it now, recorded.
type dispatch struct {
	h   *Harness
	typ string
}

func (d *dispatch) MessageType() string { return d.typ }

func (d *dispatch) Run(ctx context.Context, sc *flow.StepContext) (res json.RawMessage, err error) {
	h := d.h
	h.mu.Lock()
	step := h.steps[d.typ]
	run := d.record(sc)
	h.mu.Unlock()
	defer func() {
		p := recover()
		if p != nil {
			err = fmt.Errorf("step panicked: %v", p)
		}
		h.mu.Lock()
		run.Result, run.Err = res, err
		h.mu.Unlock()
		if p != nil {
			panic(p) // the runner records the panic and its stack
		}
	}()
	return step.Run(ctx, sc)
}

// record adds the run of sc's job to the harness's runs; h.mu is held.
func (d *dispatch) record(sc *flow.StepContext) *Run {
	run := &Run{Job: sc.JobID, Type: d.typ, Attempt: sc.Attempt, At: d.h.clock.Now(), Batch: sc.Batch}
	d.h.runs = append(d.h.runs, run)
	return run
}

// batchDispatch is dispatch for a type first registered with a batch
// step: the runner hands it batches, which go to the step the harness
// holds now (one job at a time if a Stub made it a single step).
type batchDispatch struct {
	*dispatch
	b flow.Batching
}

func (d *batchDispatch) Batching() flow.Batching { return d.b }

func (d *batchDispatch) RunBatch(ctx context.Context, jobs []*flow.StepContext) ([]flow.BatchResult, error) {
	h := d.h
	h.mu.Lock()
	step := h.steps[d.typ]
	bs, batched := step.(flow.BatchStep)
	var runs []*Run
	if batched {
		for _, sc := range jobs {
			runs = append(runs, d.record(sc))
		}
	}
	h.mu.Unlock()
	if !batched {
		out := make([]flow.BatchResult, len(jobs))
		for i, sc := range jobs {
			out[i].Result, out[i].Err = d.Run(ctx, sc)
		}
		return out, nil
	}
	out, err := bs.RunBatch(ctx, jobs)
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, run := range runs {
		switch {
		case err != nil:
			run.Err = err
		case i < len(out):
			run.Result, run.Err = out[i].Result, out[i].Err
		}
	}
	return out, err
}

// Run enqueues g and runs it until every node is terminal, moving the fake
// clock to the next delayed node whenever nothing is ready or running. It
// returns the finished flow. It fails the test if enqueue fails, if a
// node's message type has no step, or if the flow does not finish within
// Config.Timeout (real time) and Config.MaxAdvances clock moves.
func (h *Harness) Run(g *flow.Graph) *dag.Flow {
	h.t.Helper()
	h.mu.Lock()
	for _, n := range g.Nodes() {
		if m := n.Message(); m != nil {
			if _, ok := h.steps[m.MessageType()]; !ok {
				h.mu.Unlock()
				h.t.Fatalf("flowtest: node %q is a %s, which has no step; pass one to New, Register or Stub", n.ID(), m.MessageType())
				return nil
			}
		}
	}
	h.mu.Unlock()
	res, err := h.client.Enqueue(context.Background(), g)
	if err != nil {
		h.t.Fatalf("flowtest: enqueue: %v", err)
		return nil
	}
	return h.Wait(res.FlowID)
}

// RunJob enqueues msg as a job of its own (Client.Add: opts may be nil,
// after names jobs enqueued earlier), runs until it is finished, and
// returns it. It is the way to test one step.
func (h *Harness) RunJob(msg flow.Message, opts *flow.NodeOpts, after ...string) *dag.Node {
	h.t.Helper()
	g := flow.New()
	n := g.Add(msg, opts).AfterJob(after...)
	f := h.Run(g)
	for _, j := range f.Nodes {
		if j.ID == n.ID() {
			return j
		}
	}
	h.t.Fatalf("flowtest: job %q is missing from its flow", n.ID())
	return nil
}

// Wait runs the enqueued flow flowID until every node is terminal, like
// Run, and returns it.
func (h *Harness) Wait(flowID string) *dag.Flow {
	h.t.Helper()
	in := h.client.Inspector()
	h.until("flow "+flowID, func(ctx context.Context, _ *snapshot) (bool, error) {
		st, err := in.FlowStatus(ctx, flowID)
		return st.Done, err
	})
	f, err := h.client.Flow(context.Background(), flowID)
	if err != nil {
		h.t.Fatalf("flowtest: %v", err)
	}
	return f
}

// Runs lists the recorded step runs in the order they started.
func (h *Harness) Runs() []Run {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Run, len(h.runs))
	for i, r := range h.runs {
		out[i] = *r
	}
	return out
}

// RunsOf lists the recorded runs of job id in the order they started.
func (h *Harness) RunsOf(id string) []Run {
	var out []Run
	for _, r := range h.Runs() {
		if r.Job == id {
			out = append(out, r)
		}
	}
	return out
}

// testWriter sends log lines to t.Log until the test ends.
type testWriter struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

var _ io.Writer = (*testWriter)(nil)
