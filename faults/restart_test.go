package faults_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// TestRedisRestart kills a Redis with AOF (SIGKILL) while two runners work
// through flows that a producer keeps enqueueing, restarts it on the same
// port and directory, and checks that every acknowledged enqueue runs to
// completion on the same runners, which reconnect on their own.
func TestRedisRestart(t *testing.T) {
	for _, fsync := range []string{"always", "everysec"} {
		t.Run("appendfsync="+fsync, func(t *testing.T) {
			t.Parallel()
			srv := redistest.StartRedis(t, "--appendonly", "yes", "--appendfsync", fsync)
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64, MaxRetries: 2,
				DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
			t.Cleanup(func() { _ = rdb.Close() })
			var runID string
			loadUnderFault(t, rdb, faultPlan{
				label: "restart appendfsync=" + fsync,
				// A SIGKILL loses nothing the kernel got: everysec only risks
				// what the OS had not written to disk when the host fails.
				mayLose: false,
				before:  func() { runID = serverRunID(t, rdb) },
				inject: func() {
					srv.Kill()
					time.Sleep(time.Second) // Redis stays down for a second
					srv.Restart()
				},
				after: func() {
					require.NotEqual(t, runID, serverRunID(t, rdb), "a new redis-server process answers")
				},
			})
		})
	}
	// A host crash under everysec: the kernel's page cache goes too, so Redis
	// comes back with the AOF as it was on disk up to a second earlier. The
	// test copies the AOF aside, lets a second of acknowledged writes go by,
	// kills Redis, puts the old AOF back and restarts: exactly what such a
	// crash leaves behind.
	t.Run("host-crash-everysec", func(t *testing.T) {
		t.Parallel()
		srv := redistest.StartRedis(t, "--appendonly", "yes", "--appendfsync", "everysec")
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64, MaxRetries: 2,
			DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
		t.Cleanup(func() { _ = rdb.Close() })
		aof := filepath.Join(srv.Dir, "appendonlydir")
		disk := filepath.Join(t.TempDir(), "appendonlydir")
		loadUnderFault(t, rdb, faultPlan{
			label:    "host crash appendfsync=everysec (last second of writes dropped)",
			mayLose:  true,
			mustLose: true,
			before:   func() {},
			inject: func() {
				require.NoError(t, os.CopyFS(disk, os.DirFS(aof)))
				time.Sleep(time.Second) // acknowledged, but only in the page cache
				srv.Kill()
				require.NoError(t, os.RemoveAll(aof))
				require.NoError(t, os.CopyFS(aof, os.DirFS(disk)))
				srv.Restart()
			},
			after: func() {},
		})
	})
}

const (
	faultFlows     = 30
	faultFlowNodes = 100
)

type ack struct {
	flowID string
	at     time.Time
}

// faultPlan is one fault injected into a running load.
type faultPlan struct {
	label    string
	mayLose  bool   // acknowledged writes may be lost (asynchronous replication, a host crash)
	mustLose bool   // the fault surely drops acknowledged writes
	before   func() // just before the fault
	inject   func() // the fault; it returns when the service is back
	after    func() // checks that the fault happened
}

// loadUnderFault runs two runners on rdb while a producer enqueues 30 flows
// of 100 nodes, injects the fault once a third of them are in and work is
// pending, then checks that every acknowledged flow ran to completion (or,
// when the plan allows it, was lost whole, shortly before the fault), that
// the counts agree, and that no node is left unfinished.
func loadUnderFault(t *testing.T, rdb redis.UniversalClient, plan faultPlan) {
	logs := &redistest.Logs{}
	c := newClient(t, rdb, "fault", logs)
	rec := newRuns()
	for i := range 2 {
		startRunner(t, c, runner.Config{ID: fmt.Sprintf("r%d", i), Concurrency: 8, Lease: 2 * time.Second, StallLimit: 10}, rec)
	}

	// The producer retries a failed enqueue with the same flow ID: enqueue is
	// idempotent, so an enqueue whose reply was lost is not doubled.
	var (
		mu     sync.Mutex
		acked  []ack
		errs   int
		doneCh = make(chan struct{})
	)
	go func() {
		defer close(doneCh)
		deadline := time.Now().Add(90 * time.Second)
		for i := range faultFlows {
			id := fmt.Sprintf("flow-%02d", i)
			for time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := c.Enqueue(ctx, ladder(id, faultFlowNodes, 10*time.Millisecond))
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, ack{id, time.Now()})
					mu.Unlock()
					break
				}
				mu.Lock()
				errs++
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(40 * time.Millisecond)
		}
	}()
	nAcked := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}

	// Inject while a third of the flows are in and work is in flight.
	var unfinished int64
	eventually(t, 60*time.Second, "a third of the flows acknowledged with work pending", func() bool {
		if nAcked() < faultFlows/3 {
			return false
		}
		st, err := c.Stats(context.Background(), nil)
		if err != nil {
			return false
		}
		unfinished = st.Counts[dag.Blocked] + st.Counts[dag.Ready] + st.Counts[dag.Active] + st.Counts[dag.Delayed]
		return unfinished > 0
	})
	ackedBefore := nAcked()
	plan.before()
	faultAt := time.Now()
	plan.inject()
	backAt := time.Now()
	plan.after()

	select {
	case <-doneCh:
	case <-time.After(120 * time.Second):
		require.FailNow(t, "the producer did not finish")
	}
	mu.Lock()
	all := append([]ack(nil), acked...)
	producerErrs := errs
	mu.Unlock()
	require.Len(t, all, faultFlows, "every flow was acknowledged in the end")

	ctx := context.Background()
	present, lost, reruns := 0, 0, 0
	var lastDone time.Time
	for _, a := range all {
		_, err := c.Inspector().FlowStatus(ctx, a.flowID)
		if errors.Is(err, flow.ErrNotFound) && plan.mayLose {
			// only what was acknowledged shortly before or during the fault
			// can be lost
			lost++
			require.True(t, a.at.After(faultAt.Add(-3*time.Second)) && a.at.Before(backAt),
				"flow %s acknowledged at %s, fault from %s to %s: only the last moments before a fault can be lost", a.flowID, a.at, faultAt, backAt)
			continue
		}
		require.NoError(t, err, "acknowledged flow %s is there after the fault", a.flowID)
		f := waitFlow(t, c, a.flowID, 90*time.Second)
		require.Len(t, f.Nodes, faultFlowNodes, a.flowID)
		present++
		for _, n := range f.Nodes {
			require.Equal(t, dag.Succeeded, n.State, "%s: %s", n.ID, n.Reason)
			r := rec.of(n.ID)
			require.GreaterOrEqual(t, r, 1, n.ID)
			if !plan.mayLose {
				// a second run only follows a lease that expired (a claim
				// whose reply was lost in the crash)
				require.LessOrEqual(t, r, 1+n.Stalls, "%s ran %d times with %d stalls", n.ID, r, n.Stalls)
			}
			reruns += r - 1
			if n.FinishedAt().After(lastDone) {
				lastDone = n.FinishedAt()
			}
		}
	}
	if !plan.mayLose {
		require.Zero(t, lost)
	}
	if plan.mustLose {
		require.Positive(t, lost, "the fault dropped acknowledged writes")
	}
	st, err := c.Stats(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, int64(present*faultFlowNodes), st.Counts[dag.Succeeded], "the counts agree with the nodes")
	require.Equal(t, int64(present*faultFlowNodes), st.Counts.Total(), "no node is left unfinished")
	require.True(t, lastDone.After(backAt), "the runners went on after the fault")
	syncErrs := len(logs.Lines("sync with Redis failed")) + len(logs.Lines("heartbeat failed"))
	t.Logf("FIGURES %s: flows=%d nodes=%d acked_before_fault=%d unfinished_at_fault=%d outage=%s producer_errors=%d runner_redis_errors=%d reruns=%d acked_flows_lost=%d lost_nodes=%d",
		plan.label, faultFlows, present*faultFlowNodes, ackedBefore, unfinished, backAt.Sub(faultAt).Round(10*time.Millisecond),
		producerErrs, syncErrs, reruns, lost, lost*faultFlowNodes)
}

// serverRunID is the run_id of the redis-server answering rdb: a new one
// after each restart.
func serverRunID(t *testing.T, rdb redis.UniversalClient) string {
	t.Helper()
	var info string
	eventually(t, 30*time.Second, "INFO server", func() bool {
		var err error
		info, err = rdb.Info(context.Background(), "server").Result()
		return err == nil
	})
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "run_id:"); ok {
			return strings.TrimSpace(v)
		}
	}
	require.FailNow(t, "no run_id in INFO server")
	return ""
}
