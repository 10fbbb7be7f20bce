package flowtest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/internal/seam"
)

// Driving a run: the harness runs steps while it can and moves the fake
// clock only when nothing else can happen.

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
	return seam.Maintain(h.client, rc.Lease, max(rc.StallLimit, 0))
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
