package workout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema/schematest"
	"github.com/trellisflow/trellis/steps/internal/steptest"
	"github.com/trellisflow/trellis/steps/workout"
)

// batchSeed writes plan p1 (client c1, trainer t1) → ph1 → s1 → e1 and
// plan p2 → ph2 → s2 through the single steps, and plan fs saved by full
// plan save fsA and then by fsB, enqueued later, which owns it, with
// phase fph → session fs1 of fsB.
func batchSeed(t *testing.T, r *steptest.Runner) {
	t.Helper()
	ctx := context.Background()
	seed(t, r, 4)
	for i, m := range []flow.Message{
		workout.PlanCreate{PlanID: "p2", Name: "Other", ClientID: "c1", TrainerID: "t1"},
		workout.PhaseCreate{PlanID: "p2", Phase: workout.PhaseData{ID: "ph2", Name: "Other", OrderNumber: 1}},
		workout.SessionCreate{PlanID: "p2", PhaseID: "ph2", Session: workout.SessionData{ID: "s2", Name: "Other", OrderNumber: 1}},
	} {
		_, _, err := r.Run(ctx, fmt.Sprintf("seed-p2-%d", i), 1, m)
		require.NoError(t, err)
	}
	enqueued := time.Now().Add(-time.Minute)
	r.Stamp("fsA", enqueued)
	r.Stamp("fsB", enqueued.Add(time.Millisecond))
	for _, id := range []string{"fsA", "fsB"} {
		_, _, err := r.Run(ctx, id, 1, workout.PlanFullSave{PlanID: "fs", Name: id, ClientID: "c1", TrainerID: "t1", Phases: []workout.PhaseTree{
			{PhaseData: workout.PhaseData{ID: "fph", Name: "F", OrderNumber: 1}}}})
		require.NoError(t, err)
	}
	for i, j := range []steptest.Job{
		ofSave(t, "fsB", workout.PhaseCreate{PlanID: "fs", ClientID: "c1", TrainerID: "t1", Phase: workout.PhaseData{ID: "fph", Name: "F", OrderNumber: 1}}),
		ofSave(t, "fsB", workout.SessionCreate{PlanID: "fs", PhaseID: "fph", Session: workout.SessionData{ID: "fs1", Name: "F1", OrderNumber: 1}}),
	} {
		j.ID = fmt.Sprintf("seed-fs-%d", i)
		_, _, err := r.RunRaw(ctx, j.ID, 1, j.Type, j.Data)
		require.NoError(t, err)
	}
}

// ofSave is the job of a create of full plan save job save, as the save's
// sub-graph carries it (the internal fullSave field).
func ofSave(t *testing.T, save string, m flow.Message) steptest.Job {
	t.Helper()
	data, err := json.Marshal(m)
	require.NoError(t, err)
	var fields map[string]any
	require.NoError(t, json.Unmarshal(data, &fields))
	fields["fullSave"] = save
	data, err = json.Marshal(fields)
	require.NoError(t, err)
	return steptest.Job{Type: m.MessageType(), Data: data}
}

// outcomes gives each outcome of a batch as its action, or as its error
// prefixed "retry: " (retryable) or "fail: " (permanent).
func outcomes(t *testing.T, res []flow.BatchResult) []string {
	t.Helper()
	out := make([]string, len(res))
	for i, r := range res {
		switch {
		case r.Err != nil && flow.IsPermanent(r.Err):
			out[i] = "fail: " + r.Err.Error()
		case r.Err != nil:
			out[i] = "retry: " + r.Err.Error()
		default:
			var res workout.Result
			require.NoError(t, json.Unmarshal(r.Result, &res))
			out[i] = res.Action
		}
	}
	return out
}

// statements counts the statements run on a database (BEGIN and COMMIT
// aside).
type statements struct{ n atomic.Int32 }

func (s *statements) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }
func (s *statements) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	if q := strings.ToUpper(e.Query); !strings.HasPrefix(q, "BEGIN") && !strings.HasPrefix(q, "COMMIT") {
		s.n.Add(1)
	}
}

// A batch of creates of each type whose items end every way a create can:
// each item gets its own outcome, exactly as it would alone, and only the
// rows of the items that succeeded are written, each with its record.
func TestBatchCreatesGiveEachItemItsOutcome(t *testing.T) {
	ph := func(id, name string) workout.PhaseData {
		return workout.PhaseData{ID: id, Name: name, OrderNumber: 1, IsActive: true}
	}
	se := func(id, name string) workout.SessionData {
		return workout.SessionData{ID: id, Name: name, OrderNumber: 1}
	}
	ex := func(id string, reps int) workout.ExerciseData {
		return workout.ExerciseData{ID: id, Name: "Squat", OrderNumber: 1, Sets: 5, Reps: reps, Weight: 100, Rest: 120, Tempo: "3-1-1", Notes: "deep"}
	}
	msg := func(m flow.Message) steptest.Job { return steptest.Job{Msg: m} }
	type item struct {
		job  steptest.Job
		want string
	}
	cases := map[string][]item{
		workout.TypePlanCreate: {
			{msg(workout.PlanCreate{PlanID: "p-new", Name: "New", ClientID: "c1", TrainerID: "t1"}), "created"},
			{msg(workout.PlanCreate{PlanID: "p1", Name: "Plan", ClientID: "c1", TrainerID: "t1", IsActive: true}), "unchanged"},
			{msg(workout.PlanCreate{PlanID: "p1", Name: "Renamed", ClientID: "c1", TrainerID: "t1", IsActive: true}), "updated"},
			{msg(workout.PlanCreate{PlanID: "p2", Name: "Mine", ClientID: "c9", TrainerID: "t1"}), `fail: plan "p2" belongs to client "c1", not "c9"`},
			{msg(workout.PlanCreate{PlanID: "p-new", Name: "New", ClientID: "c1", TrainerID: "t1"}), "unchanged"}, // twice in the batch
		},
		workout.TypePhaseCreate: {
			{msg(workout.PhaseCreate{PlanID: "p1", Phase: ph("ph-new", "New")}), "created"},
			{msg(workout.PhaseCreate{PlanID: "p1", Phase: workout.PhaseData{ID: "ph1", Name: "Strength", OrderNumber: 1, IsActive: true}}), "unchanged"},
			{msg(workout.PhaseCreate{PlanID: "p1", Phase: ph("ph1", "Renamed")}), "updated"},
			{msg(workout.PhaseCreate{PlanID: "p2", Phase: ph("ph1", "Mine")}), `fail: phase "ph1" belongs to plan "p1", not "p2"`},
			{msg(workout.PhaseCreate{PlanID: "p1", ClientID: "c9", Phase: ph("ph-x", "X")}), `fail: plan "p1" belongs to client "c1", not "c9"`},
			{msg(workout.PhaseCreate{PlanID: "p-missing", Phase: ph("ph-y", "Y")}), "retry: plan p-missing not found"},
			{ofSave(t, "fsA", workout.PhaseCreate{PlanID: "fs", Phase: ph("fph-a", "A")}), "superseded"},
			{ofSave(t, "fsB", workout.PhaseCreate{PlanID: "fs", Phase: ph("fph-b", "B")}), "created"},
			{msg(workout.PhaseCreate{PlanID: "p2", Phase: ph("ph-new2", "New")}), "created"},
		},
		workout.TypeSessionCreate: {
			{msg(workout.SessionCreate{PlanID: "p1", PhaseID: "ph1", Session: se("s-new", "New")}), "created"},
			{msg(workout.SessionCreate{PlanID: "p1", PhaseID: "ph1", Session: se("s1", "Day 1")}), "unchanged"},
			{msg(workout.SessionCreate{PlanID: "p2", PhaseID: "ph2", Session: se("s1", "Mine")}), `fail: session "s1" belongs to plan "p1", not "p2"`},
			{msg(workout.SessionCreate{PlanID: "p2", PhaseID: "ph1", Session: se("s-x", "X")}), `fail: phase "ph1" belongs to plan "p1", not "p2"`},
			{msg(workout.SessionCreate{PlanID: "p1", PhaseID: "ph9", Session: se("s-y", "Y")}), "retry: phase ph9 not found"},
			{ofSave(t, "fsA", workout.SessionCreate{PlanID: "fs", PhaseID: "fph", Session: se("fs-a", "A")}), "superseded"},
			{ofSave(t, "fsB", workout.SessionCreate{PlanID: "fs", PhaseID: "fph", Session: se("fs-b", "B")}), "created"},
			{msg(workout.SessionCreate{PlanID: "p1", PhaseID: "ph1", Session: se("s-new", "New again")}), "updated"}, // twice
		},
		workout.TypeExerciseCreate: {
			{msg(workout.ExerciseCreate{PlanID: "p1", PhaseID: "ph1", SessionID: "s1", Exercise: ex("e-new", 5)}), "created"},
			{msg(workout.ExerciseCreate{PlanID: "p1", PhaseID: "ph1", SessionID: "s1", Exercise: ex("e1", 5)}), "unchanged"},
			{msg(workout.ExerciseCreate{PlanID: "p2", PhaseID: "ph2", SessionID: "s2", Exercise: ex("e1", 5)}), `fail: exercise "e1" belongs to plan "p1", not "p2"`},
			{msg(workout.ExerciseCreate{PlanID: "p1", PhaseID: "ph1", SessionID: "s2", Exercise: ex("e-x", 5)}), `fail: session "s2" belongs to plan "p2", not "p1"`},
			{msg(workout.ExerciseCreate{PlanID: "p1", PhaseID: "ph1", SessionID: "s9", Exercise: ex("e-y", 5)}), "retry: session s9 not found"},
			{ofSave(t, "fsA", workout.ExerciseCreate{PlanID: "fs", PhaseID: "fph", SessionID: "fs1", Exercise: ex("fe-a", 5)}), "superseded"},
			{ofSave(t, "fsB", workout.ExerciseCreate{PlanID: "fs", PhaseID: "fph", SessionID: "fs1", Exercise: ex("fe-b", 5)}), "created"},
			{msg(workout.ExerciseCreate{PlanID: "p1", PhaseID: "ph1", SessionID: "s1", Exercise: ex("e1", 12)}), "updated"},
		},
	}
	// what each batch leaves, beside the seed
	rows := map[string]map[string][]string{
		workout.TypePlanCreate:     {"workout_plans": {"fs", "p-new", "p1", "p2"}},
		workout.TypePhaseCreate:    {"workout_phases": {"fph", "fph-b", "ph-new", "ph-new2", "ph1", "ph2"}},
		workout.TypeSessionCreate:  {"workout_sessions": {"fs-b", "fs1", "s-new", "s1", "s2"}},
		workout.TypeExerciseCreate: {"workout_exercises": {"e-new", "e1", "fe-b"}},
	}
	for typ, items := range cases {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			schematest.Each(t, func(t *testing.T, db *bun.DB) {
				ctx := context.Background()
				r := steptest.New(t, workout.Steps(db))
				batchSeed(t, r)
				before := steptest.Count(t, db, "trellis_step_runs", "")
				jobs := make([]steptest.Job, len(items))
				var want []string
				for i, it := range items {
					jobs[i] = it.job
					jobs[i].ID = fmt.Sprintf("batch-%d", i)
					want = append(want, it.want)
				}
				res, _, err := r.RunBatch(ctx, jobs...)
				require.NoError(t, err)
				require.Equal(t, want, outcomes(t, res))
				for i := range res {
					var nf *workout.NotFoundError
					var oe *workout.OwnershipError
					require.Equal(t, res[i].Err != nil, errors.As(res[i].Err, &nf) || errors.As(res[i].Err, &oe), "%d: %v", i, res[i].Err)
				}
				for table, want := range rows[typ] {
					require.Equal(t, want, ids(t, db, table))
				}
				succeeded := 0
				for _, w := range want {
					if !strings.Contains(w, ": ") {
						succeeded++
					}
				}
				require.Equal(t, before+succeeded, steptest.Count(t, db, "trellis_step_runs", ""), "a record per item that succeeded")

				// the same batch again replays and writes nothing
				snap := steptest.Snapshot(t, db)
				again := append([]steptest.Job(nil), jobs...)
				for i := range again {
					again[i].Attempt = 2
				}
				res2, _, err := r.RunBatch(ctx, again...)
				require.NoError(t, err)
				for i := range res {
					if res[i].Err == nil {
						require.JSONEq(t, string(res[i].Result), string(res2[i].Result), "%d replays", i)
					}
				}
				require.Equal(t, snap, steptest.Snapshot(t, db))
			})
		})
	}
}

// A batch of creates whose parents are there takes a handful of
// statements, however many items it holds: the records and the parents
// read once each, the rows and the records written once each.
func TestBatchCreatesTakeAFewStatements(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		var n statements
		r := steptest.New(t, workout.Steps(db.WithQueryHook(&n)))
		seed(t, r, 3)
		n.n.Store(0)
		var jobs []steptest.Job
		for i := range 60 {
			jobs = append(jobs, steptest.Job{ID: fmt.Sprintf("e-%d", i), Msg: workout.ExerciseCreate{PlanID: "p1", PhaseID: "ph1", SessionID: "s1",
				Exercise: workout.ExerciseData{ID: fmt.Sprintf("e-%02d", i), Name: "Squat", OrderNumber: i, Sets: 3, Reps: 5}}})
		}
		res, _, err := r.RunBatch(ctx, jobs...)
		require.NoError(t, err)
		for i, o := range res {
			require.NoError(t, o.Err, i)
		}
		require.Equal(t, int32(4), n.n.Load(), "records, parents, rows, records")
		require.Equal(t, 60, steptest.Count(t, db, "workout_exercises", ""))
	})
}

// On PostgreSQL a batch of a full save's creates holds the plan row from
// reading its parents until it commits: a later save's root, writing
// meanwhile, waits for it and then prunes what it wrote.
func TestLaterFullSaveWaitsForAnEarlierBatch(t *testing.T) {
	t.Parallel()
	db := schematest.Postgres(t)
	ctx := context.Background()
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hooked := db.WithQueryHook(hold{match: "FOR SHARE OF pl", fn: func() { once.Do(func() { close(held); <-release }) }})
	r := steptest.New(t, workout.Steps(hooked))
	enqueued := time.Now().Add(-time.Minute)
	r.Stamp("fsA", enqueued)
	r.Stamp("fsB", enqueued.Add(time.Millisecond))
	a := workout.PlanFullSave{PlanID: "p", Name: "A", ClientID: "c", TrainerID: "t"}
	b := workout.PlanFullSave{PlanID: "p", Name: "B", ClientID: "c", TrainerID: "t"}
	_, _, err := r.Run(ctx, "fsA", 1, a)
	require.NoError(t, err)

	done := make(chan []flow.BatchResult, 1)
	go func() {
		res, _, err := r.RunBatch(ctx,
			withID(ofSave(t, "fsA", workout.PhaseCreate{PlanID: "p", Phase: workout.PhaseData{ID: "a1", Name: "A1", OrderNumber: 1}}), "a1"),
			withID(ofSave(t, "fsA", workout.PhaseCreate{PlanID: "p", Phase: workout.PhaseData{ID: "a2", Name: "A2", OrderNumber: 2}}), "a2"))
		if err != nil {
			res = []flow.BatchResult{{Err: err}}
		}
		done <- res
	}()
	<-held
	saved := make(chan error, 1)
	go func() {
		_, _, err := r.Run(ctx, "fsB", 1, b)
		saved <- err
	}()
	select {
	case err := <-saved:
		t.Fatalf("B's root did not wait for A's batch: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	res := <-done
	require.Equal(t, []string{"created", "created"}, outcomes(t, res))
	require.NoError(t, <-saved)
	require.Zero(t, steptest.Count(t, db, "workout_phases", ""), "B's root pruned what A's batch committed")
	require.Equal(t, "B", plan(t, db, "p").Name)
}

func withID(j steptest.Job, id string) steptest.Job { j.ID = id; return j }

// hold runs fn after each statement whose text contains match.
type hold struct {
	match string
	fn    func()
}

func (h hold) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }
func (h hold) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	if strings.Contains(e.Query, h.match) {
		h.fn()
	}
}
