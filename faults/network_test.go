package faults_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/redistest"
	"github.com/trellisflow/trellis/runner"
)

// newProxy starts an in-process toxiproxy from a free loopback port to upstream.
func newProxy(t *testing.T, name, upstream string) *toxiproxy.Proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	require.NoError(t, p.Start())
	t.Cleanup(p.Stop)
	return p
}

func addToxic(t *testing.T, p *toxiproxy.Proxy, json string) {
	t.Helper()
	_, err := p.Toxics.AddToxicJson(strings.NewReader(json))
	require.NoError(t, err)
}

func removeToxic(t *testing.T, p *toxiproxy.Proxy, name string) {
	t.Helper()
	require.NoError(t, p.Toxics.RemoveToxic(context.Background(), name))
}

// proxied is a client that reaches Redis through the proxy, with short
// timeouts so that a stalled connection fails fast.
func proxied(t *testing.T, p *toxiproxy.Proxy) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: p.Listen, PoolSize: 32, MaxRetries: 2,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: 700 * time.Millisecond, WriteTimeout: 700 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// TestNetworkLatencyAndResets runs flows on two runners that reach Redis
// through a fault proxy adding latency, then resetting every connection
// several times. Nothing is lost or left unfinished, and a node runs twice
// only after a lease expired (a claim whose reply was lost).
func TestNetworkLatencyAndResets(t *testing.T) {
	t.Parallel()
	srv := redistest.StartRedis(t)
	direct := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = direct.Close() })
	logs := &redistest.Logs{}
	const ns = "net"
	c := newClient(t, direct, ns, logs)

	const flows, perFlow = 6, 100
	for i := range flows {
		_, err := c.Enqueue(context.Background(), ladder(fmt.Sprintf("net-%d", i), perFlow, 5*time.Millisecond))
		require.NoError(t, err)
	}
	p := newProxy(t, "redis", srv.Addr())
	addToxic(t, p, `{"name":"lat-down","type":"latency","stream":"downstream","attributes":{"latency":15,"jitter":10}}`)
	addToxic(t, p, `{"name":"lat-up","type":"latency","stream":"upstream","attributes":{"latency":5,"jitter":5}}`)
	rec := newRuns()
	for i := range 2 {
		rc := newClient(t, proxied(t, p), ns, logs)
		startRunner(t, rc, runner.Config{ID: fmt.Sprintf("net-r%d", i), Concurrency: 8, Lease: 2 * time.Second, StallLimit: 10}, rec)
	}

	succeeded := func() int64 {
		st, err := c.Stats(context.Background(), nil)
		require.NoError(t, err)
		return st.Counts[dag.Succeeded]
	}
	eventually(t, 60*time.Second, "a quarter of the nodes done under latency", func() bool { return succeeded() >= flows*perFlow/4 })

	// Reset every connection that carries data, six times over.
	resets := 0
	for round := range 6 {
		if succeeded() == flows*perFlow {
			break
		}
		stream := []string{"downstream", "upstream"}[round%2]
		addToxic(t, p, `{"name":"reset","type":"reset_peer","stream":"`+stream+`","attributes":{"timeout":0}}`)
		time.Sleep(150 * time.Millisecond) // the fault lasts this long
		removeToxic(t, p, "reset")
		resets++
		time.Sleep(250 * time.Millisecond)
	}
	removeToxic(t, p, "lat-down")
	removeToxic(t, p, "lat-up")

	reruns := 0
	for i := range flows {
		f := waitFlow(t, c, fmt.Sprintf("net-%d", i), 90*time.Second)
		require.Len(t, f.Nodes, perFlow)
		for _, n := range f.Nodes {
			require.Equal(t, dag.Succeeded, n.State, "%s: %s", n.ID, n.Reason)
			r := rec.of(n.ID)
			require.GreaterOrEqual(t, r, 1, n.ID)
			require.LessOrEqual(t, r, 1+n.Stalls, "%s ran %d times with %d stalls", n.ID, r, n.Stalls)
			reruns += r - 1
		}
	}
	st, err := c.Stats(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, int64(flows*perFlow), st.Counts[dag.Succeeded])
	require.Equal(t, int64(flows*perFlow), st.Counts.Total())
	errs := len(logs.Lines("level=ERROR"))
	t.Logf("FIGURES network latency+resets: nodes=%d latency=15±10ms down,5±5ms up reset_rounds=%d runner_errors_logged=%d reruns=%d lost=0 unfinished=0",
		flows*perFlow, resets, errs, reruns)
}

// TestNetworkStallLongerThanLease cuts runner A off from Redis (every byte
// dropped) while it runs a step, for longer than its lease. Runner B takes
// the node over and runs it; when A's step finally finishes and A reaches
// Redis again, its late completion is refused.
func TestNetworkStallLongerThanLease(t *testing.T) {
	t.Parallel()
	srv := redistest.StartRedis(t)
	direct := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = direct.Close() })
	const ns = "stall"
	logsA, logsB := &redistest.Logs{}, &redistest.Logs{}
	c := newClient(t, direct, ns, logsB)

	g := flow.New().WithID("stall-flow")
	x := g.Add(Work{Name: "x"}, &flow.NodeOpts{ID: "x"})
	g.Add(Work{Name: "y"}, &flow.NodeOpts{ID: "y"}).After(x)
	_, err := c.Enqueue(context.Background(), g)
	require.NoError(t, err)

	// Runner A: through the proxy; its step blocks until the test lets it go.
	p := newProxy(t, "redis-a", srv.Addr())
	ca := newClient(t, proxied(t, p), ns, logsA)
	rec := newRuns()
	started, release := make(chan struct{}), make(chan struct{})
	lease := time.Second
	ra, err := runner.New(ca, &runner.Config{ID: "runner-a", Concurrency: 1, Lease: lease, IdleWait: 200 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, ra.Register(flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Work) (WorkResult, error) {
		rec.add(sc.JobID)
		close(started)
		<-release // a step that ignores its context and finishes late
		return WorkResult{Name: m.Name, Runner: "runner-a"}, nil
	})))
	require.NoError(t, ra.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ra.Stop(ctx)
	})
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		require.FailNow(t, "runner A did not start x")
	}

	// Stall A's connections: every byte in both directions is dropped.
	addToxic(t, p, `{"name":"stall-up","type":"timeout","stream":"upstream","attributes":{"timeout":0}}`)
	addToxic(t, p, `{"name":"stall-down","type":"timeout","stream":"downstream","attributes":{"timeout":0}}`)
	stalledAt := time.Now()

	// Runner B reaches Redis directly; it recovers x once A's lease expires.
	startRunner(t, c, runner.Config{ID: "runner-b", Concurrency: 4, Lease: 5 * time.Second}, rec)
	f := waitFlow(t, c, "stall-flow", 60*time.Second)
	xn, yn := f.Nodes[0], f.Nodes[1]
	require.Equal(t, "x", xn.ID)
	require.Equal(t, dag.Succeeded, xn.State)
	require.Equal(t, dag.Succeeded, yn.State)
	var xr WorkResult
	require.NoError(t, jsonUnmarshal(xn.Result, &xr))
	require.Equal(t, "runner-b", xr.Runner, "x's result is B's")
	require.Equal(t, 1, xn.Stalls, "x's lease expired once")
	require.Equal(t, []string{"runner-a", "runner-b"}, activeWorkers(xn), "x was claimed by A, then by B")

	// Let A's step finish while A is still cut off, so its outcome waits in
	// A's next sync; then heal the network.
	close(release)
	require.True(t, logsA.WaitFor(30*time.Second, "sync with Redis failed", "outcomes=1"), "A tried to report x while cut off:\n%s", logsA.String())
	stallFor := time.Since(stalledAt)
	require.Greater(t, stallFor, lease, "the stall outlasted the lease")
	removeToxic(t, p, "stall-up")
	removeToxic(t, p, "stall-down")
	require.True(t, logsA.WaitFor(30*time.Second, "late completion rejected", "job=x"), "A's late completion of x is refused:\n%s", logsA.String())

	after, err := c.Job(context.Background(), "x")
	require.NoError(t, err)
	require.Equal(t, dag.Succeeded, after.State)
	require.Equal(t, xn.Result, after.Result, "the refused completion changed nothing")
	require.Equal(t, xn.Timeline, after.Timeline)
	require.Equal(t, 2, rec.of("x"), "x ran on A, then again on B")
	require.Equal(t, 1, rec.of("y"), "y ran once")
	t.Logf("FIGURES network stall: lease=%s stall=%s x_runs=%d x_stalls=%d late_completions_refused=%d y_runs=%d lost=0",
		lease, stallFor.Round(10*time.Millisecond), rec.of("x"), xn.Stalls, len(logsA.Lines("late completion rejected")), rec.of("y"))
}
