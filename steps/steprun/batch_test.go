package steprun_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
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

// notes is a batch step of Note that writes one user action row per item,
// keyed by the job ID and the attempt, in one multi-row INSERT; it remembers
// the jobs each call of its handler was given. An item whose text is in
// fail fails with that error and writes nothing.
type notes struct {
	mu    sync.Mutex
	calls [][]string
	fail  map[string]error
	// before, when set, runs inside the first call's transaction before
	// the rows are written.
	before func(ctx context.Context)
}

func (n *notes) step(db bun.IDB) flow.BatchStep {
	return steprun.BatchStep(db, flow.Batching{Size: 10}, func(ctx context.Context, tx bun.Tx, items []flow.Item[Note]) ([]flow.ItemResult[noted], error) {
		n.mu.Lock()
		call := len(n.calls) + 1
		var ids []string
		for _, it := range items {
			ids = append(ids, it.JobID)
		}
		n.calls = append(n.calls, ids)
		before := n.before
		n.before = nil
		n.mu.Unlock()
		if before != nil {
			before(ctx)
		}
		out := make([]flow.ItemResult[noted], len(items))
		var rows []schema.UserAction
		for i, it := range items {
			if err := n.fail[it.Msg.Text]; err != nil {
				out[i].Err = err
				continue
			}
			rows = append(rows, schema.UserAction{ID: fmt.Sprintf("%s/%d", it.JobID, it.Attempt), UserID: "u", Action: it.Msg.Text, Details: fmt.Sprintf(`{"call":%d}`, call), CreatedAt: time.Now().UTC()})
			out[i].Value = noted{Text: it.Msg.Text, Count: call}
		}
		if len(rows) > 0 {
			if _, err := tx.NewInsert().Model(&rows).Exec(ctx); err != nil {
				return nil, err
			}
		}
		return out, nil
	})
}

func (n *notes) given() [][]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([][]string(nil), n.calls...)
}

func jobs(attempt int, ids ...string) []steptest.Job {
	out := make([]steptest.Job, len(ids))
	for i, id := range ids {
		out[i] = steptest.Job{ID: id, Attempt: attempt, Msg: Note{Text: "note " + id}}
	}
	return out
}

// results decodes each outcome's result, or its error as "error: …".
func results(t *testing.T, res []flow.BatchResult) []string {
	t.Helper()
	out := make([]string, len(res))
	for i, r := range res {
		if r.Err != nil {
			out[i] = "error: " + r.Err.Error()
			continue
		}
		var v noted
		require.NoError(t, json.Unmarshal(r.Result, &v))
		out[i] = fmt.Sprintf("%s #%d", v.Text, v.Count)
	}
	return out
}

// A batch commits its items' rows and records together; run again (the
// runner lost the outcome), it returns the stored results and writes
// nothing: the handler is not given the items at all.
func TestBatchReplayWritesNothingTwice(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		n := &notes{}
		r := steptest.New(t, []flow.Step{n.step(db)})
		res, _, err := r.RunBatch(ctx, jobs(1, "a", "b", "c")...)
		require.NoError(t, err)
		require.Equal(t, []string{"note a #1", "note b #1", "note c #1"}, results(t, res))
		before := steptest.Snapshot(t, db)

		res, _, err = r.RunBatch(ctx, jobs(2, "a", "b", "c")...)
		require.NoError(t, err)
		require.Equal(t, []string{"note a #1", "note b #1", "note c #1"}, results(t, res), "the stored results")
		require.Equal(t, before, steptest.Snapshot(t, db), "nothing written twice")
		require.Equal(t, [][]string{{"a", "b", "c"}}, n.given(), "the handler never saw the replayed items")
		rec, err := steprun.Record(ctx, db, "b")
		require.NoError(t, err)
		require.Equal(t, []any{"NOTE", 1}, []any{rec.MessageType, rec.Attempt})

		// Run alone, as a Step, a job of the batch replays too.
		raw, _, err := r.Run(ctx, "c", 3, Note{Text: "note c"})
		require.NoError(t, err)
		require.JSONEq(t, `{"text":"note c","count":1}`, string(raw))
		require.Equal(t, before, steptest.Snapshot(t, db))
	})
}

// A batch of jobs some of which committed before: those replay, the
// others run, and only they reach the handler.
func TestBatchMixesReplayedAndFreshItems(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		n := &notes{}
		r := steptest.New(t, []flow.Step{n.step(db)})
		_, _, err := r.RunBatch(ctx, jobs(1, "a", "c")...)
		require.NoError(t, err)
		res, _, err := r.RunBatch(ctx, append(jobs(2, "a"), append(jobs(1, "b"), append(jobs(2, "c"), jobs(1, "d")...)...)...)...)
		require.NoError(t, err)
		require.Equal(t, []string{"note a #1", "note b #2", "note c #1", "note d #2"}, results(t, res))
		require.Equal(t, [][]string{{"a", "c"}, {"b", "d"}}, n.given())
		require.Equal(t, 4, steptest.Count(t, db, "user_actions", ""))
		require.Equal(t, 4, steptest.Count(t, db, "trellis_step_runs", ""))
	})
}

// A record left by an older job with the same ID does not replay: the new
// job runs and its record replaces the old one, beside a job that replays.
func TestBatchReplacesAStaleRecord(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		n := &notes{}
		r := steptest.New(t, []flow.Step{n.step(db)})
		_, old, err := r.RunBatch(ctx, jobs(1, "a", "b")...)
		require.NoError(t, err)
		_, err = db.NewDelete().Model((*schema.UserAction)(nil)).Where("id = 'a/1'").Exec(ctx) // the old job's row went
		require.NoError(t, err)
		r.Forget("a")
		time.Sleep(time.Millisecond) // a distinct enqueue time
		res, scs, err := r.RunBatch(ctx, jobs(1, "a", "b")...)
		require.NoError(t, err)
		require.Equal(t, []string{"note a #2", "note b #1"}, results(t, res))
		rec, err := steprun.Record(ctx, db, "a")
		require.NoError(t, err)
		require.Equal(t, steprun.EnqueuedAt(scs[0]), rec.EnqueuedAt, "the new job's record")
		require.NotEqual(t, steprun.EnqueuedAt(old[0]), rec.EnqueuedAt)
		require.Equal(t, 2, steptest.Count(t, db, "trellis_step_runs", ""))
	})
}

// An item the handler fails gets its own error, keeps its permanence and
// has no record; the others commit.
func TestBatchItemErrorFailsOnlyItself(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		n := &notes{fail: map[string]error{"note b": flow.Permanent(errors.New("b is bad"))}}
		r := steptest.New(t, []flow.Step{n.step(db)})
		res, _, err := r.RunBatch(ctx, jobs(1, "a", "b", "c")...)
		require.NoError(t, err)
		require.Equal(t, []string{"note a #1", "error: b is bad", "note c #1"}, results(t, res))
		require.True(t, flow.IsPermanent(res[1].Err))
		require.Equal(t, []string{"a", "c"}, column(t, db, "SELECT job_id FROM trellis_step_runs ORDER BY job_id"))
		require.Equal(t, []string{"a/1", "c/1"}, column(t, db, "SELECT id FROM user_actions ORDER BY id"))
		require.Equal(t, [][]string{{"a", "b", "c"}}, n.given(), "no second run: the batch committed")

		// b's retry runs b alone; a and c replay.
		delete(n.fail, "note b")
		res, _, err = r.RunBatch(ctx, jobs(2, "a", "b", "c")...)
		require.NoError(t, err)
		require.Equal(t, []string{"note a #1", "note b #2", "note c #1"}, results(t, res))
	})
}

func column(t *testing.T, db bun.IDB, q string) []string {
	t.Helper()
	var out []string
	require.NoError(t, db.NewRaw(q).Scan(context.Background(), &out))
	return out
}

// A statement the database refuses because of one item (here its row's
// key is taken) fails the batch's transaction; every item then runs alone,
// so only that item fails, with the database's error.
func TestBatchStatementErrorIsolatesTheItem(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		_, err := db.NewInsert().Model(&schema.UserAction{ID: "b/1", UserID: "someone", Action: "taken", Details: "{}", CreatedAt: time.Now().UTC()}).Exec(ctx)
		require.NoError(t, err)
		n := &notes{}
		r := steptest.New(t, []flow.Step{n.step(db)})
		res, _, err := r.RunBatch(ctx, jobs(1, "a", "b", "c")...)
		require.NoError(t, err)
		require.NoError(t, res[0].Err)
		require.Error(t, res[1].Err)
		require.NoError(t, res[2].Err)
		require.False(t, flow.IsUnavailable(res[1].Err), "a statement error is the item's: %v", res[1].Err)
		require.Equal(t, [][]string{{"a", "b", "c"}, {"a"}, {"b"}, {"c"}}, n.given(), "the batch, then each item alone")
		require.Equal(t, []string{"a", "c"}, column(t, db, "SELECT job_id FROM trellis_step_runs ORDER BY job_id"))
		require.Equal(t, 1, steptest.Count(t, db, "user_actions", "id = 'b/1' AND action = 'taken'"), "b's row is untouched")
		require.Equal(t, 3, steptest.Count(t, db, "user_actions", ""))
	})
}

// Another attempt of a job of the batch commits while the batch runs (its
// runner's lease expired): the batch rolls back, runs again and replays
// that job's winner; nothing is written twice.
func TestBatchRedoesWhenAnotherAttemptCommits(t *testing.T) {
	t.Parallel()
	db := schematest.Postgres(t) // SQLite has one writer: attempts cannot overlap there
	ctx := context.Background()
	n := &notes{}
	r := steptest.New(t, []flow.Step{n.step(db)})
	n.before = func(ctx context.Context) {
		// job b's other attempt commits its row and record
		require.NoError(t, db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if _, err := tx.NewInsert().Model(&schema.UserAction{ID: "b/1", UserID: "u", Action: "note b", Details: "{}", CreatedAt: time.Now().UTC()}).Exec(ctx); err != nil {
				return err
			}
			_, err := tx.NewInsert().Model(&schema.StepRun{JobID: "b", MessageType: "NOTE", EnqueuedAt: "", Attempt: 1,
				Result: `{"text":"note b","count":99}`, CreatedAt: time.Now().UTC()}).Exec(ctx)
			return err
		}))
	}
	res, _, err := r.RunBatch(ctx, jobs(2, "a", "b", "c")...)
	require.NoError(t, err)
	require.Equal(t, []string{"note a #2", "note b #99", "note c #2"}, results(t, res))
	require.Equal(t, [][]string{{"a", "b", "c"}, {"a", "c"}}, n.given(), "the batch, then again without the job another attempt committed")
	require.Equal(t, []string{"a/2", "b/1", "c/2"}, column(t, db, "SELECT id FROM user_actions ORDER BY id"), "each job's rows once")
}

// A database that cannot be reached fails every item of the batch with
// flow.Unavailable, and the batch is not run item by item.
func TestBatchUnreachableDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gone, err := schema.Open("postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	require.NoError(t, err)
	t.Cleanup(func() { _ = gone.Close() })
	n := &notes{}
	r := steptest.New(t, []flow.Step{n.step(gone)})
	res, _, err := r.RunBatch(ctx, jobs(1, "a", "b", "c")...)
	require.NoError(t, err)
	for i, o := range res {
		require.Error(t, o.Err, i)
		require.True(t, flow.IsUnavailable(o.Err), "%d: %v", i, o.Err)
		require.False(t, flow.IsPermanent(o.Err))
	}
	require.Empty(t, n.given(), "nothing ran: the records could not be read")

	// A cancelled context fails the batch as a whole.
	db := schematest.Postgres(t)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = steptest.New(t, []flow.Step{n.step(db)}).RunBatch(cctx, jobs(1, "a", "b")...)
	require.ErrorIs(t, err, context.Canceled)
}
