package faults_test

import (
	"context"
	"fmt"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/redistest"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/schema/schematest"
	"github.com/trellisflow/trellis/steps/workout"
)

// TestPostgresOutage cuts a `trellis worker` off from PostgreSQL for 10 s in
// the middle of 20 full plan saves (a proxy in front of PostgreSQL stops
// listening and drops its connections; the shared server stays up). Steps
// fail, back off and retry; once the database is back every plan is saved,
// each row exactly once.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	bin := trellisBinary(t)
	srv := redistest.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	dbURL := schematest.PostgresURL(t)
	db, err := schema.Open(dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	ctx := context.Background()
	_, err = schema.Migrate(ctx, db)
	require.NoError(t, err)

	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	p := newProxy(t, "postgres", u.Host)
	u.Host = p.Listen
	workerURL := u.String()

	logs := &redistest.Logs{}
	const ns = "pgdown"
	c := newClient(t, rdb, ns, logs)
	all := plans(t, 20)
	var ids []string
	var wantExercises int
	for i, pl := range all {
		job, err := workout.QueueFullPlanSave(ctx, c, pl, &flow.NodeOpts{ID: fmt.Sprintf("save-%02d", i)})
		require.NoError(t, err)
		ids = append(ids, job.ID)
		for _, ph := range pl.Phases {
			for _, s := range ph.Sessions {
				wantExercises += len(s.Exercises)
			}
		}
	}
	w := startWorker(t, bin, "--redis-url", "redis://"+srv.Addr()+"/0", "--database-url", workerURL, "--namespace", ns,
		"--lease", "5s", "--concurrency", "4")
	var atCut int
	eventually(t, 120*time.Second, "a fifth of the exercises saved", func() bool {
		atCut = countRows(t, db, "workout_exercises")
		return atCut >= wantExercises/5
	})
	p.Stop() // PostgreSQL is gone for the worker
	cutAt := time.Now()
	time.Sleep(10 * time.Second)
	require.NoError(t, p.Start())
	outage := time.Since(cutAt)

	var failed []string
	for _, id := range ids {
		f := waitFlow(t, c, id, 180*time.Second)
		for _, n := range f.Nodes {
			if n.State != dag.Succeeded && n.Error != nil {
				failed = append(failed, fmt.Sprintf("%s %s after attempt %d of %d: %s", n.ID, n.State, n.Error.Attempt, n.MaxAttempts, n.Error.Message))
			}
		}
	}
	require.Empty(t, failed, "every node succeeds once PostgreSQL is back (%d failed)", len(failed))
	w.signal(syscall.SIGTERM)
	require.Equal(t, 20, countRows(t, db, "workout_plans"))
	require.Equal(t, wantExercises, countRows(t, db, "workout_exercises"))
	st, err := c.Stats(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, st.Counts.Total(), st.Counts[dag.Succeeded])
	require.Positive(t, st.Retries, "steps failed and were retried during the outage")
	t.Logf("FIGURES postgres outage: plans=20 nodes=%d exercises=%d saved_at_cut=%d outage=%s retries=%d lost=0",
		st.Counts.Total(), wantExercises, atCut, outage.Round(100*time.Millisecond), st.Retries)
}
