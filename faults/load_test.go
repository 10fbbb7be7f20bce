//go:build load

package faults_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/redistest"
	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/schema/schematest"
	"github.com/trellisflow/trellis/steps/workout"
)

// TestLoad200k pushes about 200,000 nodes (1,370 full plan saves of 146
// nodes) through four `trellis worker` processes on Redis and PostgreSQL and
// checks that the succeeded nodes, the runs the minute statistics counted
// and the rows all agree. `make test-load` runs it (build tag "load"); it
// takes several minutes, so `make test` leaves it out.
func TestLoad200k(t *testing.T) {
	bin := trellisBinary(t)
	srv := redistest.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 32})
	t.Cleanup(func() { _ = rdb.Close() })
	dbURL := schematest.PostgresURL(t)
	db, err := schema.Open(dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	ctx := context.Background()
	_, err = schema.Migrate(ctx, db)
	require.NoError(t, err)

	logs := &redistest.Logs{}
	const ns = "load"
	c := newClient(t, rdb, ns, logs)
	all := plans(t, 1370)
	var ids []string
	var wantPhases, wantSessions, wantExercises int
	for i, p := range all {
		job, err := workout.QueueFullPlanSave(ctx, c, p, &flow.NodeOpts{ID: fmt.Sprintf("save-%04d", i)})
		require.NoError(t, err)
		ids = append(ids, job.ID)
		wantPhases += len(p.Phases)
		for _, ph := range p.Phases {
			wantSessions += len(ph.Sessions)
			for _, s := range ph.Sessions {
				wantExercises += len(s.Exercises)
			}
		}
	}
	wantNodes := len(all) + wantPhases + wantSessions + wantExercises
	start := time.Now()
	var workers []*worker
	for range 4 {
		workers = append(workers, startWorker(t, bin, "--redis-url", "redis://"+srv.Addr()+"/0", "--database-url", dbURL,
			"--namespace", ns, "--concurrency", "8"))
	}
	for _, id := range ids {
		f := waitFlow(t, c, id, 20*time.Minute)
		for _, n := range f.Nodes {
			require.Equal(t, dag.Succeeded, n.State, "%s: %s", n.ID, n.Reason)
		}
	}
	took := time.Since(start)
	// Four workers shared the work: a node claimed twice was claimed again
	// only after a lease expiry or a failed attempt.
	claimedTwice := 0
	for _, id := range ids {
		f, err := c.Flow(ctx, id)
		require.NoError(t, err)
		for _, n := range f.Nodes {
			if len(activeWorkers(n)) > 1 {
				claimedTwice++
				require.True(t, n.Stalls > 0 || n.Error != nil, "%s was claimed %d times without a stall or an error", n.ID, len(activeWorkers(n)))
			}
		}
	}
	for _, w := range workers {
		w.signal(syscall.SIGTERM)
	}

	st, err := c.Stats(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, int64(wantNodes), st.Counts[dag.Succeeded])
	require.Equal(t, int64(wantNodes), st.Counts.Total())
	require.Equal(t, len(all), countRows(t, db, "workout_plans"))
	require.Equal(t, wantPhases, countRows(t, db, "workout_phases"))
	require.Equal(t, wantSessions, countRows(t, db, "workout_sessions"))
	require.Equal(t, wantExercises, countRows(t, db, "workout_exercises"))
	stepRuns := countRows(t, db, "trellis_step_runs")
	require.LessOrEqual(t, stepRuns, wantNodes)
	minutes, err := seam.Store(c).Minutes(ctx, time.Now(), 120)
	require.NoError(t, err)
	var okRuns int64
	for _, m := range minutes {
		for _, n := range m.OK {
			okRuns += n
		}
	}
	t.Logf("FIGURES load: workers=4 plans=%d nodes=%d rows=%d step_runs=%d minute_stats_ok_runs=%d claimed_twice=%d took=%s nodes_per_s=%.0f lost=0",
		len(all), wantNodes, len(all)+wantPhases+wantSessions+wantExercises, stepRuns, okRuns, claimedTwice, took.Round(time.Second), float64(wantNodes)/took.Seconds())
	require.Equal(t, int64(wantNodes), okRuns, "the minute statistics counted every successful run once")
}
