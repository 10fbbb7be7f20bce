// Package steptest runs single steps and batches the way a runner would — a
// claimed job with an envelope, a step context, an attempt number — without
// a runner, so tests can replay attempts and inspect the database between
// them.
package steptest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/internal/store"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/embedded"
	"github.com/trellisflow/trellis/flow"
)

var (
	redisOnce sync.Once
	redisSrv  *embedded.Redis
	redisErr  error
)

// Client returns a flow client on a fresh namespace of a shared in-process
// Redis; steps need one for Expand and parent results.
func Client(t testing.TB) *flow.Client {
	t.Helper()
	redisOnce.Do(func() { redisSrv, redisErr = embedded.NewRedis() })
	require.NoError(t, redisErr)
	c, err := flow.NewClient(redisSrv.Client(), &flow.Config{
		Namespace: fmt.Sprintf("steptest-%08x", rand.Uint32()), Development: true, Logger: Logger(),
	})
	require.NoError(t, err)
	return c
}

// Logger discards logs unless TRELLIS_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("TRELLIS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Runner runs steps by message type. Every run of one job ID carries the
// same envelope timestamp and enqueue time, as the attempts of one job do;
// Forget gives the ID a new one, as a new job with a reused ID would have.
type Runner struct {
	Client *flow.Client
	Steps  map[string]flow.Step

	mu      sync.Mutex
	stamped map[string]time.Time
	batches atomic.Int64
}

// Forget makes the next run of jobID a new job with a new timestamp.
func (r *Runner) Forget(jobID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.stamped, jobID)
}

// Stamp sets the envelope timestamp and enqueue time of jobID's runs.
func (r *Runner) Stamp(jobID string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stamped[jobID] = at.UTC()
}

func (r *Runner) stamp(jobID string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	ts, ok := r.stamped[jobID]
	if !ok {
		ts = time.Now().UTC()
		r.stamped[jobID] = ts
	}
	return ts
}

// New indexes steps by message type.
func New(t testing.TB, steps ...[]flow.Step) *Runner {
	r := &Runner{Client: Client(t), Steps: map[string]flow.Step{}, stamped: map[string]time.Time{}}
	for _, list := range steps {
		for _, s := range list {
			r.Steps[s.MessageType()] = s
		}
	}
	return r
}

// Run runs one attempt of job jobID carrying msg and returns the step's
// result and context (for its expansion).
func (r *Runner) Run(ctx context.Context, jobID string, attempt int, msg flow.Message) (json.RawMessage, *flow.StepContext, error) {
	data, err := json.Marshal(msg)
	if err != nil {
		return nil, nil, err
	}
	return r.RunRaw(ctx, jobID, attempt, msg.MessageType(), data)
}

// RunRaw is Run with the envelope's data given as JSON, to feed a step
// data that enqueue would refuse.
func (r *Runner) RunRaw(ctx context.Context, jobID string, attempt int, typ string, data []byte) (json.RawMessage, *flow.StepContext, error) {
	step, ok := r.Steps[typ]
	if !ok {
		return nil, nil, fmt.Errorf("steptest: no step for %s", typ)
	}
	sc, err := r.context(jobID, attempt, typ, data)
	if err != nil {
		return nil, sc, err
	}
	res, err := step.Run(ctx, sc)
	return res, sc, err
}

// context builds the step context of one attempt of job jobID.
func (r *Runner) context(jobID string, attempt int, typ string, data []byte) (*flow.StepContext, error) {
	at := r.stamp(jobID)
	payload, err := json.Marshal(flow.Envelope{MessageType: typ, Timestamp: at, EnqueuedAt: at, UserID: "user-1", Data: data})
	if err != nil {
		return nil, err
	}
	v, err := seam.NewStepContext(r.Client, store.Claimed{Spec: dag.Spec{ID: jobID, Type: typ, Payload: payload, MaxAttempts: 5}, FlowID: jobID, Attempt: attempt}, Logger())
	return v.(*flow.StepContext), err
}

// Job is one job of a batch: its ID, the attempt and its message (or, for
// data that enqueue would refuse, Type and Data).
type Job struct {
	ID      string
	Attempt int // 0 is 1
	Msg     flow.Message
	Type    string
	Data    json.RawMessage
}

// RunBatch runs jobs, all of one message type whose step is a
// flow.BatchStep, as one batch, as a runner would, and returns the step's
// outcomes (nil with the batch's error) and the jobs' contexts.
func (r *Runner) RunBatch(ctx context.Context, jobs ...Job) ([]flow.BatchResult, []*flow.StepContext, error) {
	if len(jobs) == 0 {
		return nil, nil, fmt.Errorf("steptest: a batch needs a job")
	}
	scs := make([]*flow.StepContext, len(jobs))
	var typ string
	for i, j := range jobs {
		t, data := j.Type, []byte(j.Data)
		if j.Msg != nil {
			b, err := json.Marshal(j.Msg)
			if err != nil {
				return nil, nil, err
			}
			t, data = j.Msg.MessageType(), b
		}
		if i > 0 && t != typ {
			return nil, nil, fmt.Errorf("steptest: job %s is a %s in a batch of %s", j.ID, t, typ)
		}
		typ = t
		sc, err := r.context(j.ID, max(j.Attempt, 1), t, data)
		if err != nil {
			return nil, nil, fmt.Errorf("steptest: job %s: %w", j.ID, err)
		}
		sc.Batch = fmt.Sprintf("steptest/%d (%d jobs)", r.batches.Add(1), len(jobs))
		scs[i] = sc
	}
	step, ok := r.Steps[typ].(flow.BatchStep)
	if !ok {
		return nil, nil, fmt.Errorf("steptest: no batch step for %s", typ)
	}
	res, err := step.RunBatch(ctx, scs)
	if err == nil && len(res) != len(jobs) {
		err = fmt.Errorf("steptest: %d outcomes for %d jobs", len(res), len(jobs))
	}
	return res, scs, err
}

// Tables are the tables a snapshot covers.
var Tables = []string{
	"workout_plans", "workout_phases", "workout_sessions", "workout_exercises",
	"user_actions", "notifications", "email_outbox", "data_sync_runs", "trellis_step_runs",
}

// Snapshot dumps every row of Tables as text, sorted, for comparing a
// database before and after a re-run. Columns named in ignore are left out.
func Snapshot(t testing.TB, db bun.IDB, ignore ...string) map[string][]string {
	t.Helper()
	skip := map[string]bool{}
	for _, c := range ignore {
		skip[c] = true
	}
	out := map[string][]string{}
	for _, table := range Tables {
		rows, err := db.QueryContext(context.Background(), "SELECT * FROM "+table)
		require.NoError(t, err)
		cols, err := rows.Columns()
		require.NoError(t, err)
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			require.NoError(t, rows.Scan(ptrs...))
			line := ""
			for i, c := range cols {
				if skip[c] {
					continue
				}
				v := vals[i]
				if b, ok := v.([]byte); ok {
					v = string(b)
				}
				if tm, ok := v.(time.Time); ok {
					v = tm.UTC().Format(time.RFC3339Nano)
				}
				line += fmt.Sprintf("%s=%v;", c, v)
			}
			lines = append(lines, line)
		}
		require.NoError(t, rows.Err())
		require.NoError(t, rows.Close())
		sort.Strings(lines)
		out[table] = lines
	}
	return out
}

// Count counts the rows of table matching where (SQL, with args).
func Count(t testing.TB, db bun.IDB, table, where string, args ...any) int {
	t.Helper()
	q := db.NewSelect().TableExpr(table)
	if where != "" {
		q.Where(where, args...)
	}
	n, err := q.Count(context.Background())
	require.NoError(t, err)
	return int(n)
}
