package runner_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/testredis"
	"github.com/trellisflow/trellis/runner"
)

// backends runs fn once on the real Redis (REDIS_URL, or the Cluster at
// REDIS_CLUSTER_ADDRS) and once on the in-process one, each in a fresh
// namespace: the conformance suite.
func backends(t *testing.T, fn func(t *testing.T, h *harness)) {
	t.Helper()
	testredis.Backends(t, func(t *testing.T, rdb redis.UniversalClient) { fn(t, newHarness(t, rdb)) })
}

var nonName = regexp.MustCompile(`[^A-Za-z0-9]+`)

// harness is one test's namespace with a client and helpers to run steps.
type harness struct {
	t      *testing.T
	rdb    redis.UniversalClient
	ns     string
	client *flow.Client
	log    *runLog
}

func newHarness(t *testing.T, rdb redis.UniversalClient) *harness {
	ns := fmt.Sprintf("t-%s-%06x", nonName.ReplaceAllString(t.Name(), "-"), rand.IntN(1<<24))
	if len(ns) > 120 {
		ns = ns[len(ns)-120:]
	}
	client, err := flow.NewClient(rdb, &flow.Config{Namespace: ns, Development: true, Logger: quietLogger()})
	require.NoError(t, err)
	h := &harness{t: t, rdb: rdb, ns: ns, client: client, log: &runLog{count: map[string]int{}}}
	t.Cleanup(func() { _, _ = client.Clear(context.Background()) })
	return h
}

func quietLogger() *slog.Logger {
	if os.Getenv("TRELLIS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// keys counts the namespace's Redis keys.
func (h *harness) keys() int { return h.keysLike("*") }

// keysLike counts the namespace's keys matching a pattern after the prefix.
func (h *harness) keysLike(pattern string) int {
	h.t.Helper()
	var n atomic.Int64
	count := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, "trellis:{"+h.ns+"}:"+pattern, 1000).Iterator()
		for iter.Next(ctx) {
			n.Add(1)
		}
		return iter.Err()
	}
	if cc, ok := h.rdb.(*redis.ClusterClient); ok {
		require.NoError(h.t, cc.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error { return count(ctx, m) }))
	} else {
		require.NoError(h.t, count(context.Background(), h.rdb))
	}
	return int(n.Load())
}

// runner starts a runner with the test steps; it stops at cleanup.
func (h *harness) runner(cfg *runner.Config, steps ...flow.Step) *runner.Runner {
	h.t.Helper()
	c := runner.Config{Concurrency: 8, IdleWait: 200 * time.Millisecond, Lease: 5 * time.Second}
	if cfg != nil {
		c = *cfg
		if c.IdleWait == 0 {
			c.IdleWait = 200 * time.Millisecond
		}
	}
	r, err := runner.New(h.client, &c)
	require.NoError(h.t, err)
	if len(steps) == 0 {
		steps = []flow.Step{h.taskStep()}
	}
	require.NoError(h.t, r.Register(steps...))
	require.NoError(h.t, r.Start(context.Background()))
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Stop(ctx)
	})
	return r
}

func (h *harness) wait(flowID string) *dag.Flow {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f, err := h.client.Wait(ctx, flowID)
	require.NoError(h.t, err)
	return f
}

func (h *harness) enqueue(g *flow.Graph) *flow.Enqueued {
	h.t.Helper()
	res, err := h.client.Enqueue(context.Background(), g)
	require.NoError(h.t, err)
	return res
}

func (h *harness) job(id string) *dag.Node {
	h.t.Helper()
	j, err := h.client.Job(context.Background(), id)
	require.NoError(h.t, err)
	return j
}

func nodeByID(f *dag.Flow, id string) *dag.Node {
	for _, n := range f.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Task is the test message: it can fail, panic or sleep on demand.
type Task struct {
	Name string `json:"name"`
	// FailTimes fails the first FailTimes attempts (retryable).
	FailTimes int `json:"failTimes,omitempty"`
	// Permanent fails every attempt permanently.
	Permanent bool          `json:"permanent,omitempty"`
	Panic     bool          `json:"panic,omitempty"`
	Sleep     time.Duration `json:"sleep,omitempty"`
}

func (Task) MessageType() string { return "TEST_TASK" }

// TaskResult carries the name and what the step saw of its parents.
type TaskResult struct {
	Name    string            `json:"name"`
	Parents map[string]string `json:"parents,omitempty"` // parent ID -> state
}

// runLog records every step run, in order.
type runLog struct {
	mu    sync.Mutex
	order []string
	count map[string]int
}

func (l *runLog) add(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.order = append(l.order, id)
	l.count[id]++
}

func (l *runLog) runs(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count[id]
}

func (l *runLog) index(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, o := range l.order {
		if o == id {
			return i
		}
	}
	return -1
}

// finished returns the order in which successful runs ended.
func (l *runLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.order...)
}

func (h *harness) taskStep() flow.Step {
	return flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Task) (TaskResult, error) {
		h.log.add(sc.JobID)
		if m.Sleep > 0 {
			select {
			case <-time.After(m.Sleep):
			case <-ctx.Done():
				return TaskResult{}, ctx.Err()
			}
		}
		if m.Panic {
			panic("boom in " + m.Name)
		}
		if m.Permanent {
			return TaskResult{}, flow.Permanent(fmt.Errorf("%s refuses", m.Name))
		}
		if sc.Attempt <= m.FailTimes {
			return TaskResult{}, fmt.Errorf("%s failed attempt %d", m.Name, sc.Attempt)
		}
		parents, err := sc.Parents(ctx)
		if err != nil {
			return TaskResult{}, err
		}
		res := TaskResult{Name: m.Name}
		if len(parents) > 0 {
			res.Parents = map[string]string{}
			for _, p := range parents {
				res.Parents[p.ID] = string(p.State)
			}
		}
		return res, nil
	})
}
