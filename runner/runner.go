package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/internal/store"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
)

// Config configures a Runner. The zero value works; comments give defaults.
type Config struct {
	// ID names the runner in leases, events and logs. Default host-pid-random.
	ID string
	// Concurrency is how many steps run at once (a batch step's batch is
	// one run, of up to its Batching.Size jobs). Default 10. From 16 up the
	// runner splits it over two lanes, coordinating loops that each batch
	// their own round trip to Redis, so one lane's wait overlaps the other's
	// work.
	Concurrency int
	// Queues are the queues this runner takes nodes from, in order of
	// preference. Default: the client's default queue.
	Queues []string
	// Lease is how long a claim lasts without renewal; it is renewed every
	// Lease/3 while the step runs. A runner that dies loses its nodes to
	// others after this long. Default 30s.
	Lease time.Duration
	// StallLimit is how many lease expiries a node survives before it fails.
	// Default 3; NoStalls fails a node at its first (BullMQ's
	// maxStalledCount: 0).
	StallLimit int
	// DefaultTimeout bounds a step run when its node sets no Timeout. Default 5m.
	DefaultTimeout time.Duration
	// IdleWait is the longest an idle runner blocks on Redis before it looks
	// for delayed and stalled nodes again. Default 1s.
	IdleWait time.Duration
	// RetainAge is how long finished flows are kept. Default 24h; negative keeps them forever.
	RetainAge time.Duration
	// RetainCount is how many finished flows are kept. Default 100,000; negative keeps any number.
	RetainCount int
	// Backoffs are the functions custom backoffs (flow.CustomBackoff) name.
	Backoffs map[string]flow.BackoffFunc
	// Jitter draws from [0, 1) for backoffs with jitter. Default math/rand.
	Jitter func() float64
	// Logger receives the runner's records. Default: the client's logger.
	Logger *slog.Logger
	// Observer, when set, hears about every step run (metrics, tracing).
	Observer Observer
	// Batching overrides the Batching of the batch steps of these message
	// types (size and linger); naming a type whose step is not a batch step
	// is an error at Register.
	Batching map[string]flow.Batching
}

// Observer hears about step runs. Calls come from the step goroutines and
// must be quick and safe for concurrent use.
type Observer interface {
	StepStarted(run Run, queuedFor time.Duration)
	StepFinished(run Run, outcome Outcome, took time.Duration, err error)
	Stalled(ids []string)
}

// Run is one run of a job, as an Observer hears of it.
type Run struct {
	JobID, FlowID, Type, Queue string
	Attempt, MaxAttempts       int // Attempt is 1 on the first run
}

// Outcome is how a run ended.
type Outcome string

const (
	OutcomeOK      Outcome = "ok"      // succeeded
	OutcomeRetry   Outcome = "retry"   // failed; it runs again after its backoff
	OutcomeFail    Outcome = "fail"    // failed for good (permanently, or out of attempts)
	OutcomeSkip    Outcome = "skip"    // its condition was false
	OutcomeRelease Outcome = "release" // handed back at shutdown; the attempt does not count
)

func runOf(c *store.Claimed) Run {
	return Run{JobID: c.ID, FlowID: c.FlowID, Type: c.Type, Queue: c.Queue, Attempt: c.Attempt, MaxAttempts: c.MaxAttempts}
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults(client *flow.Client) Config {
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = fmt.Sprintf("%s-%d-%04x", host, os.Getpid(), rand.IntN(1<<16))
	}
	if c.Concurrency == 0 {
		c.Concurrency = 10
	}
	if len(c.Queues) == 0 {
		c.Queues = []string{client.Config().DefaultQueue}
	}
	if c.Lease == 0 {
		c.Lease = 30 * time.Second
	}
	if c.StallLimit == 0 {
		c.StallLimit = 3
	}
	if c.DefaultTimeout == 0 {
		c.DefaultTimeout = 5 * time.Minute
	}
	if c.IdleWait == 0 {
		c.IdleWait = time.Second
	}
	if c.RetainAge == 0 {
		c.RetainAge = 24 * time.Hour
	}
	if c.RetainCount == 0 {
		c.RetainCount = 100_000
	}
	if c.Jitter == nil {
		c.Jitter = rand.Float64
	}
	if c.Logger == nil {
		c.Logger = client.Config().Logger
	}
	return c
}

func (c Config) validate() error {
	if err := dag.CheckName(c.ID); err != nil {
		return fmt.Errorf("runner: Config.ID %q %s", c.ID, err.Error())
	}
	if c.Concurrency < 1 {
		return fmt.Errorf("runner: Config.Concurrency %d must be at least 1", c.Concurrency)
	}
	for _, q := range c.Queues {
		if err := dag.CheckName(q); err != nil {
			return fmt.Errorf("runner: Config.Queues: %q %s", q, err.Error())
		}
	}
	for typ, b := range c.Batching {
		if err := b.WithDefaults().Validate(); err != nil {
			return fmt.Errorf("runner: Config.Batching[%q]: %w", typ, err)
		}
	}
	if c.Lease < 100*time.Millisecond {
		return fmt.Errorf("runner: Config.Lease %s is under 100ms", c.Lease)
	}
	if c.StallLimit < 0 && c.StallLimit != NoStalls {
		return fmt.Errorf("runner: Config.StallLimit %d is negative (NoStalls, -1, fails a node at its first stall)", c.StallLimit)
	}
	if c.DefaultTimeout < 0 {
		return fmt.Errorf("runner: Config.DefaultTimeout %s is negative", c.DefaultTimeout)
	}
	return nil
}

// NoStalls, as Config.StallLimit, fails a node the first time its lease
// expires.
const NoStalls = -1

// stallLimit is the limit as the store takes it.
func (c Config) stallLimit() int { return max(c.StallLimit, 0) }

// Runner executes nodes. Create it with New, register steps, then Start.
type Runner struct {
	cfg     Config
	client  *flow.Client
	store   *store.Store
	log     *slog.Logger
	clock   func() time.Time // the client's Config.Clock; nil: see at
	limits  flow.Config      // the client's config, for its size limits
	machine func() time.Time // this machine's clock (time.Now; tests skew it)
	sampled atomic.Int64     // the minute (Unix time / 60) the backlog was last sampled in

	mu      sync.Mutex
	steps   map[string]flow.Step
	types   atomic.Pointer[catalog] // what the runner claims
	started bool

	info       dag.RunnerInfo // its heartbeat record, less what changes
	busy       atomic.Int64   // steps running
	skewWarned atomic.Bool

	lanes    []*lane
	hold     atomic.Int64 // Unix ns: claim nothing before (a dependency is down)
	jobs     chan job     // to the step workers
	arm      chan struct{}
	stop     chan struct{}
	abort    chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	abrtOnce sync.Once
}

// New returns a runner for the client's namespace. cfg may be nil.
func New(client *flow.Client, cfg *Config) (*Runner, error) {
	if client == nil {
		return nil, errors.New("runner: nil client")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	c = c.WithDefaults(client)
	if err := c.validate(); err != nil {
		return nil, err
	}
	if mp := client.Config().MeterProvider; mp != nil {
		om, err := newOtelMetrics(mp)
		if err != nil {
			return nil, fmt.Errorf("runner: OpenTelemetry metrics: %w", err)
		}
		if c.Observer != nil {
			c.Observer = observers{c.Observer, om}
		} else {
			c.Observer = om
		}
	}
	return &Runner{
		cfg: c, client: client, store: seam.Store(client), log: c.Logger.With("runner", c.ID), clock: client.Config().Clock, machine: time.Now, limits: client.Config(),
		steps: map[string]flow.Step{},
		lanes: lanes(c.Concurrency),
		jobs:  make(chan job, c.Concurrency),
		arm:   make(chan struct{}, 1),
		stop:  make(chan struct{}),
		abort: make(chan struct{}),
		done:  make(chan struct{}),
	}, nil
}

// ID is the runner's ID.
func (r *Runner) ID() string { return r.cfg.ID }

// catalog is what the registered steps make the runner claim.
type catalog struct {
	all     []string    // every registered message type, sorted
	singles []string    // the types of single steps, sorted
	batched []batchType // the types of batch steps, by type
}

// batchType is a batch step's message type and how its jobs are grouped.
type batchType struct {
	typ string
	b   flow.Batching
}

// Register adds steps. Registering a message type twice is an error. A
// flow.BatchStep is run a batch at a time (see flow.Batching and
// Config.Batching).
func (r *Runner) Register(steps ...flow.Step) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	add := map[string]flow.Step{}
	for _, s := range steps {
		typ := s.MessageType()
		if err := dag.CheckName(typ); err != nil {
			return fmt.Errorf("runner: message type %q %s", typ, err.Error())
		}
		if _, dup := r.steps[typ]; dup || add[typ] != nil {
			return fmt.Errorf("runner: a step for %s is already registered", typ)
		}
		if bs, ok := s.(flow.BatchStep); ok {
			if err := r.batching(typ, bs).Validate(); err != nil {
				return fmt.Errorf("runner: the batch step of %s: %w", typ, err)
			}
		} else if _, ok := r.cfg.Batching[typ]; ok {
			return fmt.Errorf("runner: Config.Batching names %s, whose step is not a batch step", typ)
		}
		add[typ] = s
	}
	maps.Copy(r.steps, add)
	var c catalog
	for typ, s := range r.steps {
		c.all = append(c.all, typ)
		if bs, ok := s.(flow.BatchStep); ok {
			c.batched = append(c.batched, batchType{typ: typ, b: r.batching(typ, bs)})
		} else {
			c.singles = append(c.singles, typ)
		}
	}
	slices.Sort(c.all)
	slices.Sort(c.singles)
	slices.SortFunc(c.batched, func(a, b batchType) int { return strings.Compare(a.typ, b.typ) })
	r.types.Store(&c)
	return nil
}

// batching is how the jobs of batch step s, of message type typ, are
// grouped: Config.Batching's, else the step's own, with defaults.
func (r *Runner) batching(typ string, s flow.BatchStep) flow.Batching {
	if b, ok := r.cfg.Batching[typ]; ok {
		return b.WithDefaults()
	}
	return s.Batching().WithDefaults()
}

// Handle registers a typed handler for message type M.
func Handle[M flow.Message, R any](r *Runner, fn func(ctx context.Context, sc *flow.StepContext, msg M) (R, error)) error {
	return r.Register(flow.StepFunc(fn))
}

// Types lists the registered message types, sorted: the runner claims
// nodes of these types only.
func (r *Runner) Types() []string { return slices.Clone(r.typeList()) }

func (r *Runner) typeList() []string { return r.catalog().all }

func (r *Runner) catalog() *catalog {
	if c := r.types.Load(); c != nil {
		return c
	}
	return &catalog{}
}

// dropStaleLibraries deletes the Redis Functions libraries of the Trellis
// versions no live runner reports calling: every library loaded costs
// Redis's Lua garbage collector time on each call, and one is left behind
// by each version deployed. A client still calling one loads it again. A
// live runner that reports no library (an older Trellis) may call any,
// and then none is deleted.
func (r *Runner) dropStaleLibraries(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	libs, err := r.store.Libraries(ctx)
	if err != nil || len(libs) < 2 {
		return
	}
	live, err := r.store.Runners(ctx, r.now().Add(-2*r.cfg.Lease))
	if err != nil {
		return
	}
	for _, name := range staleLibraries(libs, r.store.Library(), live) {
		if err := r.store.DropLibrary(ctx, name); err != nil {
			r.log.Warn("trellis: deleting an old scripts library failed", "library", name, "err", err)
			return
		}
		r.log.Info("trellis: deleted the scripts library of a Trellis version no live runner uses", "library", name)
	}
}

// staleLibraries are the libraries of libs that neither own nor a live
// runner calls; none if a live runner does not say which it calls.
func staleLibraries(libs []string, own string, live []dag.Heartbeat) []string {
	keep := map[string]bool{own: true}
	for _, h := range live {
		if h.Info == nil || h.Info.Library == "" {
			return nil
		}
		keep[h.Info.Library] = true
	}
	var out []string
	for _, l := range libs {
		if !keep[l] {
			out = append(out, l)
		}
	}
	return out
}

// Start begins claiming and running nodes. It returns at once; the runner
// works until Stop.
func (r *Runner) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return errors.New("runner: already started")
	}
	r.started = true
	host, _ := os.Hostname()
	r.info = dag.RunnerInfo{Host: host, PID: os.Getpid(), Version: version(), Queues: r.cfg.Queues,
		Concurrency: r.cfg.Concurrency, Started: time.Now().UTC(), Library: r.store.Library()}
	ctx = context.WithoutCancel(ctx)
	go r.waker(ctx)
	go r.dropStaleLibraries(ctx)
	for range r.cfg.Concurrency {
		go r.work()
	}
	var wg sync.WaitGroup
	for _, l := range r.lanes {
		wg.Go(func() { r.loop(ctx, l) })
	}
	go func() {
		wg.Wait()
		close(r.jobs) // the workers end once they finish what they run
		close(r.done)
	}()
	r.log.Info("trellis: runner started", "queues", r.cfg.Queues, "types", r.typeList(), "concurrency", r.cfg.Concurrency)
	return nil
}

// Stop stops claiming, lets in-flight steps finish and reports them. When
// ctx ends first, the remaining nodes are handed back to ready (their steps'
// contexts are cancelled) so another runner takes them at once. Stop is safe
// to call twice and before Start.
func (r *Runner) Stop(ctx context.Context) error {
	r.mu.Lock()
	started := r.started
	r.mu.Unlock()
	if !started {
		return nil
	}
	r.stopOnce.Do(func() { close(r.stop) })
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
	}
	r.abrtOnce.Do(func() { close(r.abort) })
	<-r.done
	return nil
}

// waker blocks on Redis for wake-up tokens while a lane is idle, and wakes
// every lane.
func (r *Runner) waker(ctx context.Context) {
	for {
		select {
		case <-r.done:
			return
		case <-r.arm:
		}
		err := r.store.WaitReady(ctx, r.cfg.Queues, r.typeList(), r.cfg.IdleWait)
		if err != nil {
			select {
			case <-r.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		for _, l := range r.lanes {
			select {
			case l.wake <- struct{}{}:
			default:
			}
		}
	}
}

// version is the Trellis module's version in this binary's build info.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	if bi.Main.Path == module {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == module {
			return d.Version
		}
	}
	return ""
}

const module = "github.com/trellisflow/trellis"
