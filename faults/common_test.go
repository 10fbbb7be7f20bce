package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/redistest"
	"github.com/trellisflow/trellis/runner"
)

// Work is the fault tests' message: it sleeps a little, like a short step.
type Work struct {
	Name  string        `json:"name"`
	Sleep time.Duration `json:"sleep,omitempty"`
	// Fail fails the first Fail attempts (retryable).
	Fail int `json:"fail,omitempty"`
}

func (Work) MessageType() string { return "FAULT_WORK" }

// WorkResult names the runner that produced it.
type WorkResult struct {
	Name   string `json:"name"`
	Runner string `json:"runner"`
}

// runs counts step runs per job across every runner of a test.
type runs struct {
	mu sync.Mutex
	n  map[string]int
}

func newRuns() *runs { return &runs{n: map[string]int{}} }

func (r *runs) add(id string) {
	r.mu.Lock()
	r.n[id]++
	r.mu.Unlock()
}

func (r *runs) of(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[id]
}

func (r *runs) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := 0
	for _, n := range r.n {
		t += n
	}
	return t
}

// workStep records the run and sleeps as the message asks; it names runner
// in its result.
func workStep(rec *runs, runnerName string) flow.Step {
	return flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Work) (WorkResult, error) {
		rec.add(sc.JobID)
		if m.Sleep > 0 {
			select {
			case <-time.After(m.Sleep):
			case <-ctx.Done():
				return WorkResult{}, ctx.Err()
			}
		}
		if sc.Attempt <= m.Fail {
			return WorkResult{}, fmt.Errorf("%s fails attempt %d", m.Name, sc.Attempt)
		}
		return WorkResult{Name: m.Name, Runner: runnerName}, nil
	})
}

// ladder is a flow of n nodes: a root, (n-2)/2 middles after it, one leaf
// after each middle, and a sink after every leaf.
func ladder(flowID string, n int, sleep time.Duration) *flow.Graph {
	g := flow.New().WithID(flowID)
	root := g.Add(Work{Name: "root", Sleep: sleep}, &flow.NodeOpts{ID: flowID + "/root"})
	var leaves []*flow.Node
	for i := range (n - 2) / 2 {
		mid := g.Add(Work{Name: "mid", Sleep: sleep}, &flow.NodeOpts{ID: fmt.Sprintf("%s/mid-%03d", flowID, i)}).After(root)
		leaves = append(leaves, g.Add(Work{Name: "leaf", Sleep: sleep}, &flow.NodeOpts{ID: fmt.Sprintf("%s/leaf-%03d", flowID, i)}).After(mid))
	}
	g.Add(Work{Name: "sink", Sleep: sleep}, &flow.NodeOpts{ID: flowID + "/sink"}).After(leaves...)
	return g
}

// newClient makes a flow client in namespace ns that logs into logs.
func newClient(t *testing.T, rdb redis.UniversalClient, ns string, logs *redistest.Logs) *flow.Client {
	t.Helper()
	c, err := flow.NewClient(rdb, &flow.Config{Namespace: ns, Development: true, Logger: logs.Logger()})
	require.NoError(t, err)
	return c
}

// startRunner starts a runner with the work step; it stops at cleanup.
func startRunner(t *testing.T, c *flow.Client, cfg runner.Config, rec *runs) *runner.Runner {
	t.Helper()
	if cfg.IdleWait == 0 {
		cfg.IdleWait = 200 * time.Millisecond
	}
	r, err := runner.New(c, &cfg)
	require.NoError(t, err)
	require.NoError(t, r.Register(workStep(rec, cfg.ID)))
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Stop(ctx)
	})
	return r
}

// waitFlow waits for a flow to finish, with a generous bound.
func waitFlow(t *testing.T, c *flow.Client, flowID string, timeout time.Duration) *dag.Flow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	f, err := c.Wait(ctx, flowID)
	require.NoError(t, err)
	return f
}

// eventually polls cond every 20ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			require.FailNow(t, "timed out waiting: "+what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func activeWorkers(n *dag.Node) []string {
	var out []string
	for _, tr := range n.Timeline {
		if tr.To == dag.Active {
			out = append(out, tr.Worker)
		}
	}
	return out
}

func init() {
	// go-redis logs every failed dial of an outage the tests cause on purpose.
	redis.SetLogger(quietRedisLog{})
}

type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

func jsonUnmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }

func newLogsT() *redistest.Logs { return &redistest.Logs{} }

func runnerCfg(id string) runner.Config {
	return runner.Config{ID: id, Concurrency: 8, Lease: 5 * time.Second}
}
