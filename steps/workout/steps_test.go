package workout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/schema/schematest"
	"github.com/trellisflow/trellis/steps/internal/steptest"
	"github.com/trellisflow/trellis/steps/steprun"
	"github.com/trellisflow/trellis/steps/workout"
)

func ptr[T any](v T) *T { return &v }

// seed writes plan p1 → phase ph1 → session s1 → exercise e1 (through the
// steps themselves), as much of it as depth asks: 0 nothing, 1 the plan,
// 2 the phase, 3 the session, 4 the exercise.
func seed(t *testing.T, r *steptest.Runner, depth int) {
	t.Helper()
	ctx := context.Background()
	msgs := []flow.Message{
		workout.PlanCreate{PlanID: "p1", Name: "Plan", ClientID: "c1", TrainerID: "t1", IsActive: true},
		workout.PhaseCreate{PlanID: "p1", Phase: workout.PhaseData{ID: "ph1", Name: "Strength", OrderNumber: 1, IsActive: true}},
		workout.SessionCreate{PlanID: "p1", PhaseID: "ph1", Session: workout.SessionData{ID: "s1", Name: "Day 1", OrderNumber: 1}},
		workout.ExerciseCreate{PlanID: "p1", PhaseID: "ph1", SessionID: "s1", Exercise: workout.ExerciseData{
			ID: "e1", Name: "Squat", OrderNumber: 1, Sets: 5, Reps: 5, Weight: 100, Rest: 120, Tempo: "3-1-1", Notes: "deep"}},
	}
	for i := 0; i < depth; i++ {
		_, _, err := r.Run(ctx, fmt.Sprintf("seed-%d", i), 1, msgs[i])
		require.NoError(t, err)
	}
}

type stepCase struct {
	name string
	// depth of the seed data the happy path needs; missing parent runs
	// with depth-1 (only for cases whose parent can be missing).
	depth   int
	msg     flow.Message
	check   func(t *testing.T, db bun.IDB, res workout.Result)
	badData string // JSON data that must fail permanently
	badFld  string // the field the error must name
	// missing is the entity the not-found error names when the parent is
	// absent; "" for deletes, which tolerate absence.
	missing string
}

func plan(t *testing.T, db bun.IDB, id string) schema.Plan {
	var p schema.Plan
	require.NoError(t, db.NewSelect().Model(&p).Where("id = ?", id).Scan(context.Background()))
	return p
}

func exercise(t *testing.T, db bun.IDB, id string) schema.Exercise {
	var e schema.Exercise
	require.NoError(t, db.NewSelect().Model(&e).Where("id = ?", id).Scan(context.Background()))
	return e
}

var cases = []stepCase{
	{
		name: workout.TypePlanCreate, depth: 0,
		msg: workout.PlanCreate{PlanID: "p1", Name: "Plan", ClientID: "c1", TrainerID: "t1", IsActive: true},
		check: func(t *testing.T, db bun.IDB, res workout.Result) {
			require.Equal(t, workout.Result{Entity: "plan", ID: "p1", Action: "created"}, res)
			p := plan(t, db, "p1")
			require.Equal(t, "Plan", p.Name)
			require.Equal(t, "c1", p.ClientID)
			require.Equal(t, "t1", p.TrainerID)
			require.True(t, p.IsActive)
		},
		badData: `{"planId":"p1","name":"","clientId":"c","trainerId":"t"}`, badFld: "name",
	},
	{
		name: workout.TypePhaseCreate, depth: 1,
		msg: workout.PhaseCreate{PlanID: "p1", Phase: workout.PhaseData{ID: "ph2", Name: "Power", OrderNumber: 2, IsActive: true}},
		check: func(t *testing.T, db bun.IDB, res workout.Result) {
			require.Equal(t, workout.Result{Entity: "phase", ID: "ph2", Action: "created"}, res)
			var ph schema.Phase
			require.NoError(t, db.NewSelect().Model(&ph).Where("id = ?", "ph2").Scan(context.Background()))
			require.Equal(t, schema.Phase{ID: "ph2", PlanID: "p1", Name: "Power", OrderNumber: 2, IsActive: true,
				CreatedAt: ph.CreatedAt, UpdatedAt: ph.UpdatedAt}, ph)
		},
		badData: `{"planId":"p1","phase":{"id":"x","name":"n","orderNumber":-1}}`, badFld: "phase.orderNumber",
		missing: "plan",
	},
	{
		name: workout.TypePhaseUpdate, depth: 2,
		msg: workout.PhaseUpdate{PlanID: "p1", PhaseID: "ph1", Changes: workout.PhaseChanges{Name: ptr("Hypertrophy"), IsActive: ptr(false)}},
		check: func(t *testing.T, db bun.IDB, res workout.Result) {
			require.Equal(t, workout.Result{Entity: "phase", ID: "ph1", Action: "updated"}, res)
			var ph schema.Phase
			require.NoError(t, db.NewSelect().Model(&ph).Where("id = ?", "ph1").Scan(context.Background()))
			require.Equal(t, "Hypertrophy", ph.Name)
			require.False(t, ph.IsActive)
			require.Equal(t, 1, ph.OrderNumber, "unchanged fields stay")
		},
		badData: `{"planId":"p1","phaseId":"ph1","changes":{"colour":"red"}}`, badFld: "changes.colour",
		missing: "phase",
	},
	{
		name: workout.TypePhaseDelete, depth: 4,
		msg: workout.PhaseDelete{PlanID: "p1", PhaseID: "ph1"},
		check: func(t *testing.T, db bun.IDB, res workout.Result) {
			require.Equal(t, workout.Result{Entity: "phase", ID: "ph1", Action: "deleted"}, res)
			require.Zero(t, steptest.Count(t, db, "workout_phases", ""))
			require.Zero(t, steptest.Count(t, db, "workout_sessions", ""), "sessions go with their phase")
			require.Zero(t, steptest.Count(t, db, "workout_exercises", ""), "exercises go with their phase")
			require.Equal(t, 1, steptest.Count(t, db, "workout_plans", ""))
		},
		badData: `{"planId":"p1","phaseId":""}`, badFld: "phaseId",
	},
	{
		name: workout.TypeSessionCreate, depth: 2,
		msg: workout.SessionCreate{PlanID: "p1", PhaseID: "ph1", Session: workout.SessionData{ID: "s2", Name: "Day 2", OrderNumber: 2}},
		check: func(t *testing.T, db bun.IDB, res workout.Result) {
			require.Equal(t, workout.Result{Entity: "session", ID: "s2", Action: "created"}, res)
			var s schema.Session
			require.NoError(t, db.NewSelect().Model(&s).Where("id = ?", "s2").Scan(context.Background()))
			require.Equal(t, "ph1", s.PhaseID)
			require.Equal(t, "Day 2", s.Name)
			require.Equal(t, 2, s.OrderNumber)
		},
		badData: `{"planId":"p1","phaseId":"ph1","session":{"id":"s2","name":"  "}}`, badFld: "session.name",
		missing: "phase",
	},
	{
		name: workout.TypeSessionUpdate, depth: 3,
		msg: workout.SessionUpdate{PlanID: "p1", PhaseID: "ph1", SessionID: "s1", Changes: workout.SessionChanges{OrderNumber: ptr(7)}},
		check: func(t *testing.T, db bun.IDB, res workout.Result) {
			require.Equal(t, workout.Result{Entity: "session", ID: "s1", Action: "updated"}, res)
			var s schema.Session
			require.NoError(t, db.NewSelect().Model(&s).Where("id = ?", "s1").Scan(context.Background()))
			require.Equal(t, 7, s.OrderNumber)
			require.Equal(t, "Day 1", s.Name)
		},
		badData: `{"planId":"p1","phaseId":"ph1","sessionId":"s1","changes":{}}`, badFld: "changes",
		missing: "session",
	},
	{
		name: workout.TypeSessionDelete, depth: 4,
		msg: workout.SessionDelete{PlanID: "p1", PhaseID: "ph1", SessionID: "s1"},
		check: func(t *testing.T, db bun.IDB, res workout.Result) {
			require.Equal(t, workout.Result{Entity: "session", ID: "s1", Action: "deleted"}, res)
			require.Zero(t, steptest.Count(t, db, "workout_sessions", ""))
			require.Zero(t, steptest.Count(t, db, "workout_exercises", ""), "exercises go with their session")
			require.Equal(t, 1, steptest.Count(t, db, "workout_phases", ""))
		},
		badData: `{"planId":"p1","phaseId":"ph1"}`, badFld: "sessionId",
	},
	{
		name: workout.TypeExerciseCreate, depth: 3,
		msg: workout.ExerciseCreate{PlanID: "p1", PhaseID: "ph1", SessionID: "s1", Exercise: workout.ExerciseData{
			ID: "e2", Name: "Bench", OrderNumber: 2, Sets: 4, Reps: 8, Weight: 72.5, Rest: 90, Tempo: "2-0-1", Notes: "pause"}},
		check: func(t *testing.T, db bun.IDB, res workout.Result) {
			require.Equal(t, workout.Result{Entity: "exercise", ID: "e2", Action: "created"}, res)
			e := exercise(t, db, "e2")
			require.Equal(t, schema.Exercise{ID: "e2", SessionID: "s1", Name: "Bench", OrderNumber: 2, Sets: 4, Reps: 8,
				Weight: 72.5, RestSeconds: 90, Tempo: "2-0-1", Notes: "pause", CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}, e)
		},
		badData: `{"planId":"p1","phaseId":"ph1","sessionId":"s1","exercise":{"id":"e2","name":"x","sets":-4}}`, badFld: "exercise.sets",
		missing: "session",
	},
	{
		name: workout.TypeExerciseUpdate, depth: 4,
		msg: workout.ExerciseUpdate{PlanID: "p1", PhaseID: "ph1", SessionID: "s1", ExerciseID: "e1",
			Changes: workout.ExerciseChanges{Reps: ptr(3), Weight: ptr(110.0), Notes: ptr("belt")}},
		check: func(t *testing.T, db bun.IDB, res workout.Result) {
			require.Equal(t, workout.Result{Entity: "exercise", ID: "e1", Action: "updated"}, res)
			e := exercise(t, db, "e1")
			require.Equal(t, 3, e.Reps)
			require.Equal(t, 110.0, e.Weight)
			require.Equal(t, "belt", e.Notes)
			require.Equal(t, 5, e.Sets, "unchanged fields stay")
			require.Equal(t, "3-1-1", e.Tempo)
		},
		badData: `{"planId":"p1","phaseId":"ph1","sessionId":"s1","exerciseId":"e1","changes":{"reps":-1}}`, badFld: "changes.reps",
		missing: "exercise",
	},
	{
		name: workout.TypeExerciseDelete, depth: 4,
		msg: workout.ExerciseDelete{PlanID: "p1", PhaseID: "ph1", SessionID: "s1", ExerciseID: "e1"},
		check: func(t *testing.T, db bun.IDB, res workout.Result) {
			require.Equal(t, workout.Result{Entity: "exercise", ID: "e1", Action: "deleted"}, res)
			require.Zero(t, steptest.Count(t, db, "workout_exercises", ""))
			require.Equal(t, 1, steptest.Count(t, db, "workout_sessions", ""))
		},
		badData: `{"planId":"p1","phaseId":"ph1","sessionId":"s1","exerciseId":" "}`, badFld: "exerciseId",
	},
	{
		name: workout.TypeWorkoutUpdate, depth: 4,
		msg: workout.WorkoutUpdate{ExercisePlanID: "p1", PhaseID: "ph1", SessionID: "s1", ExerciseID: "e1",
			Changes: workout.ExerciseChanges{Sets: ptr(4), Reps: ptr(12), Weight: ptr(135.0)}},
		check: func(t *testing.T, db bun.IDB, res workout.Result) {
			require.Equal(t, workout.Result{Entity: "exercise", ID: "e1", Action: "updated"}, res)
			e := exercise(t, db, "e1")
			require.Equal(t, 4, e.Sets)
			require.Equal(t, 12, e.Reps)
			require.Equal(t, 135.0, e.Weight)
			require.Equal(t, "Squat", e.Name)
		},
		badData: `{"exercisePlanId":"p1","phaseId":"ph1","sessionId":"s1","exerciseId":"e1","changes":{"sets":4,"mood":"great"}}`, badFld: "changes.mood",
		missing: "exercise",
	},
}

// Every workout step: the happy path, a re-run of the same job that changes
// nothing, bad data failing permanently with the field named, and a missing
// parent failing retryably — on PostgreSQL and on SQLite.
func TestWorkoutSteps(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			schematest.Each(t, func(t *testing.T, db *bun.DB) {
				ctx := context.Background()
				r := steptest.New(t, workout.Steps(db))

				t.Run("happy path and re-run", func(t *testing.T) {
					seed(t, r, c.depth)
					raw, _, err := r.Run(ctx, "job-1", 1, c.msg)
					require.NoError(t, err)
					var res workout.Result
					require.NoError(t, json.Unmarshal(raw, &res))
					c.check(t, db, res)
					rec, err := steprun.Record(ctx, db, "job-1")
					require.NoError(t, err)
					require.Equal(t, c.msg.MessageType(), rec.MessageType)
					require.Equal(t, 1, rec.Attempt)

					before := steptest.Snapshot(t, db)
					raw2, _, err := r.Run(ctx, "job-1", 2, c.msg)
					require.NoError(t, err)
					require.JSONEq(t, string(raw), string(raw2), "a re-run returns the stored result")
					require.Equal(t, before, steptest.Snapshot(t, db), "a re-run changes nothing")

					// The same message as a new job (a duplicate send) also
					// leaves the same rows, timestamps aside.
					before = steptest.Snapshot(t, db, "updated_at", "created_at", "job_id", "attempt", "result", "message_type")
					_, _, err = r.Run(ctx, "job-dup", 1, c.msg)
					require.NoError(t, err)
					after := steptest.Snapshot(t, db, "updated_at", "created_at", "job_id", "attempt", "result", "message_type")
					delete(before, "trellis_step_runs")
					delete(after, "trellis_step_runs")
					require.Equal(t, before, after)
				})
			})
		})
		t.Run(c.name+"/bad data", func(t *testing.T) {
			t.Parallel()
			schematest.Each(t, func(t *testing.T, db *bun.DB) {
				r := steptest.New(t, workout.Steps(db))
				seed(t, r, c.depth)
				before := steptest.Snapshot(t, db)
				_, _, err := r.RunRaw(context.Background(), "bad", 1, c.msg.MessageType(), []byte(c.badData))
				require.Error(t, err)
				require.True(t, flow.IsPermanent(err), "bad data is a permanent failure: %v", err)
				var me *flow.MessageError
				require.True(t, errors.As(err, &me), "%v", err)
				require.Equal(t, c.badFld, me.Field, "%v", err)
				require.Equal(t, before, steptest.Snapshot(t, db), "nothing was written")
			})
		})
		if c.missing != "" {
			t.Run(c.name+"/missing parent", func(t *testing.T) {
				t.Parallel()
				schematest.Each(t, func(t *testing.T, db *bun.DB) {
					r := steptest.New(t, workout.Steps(db))
					seed(t, r, c.depth-1)
					before := steptest.Snapshot(t, db)
					_, _, err := r.Run(context.Background(), "early", 1, c.msg)
					require.Error(t, err)
					require.False(t, flow.IsPermanent(err), "a missing parent is retryable: %v", err)
					var nf *workout.NotFoundError
					require.True(t, errors.As(err, &nf), "%v", err)
					require.Equal(t, c.missing, nf.Entity)
					require.Equal(t, before, steptest.Snapshot(t, db), "nothing was written, not even the step record")

					// The seed's race: once the parent exists, a later attempt succeeds.
					seed(t, r, c.depth)
					_, _, err = r.Run(context.Background(), "early", 2, c.msg)
					require.NoError(t, err)
				})
			})
		}
	}
}

// Deletes tolerate absence: deleting what is not there succeeds and says so.
func TestDeletesTolerateAbsence(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		r := steptest.New(t, workout.Steps(db))
		for i, m := range []flow.Message{
			workout.PhaseDelete{PlanID: "p", PhaseID: "ph"},
			workout.SessionDelete{PlanID: "p", PhaseID: "ph", SessionID: "s"},
			workout.ExerciseDelete{PlanID: "p", PhaseID: "ph", SessionID: "s", ExerciseID: "e"},
		} {
			raw, _, err := r.Run(context.Background(), fmt.Sprintf("del-%d", i), 1, m)
			require.NoError(t, err)
			var res workout.Result
			require.NoError(t, json.Unmarshal(raw, &res))
			require.Equal(t, "absent", res.Action)
		}
	})
}

// WORKOUT_PLAN_FULL_SAVE as a step: it writes the plan row and hands the
// rest to the engine as a sub-graph; a re-run changes nothing and hands over
// the same sub-graph; bad data anywhere in the tree fails permanently with
// its path.
func TestFullSaveStep(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		r := steptest.New(t, workout.Steps(db))
		m := workout.PlanFullSave{PlanID: "p", Name: "P", ClientID: "c", TrainerID: "t", IsActive: true, Phases: []workout.PhaseTree{
			{PhaseData: workout.PhaseData{ID: "ph1", Name: "A", OrderNumber: 1}, Sessions: []workout.SessionTree{
				{SessionData: workout.SessionData{ID: "s1", Name: "S", OrderNumber: 1}, Exercises: []workout.ExerciseData{
					{ID: "e1", Name: "E1", Sets: 3, Reps: 5}, {ID: "e2", Name: "E2", Sets: 3, Reps: 5}}}}},
			{PhaseData: workout.PhaseData{ID: "ph2", Name: "B", OrderNumber: 2}},
		}}
		expansion := func(sc *flow.StepContext) map[string][]string {
			specs, err := seam.Expansion(sc)
			require.NoError(t, err)
			out := map[string][]string{}
			for _, s := range specs {
				out[s.ID] = append([]string{s.Type}, s.Parents...)
			}
			return out
		}
		raw, sc, err := r.Run(ctx, "fs", 1, m)
		require.NoError(t, err)
		require.JSONEq(t, `{"planId":"p","action":"created","phases":2,"sessions":1,"exercises":2,"pruned":0}`, string(raw))
		want := map[string][]string{
			"fs/phase/ph1":   {workout.TypePhaseCreate},
			"fs/phase/ph2":   {workout.TypePhaseCreate},
			"fs/session/s1":  {workout.TypeSessionCreate, "fs/phase/ph1"},
			"fs/exercise/e1": {workout.TypeExerciseCreate, "fs/session/s1"},
			"fs/exercise/e2": {workout.TypeExerciseCreate, "fs/session/s1"},
		}
		require.Equal(t, want, expansion(sc))
		specs, err := seam.Expansion(sc)
		require.NoError(t, err)
		for _, sp := range specs {
			require.Equal(t, workout.SturdyAttempts, sp.MaxAttempts, "%s rides out a database restart", sp.ID)
			require.Equal(t, workout.SturdyBackoff, sp.Backoff, sp.ID)
		}
		require.Equal(t, 1, steptest.Count(t, db, "workout_plans", ""))
		require.Zero(t, steptest.Count(t, db, "workout_phases", ""), "phases are the sub-graph's job")

		before := steptest.Snapshot(t, db)
		raw2, sc2, err := r.Run(ctx, "fs", 2, m)
		require.NoError(t, err)
		require.JSONEq(t, string(raw), string(raw2))
		require.Equal(t, before, steptest.Snapshot(t, db))
		require.Equal(t, want, expansion(sc2), "the replay expands into the same nodes")

		bad := `{"planId":"p","name":"P","clientId":"c","trainerId":"t","phases":[{"id":"ph1","name":"A","sessions":[
			{"id":"s1","name":"S","exercises":[{"id":"e1","name":"E1","sets":3,"reps":-5}]}]}]}`
		_, _, err = r.RunRaw(ctx, "fs-bad", 1, workout.TypePlanFullSave, []byte(bad))
		require.True(t, flow.IsPermanent(err), "%v", err)
		var me *flow.MessageError
		require.True(t, errors.As(err, &me), "%v", err)
		require.Equal(t, "phases[0].sessions[0].exercises[0].reps", me.Field)
		require.Equal(t, before, steptest.Snapshot(t, db))
	})
}

// A create names its whole ancestry: a session under a phase of another
// plan, or an exercise under a session of another phase or plan, is
// refused for good (the parent is there, elsewhere), while a parent that
// does not exist yet is retryable; neither writes anything.
func TestCreatesCheckTheWholeAncestry(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		r := steptest.New(t, workout.Steps(db))
		seed(t, r, 4)
		_, _, err := r.Run(ctx, "p2", 1, workout.PlanCreate{PlanID: "p2", Name: "Other", ClientID: "c1", TrainerID: "t1"})
		require.NoError(t, err)
		_, _, err = r.Run(ctx, "ph2", 1, workout.PhaseCreate{PlanID: "p2", Phase: workout.PhaseData{ID: "ph2", Name: "Other", OrderNumber: 1}})
		require.NoError(t, err)
		before := steptest.Snapshot(t, db)
		for i, c := range []struct {
			msg  flow.Message
			want string // the error
		}{
			{workout.SessionCreate{PlanID: "p2", PhaseID: "ph1", Session: workout.SessionData{ID: "sx", Name: "x", OrderNumber: 1}}, `phase "ph1" belongs to plan "p1", not "p2"`},
			{workout.SessionCreate{PlanID: "p1", PhaseID: "ph2", Session: workout.SessionData{ID: "sy", Name: "y", OrderNumber: 1}}, `phase "ph2" belongs to plan "p2", not "p1"`},
			{workout.ExerciseCreate{PlanID: "p2", PhaseID: "ph1", SessionID: "s1", Exercise: workout.ExerciseData{ID: "ex", Name: "x", OrderNumber: 1, Sets: 1, Reps: 1}}, `phase "ph1" belongs to plan "p1", not "p2"`},
			{workout.ExerciseCreate{PlanID: "p1", PhaseID: "ph2", SessionID: "s1", Exercise: workout.ExerciseData{ID: "ey", Name: "y", OrderNumber: 1, Sets: 1, Reps: 1}}, `phase "ph2" belongs to plan "p2", not "p1"`},
			// an existing row under the wrong ancestry is not updated either
			{workout.SessionCreate{PlanID: "p2", PhaseID: "ph1", Session: workout.SessionData{ID: "s1", Name: "moved", OrderNumber: 9}}, `phase "ph1" belongs to plan "p1", not "p2"`},
			{workout.PhaseCreate{PlanID: "p3", Phase: workout.PhaseData{ID: "ph3", Name: "z", OrderNumber: 1}}, "plan p3 not found"},
			{workout.SessionCreate{PlanID: "p1", PhaseID: "ph9", Session: workout.SessionData{ID: "s9", Name: "z", OrderNumber: 1}}, "phase ph9 not found"},
		} {
			_, _, err := r.Run(ctx, fmt.Sprintf("wrong-%d", i), 1, c.msg)
			require.EqualError(t, err, c.want, "%d", i)
			var nf *workout.NotFoundError
			require.Equal(t, errors.As(err, &nf), !flow.IsPermanent(err), "%d: missing parents are retryable, misplaced ones not", i)
		}
		require.Equal(t, before, steptest.Snapshot(t, db), "nothing was written")
	})
}

// Two full saves of one plan whose jobs interleave: the plan ends as the
// save enqueued later says, whichever order their jobs run in. A save that
// is no longer the latest writes nothing ("superseded"), and the later
// save's prune removes what the earlier one wrote before it.
func TestLaterFullSaveWins(t *testing.T) {
	exercise := func(id string) workout.ExerciseData {
		return workout.ExerciseData{ID: id, Name: "Squat", Sets: 3, Reps: 5}
	}
	a := workout.PlanFullSave{PlanID: "p", Name: "A", ClientID: "c", TrainerID: "t", Phases: []workout.PhaseTree{
		{PhaseData: workout.PhaseData{ID: "a1", Name: "A1", OrderNumber: 1}, Sessions: []workout.SessionTree{
			{SessionData: workout.SessionData{ID: "as1", Name: "AS1", OrderNumber: 1}, Exercises: []workout.ExerciseData{exercise("ae1")}}}},
		{PhaseData: workout.PhaseData{ID: "both", Name: "from A", OrderNumber: 2}},
	}}
	b := workout.PlanFullSave{PlanID: "p", Name: "B", ClientID: "c", TrainerID: "t", Phases: []workout.PhaseTree{
		{PhaseData: workout.PhaseData{ID: "b1", Name: "B1", OrderNumber: 1}},
		{PhaseData: workout.PhaseData{ID: "both", Name: "from B", OrderNumber: 2}, Sessions: []workout.SessionTree{
			{SessionData: workout.SessionData{ID: "bs1", Name: "BS1", OrderNumber: 1}, Exercises: []workout.ExerciseData{exercise("be1")}}}},
	}}
	orders := map[string][]string{
		"A, then B":                    {"root A", "tree A", "root B", "tree B"},
		"both roots, then A's tree":    {"root A", "root B", "tree A", "tree B"},
		"both roots, B's tree first":   {"root A", "root B", "tree B", "tree A"},
		"B's root before A's":          {"root B", "root A", "tree A", "tree B"},
		"B's root and tree before A's": {"root B", "tree B", "root A", "tree A"},
	}
	for name, order := range orders {
		t.Run(name, func(t *testing.T) {
			schematest.Each(t, func(t *testing.T, db *bun.DB) {
				ctx := context.Background()
				r := steptest.New(t, workout.Steps(db))
				enqueued := time.Now().Add(-time.Minute)
				r.Stamp("fsA", enqueued)
				r.Stamp("fsB", enqueued.Add(time.Millisecond)) // B is the later save
				msgs := map[string]workout.PlanFullSave{"A": a, "B": b}
				expansions := map[string]*flow.StepContext{}
				actions := map[string][]string{}
				for _, step := range order {
					save := step[len(step)-1:]
					if strings.HasPrefix(step, "root") {
						raw, sc, err := r.Run(ctx, "fs"+save, 1, msgs[save])
						require.NoError(t, err, step)
						var res workout.FullSaveResult
						require.NoError(t, json.Unmarshal(raw, &res))
						actions[step] = []string{res.Action}
						expansions[save] = sc
						continue
					}
					specs, err := seam.Expansion(expansions[save])
					require.NoError(t, err)
					for _, sp := range specs {
						var env flow.Envelope
						require.NoError(t, json.Unmarshal(sp.Payload, &env))
						raw, _, err := r.RunRaw(ctx, sp.ID, 1, sp.Type, env.Data)
						require.NoError(t, err, sp.ID)
						var res workout.Result
						require.NoError(t, json.Unmarshal(raw, &res))
						actions[step] = append(actions[step], res.Action)
					}
				}
				require.Equal(t, "B", plan(t, db, "p").Name)
				require.Equal(t, []string{"b1", "both"}, ids(t, db, "workout_phases"))
				require.Equal(t, []string{"bs1"}, ids(t, db, "workout_sessions"))
				require.Equal(t, []string{"be1"}, ids(t, db, "workout_exercises"))
				require.Equal(t, 1, steptest.Count(t, db, "workout_phases", "id = 'both' AND name = 'from B'"))
				aFirst := order[0] == "root A"
				if !aFirst {
					require.Equal(t, []string{"superseded"}, actions["root A"], "A was enqueued first and B's root ran")
				}
				if !aFirst || order[1] == "root B" {
					require.Equal(t, []string{"superseded", "superseded", "superseded", "superseded"}, actions["tree A"],
						"A's tree ran after B's root: nothing of it written")
				}
			})
		})
	}
}

// ids lists a table's IDs in order.
func ids(t *testing.T, db bun.IDB, table string) []string {
	t.Helper()
	var out []string
	require.NoError(t, db.NewSelect().ColumnExpr("id").TableExpr(table).OrderExpr("id").Scan(context.Background(), &out))
	return out
}

// On PostgreSQL a create of the earlier save that is writing while the
// later save's root runs holds the plan row: the root waits for it to
// commit, then prunes what it wrote.
func TestLaterFullSaveWaitsForAnEarlierCreate(t *testing.T) {
	db := schematest.Postgres(t)
	ctx := context.Background()
	r := steptest.New(t, workout.Steps(db))
	enqueued := time.Now().Add(-time.Minute)
	r.Stamp("fsA", enqueued)
	r.Stamp("fsB", enqueued.Add(time.Millisecond))
	a := workout.PlanFullSave{PlanID: "p", Name: "A", ClientID: "c", TrainerID: "t", Phases: []workout.PhaseTree{
		{PhaseData: workout.PhaseData{ID: "a1", Name: "A1", OrderNumber: 1}}}}
	b := workout.PlanFullSave{PlanID: "p", Name: "B", ClientID: "c", TrainerID: "t", Phases: []workout.PhaseTree{
		{PhaseData: workout.PhaseData{ID: "b1", Name: "B1", OrderNumber: 1}}}}
	_, _, err := r.Run(ctx, "fsA", 1, a)
	require.NoError(t, err)

	// what A's create of a1 holds while it writes: the plan row, shared
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	var owner string
	require.NoError(t, tx.QueryRowContext(ctx, "SELECT full_save_job FROM workout_plans WHERE id = 'p' FOR SHARE").Scan(&owner))
	require.Equal(t, "fsA", owner)
	_, err = tx.ExecContext(ctx, "INSERT INTO workout_phases (id, plan_id, name, order_number, is_active) VALUES ('a1', 'p', 'A1', 1, TRUE)")
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		_, _, err := r.Run(ctx, "fsB", 1, b)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("B's root did not wait for A's create: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, tx.Commit())
	require.NoError(t, <-done)
	require.Zero(t, steptest.Count(t, db, "workout_phases", "id = 'a1'"), "B's root pruned what A's create committed")
	require.Equal(t, "B", plan(t, db, "p").Name)
}
