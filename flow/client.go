package flow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/trellisflow/trellis/internal/store"
	"github.com/trellisflow/trellis/internal/tracing"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/trellisflow/trellis/dag"
)

// Config configures a Client. The zero value works; comments give defaults.
type Config struct {
	// Namespace separates independent deployments on one Redis. Default "default".
	Namespace string
	// Development allows destructive operations such as Clear. Default false.
	Development bool
	// Logger receives the client's records. Default slog.Default().
	Logger *slog.Logger
	// MaxPayload is the largest envelope in bytes. Default 1 MiB.
	MaxPayload int
	// MaxResult is the largest step result in bytes; a run that returns a
	// bigger one fails for good with an error that names the limit, and
	// nothing of it is stored. Default 1 MiB.
	MaxResult int
	// MaxError is the longest error message kept with a job, in bytes
	// (and logged); a longer one is cut with a marker. Default 16 KiB.
	MaxError int
	// MaxStack is the longest stack kept with a job's error, in bytes; a
	// longer one is cut with a marker. Default 32 KiB.
	MaxStack int
	// MaxLogs is how much of a step run's own log records is kept with the
	// job, in bytes; the records after it are counted, not kept. Default
	// 8 KiB.
	MaxLogs int
	// MaxNodes is the most nodes one write may hold: the graph of an
	// Enqueue or of an expansion, the jobs of an AddBulk. Default 100,000.
	// A write is one script call that Redis runs alone, so every other
	// client waits while it runs (RELIABILITY.md has the times measured).
	MaxNodes int
	// DefaultQueue is the queue of nodes that name none. Default "default".
	DefaultQueue string
	// DefaultAttempts is how often a step may run. Default 3.
	DefaultAttempts int
	// DefaultBackoff is the delay before retries. Default Exponential(2s).
	DefaultBackoff dag.Backoff
	// Clock, when set, is the time every call decides by; tests and flowtest
	// inject a fake one. Default nil: leases, due times, backoffs and
	// retention are decided by Redis's own clock (TIME), which every runner
	// shares, so a machine whose clock is off can neither take over other
	// runners' leases nor run delayed work early. Envelope timestamps use
	// the machine's clock.
	Clock func() time.Time
	// TracerProvider turns on OpenTelemetry tracing: a span per enqueue
	// (child of the caller's span) and, in runners on this client, a span
	// per node run (child of the enqueue span, linked to its parents' run
	// spans). Default nil: off.
	TracerProvider trace.TracerProvider
	// MeterProvider turns on OpenTelemetry metrics in runners on this
	// client, under the same names as the Prometheus ones. Default nil: off.
	MeterProvider metric.MeterProvider
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = "default"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = 1 << 20
	}
	if c.MaxResult == 0 {
		c.MaxResult = 1 << 20
	}
	if c.MaxError == 0 {
		c.MaxError = 16 << 10
	}
	if c.MaxStack == 0 {
		c.MaxStack = 32 << 10
	}
	if c.MaxLogs == 0 {
		c.MaxLogs = 8 << 10
	}
	if c.MaxNodes == 0 {
		c.MaxNodes = DefaultMaxNodes
	}
	if c.DefaultQueue == "" {
		c.DefaultQueue = "default"
	}
	if c.DefaultAttempts == 0 {
		c.DefaultAttempts = 3
	}
	if c.DefaultBackoff.Kind == "" {
		c.DefaultBackoff = Exponential(2 * time.Second)
	}
	return c
}

func (c Config) validate() error {
	if err := dag.CheckName(c.Namespace); err != nil {
		return fmt.Errorf("flow: Config.Namespace %q %s", c.Namespace, err.Error())
	}
	if err := dag.CheckName(c.DefaultQueue); err != nil {
		return fmt.Errorf("flow: Config.DefaultQueue %q %s", c.DefaultQueue, err.Error())
	}
	for _, l := range []struct {
		name string
		n    int
	}{{"MaxPayload", c.MaxPayload}, {"MaxResult", c.MaxResult}, {"MaxError", c.MaxError}, {"MaxStack", c.MaxStack}, {"MaxLogs", c.MaxLogs}} {
		if l.n < 0 {
			return fmt.Errorf("flow: Config.%s %d is negative", l.name, l.n)
		}
	}
	if c.MaxError < 64 {
		return fmt.Errorf("flow: Config.MaxError %d is under 64 bytes", c.MaxError)
	}
	if c.MaxNodes < 0 {
		return fmt.Errorf("flow: Config.MaxNodes %d is negative", c.MaxNodes)
	}
	if c.DefaultAttempts < 1 {
		return fmt.Errorf("flow: Config.DefaultAttempts %d must be at least 1", c.DefaultAttempts)
	}
	return nil
}

// DefaultMaxNodes is Config.MaxNodes when it is not set.
const DefaultMaxNodes = 100_000

// Client enqueues and inspects flows. It is safe for concurrent use.
type Client struct {
	cfg   Config
	store *store.Store
	batch batcher
}

// NewClient returns a client on rdb (any go-redis client: standalone,
// Sentinel or Cluster). cfg may be nil.
func NewClient(rdb redis.UniversalClient, cfg *Config) (*Client, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	c = c.WithDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	st, err := store.New(rdb, c.Namespace)
	if err != nil {
		return nil, err
	}
	return &Client{cfg: c, store: st}, nil
}

// Config is the client's configuration with defaults filled in.
func (c *Client) Config() Config { return c.cfg }

// at is the time the store's calls decide by: Config.Clock, or zero for
// Redis's own clock.
func (c *Client) at() time.Time {
	if c.cfg.Clock != nil {
		return c.cfg.Clock()
	}
	return time.Time{}
}

// wall is Config.Clock, or the machine's clock: the time of envelopes.
func (c *Client) wall() time.Time {
	if c.cfg.Clock != nil {
		return c.cfg.Clock()
	}
	return time.Now()
}

// Now is the time Trellis decides by: Config.Clock when set, else Redis's
// clock.
func (c *Client) Now(ctx context.Context) (time.Time, error) {
	if c.cfg.Clock != nil {
		return c.cfg.Clock(), nil
	}
	return c.store.Time(ctx)
}

// Enqueue writes the whole graph atomically: every node or none. A graph of
// one node without a flow ID becomes a flow keyed by that node.
func (c *Client) Enqueue(ctx context.Context, g *Graph) (_ *Enqueued, err error) {
	if g == nil {
		return nil, dag.ErrEmptyGraph
	}
	specs, err := c.specs(g, c.wall())
	if err != nil {
		return nil, err
	}
	flowID, single, fresh := g.id, false, false
	if flowID == "" && len(specs) == 1 {
		flowID, single = specs[0].ID, true
	}
	if flowID == "" {
		flowID, fresh = newID(), true
	}
	if err := dag.CheckID(flowID); err != nil {
		return nil, &dag.InvalidNodeError{Field: "flow ID", Reason: err.Error()}
	}
	ctx, span := c.startEnqueueSpan(ctx, flowID, len(specs))
	defer func() { endSpan(span, err) }()
	if tp := tracing.Traceparent(ctx); tp != "" {
		for i := range specs {
			specs[i].Trace = tp
		}
	}
	res, err := c.write(ctx, c.at(), store.FlowWrite{FlowID: flowID, Single: single, Fresh: fresh, Specs: specs})
	if err != nil {
		return nil, err
	}
	out := &Enqueued{FlowID: flowID, Jobs: make([]EnqueuedJob, len(res))}
	for i, r := range res {
		out.Jobs[i] = EnqueuedJob{ID: r.ID, State: r.State, Existed: r.Existed}
	}
	c.cfg.Logger.Debug("trellis: enqueued", "flow", flowID, "nodes", len(res))
	return out, nil
}

// Add enqueues one message as its own job (the BullMQ system's addJobToQueue),
// depending on the earlier jobs after. opts may be nil.
func (c *Client) Add(ctx context.Context, msg Message, opts *NodeOpts, after ...string) (EnqueuedJob, error) {
	g := New()
	g.Add(msg, opts).AfterJob(after...)
	res, err := c.Enqueue(ctx, g)
	if err != nil {
		return EnqueuedJob{}, err
	}
	return res.Jobs[0], nil
}

// BulkJob is one job of AddBulk: a message, its options (may be nil) and the
// earlier jobs it depends on.
type BulkJob struct {
	Msg   Message
	Opts  *NodeOpts
	After []string
}

// AddBulk enqueues many jobs at once, each its own job as with Add (the
// BullMQ's queue.addBulk), in one script call: all of them or none. An error
// names the job it is about ("job 3: …"), and then nothing was written. A
// job's After may name jobs enqueued earlier, not others of the same bulk;
// two jobs of one bulk may not share an ID. Redis runs the call as one
// script, so a bulk holds at most Config.MaxNodes jobs; keep it to a few
// thousand and other clients wait less.
func (c *Client) AddBulk(ctx context.Context, jobs []BulkJob) (_ []EnqueuedJob, err error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	if len(jobs) > c.cfg.MaxNodes {
		return nil, &dag.InvalidNodeError{Field: "bulk", Reason: fmt.Sprintf("%d jobs, over the limit of %d (Config.MaxNodes)", len(jobs), c.cfg.MaxNodes)}
	}
	now := c.wall()
	flows := make([]store.FlowWrite, len(jobs))
	for i, j := range jobs {
		g := New()
		g.Add(j.Msg, j.Opts).AfterJob(j.After...)
		specs, err := c.specs(g, now)
		if err != nil {
			return nil, fmt.Errorf("job %d: %w", i, err)
		}
		flows[i] = store.FlowWrite{FlowID: specs[0].ID, Single: true, Specs: specs}
	}
	ctx, span := c.startEnqueueSpan(ctx, "bulk", len(jobs))
	defer func() { endSpan(span, err) }()
	if tp := tracing.Traceparent(ctx); tp != "" {
		for i := range flows {
			flows[i].Specs[0].Trace = tp
		}
	}
	res, err := c.store.EnqueueAll(ctx, c.at(), flows)
	if err != nil {
		return nil, err
	}
	out := make([]EnqueuedJob, len(jobs))
	for i, r := range res {
		if r.Err != nil && !errors.Is(r.Err, store.ErrNotAttempted) {
			return nil, fmt.Errorf("job %d: %w", i, r.Err)
		}
	}
	for i, r := range res {
		if r.Err != nil {
			return nil, fmt.Errorf("job %d: %w", i, r.Err)
		}
		n := r.Nodes[0]
		out[i] = EnqueuedJob{ID: n.ID, State: n.State, Existed: n.Existed}
	}
	c.cfg.Logger.Debug("trellis: enqueued a bulk", "jobs", len(jobs))
	return out, nil
}

// AddJSON enqueues a JSON envelope from outside Go, decoded strictly through
// reg. The envelope's userId and metadata are kept unless opts sets them,
// and so is its timestamp (when the user acted; the enqueue time if it has
// none), while enqueuedAt is set to the enqueue time. The options the
// message's type carries (OptionsDefaulter) fill what opts leaves unset.
func (c *Client) AddJSON(ctx context.Context, reg *Registry, raw []byte, opts *NodeOpts, after ...string) (EnqueuedJob, error) {
	if len(raw) > c.cfg.MaxPayload {
		return EnqueuedJob{}, &dag.PayloadTooLargeError{ID: "(json)", Size: len(raw), Limit: c.cfg.MaxPayload}
	}
	env, msg, err := reg.Decode(raw)
	if err != nil {
		return EnqueuedJob{}, err
	}
	msg = WithTimestamp(msg, env.Timestamp)
	o := *DefaultedOpts(msg, opts)
	if o.UserID == "" {
		o.UserID = env.UserID
	}
	if o.Metadata == nil {
		o.Metadata = env.Metadata
	}
	return c.Add(ctx, msg, &o, after...)
}

// Job reads one job.
func (c *Client) Job(ctx context.Context, id string) (*dag.Node, error) { return c.store.Node(ctx, id) }

// Flow reads a whole flow.
func (c *Client) Flow(ctx context.Context, flowID string) (*dag.Flow, error) {
	return c.store.Flow(ctx, flowID)
}

// Wait blocks until every node of the flow is terminal or ctx ends, then
// returns the flow.
func (c *Client) Wait(ctx context.Context, flowID string) (*dag.Flow, error) {
	delay := 5 * time.Millisecond
	for {
		st, err := c.store.FlowStatus(ctx, flowID)
		if err != nil {
			return nil, err
		}
		if st.Done {
			return c.store.Flow(ctx, flowID)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("flow: wait for %q: %w (%d of %d nodes unfinished)", flowID, ctx.Err(), st.Unfinished, st.Nodes)
		case <-t.C:
		}
		if delay < 200*time.Millisecond {
			delay = delay * 3 / 2
		}
	}
}

// Cancel cancels an unfinished job; descendants follow their policies
// (under the default Require they are cancelled with the reason), and if
// the job expanded, the unfinished jobs of its sub-graph are cancelled
// too. It returns how many jobs it ended, the job included. A finished job
// is left as it is, and the error is an ErrState that names its state.
func (c *Client) Cancel(ctx context.Context, id, reason string) (int, error) {
	if reason == "" {
		reason = "cancelled"
	}
	return c.store.Cancel(ctx, c.at(), id, reason)
}

// CancelFlow cancels every unfinished job of a flow and returns how many
// jobs it ended: the flow's unfinished ones and, by their policies, the
// jobs of other flows that depend on them. A finished flow ends none.
func (c *Client) CancelFlow(ctx context.Context, flowID, reason string) (int, error) {
	if reason == "" {
		reason = "flow cancelled"
	}
	return c.store.CancelFlow(ctx, c.at(), flowID, reason)
}

// Retry runs a failed (or cancelled) job again with a fresh attempt count;
// the descendants that ended because of it (cancelled or skipped by policy,
// or expanding jobs failed by their sub-graph), and children it released
// that have not started yet, wait for it again (children already running
// finish). Retrying a job inside a dynamic expansion makes the expanding
// job wait for its sub-graph again, so once the retried job succeeds the
// expansion finishes and releases everything downstream; the expanding
// job's own step does not run again. Retrying the expanding job itself
// runs its step again: its old sub-graph is discarded first (its
// unfinished jobs cancelled, then all of them deleted), and the new run
// expands anew. It returns how many jobs were reopened.
func (c *Client) Retry(ctx context.Context, id string) (int, error) {
	return c.store.Retry(ctx, c.at(), id)
}

// Pause stops runners from claiming nodes of queue; running steps finish.
func (c *Client) Pause(ctx context.Context, queue string) error { return c.store.Pause(ctx, queue) }

// Resume undoes Pause.
func (c *Client) Resume(ctx context.Context, queue string) error { return c.store.Resume(ctx, queue) }

// RemoveFlow deletes a finished flow and its jobs now rather than at
// retention; an unfinished flow is an ErrState.
func (c *Client) RemoveFlow(ctx context.Context, flowID string) error {
	return c.store.Remove(ctx, c.at(), flowID)
}

// Trim deletes flows that finished more than olderThan ago and returns how
// many it deleted.
func (c *Client) Trim(ctx context.Context, olderThan time.Duration) (int, error) {
	total := 0
	for {
		n, more, err := c.store.Trim(ctx, c.at(), olderThan, 500)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// SetLimit caps how many jobs of a message type run at once in each queue
// and how many start per window, enforced in Redis so it holds with any
// number of runners (e.g. at most 5 EMAIL at once, 100 NOTIFICATION per
// second). The zero Limit removes it.
func (c *Client) SetLimit(ctx context.Context, messageType string, l dag.Limit) error {
	return c.store.SetLimit(ctx, messageType, l)
}

// Limits lists the limits per message type.
func (c *Client) Limits(ctx context.Context) (map[string]dag.Limit, error) {
	return c.store.Limits(ctx)
}

// Clear deletes everything in the namespace. It is refused unless the client
// was configured with Development: true.
func (c *Client) Clear(ctx context.Context) (int, error) {
	if !c.cfg.Development {
		return 0, ErrNotDevelopment
	}
	n, err := c.store.Clear(ctx)
	if err == nil {
		c.cfg.Logger.Warn("trellis: namespace cleared", "namespace", c.cfg.Namespace, "keys", n)
	}
	return n, err
}

// IsNotFound reports whether err says a job or flow does not exist.
func IsNotFound(err error) bool { return errors.Is(err, dag.ErrNotFound) }
