package monitor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
)

// Status is the health classification.
type Status string

const (
	Healthy  Status = "healthy"
	Warning  Status = "warning"
	Critical Status = "critical"
	// Info marks a finding that does not change the status.
	Info Status = "info"
)

func (s Status) rank() int {
	switch s {
	case Critical:
		return 2
	case Warning:
		return 1
	}
	return 0
}

// Finding is one reason the status is not healthy, or a note.
type Finding struct {
	Check          string `json:"check"`
	Severity       Status `json:"severity"`
	Reason         string `json:"reason"`
	Recommendation string `json:"recommendation"`
}

// Health is the body of /api/admin/queue-health. The HTTP status is 200 for
// healthy and warning, 503 for critical, so a load balancer or an uptime
// check can act on it directly.
type Health struct {
	Status          Status        `json:"status"`
	CheckedAt       time.Time     `json:"checkedAt"`
	Reasons         []string      `json:"reasons"`
	Recommendations []string      `json:"recommendations"`
	Findings        []Finding     `json:"findings"`
	Metrics         HealthMetrics `json:"metrics"`
	Stats           QueueStats    `json:"stats"`
}

// HealthMetrics are the measurements the classification used.
type HealthMetrics struct {
	Backlog              int64    `json:"backlog"`
	GrowthPerMinute      *float64 `json:"growthPerMinute"` // null until two checks a minute apart
	ErrorRate            float64  `json:"errorRate"`
	ErrorWindowMinutes   int      `json:"errorWindowMinutes"`
	Stalled              int64    `json:"stalled"`
	OldestWaitingSeconds float64  `json:"oldestWaitingSeconds"`
	OldestWaitingQueue   string   `json:"oldestWaitingQueue,omitempty"`
	LiveRunners          int      `json:"liveRunners"`
	RunnerIDs            []string `json:"runners"`
	// Live are the live runners with what each says it serves.
	Live []dag.Heartbeat `json:"liveRunnerDetails"`
	// Unserved are the queue and type pairs whose ready jobs no live
	// runner has a step for.
	Unserved        []Lane `json:"unserved"`
	MaxmemoryPolicy string `json:"maxmemoryPolicy"`
}

// Lane is a queue and a message type.
type Lane struct {
	Queue string `json:"queue"`
	Type  string `json:"type"`
	Ready int64  `json:"ready"`
}

type backlogSample struct {
	at time.Time
	n  int64
}

func (h *Handler) queueHealth(w http.ResponseWriter, r *http.Request) {
	hl, err := h.health.Check(r.Context())
	if err != nil {
		h.writeEngineError(w, r, err)
		return
	}
	status := http.StatusOK
	if hl.Status == Critical {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, hl)
}

// Checker classifies a namespace's health. It remembers the backlog it saw
// to measure its growth, so keep one per process. Safe for concurrent use.
type Checker struct {
	client *flow.Client
	insp   *flow.Inspector
	t      Thresholds

	mu      sync.Mutex
	samples []backlogSample

	// maxmemoryPolicy reads Redis's eviction policy; tests replace it.
	maxmemoryPolicy func(ctx context.Context) (string, error)
}

// NewChecker returns a health checker of client's namespace; zero
// thresholds take their defaults.
func NewChecker(client *flow.Client, t Thresholds) (*Checker, error) {
	if client == nil {
		return nil, errors.New("monitor: nil client")
	}
	t = t.WithDefaults()
	if err := t.validate(); err != nil {
		return nil, err
	}
	c := &Checker{client: client, insp: client.Inspector(), t: t}
	c.maxmemoryPolicy = c.redisMaxmemoryPolicy
	return c, nil
}

// Health classifies the namespace, as /api/admin/queue-health does.
func (h *Handler) Health(ctx context.Context) (*Health, error) { return h.health.Check(ctx) }

// Check classifies the namespace.
func (h *Checker) Check(ctx context.Context) (*Health, error) {
	t := h.t
	now, err := h.client.Now(ctx)
	if err != nil {
		return nil, err
	}
	st, err := h.client.Stats(ctx, &flow.StatsOpts{Window: t.ErrorWindow})
	if err != nil {
		return nil, err
	}
	hl := &Health{Status: Healthy, CheckedAt: now.UTC(), Stats: toQueueStats(h.insp.Namespace(), st),
		Reasons: []string{}, Recommendations: []string{}, Findings: []Finding{}}
	m := &hl.Metrics
	m.ErrorRate = st.ErrorRate
	m.ErrorWindowMinutes = int(t.ErrorWindow / time.Minute)
	add := func(check string, sev Status, rec, format string, args ...any) {
		f := Finding{Check: check, Severity: sev, Reason: fmt.Sprintf(format, args...), Recommendation: rec}
		hl.Findings = append(hl.Findings, f)
		if sev.rank() > 0 {
			hl.Reasons = append(hl.Reasons, f.Reason)
			hl.Recommendations = append(hl.Recommendations, f.Recommendation)
		}
		if sev.rank() > hl.Status.rank() {
			hl.Status = sev
		}
	}
	level := func(v, warn, crit float64) Status {
		switch {
		case v >= crit:
			return Critical
		case v >= warn:
			return Warning
		}
		return Healthy
	}

	// backlog and its growth
	m.Backlog = st.Counts[dag.Ready] + st.Counts[dag.Delayed]
	if s := level(float64(m.Backlog), float64(t.BacklogWarning), float64(t.BacklogCritical)); s != Healthy {
		add("backlog", s, "Add runners or raise --concurrency; check that steps are not slowed by the database.",
			"%d jobs are waiting (warning at %d, critical at %d)", m.Backlog, t.BacklogWarning, t.BacklogCritical)
	}
	if g, ok := h.growth(now, m.Backlog); ok {
		m.GrowthPerMinute = &g
		if s := level(g, t.GrowthWarning, t.GrowthCritical); s != Healthy {
			add("backlog_growth", s, "Jobs arrive faster than they finish: add runners, or look for a slow or failing dependency.",
				"the backlog grows by %.0f jobs a minute (warning at %.0f, critical at %.0f)", g, t.GrowthWarning, t.GrowthCritical)
		}
	}

	// error rate
	if s := level(st.ErrorRate, t.ErrorRateWarning, t.ErrorRateCritical); s != Healthy {
		add("error_rate", s, "Open the failed-job analysis to see which types and errors dominate, fix the cause, then retry the failed jobs.",
			"%.1f%% of runs failed in the last %d minutes (warning at %.0f%%, critical at %.0f%%)",
			st.ErrorRate, m.ErrorWindowMinutes, t.ErrorRateWarning, t.ErrorRateCritical)
	}

	// stalled jobs
	if m.Stalled, err = h.insp.Stalled(ctx); err != nil {
		return nil, err
	}
	if s := level(float64(m.Stalled), float64(t.StalledWarning), float64(t.StalledCritical)); s != Healthy {
		add("stalled", s, "A runner died or is starved of CPU while holding jobs; they return to ready when a live runner recovers them. Check runner logs and resources.",
			"%d active jobs hold an expired lease", m.Stalled)
	}

	// oldest waiting job, per queue that has ready jobs
	queues := map[string]bool{h.client.Config().DefaultQueue: true}
	for q, c := range st.ByQueue {
		if c[dag.Ready] > 0 {
			queues[q] = true
		}
	}
	names := make([]string, 0, len(queues))
	for q := range queues {
		names = append(names, q)
	}
	sort.Strings(names)
	for _, q := range names {
		at, err := h.insp.OldestReady(ctx, q)
		if err != nil {
			return nil, err
		}
		if at.IsZero() {
			continue
		}
		if age := now.Sub(at).Seconds(); age > m.OldestWaitingSeconds {
			m.OldestWaitingSeconds, m.OldestWaitingQueue = age, q
		}
	}
	oldest := time.Duration(m.OldestWaitingSeconds * float64(time.Second))
	if s := level(float64(oldest), float64(t.OldestWarning), float64(t.OldestCritical)); s != Healthy {
		add("oldest_waiting", s, "Jobs wait too long to start: check that a runner serves this queue and that the queue is not paused.",
			"the oldest ready job of queue %q has waited %s (warning at %s, critical at %s)",
			m.OldestWaitingQueue, oldest.Round(time.Second), t.OldestWarning, t.OldestCritical)
	}

	// live runners
	runners, err := h.insp.Runners(ctx, now.Add(-t.RunnerTimeout))
	if err != nil {
		return nil, err
	}
	m.LiveRunners, m.Live = len(runners), runners
	m.RunnerIDs = make([]string, len(runners))
	for i, rn := range runners {
		m.RunnerIDs[i] = rn.ID
	}
	m.Unserved = []Lane{}
	if len(runners) > 0 {
		counts, err := h.insp.Counts(ctx)
		if err != nil {
			return nil, err
		}
		for _, c := range counts {
			if c.State != dag.Ready || c.N <= 0 {
				continue
			}
			served := slices.ContainsFunc(runners, func(rn dag.Heartbeat) bool {
				return rn.Info == nil || rn.Info.Serves(c.Queue, c.Type) // a runner without a record may serve anything
			})
			if !served {
				m.Unserved = append(m.Unserved, Lane{Queue: c.Queue, Type: c.Type, Ready: c.N})
				add("unserved", Warning, fmt.Sprintf("Start a runner with a step for %s on queue %q (`trellis worker --queues %s` of a version that has it); the jobs wait for it.", c.Type, c.Queue, c.Queue),
					"%d ready %s jobs on queue %q: no live runner has a step for %s on that queue", c.N, c.Type, c.Queue, c.Type)
			}
		}
	}
	if len(runners) == 0 {
		sev := Warning
		if m.Backlog > 0 || st.Counts[dag.Active] > 0 {
			sev = Critical
		}
		add("runners", sev, "Start a worker (`trellis worker`) or check why the running ones stopped sending heartbeats.",
			"no runner has sent a heartbeat in the last %s", t.RunnerTimeout)
	}

	// Redis eviction policy
	policy, perr := h.maxmemoryPolicy(ctx)
	switch {
	case perr != nil:
		m.MaxmemoryPolicy = "unknown"
		add("redis_maxmemory_policy", Info, "Make sure Redis runs with maxmemory-policy noeviction.",
			"could not read maxmemory-policy: %s", perr.Error())
	default:
		m.MaxmemoryPolicy = policy
		if policy != "noeviction" {
			add("redis_maxmemory_policy", Critical, "Set `maxmemory-policy noeviction` (CONFIG SET or redis.conf): with eviction Redis may silently delete jobs and break the graph.",
				"Redis maxmemory-policy is %q, not noeviction", policy)
		}
	}

	if len(st.Paused) > 0 {
		add("paused", Warning, "Resume the queues when the reason for pausing is gone.", "queues are paused: %v", st.Paused)
	}
	return hl, nil
}

// growth records the backlog and returns its growth per minute against the
// newest sample at least a minute old.
func (h *Checker) growth(now time.Time, backlog int64) (float64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var base *backlogSample
	for i := len(h.samples) - 1; i >= 0; i-- {
		if now.Sub(h.samples[i].at) >= time.Minute {
			base = &h.samples[i]
			break
		}
	}
	var g float64
	ok := base != nil
	if ok {
		g = float64(backlog-base.n) / now.Sub(base.at).Minutes()
	}
	// keep at most one sample per 10s and none older than 15 minutes
	if n := len(h.samples); n == 0 || now.Sub(h.samples[n-1].at) >= 10*time.Second {
		h.samples = append(h.samples, backlogSample{at: now, n: backlog})
	}
	cut := 0
	for cut < len(h.samples)-1 && now.Sub(h.samples[cut+1].at) >= 15*time.Minute {
		cut++
	}
	h.samples = h.samples[cut:]
	return g, ok
}

func (h *Checker) redisMaxmemoryPolicy(ctx context.Context) (string, error) {
	return h.insp.MaxmemoryPolicy(ctx)
}
