package faults_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/redistest"
	"github.com/trellisflow/trellis/runner"
)

// Spread is the cluster test's message: it can expand into a chain of Expand
// nodes, or fail while its gate is closed.
type Spread struct {
	Name   string `json:"name"`
	Expand int    `json:"expand,omitempty"`
	Gated  bool   `json:"gated,omitempty"`
}

func (Spread) MessageType() string { return "FAULT_SPREAD" }

func spreadStep(rec *runs, gate *atomic.Bool) flow.Step {
	return flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m Spread) (WorkResult, error) {
		rec.add(sc.JobID)
		if m.Gated && !gate.Load() {
			return WorkResult{}, flow.Permanent(errors.New("gate closed"))
		}
		if m.Expand > 0 {
			g := flow.New()
			var prev *flow.Node
			for i := range m.Expand {
				n := g.Add(Spread{Name: fmt.Sprintf("part-%d", i)}, &flow.NodeOpts{ID: fmt.Sprintf("%s/part-%d", sc.JobID, i)})
				if prev != nil {
					n.After(prev)
				}
				prev = n
			}
			if err := sc.Expand(g); err != nil {
				return WorkResult{}, err
			}
		}
		return WorkResult{Name: m.Name}, nil
	})
}

// clusterKeys lists a namespace's keys on every primary, by primary.
func clusterKeys(t *testing.T, cc *redis.ClusterClient, ns string) map[string][]string {
	t.Helper()
	var mu sync.Mutex
	out := map[string][]string{}
	err := cc.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		keys, err := m.Keys(ctx, "trellis:{"+ns+"}:*").Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			mu.Lock()
			out[m.Options().Addr] = keys
			mu.Unlock()
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

// TestRedisCluster runs the engine on a 3-primary Redis Cluster through a
// redis.ClusterClient: a diamond, a fan-out of 1,000, cancel, retry,
// expansion, stats and Clear, each in its own namespace. Each namespace's
// keys share one slot; the namespaces spread over slots and primaries.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), PoolSize: 32})
	t.Cleanup(func() { _ = cc.Close() })
	ctx := context.Background()
	require.NoError(t, cc.Ping(ctx).Err())

	logs := &redistest.Logs{}
	rec := newRuns()
	gate := &atomic.Bool{}
	clients := map[string]*flow.Client{}
	namespaces := []string{"diamond", "fanout", "cancel", "retry", "expand", "stats"}
	for _, ns := range namespaces {
		c := newClient(t, cc, ns, logs)
		clients[ns] = c
		r, err := runner.New(c, &runner.Config{ID: "cluster-" + ns, Concurrency: 16, Lease: 5 * time.Second, IdleWait: 200 * time.Millisecond})
		require.NoError(t, err)
		require.NoError(t, r.Register(spreadStep(rec, gate)))
		require.NoError(t, r.Start(ctx))
		t.Cleanup(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = r.Stop(sctx)
		})
	}

	// diamond
	{
		c := clients["diamond"]
		g := flow.New().WithID("diamond")
		a := g.Add(Spread{Name: "a"}, &flow.NodeOpts{ID: "a"})
		b := g.Add(Spread{Name: "b"}, &flow.NodeOpts{ID: "b"}).After(a)
		d := g.Add(Spread{Name: "c"}, &flow.NodeOpts{ID: "c"}).After(a)
		g.Add(Spread{Name: "d"}, &flow.NodeOpts{ID: "d"}).After(b, d)
		_, err := c.Enqueue(ctx, g)
		require.NoError(t, err)
		f := waitFlow(t, c, "diamond", 60*time.Second)
		require.Equal(t, map[dag.State]int{dag.Succeeded: 4}, nonZero(f.Counts()))
		require.Equal(t, []string{"a", "b", "c", "d"}, ids(f))
		dn := f.Nodes[3]
		require.True(t, dn.StartedAt().After(f.Nodes[1].FinishedAt()) || dn.StartedAt().Equal(f.Nodes[1].FinishedAt()))
	}
	// fan-out of 1,000
	{
		c := clients["fanout"]
		g := flow.New().WithID("fan")
		root := g.Add(Spread{Name: "root"}, &flow.NodeOpts{ID: "root"})
		var mids []*flow.Node
		for i := range 1000 {
			mids = append(mids, g.Add(Spread{Name: "mid"}, &flow.NodeOpts{ID: fmt.Sprintf("mid-%04d", i)}).After(root))
		}
		g.Add(Spread{Name: "sink"}, &flow.NodeOpts{ID: "sink"}).After(mids...)
		_, err := c.Enqueue(ctx, g)
		require.NoError(t, err)
		f := waitFlow(t, c, "fan", 90*time.Second)
		require.Len(t, f.Nodes, 1002)
		require.Equal(t, 1002, f.Counts()[dag.Succeeded])
		require.Equal(t, 1, rec.of("sink"))
	}
	// cancel: a delayed root; cancelling it cancels its descendants
	{
		c := clients["cancel"]
		g := flow.New().WithID("cancel")
		a := g.Add(Spread{Name: "a"}, &flow.NodeOpts{ID: "ca", Delay: time.Hour})
		b := g.Add(Spread{Name: "b"}, &flow.NodeOpts{ID: "cb"}).After(a)
		g.Add(Spread{Name: "c"}, &flow.NodeOpts{ID: "cc"}).After(b)
		_, err := c.Enqueue(ctx, g)
		require.NoError(t, err)
		_, err = c.Cancel(ctx, "ca", "not today")
		require.NoError(t, err)
		f := waitFlow(t, c, "cancel", 30*time.Second)
		require.Equal(t, map[dag.State]int{dag.Cancelled: 3}, nonZero(f.Counts()))
		require.Equal(t, "parent ca cancelled", f.Nodes[1].Reason)
		require.Zero(t, rec.of("ca")+rec.of("cb")+rec.of("cc"))
	}
	// retry: a failed node and its cancelled child run again
	{
		c := clients["retry"]
		g := flow.New().WithID("retry")
		a := g.Add(Spread{Name: "gated", Gated: true}, &flow.NodeOpts{ID: "gated"})
		g.Add(Spread{Name: "after"}, &flow.NodeOpts{ID: "after-gated"}).After(a)
		_, err := c.Enqueue(ctx, g)
		require.NoError(t, err)
		f := waitFlow(t, c, "retry", 30*time.Second)
		require.Equal(t, dag.Failed, f.Nodes[0].State)
		require.Equal(t, dag.Cancelled, f.Nodes[1].State)
		gate.Store(true)
		n, err := c.Retry(ctx, "gated")
		require.NoError(t, err)
		require.Equal(t, 2, n)
		f = waitFlow(t, c, "retry", 30*time.Second)
		require.Equal(t, map[dag.State]int{dag.Succeeded: 2}, nonZero(f.Counts()))
		require.Equal(t, 2, rec.of("gated"))
	}
	// expansion: the parent's children wait for its sub-graph
	{
		c := clients["expand"]
		g := flow.New().WithID("expand")
		p := g.Add(Spread{Name: "parent", Expand: 3}, &flow.NodeOpts{ID: "parent"})
		g.Add(Spread{Name: "child"}, &flow.NodeOpts{ID: "child"}).After(p)
		_, err := c.Enqueue(ctx, g)
		require.NoError(t, err)
		f := waitFlow(t, c, "expand", 30*time.Second)
		require.Equal(t, 5, f.Counts()[dag.Succeeded], ids(f))
		parent, child, last := byID(f, "parent"), byID(f, "child"), byID(f, "parent/part-2")
		require.True(t, parent.Expanded)
		require.NotNil(t, last)
		require.False(t, child.StartedAt().Before(last.FinishedAt()), "the child waits for the sub-graph")
	}
	// stats
	{
		c := clients["stats"]
		for i := range 5 {
			_, err := c.Add(ctx, Spread{Name: "one"}, &flow.NodeOpts{ID: fmt.Sprintf("one-%d", i)})
			require.NoError(t, err)
		}
		_, err := c.Add(ctx, Spread{Name: "later"}, &flow.NodeOpts{ID: "later", Delay: time.Hour})
		require.NoError(t, err)
		for i := range 5 {
			waitFlow(t, c, fmt.Sprintf("one-%d", i), 30*time.Second)
		}
		st, err := c.Stats(ctx, &flow.StatsOpts{IncludeJobs: true})
		require.NoError(t, err)
		require.Equal(t, int64(5), st.Counts[dag.Succeeded])
		require.Equal(t, int64(1), st.Counts[dag.Delayed])
		require.Equal(t, int64(6), st.ByType["FAULT_SPREAD"].Total())
		require.NotEmpty(t, st.Recent)
	}

	// Every key of a namespace lives in its hash tag's slot, on one primary;
	// the namespaces spread over several slots and primaries.
	slots := map[int64]string{}
	primaries := map[string]bool{}
	for _, ns := range namespaces {
		slot, err := cc.ClusterKeySlot(ctx, "trellis:{"+ns+"}:").Result()
		require.NoError(t, err)
		require.NotContains(t, slots, slot, "%s and %s share a slot", ns, slots[slot])
		slots[slot] = ns
		byNode := clusterKeys(t, cc, ns)
		require.Len(t, byNode, 1, "namespace %s lives on one primary: %v", ns, keysOf(byNode))
		for addr, keys := range byNode {
			primaries[addr] = true
			require.NotEmpty(t, keys)
			for _, k := range keys {
				ks, err := cc.ClusterKeySlot(ctx, k).Result()
				require.NoError(t, err)
				require.Equal(t, slot, ks, "key %s of namespace %s", k, ns)
			}
		}
	}
	require.GreaterOrEqual(t, len(primaries), 2, "the namespaces spread over primaries")

	// Clear removes a namespace's keys from the cluster, and only them.
	n, err := clients["diamond"].Clear(ctx)
	require.NoError(t, err)
	require.Positive(t, n)
	require.Empty(t, clusterKeys(t, cc, "diamond"))
	require.NotEmpty(t, clusterKeys(t, cc, "fanout"))
	require.Empty(t, logs.Lines("sync with Redis failed"), "no Redis errors on the cluster")
	require.Empty(t, logs.Lines("heartbeat failed"), "no Redis errors on the cluster")
	t.Logf("FIGURES cluster: primaries=3 namespaces=%d slots=%d primaries_used=%d nodes_run=%d", len(namespaces), len(slots), len(primaries), rec.total())
}

func nonZero(m map[dag.State]int) map[dag.State]int {
	out := map[dag.State]int{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

func ids(f *dag.Flow) []string {
	var out []string
	for _, n := range f.Nodes {
		out = append(out, n.ID)
	}
	return out
}

func byID(f *dag.Flow, id string) *dag.Node {
	for _, n := range f.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

func keysOf(m map[string][]string) string {
	var parts []string
	for addr, keys := range m {
		parts = append(parts, fmt.Sprintf("%s: %d keys", addr, len(keys)))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
