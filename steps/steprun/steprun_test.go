package steprun_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/schema/schematest"
	"github.com/trellisflow/trellis/steps/internal/steptest"
	"github.com/trellisflow/trellis/steps/steprun"
)

// Note is a message whose step stores one user action row per effect.
type Note struct {
	Text string `json:"text"`
}

func (Note) MessageType() string { return "NOTE" }

type noted struct {
	Text  string `json:"text"`
	Count int    `json:"count"`
}

// noteStep inserts a row keyed by a counter, so a second application of the
// effects would show as a second row; gate, when set, holds the step inside
// its transaction until released.
func noteStep(db bun.IDB, calls *atomic.Int32, gate chan struct{}, fail error) flow.Step {
	return steprun.Step(db, func(ctx context.Context, tx bun.Tx, sc *flow.StepContext, m Note) (noted, error) {
		n := calls.Add(1)
		_, err := tx.NewInsert().Model(&schema.UserAction{
			ID: sc.JobID + "/" + string('0'+n), UserID: "u", Action: m.Text, Details: "{}", CreatedAt: time.Now().UTC(),
		}).Exec(ctx)
		if err != nil {
			return noted{}, err
		}
		if gate != nil {
			<-gate
		}
		if fail != nil {
			return noted{}, fail
		}
		return noted{Text: m.Text, Count: int(n)}, nil
	})
}

func TestReplayReturnsTheStoredResult(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		var calls atomic.Int32
		r := steptest.New(t, []flow.Step{noteStep(db, &calls, nil, nil)})
		raw1, _, err := r.Run(ctx, "j", 1, Note{Text: "hi"})
		require.NoError(t, err)
		raw2, _, err := r.Run(ctx, "j", 2, Note{Text: "hi"})
		require.NoError(t, err)
		require.JSONEq(t, `{"text":"hi","count":1}`, string(raw1))
		require.JSONEq(t, string(raw1), string(raw2))
		// the replay ran the handler in a transaction that rolled back:
		// its effects count once
		require.Equal(t, int32(2), calls.Load())
		require.Equal(t, 1, steptest.Count(t, db, "user_actions", ""))
		rec, err := steprun.Record(ctx, db, "j")
		require.NoError(t, err)
		require.Equal(t, "NOTE", rec.MessageType)
		require.Equal(t, 1, rec.Attempt)
		_, err = steprun.Record(ctx, db, "other")
		require.ErrorIs(t, err, flow.ErrNotFound)
	})
}

func TestFailureRollsBackEffectsAndRecord(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		var calls atomic.Int32
		boom := flow.Permanent(errors.New("boom"))
		r := steptest.New(t, []flow.Step{noteStep(db, &calls, nil, boom)})
		_, _, err := r.Run(ctx, "j", 1, Note{Text: "hi"})
		require.ErrorContains(t, err, "boom")
		require.True(t, flow.IsPermanent(err), "the handler's permanence survives")
		require.Zero(t, steptest.Count(t, db, "user_actions", ""), "effects rolled back")
		require.Zero(t, steptest.Count(t, db, "trellis_step_runs", ""), "no record")
	})
}

// Two attempts of one job running at once (the first runner's lease expired
// while its step was still running): only one commits its effects. The
// other either replays the winner's result at once (its own insert waited
// for the winner's commit) or fails retryably and its retry replays it.
func TestConcurrentAttemptsCommitOnce(t *testing.T) {
	t.Parallel()
	db := schematest.Postgres(t) // SQLite has one writer: attempts cannot overlap there
	ctx := context.Background()
	var calls atomic.Int32
	gate := make(chan struct{})
	r := steptest.New(t, []flow.Step{noteStep(db, &calls, gate, nil)})

	var wg sync.WaitGroup
	results := make([]string, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw, _, err := r.Run(ctx, "j", i+1, Note{Text: "hi"})
			results[i], errs[i] = string(raw), err
		}()
	}
	require.Eventually(t, func() bool { return calls.Load() == 2 }, 10*time.Second, 5*time.Millisecond, "both attempts inside their transactions")
	close(gate)
	wg.Wait()

	won := -1
	for i := range 2 {
		if errs[i] != nil {
			require.False(t, flow.IsPermanent(errs[i]), "losing is retryable")
			continue
		}
		if won >= 0 {
			require.JSONEq(t, results[won], results[i], "the loser replays the winner")
		}
		won = i
	}
	require.GreaterOrEqual(t, won, 0, "one attempt won")
	require.Equal(t, 1, steptest.Count(t, db, "user_actions", ""), "one attempt's effects")

	raw, _, err := r.Run(ctx, "j", 3, Note{Text: "hi"})
	require.NoError(t, err)
	require.JSONEq(t, results[won], string(raw), "a retry replays the winner")
	require.Equal(t, 1, steptest.Count(t, db, "user_actions", ""), "and adds nothing")
}

func TestPrune(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		now := time.Now().UTC()
		for i, age := range []time.Duration{72 * time.Hour, 49 * time.Hour, time.Hour, 0} {
			_, err := db.NewInsert().Model(&schema.StepRun{JobID: string(rune('a' + i)), MessageType: "NOTE", Attempt: 1,
				Result: "{}", CreatedAt: now.Add(-age)}).Exec(ctx)
			require.NoError(t, err)
		}
		n, err := steprun.Prune(ctx, db, now.Add(-48*time.Hour))
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.Equal(t, 2, steptest.Count(t, db, "trellis_step_runs", ""))
		_, err = steprun.Record(ctx, db, "c")
		require.NoError(t, err, "the recent record stays")
	})
}

// A job ID used again by a new job (the engine forgot the old one: trimmed
// flows, a cleared namespace) runs anew; only attempts of the same job
// replay.
func TestReusedJobIDRunsAgain(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		var calls atomic.Int32
		r := steptest.New(t, []flow.Step{noteStep(db, &calls, nil, nil)})
		raw1, sc1, err := r.Run(ctx, "j", 1, Note{Text: "hi"})
		require.NoError(t, err)
		r.Forget("j")
		time.Sleep(time.Millisecond) // a distinct enqueue time
		raw2, sc2, err := r.Run(ctx, "j", 1, Note{Text: "hi"})
		require.NoError(t, err)
		require.JSONEq(t, `{"text":"hi","count":1}`, string(raw1))
		require.NotEqual(t, string(raw1), string(raw2), "the new job ran: its own result")
		require.Equal(t, 2, steptest.Count(t, db, "user_actions", ""))
		rec, err := steprun.Record(ctx, db, "j")
		require.NoError(t, err)
		require.Equal(t, steprun.EnqueuedAt(sc2), rec.EnqueuedAt, "the new job's record replaced the old one")
		require.NotEqual(t, steprun.EnqueuedAt(sc1), rec.EnqueuedAt)

		raw3, _, err := r.Run(ctx, "j", 2, Note{Text: "hi"})
		require.NoError(t, err)
		require.JSONEq(t, string(raw2), string(raw3), "the new job's own retry replays")
		require.Equal(t, 2, steptest.Count(t, db, "user_actions", ""), "one row per job")
	})
}

// A database that cannot be reached makes the step's error
// flow.Unavailable (the runner then holds back its other jobs); the step's
// own errors, and a statement PostgreSQL refuses, stay as they are.
func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gone, err := schema.Open("postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	require.NoError(t, err)
	t.Cleanup(func() { _ = gone.Close() })
	var calls atomic.Int32
	r := steptest.New(t, []flow.Step{noteStep(gone, &calls, nil, nil)})
	_, _, err = r.Run(ctx, "j", 1, Note{Text: "hi"})
	require.Error(t, err)
	require.True(t, flow.IsUnavailable(err), "refused connection: %v", err)
	require.False(t, flow.IsPermanent(err))

	db := schematest.Postgres(t)
	r = steptest.New(t, []flow.Step{noteStep(db, &calls, nil, errors.New("the step's own failure"))})
	_, _, err = r.Run(ctx, "k", 1, Note{Text: "hi"})
	require.ErrorContains(t, err, "the step's own failure")
	require.False(t, flow.IsUnavailable(err))

	badSQL := steprun.Step(db, func(ctx context.Context, tx bun.Tx, sc *flow.StepContext, m Note) (int, error) {
		_, err := tx.ExecContext(ctx, "SELECT * FROM no_such_table")
		return 0, err
	})
	_, _, err = steptest.New(t, []flow.Step{badSQL}).Run(ctx, "bad-sql", 1, Note{Text: "hi"})
	require.Error(t, err)
	require.False(t, flow.IsUnavailable(err), "a statement error is the step's: %v", err)
	require.False(t, steprun.Unreachable(errors.New("connection refused, says a message")), "only typed errors count")
}
