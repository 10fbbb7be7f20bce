package runner

import (
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

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/clip"
)

// task is a node this runner holds.
type task struct {
	job      store.Claimed
	cancel   context.CancelCauseFunc
	released bool // handed back or lease lost: its result is not reported
}

// result is what a step goroutine sends back to the loop.
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
	size    int           // the most steps this lane runs at once
	results chan result   // from the step workers
	wake    chan struct{} // from the waker: nodes became ready
	first   bool          // the lane that logs the runner's stopping
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
		out[i] = &lane{size: n, results: make(chan result, n), wake: make(chan struct{}, 1), first: i == 0}
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

	collect := func(res result) {
		t, ok := inflight[res.id]
		if !ok {
			return
		}
		delete(inflight, res.id)
		r.busy.Add(-1)
		if res.outcome != nil && !t.released {
			pending = append(pending, *res.outcome)
		}
		if x := res.expanded; x != nil {
			minute.Observe(x.Type, x.Kind, x.Final, x.Duration)
		}
		if o := res.outcome; res.unavailable && o != nil && o.Kind == store.OutcomeRetry {
			r.holdClaims(o)
		}
	}

	for {
	drain:
		for {
			select {
			case res := <-l.results:
				collect(res)
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
		var hold time.Duration // left of a hold (see holdClaims)
		if h := r.hold.Load(); h != 0 {
			hold = time.Duration(h - now.UnixNano())
		}
		want := 0
		if !stopping && hold <= 0 {
			want = l.size - len(inflight)
		}
		if len(pending) > 0 || (want > 0 && !idle) {
			maintain := now.Sub(lastMaintain) >= maintainEvery || (!nextDue.IsZero() && !now.Before(nextDue))
			res, err := r.store.Sync(ctx, r.at(), store.SyncRequest{
				Worker: r.cfg.ID, Lease: r.cfg.Lease, StallLimit: r.cfg.stallLimit(),
				Queues: r.cfg.Queues, Types: r.typeList(), Want: want, Outcomes: pending, Maintain: maintain,
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
				minute.Observe(o.Type, o.Kind, o.Final, o.Duration)
			}
			pending = pending[:0]
			for _, c := range res.Claimed {
				r.launch(ctx, c, inflight, l)
			}
			// fewer than asked: the queues are drained (or limited, or
			// paused), so wait for a result, a wake-up or the timer
			// instead of asking again at once
			idle = want > 0 && len(res.Claimed) < want
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
		if idle && want > 0 {
			select {
			case r.arm <- struct{}{}:
			default:
			}
		}
		timer := time.NewTimer(wait)
		select {
		case res := <-l.results:
			collect(res)
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

// flushStats adds this runner's finished runs to the shared minute stats.
func (r *Runner) flushStats(ctx context.Context, m *store.Minute) {
	if !m.Empty() {
		if err := r.store.AddMinute(ctx, *m); err != nil {
			r.log.Error("trellis: writing stats failed", "err", err)
		}
	}
	*m = store.NewMinute(r.now())
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
			t.cancel(errLeaseLost)
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
		t.cancel(errShutdown)
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

// job is a claimed node handed to a step worker.
type job struct {
	ctx context.Context
	t   *task
	l   *lane // the lane that claimed it, which hears the result
}

// launch hands a claimed node to a step worker. A runner holds at most
// Concurrency nodes, so the workers' channel never blocks.
func (r *Runner) launch(ctx context.Context, c store.Claimed, inflight map[string]*task, l *lane) {
	tctx, cancel := context.WithCancelCause(ctx)
	t := &task{job: c, cancel: cancel}
	inflight[c.ID] = t
	r.busy.Add(1)
	r.jobs <- job{ctx: tctx, t: t, l: l}
}

// work is one of the runner's Concurrency step workers. Long-lived workers
// keep their grown stacks, where a goroutine per step would grow one for
// every node.
func (r *Runner) work() {
	for j := range r.jobs {
		out, expanded, down := r.execute(j.ctx, &j.t.job)
		j.t.cancel(nil)
		j.l.results <- result{id: j.t.job.ID, outcome: out, expanded: expanded, unavailable: down}
	}
}

// execute runs one node and turns what happened into an outcome to report,
// or, for a node that expanded (already written), the run to count; down
// says the step failed because a dependency is unavailable.
func (r *Runner) execute(ctx context.Context, c *store.Claimed) (report, expanded *store.Outcome, down bool) {
	start := time.Now()
	attrs := []slog.Attr{slog.String("job", c.ID), slog.String("type", c.Type), slog.Int("attempt", c.Attempt)}
	log := jobLogger(r.log, nil, attrs...)
	log.Debug("trellis: step started")
	if r.cfg.Observer != nil {
		var waited time.Duration
		if !c.ReadyAt.IsZero() {
			waited = max(r.now().Sub(c.ReadyAt), 0)
		}
		r.cfg.Observer.StepStarted(runOf(c), waited)
	}
	ctx, span := r.startRunSpan(ctx, c)
	steplog := &stepLog{max: r.limits.MaxLogs}
	v, err := seam.NewStepContext(r.client, *c, jobLogger(r.log, steplog, attrs...))
	sc := v.(*flow.StepContext)
	var res []byte
	var skipped string
	if err == nil {
		res, skipped, err = r.runStep(ctx, sc, c)
	}
	took := time.Since(start)
	out := r.outcome(ctx, c, res, skipped, err, took, log)
	if out != nil {
		out.Span = tracing.Traceparent(ctx)
		out.Logs = steplog.String()
	}
	if out != nil && out.Kind == store.OutcomeOK {
		specs, xerr := seam.Expansion(sc)
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
	endRunSpan(span, cmpOr(out, expanded), err)
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
	if c.When != "" {
		ok, err := sc.Condition(ctx, c.When)
		if err != nil {
			return nil, "", flow.Permanent(fmt.Errorf("condition %q: %w", c.When, err))
		}
		if !ok {
			return nil, "condition false: " + c.When, nil
		}
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
	o := &store.Outcome{ID: c.ID, Token: c.Token, Duration: took, Type: c.Type, Final: c.Attempt >= c.MaxAttempts}
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
	if o.Err != nil && errors.As(err, &pe) {
		o.Err.Stack = clip.Text(pe.stack, r.limits.MaxStack)
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
