package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/internal/store"
	"github.com/trellisflow/trellis/internal/tracing"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/clip"
)

// task is a node this runner holds.
type task struct {
	job store.Claimed
	// cancel ends its run: a single step's context; a batch item's share
	// of its batch's (see dispatch). Nil while the item waits in a buffer.
	cancel   context.CancelCauseFunc
	released bool // handed back or lease lost: its result is not reported
}

// result is what a step goroutine sends back to the loop for one node.
type result struct {
	id      string
	outcome *store.Outcome // nil: nothing to report (expanded, or lease lost)
	// expanded is the successful run of a node that expanded: already
	// written to Redis, but it still counts in the minute stats
	expanded *store.Outcome
	// unavailable: the step failed because a dependency is down
	// (flow.Unavailable); the runner claims nothing until the retry is due
	unavailable bool
}

var (
	errLeaseLost = errors.New("lease lost: the node was recovered or cancelled")
	errShutdown  = errors.New("runner shutting down")
)

// lane is one coordinating loop and its share of the runner's
// concurrency. A runner has up to two: while one waits for its round trip
// to Redis, the other handles its reply and prepares the next, so Redis is
// not left idle while the runner works (and the other way round).
type lane struct {
	size    int                // the most step runs this lane has at once
	results chan []result      // from the step workers: one run's nodes
	wake    chan struct{}      // from the waker: nodes became ready
	first   bool               // the lane that logs the runner's stopping
	running int                // runs handed to the workers, not yet back
	buffers map[string]*buffer // a batch step's claimed nodes not yet running, by type
	batches int                // batches this lane ran, for their names
}

// buffer holds the claimed nodes of one batch step's type until they make
// a batch: Size of them, or the ones Linger gathered.
type buffer struct {
	bt    batchType
	tasks []*task
	since time.Time // when the first came
}

// lanes splits concurrency c into the runner's lanes: two once each gets
// at least eight workers, else one (small lanes would only make smaller
// batches).
func lanes(c int) []*lane {
	sizes := []int{c}
	if c >= 16 {
		sizes = []int{c - c/2, c / 2}
	}
	out := make([]*lane, len(sizes))
	for i, n := range sizes {
		out[i] = &lane{size: n, results: make(chan []result, n), wake: make(chan struct{}, 1), first: i == 0, buffers: map[string]*buffer{}}
	}
	return out
}

// loop is a lane's coordinating goroutine: it batches outcomes, claims
// work in the same round trip, renews leases and sleeps on Redis when there
// is nothing to do.
func (r *Runner) loop(ctx context.Context, l *lane) {
	inflight := map[string]*task{}
	var pending []store.Outcome
	stopping, idle := false, false
	var nextDue, lastMaintain time.Time
	retryWait := 50 * time.Millisecond
	hb := time.NewTicker(r.cfg.Lease / 3)
	defer hb.Stop()
	stats := time.NewTicker(time.Second)
	defer stats.Stop()
	minute := store.NewMinute(r.now())
	defer func() { r.flushStats(ctx, &minute) }()
	r.heartbeat(ctx, inflight)

	collect := func(rs []result) {
		l.running--
		for _, res := range rs {
			t, ok := inflight[res.id]
			if !ok {
				continue
			}
			delete(inflight, res.id)
			r.busy.Add(-1)
			if res.outcome != nil && !t.released {
				pending = append(pending, *res.outcome)
			}
			if x := res.expanded; x != nil {
				minute.Observe(x.Queue, x.Type, x.Kind, x.Final, x.Duration)
				idle = false // its sub-graph's first nodes are ready: claim them now
			}
			if o := res.outcome; res.unavailable && o != nil && o.Kind == store.OutcomeRetry {
				r.holdClaims(o)
			}
		}
	}

	for {
	drain:
		for {
			select {
			case rs := <-l.results:
				collect(rs)
			default:
				break drain
			}
		}
		select {
		case <-r.abort:
			r.handBack(ctx, inflight, pending)
			return
		default:
		}
		now := r.now()
		if stopping {
			pending = r.unbuffer(l, inflight, pending)
		}
		r.dispatch(ctx, l, inflight)
		var hold time.Duration // left of a hold (see holdClaims)
		if h := r.hold.Load(); h != 0 {
			hold = time.Duration(h - now.UnixNano())
		}
		cat := r.catalog()
		want, batches := 0, []store.TypeWant(nil)
		if !stopping && hold <= 0 {
			want, batches = l.wants(cat)
		}
		asked := want
		for _, b := range batches {
			asked += b.Want
		}
		if len(pending) > 0 || (asked > 0 && !idle) {
			maintain := now.Sub(lastMaintain) >= maintainEvery || (!nextDue.IsZero() && !now.Before(nextDue))
			res, err := r.store.Sync(ctx, r.at(), store.SyncRequest{
				Worker: r.cfg.ID, Lease: r.cfg.Lease, StallLimit: r.cfg.stallLimit(),
				Queues: r.cfg.Queues, Types: cat.singles, Want: want, Batches: batches, Outcomes: pending, Maintain: maintain,
				RetainAge: r.cfg.RetainAge, RetainCount: r.cfg.RetainCount,
			})
			if err != nil {
				r.log.Error("trellis: sync with Redis failed; retrying", "err", err, "outcomes", len(pending), "wait", retryWait)
				switch r.pause(retryWait, stopping) {
				case pauseAborted:
					r.handBack(ctx, inflight, pending)
					return
				case pauseStopped:
					stopping = true
					if len(pending) == 0 && len(inflight) == 0 {
						return // nothing to report or wait for
					}
				}
				retryWait = min(retryWait*2, 2*time.Second)
				continue
			}
			retryWait = 50 * time.Millisecond
			for i, ok := range res.Applied {
				o := &pending[i]
				if !ok {
					r.log.Warn("trellis: late completion rejected (lease expired or job cancelled)", "job", o.ID, "outcome", o.Kind)
					continue
				}
				if r.now().Sub(minute.Start) >= time.Minute {
					r.flushStats(ctx, &minute)
				}
				minute.Observe(o.Queue, o.Type, o.Kind, o.Final, o.Duration)
			}
			pending = pending[:0]
			for _, c := range res.Claimed {
				r.launch(ctx, c, inflight, l)
			}
			r.dispatch(ctx, l, inflight)
			// fewer than asked: the queues are drained (or limited, or
			// paused), so wait for a result, a wake-up or the timer
			// instead of asking again at once
			idle = asked > 0 && len(res.Claimed) < asked
			if maintain {
				lastMaintain, nextDue = now, res.NextDue
			}
			continue
		}
		if stopping && len(inflight) == 0 {
			return
		}
		wait := r.cfg.IdleWait
		if !nextDue.IsZero() {
			if d := nextDue.Sub(r.now()); d < wait {
				wait = max(d, time.Millisecond)
			}
		}
		if hold > 0 && hold < wait {
			wait = max(hold, time.Millisecond)
		}
		if d, ok := l.lingerLeft(r.machine()); ok && d < wait {
			wait = max(d, time.Millisecond)
		}
		if idle && asked > 0 {
			select {
			case r.arm <- struct{}{}:
			default:
			}
		}
		timer := time.NewTimer(wait)
		select {
		case rs := <-l.results:
			collect(rs)
		case <-l.wake:
			idle = false
		case <-timer.C:
			idle = false
		case <-hb.C:
			r.heartbeat(ctx, inflight)
		case <-stats.C:
			r.flushStats(ctx, &minute)
		case <-r.stop:
			if !stopping {
				stopping = true
				if l.first {
					r.log.Info("trellis: runner stopping")
				}
			}
		case <-r.abort:
		}
		timer.Stop()
	}
}

// wants is how many nodes the lane asks for: of its single steps' types,
// one per free run; of each batch step's type, what its buffer lacks of a
// batch, while a run is free for the batch (a buffer that holds nodes
// already counts as one). Each type with a buffer may take a run that the
// single steps' claim also counted, so a batch can wait for a run to end.
func (l *lane) wants(cat *catalog) (int, []store.TypeWant) {
	free := l.size - l.running
	for _, b := range l.buffers {
		if len(b.tasks) > 0 {
			free--
		}
	}
	want := 0
	if len(cat.singles) > 0 {
		want = max(free, 0)
	}
	var batches []store.TypeWant
	for _, bt := range cat.batched {
		held := 0
		if b := l.buffers[bt.typ]; b != nil {
			held = len(b.tasks)
		}
		if (held > 0 || free > 0) && bt.b.Size > held {
			batches = append(batches, store.TypeWant{Type: bt.typ, Want: bt.b.Size - held})
		}
	}
	return want, batches
}

// lingerLeft is how long until the first buffer's linger ends, if one
// waits for it (and a run is free for its batch).
func (l *lane) lingerLeft(now time.Time) (time.Duration, bool) {
	if l.running >= l.size {
		return 0, false
	}
	var left time.Duration
	found := false
	for _, b := range l.buffers {
		if len(b.tasks) == 0 {
			continue
		}
		d := b.since.Add(b.bt.b.Linger).Sub(now)
		if !found || d < left {
			left, found = d, true
		}
	}
	return left, found
}

// now is the time the runner plans with: the client's Config.Clock (tests
// and flowtest inject a fake one), or the machine's. Waits still use real
// timers, bounded by Config.IdleWait.
func (r *Runner) now() time.Time {
	if r.clock != nil {
		return r.clock()
	}
	return r.machine()
}

// at is the time the runner's store calls decide by: the client's
// Config.Clock, or zero, which makes the scripts read Redis's clock, shared
// by every runner.
func (r *Runner) at() time.Time {
	if r.clock != nil {
		return r.clock()
	}
	return time.Time{}
}

// holdClaims stops the runner's lanes from claiming until the retry of
// outcome o, which failed because a dependency is down, is due: the jobs
// waiting would only fail the same way and spend their attempts.
func (r *Runner) holdClaims(o *store.Outcome) {
	until := r.now().Add(o.Delay).UnixNano()
	for {
		cur := r.hold.Load()
		if cur >= until {
			return
		}
		if r.hold.CompareAndSwap(cur, until) {
			r.log.Warn("trellis: a dependency of the steps is unavailable; claiming no new jobs until the retry is due",
				"job", o.ID, "type", o.Type, "wait", o.Delay, "err", o.Err.Message)
			return
		}
	}
}

// clockSkewWarn is how far this machine's clock may be from Redis's before
// the runner says so, once.
const clockSkewWarn = 2 * time.Second

// maintainEvery is how often a busy runner also promotes delayed nodes,
// recovers expired leases and trims finished flows.
const maintainEvery = 250 * time.Millisecond

// flushStats adds this runner's finished runs to the shared minute stats,
// and samples the backlog into them once a minute (one lane of the runner
// does, the first to flush in the minute).
func (r *Runner) flushStats(ctx context.Context, m *store.Minute) {
	if !m.Empty() {
		if err := r.store.AddMinute(ctx, *m); err != nil {
			r.log.Error("trellis: writing stats failed", "err", err)
		}
	}
	now := r.now()
	if cur, last := now.Unix()/60, r.sampled.Load(); cur != last && r.sampled.CompareAndSwap(last, cur) {
		if err := r.store.SampleBacklog(ctx, now); err != nil {
			r.log.Error("trellis: sampling the backlog failed", "err", err)
		}
	}
	*m = store.NewMinute(now)
}

type pauseEnd int

const (
	pauseElapsed pauseEnd = iota
	pauseStopped
	pauseAborted
)

// pause waits d, or less when the runner is told to abort, or to stop
// (unless it already is stopping).
func (r *Runner) pause(d time.Duration, stopping bool) pauseEnd {
	t := time.NewTimer(d)
	defer t.Stop()
	stop := r.stop
	if stopping {
		stop = nil
	}
	select {
	case <-t.C:
		return pauseElapsed
	case <-r.abort:
		return pauseAborted
	case <-stop:
		return pauseStopped
	}
}

// heartbeat renews the leases of running steps and stops the ones whose
// lease is gone.
func (r *Runner) heartbeat(ctx context.Context, inflight map[string]*task) {
	held := make([]store.Lease, 0, len(inflight))
	for id, t := range inflight {
		if !t.released {
			held = append(held, store.Lease{ID: id, Token: t.job.Token})
		}
	}
	info := r.info
	info.Types, info.InFlight = r.typeList(), int(r.busy.Load())
	lost, at, err := r.store.Heartbeat(ctx, r.at(), r.cfg.ID, r.cfg.Lease, &info, held)
	if err != nil {
		r.log.Error("trellis: heartbeat failed", "err", err)
		return
	}
	if skew := r.now().Sub(at); r.clock == nil && (skew > clockSkewWarn || skew < -clockSkewWarn) && r.skewWarned.CompareAndSwap(false, true) {
		r.log.Warn("trellis: this machine's clock differs from Redis's; Trellis decides by Redis's clock, but logs and stats use this one",
			"skew", skew.Round(time.Millisecond))
	}
	for _, id := range lost {
		if t, ok := inflight[id]; ok {
			t.released = true
			if t.cancel != nil { // nil: it waits in a buffer, which drops it
				t.cancel(errLeaseLost)
			}
			r.log.Warn("trellis: lease lost; step cancelled", "job", id, "type", t.job.Type)
		}
	}
	if len(lost) > 0 && r.cfg.Observer != nil {
		r.cfg.Observer.Stalled(lost)
	}
}

// handBack returns unfinished nodes to ready and reports what finished.
func (r *Runner) handBack(ctx context.Context, inflight map[string]*task, pending []store.Outcome) {
	for id, t := range inflight {
		if !t.released {
			pending = append(pending, store.Outcome{ID: id, Token: t.job.Token, Kind: store.OutcomeRelease})
			t.released = true
		}
		if t.cancel != nil {
			t.cancel(errShutdown)
		}
	}
	if len(pending) == 0 {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := r.store.Sync(sctx, r.at(), store.SyncRequest{
		Worker: r.cfg.ID, Lease: r.cfg.Lease, StallLimit: r.cfg.stallLimit(),
		Queues: r.cfg.Queues, Outcomes: pending, RetainCount: -1,
	})
	if err != nil {
		r.log.Error("trellis: hand back failed; the leases will expire instead", "err", err, "jobs", len(pending))
		return
	}
	r.log.Info("trellis: in-flight jobs handed back", "jobs", len(inflight))
}

// job is a run handed to a step worker: one claimed node, or a batch.
type job struct {
	ctx   context.Context
	t     *task     // a single step's node
	batch *batchRun // or a batch step's nodes
	l     *lane     // the lane that claimed it, which hears the result
}

// batchRun is one batch of a batch step's nodes.
type batchRun struct {
	tasks  []*task
	name   string // "runner/number of size", kept with each node
	cancel context.CancelCauseFunc
	left   int // nodes whose run was not cancelled (the lane's to count)
}

// launch takes a claimed node: a single step's goes to a step worker, a
// batch step's into its type's buffer (see dispatch). A lane holds at most
// its size in runs, so the workers' channel never blocks.
func (r *Runner) launch(ctx context.Context, c store.Claimed, inflight map[string]*task, l *lane) {
	t := &task{job: c}
	inflight[c.ID] = t
	r.busy.Add(1)
	for _, bt := range r.catalog().batched {
		if bt.typ == c.Type {
			b := l.buffers[c.Type]
			if b == nil {
				b = &buffer{bt: bt}
				l.buffers[c.Type] = b
			}
			if len(b.tasks) == 0 {
				b.since = r.machine()
			}
			b.tasks = append(b.tasks, t)
			return
		}
	}
	tctx, cancel := context.WithCancelCause(ctx)
	t.cancel = cancel
	l.running++
	r.jobs <- job{ctx: tctx, t: t, l: l}
}

// dispatch hands each buffer that makes a batch to a step worker while the
// lane has a free run: a full one, or one whose linger is over. Nodes whose
// lease was lost while they waited are dropped.
func (r *Runner) dispatch(ctx context.Context, l *lane, inflight map[string]*task) {
	now := r.machine()
	for typ, b := range l.buffers {
		if l.running >= l.size {
			return
		}
		live := b.tasks[:0]
		for _, t := range b.tasks {
			if t.released {
				delete(inflight, t.job.ID)
				r.busy.Add(-1)
			} else {
				live = append(live, t)
			}
		}
		b.tasks = live
		if len(b.tasks) == 0 || (len(b.tasks) < b.bt.b.Size && now.Sub(b.since) < b.bt.b.Linger) {
			continue
		}
		// a buffer holds at most a batch: wants asks for no more
		l.batches++
		bctx, cancel := context.WithCancelCause(ctx)
		run := &batchRun{tasks: b.tasks, cancel: cancel, left: len(b.tasks),
			name: r.cfg.ID + "/" + itoa(l.batchNumber()) + " of " + itoa(len(b.tasks))}
		for _, t := range run.tasks {
			t.cancel = run.cancelOne
		}
		delete(l.buffers, typ)
		l.running++
		r.jobs <- job{ctx: bctx, batch: run, l: l}
	}
}

// batchNumber numbers the lane's batches apart from the other lane's.
func (l *lane) batchNumber() int {
	if l.first {
		return 2*l.batches - 1
	}
	return 2 * l.batches
}

// cancelOne ends one node's share of the batch: the batch's context ends
// at shutdown, or once no node of it is left to report.
func (b *batchRun) cancelOne(cause error) {
	b.left--
	if errors.Is(cause, errShutdown) || b.left <= 0 {
		b.cancel(cause)
	}
}

// unbuffer hands back the nodes waiting in the lane's buffers, which never
// started (the runner is stopping).
func (r *Runner) unbuffer(l *lane, inflight map[string]*task, pending []store.Outcome) []store.Outcome {
	for typ, b := range l.buffers {
		for _, t := range b.tasks {
			if !t.released {
				pending = append(pending, store.Outcome{ID: t.job.ID, Token: t.job.Token, Kind: store.OutcomeRelease})
			}
			delete(inflight, t.job.ID)
			r.busy.Add(-1)
		}
		delete(l.buffers, typ)
	}
	return pending
}

// work is one of the runner's Concurrency step workers. Long-lived workers
// keep their grown stacks, where a goroutine per step would grow one for
// every node.
func (r *Runner) work() {
	for j := range r.jobs {
		if j.batch != nil {
			rs := r.executeBatch(j.ctx, j.batch)
			j.batch.cancel(nil)
			j.l.results <- rs
			continue
		}
		out, expanded, down := r.execute(j.ctx, &j.t.job)
		j.t.cancel(nil)
		j.l.results <- []result{{id: j.t.job.ID, outcome: out, expanded: expanded, unavailable: down}}
	}
}

// run is one node's run as a step worker goes through it.
type run struct {
	c       *store.Claimed
	start   time.Time
	log     *slog.Logger // the runner's records about the run
	steplog *stepLog
	sc      *flow.StepContext
	err     error           // the envelope is malformed
	ctx     context.Context // carries the run's span
	span    trace.Span
}

// begin starts node c's run: its logger, observer call, span and step context.
func (r *Runner) begin(ctx context.Context, c *store.Claimed) *run {
	u := &run{c: c, start: time.Now(), steplog: &stepLog{max: r.limits.MaxLogs}}
	attrs := []slog.Attr{slog.String("job", c.ID), slog.String("type", c.Type), slog.Int("attempt", c.Attempt)}
	u.log = jobLogger(r.log, nil, attrs...)
	u.log.Debug("trellis: step started")
	if r.cfg.Observer != nil {
		var waited time.Duration
		if !c.ReadyAt.IsZero() {
			waited = max(r.now().Sub(c.ReadyAt), 0)
		}
		r.cfg.Observer.StepStarted(runOf(c), waited)
	}
	u.ctx, u.span = r.startRunSpan(ctx, c)
	v, err := seam.NewStepContext(r.client, *c, jobLogger(r.log, u.steplog, attrs...))
	u.sc, u.err = v.(*flow.StepContext), err
	return u
}

// execute runs one node and turns what happened into an outcome to report,
// or, for a node that expanded (already written), the run to count; down
// says the step failed because a dependency is unavailable.
func (r *Runner) execute(ctx context.Context, c *store.Claimed) (report, expanded *store.Outcome, down bool) {
	u := r.begin(ctx, c)
	var res []byte
	var skipped string
	err := u.err
	if err == nil {
		res, skipped, err = r.runStep(u.ctx, u.sc, c)
	}
	return r.end(u.ctx, u, res, skipped, err, time.Since(u.start))
}

// executeBatch runs a batch step's nodes as one batch: each node's
// condition first (a false one skips the node), then the step for the
// rest, and turns each node's result into its outcome.
func (r *Runner) executeBatch(ctx context.Context, b *batchRun) []result {
	runs := make([]*run, len(b.tasks))
	errs := make([]error, len(b.tasks))
	skips := make([]string, len(b.tasks))
	var jobs []*flow.StepContext
	var at []int // jobs[k] is runs[at[k]]
	timeout := time.Duration(0)
	for i, t := range b.tasks {
		u := r.begin(ctx, &t.job)
		runs[i] = u
		u.sc.Batch = b.name
		if u.span != nil {
			u.span.SetAttributes(attribute.String("trellis.batch", b.name))
		}
		if u.err == nil {
			skips[i], u.err = r.condition(ctx, u.sc, u.c)
		}
		if u.err != nil || skips[i] != "" {
			errs[i] = u.err
			continue
		}
		jobs, at = append(jobs, u.sc), append(at, i)
		timeout = max(timeout, cmp.Or(u.c.Timeout, r.cfg.DefaultTimeout))
	}
	results := make([][]byte, len(b.tasks))
	if len(jobs) > 0 {
		out, err := r.runBatch(ctx, jobs, timeout)
		for k, i := range at {
			if err != nil {
				errs[i] = err
			} else {
				results[i], errs[i] = out[k].Result, out[k].Err
			}
		}
	}
	rs := make([]result, len(b.tasks))
	for i, u := range runs {
		rep, exp, down := r.end(u.ctx, u, results[i], skips[i], errs[i], time.Since(u.start))
		if rep != nil {
			rep.Batch = b.name
		}
		if exp != nil {
			exp.Batch = b.name
		}
		rs[i] = result{id: u.c.ID, outcome: rep, expanded: exp, unavailable: down}
	}
	return rs
}

// runBatch runs a batch step on jobs with timeout, turning a panic into an
// error with its stack, for every job of the batch.
func (r *Runner) runBatch(ctx context.Context, jobs []*flow.StepContext, timeout time.Duration) (out []flow.BatchResult, err error) {
	r.mu.Lock()
	step, _ := r.steps[jobs[0].Type].(flow.BatchStep)
	r.mu.Unlock()
	if step == nil {
		return nil, flow.Permanent(fmt.Errorf("%w: no batch step registered for %s on runner %s", flow.ErrUnknownType, jobs[0].Type, r.cfg.ID))
	}
	sctx, cancel := context.WithTimeoutCause(ctx, timeout, timeoutError(timeout))
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, &panicError{value: p, stack: string(debug.Stack())}
		}
	}()
	out, err = step.RunBatch(sctx, jobs)
	switch {
	case err == nil && len(out) != len(jobs):
		return nil, flow.Permanent(fmt.Errorf("the batch step of %s returned %d results for %d jobs", jobs[0].Type, len(out), len(jobs)))
	case err != nil && sctx.Err() != nil && ctx.Err() == nil:
		err = fmt.Errorf("%w (%v)", context.Cause(sctx), err)
	}
	return out, err
}

// end turns what run u's step did into its outcome: the report for Redis,
// or, for a node that expanded (written now), the run to count.
func (r *Runner) end(ctx context.Context, u *run, res []byte, skipped string, err error, took time.Duration) (report, expanded *store.Outcome, down bool) {
	c, log := u.c, u.log
	out := r.outcome(ctx, c, res, skipped, err, took, log)
	if out != nil {
		out.Span = tracing.Traceparent(ctx)
		out.Logs = u.steplog.String()
	}
	if out != nil && out.Kind == store.OutcomeOK {
		specs, xerr := seam.Expansion(u.sc)
		switch {
		case xerr != nil: // the sub-graph is invalid: running again would not help
			out = r.outcome(ctx, c, nil, "", flow.Permanent(fmt.Errorf("expand: %w", xerr)), took, log)
		case specs != nil:
			for i := range specs { // the sub-graph's spans descend from this run
				specs[i].Trace = out.Span
			}
			_, xerr = r.store.Expand(ctx, r.at(), store.Expansion{ID: c.ID, Token: c.Token, Result: res, Specs: specs})
			switch {
			case xerr == nil:
				log.Info("trellis: step expanded", "nodes", len(specs), "duration", took)
				out, expanded = nil, out
			case errors.Is(xerr, dag.ErrLeaseLost):
				out = nil
			case refused(xerr):
				out = r.outcome(ctx, c, nil, "", flow.Permanent(fmt.Errorf("expand: %w", xerr)), took, log)
			default: // Redis full or unreachable: the expansion may succeed later
				out = r.outcome(ctx, c, nil, "", fmt.Errorf("expand: %w", xerr), took, log)
			}
		}
	}
	if done := cmpOr(out, expanded); r.cfg.Observer != nil && done != nil {
		r.cfg.Observer.StepFinished(runOf(c), Outcome(done.Ended()), took, err)
	}
	endRunSpan(u.span, cmpOr(out, expanded), err)
	return out, expanded, err != nil && flow.IsUnavailable(err)
}

func cmpOr(a, b *store.Outcome) *store.Outcome {
	if a != nil {
		return a
	}
	return b
}

// runStep evaluates the node's condition and runs its step with the node's
// timeout, turning a panic into an error with its stack.
func (r *Runner) runStep(ctx context.Context, sc *flow.StepContext, c *store.Claimed) (res []byte, skipped string, err error) {
	r.mu.Lock()
	step := r.steps[c.Type]
	r.mu.Unlock()
	if step == nil {
		return nil, "", flow.Permanent(fmt.Errorf("%w: no step registered for %s on runner %s", flow.ErrUnknownType, c.Type, r.cfg.ID))
	}
	if skipped, err := r.condition(ctx, sc, c); skipped != "" || err != nil {
		return nil, skipped, err
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = r.cfg.DefaultTimeout
	}
	sctx, cancel := context.WithTimeoutCause(ctx, timeout, timeoutError(timeout))
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p, stack: string(debug.Stack())}
		}
	}()
	res, err = step.Run(sctx, sc)
	if err == nil && sctx.Err() != nil && ctx.Err() == nil {
		// finished, but only after its deadline: still a success
		return res, "", nil
	}
	if err != nil && sctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w (%v)", context.Cause(sctx), err)
	}
	return res, "", err
}

// condition evaluates node c's When: the reason it is skipped when false,
// or the permanent error of one that cannot be evaluated.
func (r *Runner) condition(ctx context.Context, sc *flow.StepContext, c *store.Claimed) (skipped string, err error) {
	if c.When == "" {
		return "", nil
	}
	ok, err := sc.Condition(ctx, c.When)
	if err != nil {
		return "", flow.Permanent(fmt.Errorf("condition %q: %w", c.When, err))
	}
	if !ok {
		return "condition false: " + c.When, nil
	}
	return "", nil
}

// timeoutError is a step's deadline cause, formatted only when read.
type timeoutError time.Duration

func (e timeoutError) Error() string { return "step timed out after " + time.Duration(e).String() }

type panicError struct {
	value any
	stack string
}

func (p *panicError) Error() string { return fmt.Sprintf("step panicked: %v", p.value) }

// outcome is the one place that turns a step's result into the node's next
// state: success, skip, retry (with its delay), permanent failure, or
// nothing at all when the lease is gone.
func (r *Runner) outcome(ctx context.Context, c *store.Claimed, res []byte, skipped string, err error, took time.Duration, log interface {
	Debug(string, ...any)
	Info(string, ...any)
	Warn(string, ...any)
	Error(string, ...any)
}) *store.Outcome {
	o := &store.Outcome{ID: c.ID, Token: c.Token, Duration: took, Queue: c.Queue, Type: c.Type, Final: c.Attempt >= c.MaxAttempts}
	if err == nil && skipped == "" && len(res) > r.limits.MaxResult {
		err = flow.Permanent(fmt.Errorf("%w: the result of %d bytes is over the limit of %d bytes (flow.Config.MaxResult); nothing of it was stored",
			errTooBig, len(res), r.limits.MaxResult))
	}
	var pe *panicError
	var msg string // the error as kept and logged: cut to MaxError
	if err != nil {
		msg = clip.Text(err.Error(), r.limits.MaxError)
	}
	switch {
	case errors.Is(context.Cause(ctx), errLeaseLost) || errors.Is(context.Cause(ctx), errShutdown):
		return nil
	case err == nil && skipped != "":
		o.Kind, o.Reason = store.OutcomeSkip, skipped
		log.Info("trellis: step skipped", "reason", skipped)
	case err == nil:
		o.Kind, o.Result = store.OutcomeOK, res
		if len(o.Result) == 0 {
			o.Result = []byte("null")
		}
		log.Debug("trellis: step succeeded", "duration", took)
	case flow.IsPermanent(err):
		o.Kind, o.Err = store.OutcomeFail, &dag.ErrorInfo{Message: msg, Attempt: c.Attempt}
		log.Error("trellis: step failed permanently", "err", msg, "duration", took)
	default:
		o.Kind, o.Err = store.OutcomeRetry, &dag.ErrorInfo{Message: msg, Attempt: c.Attempt}
		if d, ok := flow.RetryAfterDelay(err); ok {
			o.Delay = d
		} else {
			o.Delay = c.Backoff.Delay(c.Attempt, r.cfg.Jitter, r.customBackoff)
		}
	}
	if o.Err != nil {
		if errors.As(err, &pe) {
			o.Err.Stack = clip.Text(pe.stack, r.limits.MaxStack)
		} else if st := flow.StackOf(err); st != "" {
			o.Err.Stack = clip.Text(st, r.limits.MaxStack)
		}
	}
	if o.Kind == store.OutcomeRetry {
		if c.Attempt >= c.MaxAttempts {
			log.Error("trellis: step failed; no attempts left", "err", msg, "attempts", c.MaxAttempts, "duration", took, "stack", o.Err.Stack)
		} else {
			log.Warn("trellis: step failed; will retry", "err", msg, "next_delay", o.Delay, "duration", took, "stack", o.Err.Stack)
		}
	}
	return o
}

// errTooBig marks a step result over flow.Config.MaxResult.
var errTooBig = errors.New("result too large")

func (r *Runner) customBackoff(name string) func(int) time.Duration {
	if fn := r.cfg.Backoffs[name]; fn != nil {
		return fn
	}
	return nil
}

// refused reports an expansion Redis refused for its sub-graph (a cycle,
// a conflict, …) or a script error: running again would not help, unlike
// a full or unreachable Redis.
func refused(err error) bool {
	var re redis.Error
	if errors.As(err, &re) && !errors.Is(err, dag.ErrRedisFull) {
		return true
	}
	for _, e := range []error{dag.ErrCycle, dag.ErrConflict, dag.ErrUnknownDependency, dag.ErrInvalidNode, dag.ErrDuplicateNode, dag.ErrPayloadTooLarge} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
