package flowtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/internal/store"

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
			add = append(add, &dispatch{h: h, typ: typ})
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
	run := &Run{Job: sc.JobID, Type: d.typ, Attempt: sc.Attempt, At: h.clock.Now()}
	h.runs = append(h.runs, run)
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

// Drain runs until no node of the namespace can run: every job is finished
// or waits for something that will not happen by itself (a paused queue, a
// queue the harness does not serve, a parent in one). Use it after
// enqueueing with Client().Add.
func (h *Harness) Drain() {
	h.t.Helper()
	h.until("drain", func(_ context.Context, s *snapshot) (bool, error) {
		return s.ready+s.active+s.delayed == 0, nil
	})
}

// snapshot is what the namespace holds, from one read of its counters.
type snapshot struct {
	ready      int64           // ready in a served, unpaused queue: claimable
	active     int64           // running
	delayed    int64           // waiting for the clock
	readyTypes map[string]bool // message types of the claimable nodes
}

// until runs the runner until done, moving the fake clock only when no
// step runs and nothing can be claimed: then only the clock can change
// anything, so moving it straight to the next due time is safe.
func (h *Harness) until(what string, done func(context.Context, *snapshot) (bool, error)) {
	h.t.Helper()
	h.start()
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Timeout)
	defer cancel()
	advances := 0
	advance := func(to time.Time) bool {
		if advances == h.cfg.MaxAdvances {
			h.fail(what, fmt.Sprintf("did not finish after moving the fake clock %d times (Config.MaxAdvances)", advances))
			return false
		}
		advances++
		h.clock.advanceTo(to)
		return true
	}
	for {
		s, err := h.snapshot(ctx)
		if err == nil {
			var ok bool
			ok, err = done(ctx, s)
			if ok {
				return
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				h.fail(what, fmt.Sprintf("did not finish within %s of real time (Config.Timeout)", h.cfg.Timeout))
				return
			}
			h.t.Fatalf("flowtest: %s: %v", what, err)
			return
		}
		switch {
		case s.active > 0:
			// steps are running
		case s.ready > 0:
			// the runner claims them, unless every one waits for the next
			// window of its type's rate limit
			if next := h.nextWindow(ctx, s); !next.IsZero() {
				if !advance(next) {
					return
				}
				continue
			}
		case s.delayed > 0:
			next, err := h.promote(ctx)
			if err != nil {
				break // the deadline reports it
			}
			if s, err = h.snapshot(ctx); err != nil || s.ready > 0 || s.active > 0 {
				continue // promoted: due at the current time
			}
			if next.After(h.clock.Now()) {
				if !advance(next) {
					return
				}
				_, _ = h.promote(ctx)
			}
			continue
		default:
			h.fail(what, "is stuck: nothing can run, and nothing waits for the clock")
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Millisecond):
		}
	}
}

// snapshot reads the namespace's counters.
func (h *Harness) snapshot(ctx context.Context) (*snapshot, error) {
	st := h.client.Inspector()
	cs, err := st.Counts(ctx)
	if err != nil {
		return nil, err
	}
	paused, err := st.Paused(ctx)
	if err != nil {
		return nil, err
	}
	blocked := map[string]bool{}
	for _, q := range paused {
		blocked[q] = true
	}
	served := map[string]bool{}
	for _, q := range h.queues() {
		served[q] = !blocked[q]
	}
	s := &snapshot{readyTypes: map[string]bool{}}
	for _, c := range cs {
		switch c.State {
		case dag.Ready:
			if served[c.Queue] {
				s.ready += c.N
				s.readyTypes[c.Type] = true
			}
		case dag.Active:
			s.active += c.N
		case dag.Delayed:
			s.delayed += c.N
		}
	}
	return s, nil
}

// queues are the queues the harness's runner serves.
func (h *Harness) queues() []string {
	if len(h.cfg.Queues) > 0 {
		return h.cfg.Queues
	}
	return []string{h.client.Config().DefaultQueue}
}

// nextWindow is the start of the next rate-limit window of the fake clock
// when every claimable message type has spent its rate in the current one,
// or zero when some ready node may start now.
func (h *Harness) nextWindow(ctx context.Context, s *snapshot) time.Time {
	limits, err := h.client.Limits(ctx)
	if err != nil || len(limits) == 0 {
		return time.Time{}
	}
	st := h.client.Inspector()
	now := h.clock.Now().UnixMilli()
	var next int64
	for typ := range s.readyTypes {
		l := limits[typ]
		per := l.Per.Milliseconds()
		if l.Rate == 0 || per <= 0 {
			return time.Time{}
		}
		// the claim script's count of starts in this window
		used, err := st.RateUsed(ctx, typ, l.Per)
		if err != nil {
			return time.Time{}
		}
		if used < int64(l.Rate) {
			return time.Time{}
		}
		if w := (now/per + 1) * per; next == 0 || w < next {
			next = w
		}
	}
	if next == 0 {
		return time.Time{}
	}
	// The counters in s may predate a claim that the rate counts already
	// show; only if still nothing runs and nothing else is claimable is the
	// clock the only thing that can help.
	again, err := h.snapshot(ctx)
	if err != nil || again.active > 0 || again.ready == 0 {
		return time.Time{}
	}
	for typ := range again.readyTypes {
		if !s.readyTypes[typ] {
			return time.Time{}
		}
	}
	return time.UnixMilli(next)
}

// promote moves the delayed nodes that are due at the fake time to ready
// and returns the due time of the next one (zero if none). It uses the same
// maintenance call the runners make, claiming nothing.
func (h *Harness) promote(ctx context.Context) (time.Time, error) {
	rc := h.cfg.Runner.WithDefaults(h.client)
	res, err := seam.Store(h.client).Sync(ctx, h.clock.Now(), store.SyncRequest{
		Worker: "flowtest", Lease: rc.Lease, StallLimit: max(rc.StallLimit, 0),
		Maintain: true, RetainCount: -1,
	})
	return res.NextDue, err
}

// fail ends the test with the state of every node of the namespace.
func (h *Harness) fail(what, why string) {
	h.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "flowtest: %s %s.\nfake time %s (+%s)\n", what, why, h.clock.Now().Format(time.RFC3339), h.Elapsed())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st := h.client.Inspector()
	if paused, err := st.Paused(ctx); err == nil && len(paused) > 0 {
		fmt.Fprintf(&b, "paused queues: %s\n", strings.Join(paused, ", "))
	}
	fmt.Fprintf(&b, "served queues: %s\n", strings.Join(h.queues(), ", "))
	for _, n := range h.nodes(ctx) {
		fmt.Fprintf(&b, "  %s (%s, queue %s): %s, attempt %d", n.ID, n.Type, n.Queue, n.State, n.Attempt)
		if n.Reason != "" {
			fmt.Fprintf(&b, ", %s", n.Reason)
		}
		if n.Error != nil {
			fmt.Fprintf(&b, ", error: %s", n.Error.Message)
		}
		b.WriteByte('\n')
	}
	h.t.Fatal(b.String())
}

// nodes reads every node the harness knows of: the recorded runs' and the
// namespace's flows', sorted by ID. Best effort, for failure messages.
func (h *Harness) nodes(ctx context.Context) []*dag.Node {
	st := h.client.Inspector()
	var ids []string
	seen := map[string]bool{}
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	_ = st.ScanJobIDs(ctx, 500, func(batch []string) (bool, error) {
		for _, id := range batch {
			add(id)
		}
		return len(ids) <= 200, nil
	})
	sort.Strings(ids)
	nodes, err := st.Jobs(ctx, ids)
	if err != nil {
		return nil
	}
	out := nodes[:0]
	for _, n := range nodes {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
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
