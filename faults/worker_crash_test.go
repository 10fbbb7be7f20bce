package faults_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/redistest"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/schema/schematest"
	"github.com/trellisflow/trellis/steps/system"
	"github.com/trellisflow/trellis/steps/workout"
	"github.com/trellisflow/trellis/steps/workout/csvplan"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// TestMain removes the trellis binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// trellisBinary builds cmd/trellis once per test run.
func trellisBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "trellis-faults-bin")
		if err != nil {
			binErr = err
			return
		}
		binDir, binPath = dir, filepath.Join(dir, "trellis")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/trellis").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ../cmd/trellis: %v\n%s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

// worker is a `trellis worker` process.
type worker struct {
	cmd    *exec.Cmd
	out    *redistest.Logs
	exited chan struct{}
}

func startWorker(t *testing.T, bin string, args ...string) *worker {
	t.Helper()
	w := &worker{out: &redistest.Logs{}, exited: make(chan struct{})}
	w.cmd = exec.Command(bin, append([]string{"worker"}, args...)...)
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	w.cmd.Env = append(os.Environ(), "TRELLIS_LOG_LEVEL=info")
	require.NoError(t, w.cmd.Start())
	go func() { _ = w.cmd.Wait(); close(w.exited) }()
	t.Cleanup(func() { w.signal(syscall.SIGKILL) })
	return w
}

// signal sends sig to the worker's PID and waits for it to exit.
func (w *worker) signal(sig syscall.Signal) {
	select {
	case <-w.exited:
		return
	default:
	}
	_ = syscall.Kill(w.cmd.Process.Pid, sig)
	select {
	case <-w.exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(w.cmd.Process.Pid, syscall.SIGKILL)
		<-w.exited
	}
}

// plans parses the sample CSV once per plan ID: 50 distinct full plan saves.
func plans(t *testing.T, n int) []workout.PlanFullSave {
	t.Helper()
	raw, err := os.ReadFile("../steps/workout/csvplan/testdata/sample.csv")
	require.NoError(t, err)
	lines := strings.SplitN(string(raw), "\n", 3)
	id := strings.SplitN(lines[1], ",", 2)[0]
	var out []workout.PlanFullSave
	for i := range n {
		planID := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		m, err := csvplan.Parse(bytes.NewReader([]byte(strings.ReplaceAll(string(raw), id, planID))), nil)
		require.NoError(t, err)
		out = append(out, *m)
	}
	return out
}

func countRows(t *testing.T, db *bun.DB, table string) int {
	t.Helper()
	var n int
	require.NoError(t, db.NewRaw("SELECT count(*) FROM "+table).Scan(context.Background(), &n))
	return n
}

// TestWorkerProcessCrash kills a `trellis worker` process with SIGKILL in
// the middle of 50 full plan saves (and an email after each) on Redis and
// PostgreSQL; a second worker finishes them. Every node ends succeeded,
// every row exists exactly once, and each email is delivered once.
func TestWorkerProcessCrash(t *testing.T) {
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
	sink := newSMTPSink(t)

	logs := &redistest.Logs{}
	const ns = "crash"
	c := newClient(t, rdb, ns, logs)
	all := plans(t, 50)
	var wantPhases, wantSessions, wantExercises int
	var saveIDs, emailIDs []string
	for i, p := range all {
		job, err := workout.QueueFullPlanSave(ctx, c, p, &flow.NodeOpts{ID: fmt.Sprintf("save-%02d", i)})
		require.NoError(t, err)
		saveIDs = append(saveIDs, job.ID)
		email, err := c.Add(ctx, system.Email{To: "coach@example.test", Subject: "plan " + p.PlanID + " saved", Body: "ok"},
			&flow.NodeOpts{ID: fmt.Sprintf("email-%02d", i)}, job.ID)
		require.NoError(t, err)
		emailIDs = append(emailIDs, email.ID)
		wantPhases += len(p.Phases)
		for _, ph := range p.Phases {
			wantSessions += len(ph.Sessions)
			for _, s := range ph.Sessions {
				wantExercises += len(s.Exercises)
			}
		}
	}

	args := []string{"--redis-url", "redis://" + srv.Addr() + "/0", "--database-url", dbURL, "--namespace", ns,
		"--lease", "2s", "--smtp-addr", sink.Addr(), "--smtp-from", "trellis@example.test"}
	first := startWorker(t, bin, append(args, "--concurrency", "4")...)
	var atKill int
	eventually(t, 120*time.Second, "the first worker saved a fifth of the exercises", func() bool {
		atKill = countRows(t, db, "workout_exercises")
		return atKill >= wantExercises/5
	})
	first.signal(syscall.SIGKILL)
	st, err := c.Stats(ctx, nil)
	require.NoError(t, err)
	activeAtKill := st.Counts[dag.Active]
	require.Less(t, atKill, wantExercises, "the worker was killed mid-run")

	second := startWorker(t, bin, append(args, "--concurrency", "8")...)
	for _, id := range append(saveIDs, emailIDs...) {
		f := waitFlow(t, c, id, 180*time.Second)
		for _, n := range f.Nodes {
			require.Equal(t, dag.Succeeded, n.State, "%s: %s %v", n.ID, n.Reason, n.Error)
		}
	}
	second.signal(syscall.SIGTERM)

	st, err = c.Stats(ctx, nil)
	require.NoError(t, err)
	nodes := st.Counts.Total()
	require.Equal(t, nodes, st.Counts[dag.Succeeded], "every node ended succeeded")
	require.Equal(t, 50, countRows(t, db, "workout_plans"))
	require.Equal(t, wantPhases, countRows(t, db, "workout_phases"))
	require.Equal(t, wantSessions, countRows(t, db, "workout_sessions"))
	require.Equal(t, wantExercises, countRows(t, db, "workout_exercises"))
	require.Equal(t, 50, countRows(t, db, "email_outbox"))
	var unsent int
	require.NoError(t, db.NewRaw("SELECT count(*) FROM email_outbox WHERE sent_at IS NULL").Scan(ctx, &unsent))
	require.Zero(t, unsent)
	messages, deliveries, most := sink.deliveries()
	require.Equal(t, 50, messages, "every email was delivered")
	require.Equal(t, 1, most, "no email was delivered twice")

	// the nodes the first worker held came back through lease expiry
	recovered := 0
	for _, id := range append(saveIDs, emailIDs...) {
		f, err := c.Flow(ctx, id)
		require.NoError(t, err)
		for _, n := range f.Nodes {
			if n.Stalls > 0 {
				recovered++
			}
			// a second claim only follows a lease expiry or a failed attempt
			if len(activeWorkers(n)) > 1 {
				require.True(t, n.Stalls > 0 || n.Error != nil, "%s was claimed %d times without a stall or an error", n.ID, len(activeWorkers(n)))
			}
		}
	}
	require.Positive(t, recovered+int(activeAtKill), "the kill left work behind")
	t.Logf("FIGURES worker crash: plans=50 nodes=%d exercises=%d saved_at_kill=%d active_at_kill=%d recovered_by_lease=%d rows_exactly_once=true emails=%d deliveries=%d lost=0",
		nodes, wantExercises, atKill, activeAtKill, recovered, messages, deliveries)
}
