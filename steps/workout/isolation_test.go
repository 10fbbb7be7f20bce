package workout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/schema/schematest"
	"github.com/trellisflow/trellis/steps/internal/steptest"
	"github.com/trellisflow/trellis/steps/workout"
)

// twoClients writes plan B of client cB (phase bph → session bs →
// exercise be) and plan C of client cC (phases cph and cph2, sessions cs
// and cs2, exercise ce under cs).
func twoClients(t *testing.T, r *steptest.Runner) {
	t.Helper()
	ex := func(id string) workout.ExerciseData {
		return workout.ExerciseData{ID: id, Name: "Squat", Sets: 3, Reps: 5}
	}
	for i, m := range []flow.Message{
		workout.PlanCreate{PlanID: "B", Name: "B's plan", ClientID: "cB", TrainerID: "tB"},
		workout.PhaseCreate{PlanID: "B", Phase: workout.PhaseData{ID: "bph", Name: "B1", OrderNumber: 1}},
		workout.SessionCreate{PlanID: "B", PhaseID: "bph", Session: workout.SessionData{ID: "bs", Name: "B1a", OrderNumber: 1}},
		workout.ExerciseCreate{PlanID: "B", PhaseID: "bph", SessionID: "bs", Exercise: ex("be")},
		workout.PlanCreate{PlanID: "C", Name: "C's plan", ClientID: "cC", TrainerID: "tC"},
		workout.PhaseCreate{PlanID: "C", Phase: workout.PhaseData{ID: "cph", Name: "C1", OrderNumber: 1}},
		workout.PhaseCreate{PlanID: "C", Phase: workout.PhaseData{ID: "cph2", Name: "C2", OrderNumber: 2}},
		workout.SessionCreate{PlanID: "C", PhaseID: "cph", Session: workout.SessionData{ID: "cs", Name: "C1a", OrderNumber: 1}},
		workout.SessionCreate{PlanID: "C", PhaseID: "cph2", Session: workout.SessionData{ID: "cs2", Name: "C2a", OrderNumber: 1}},
		workout.ExerciseCreate{PlanID: "C", PhaseID: "cph", SessionID: "cs", Exercise: ex("ce")},
	} {
		_, _, err := r.Run(context.Background(), fmt.Sprintf("two-%d", i), 1, m)
		require.NoError(t, err)
	}
}

// Issue 17, part 1: no message takes over, changes or deletes a row of
// another plan (or a plan of another client or trainer), nor moves a row
// to another parent of its plan outside a full save. Each is refused
// permanently, naming the row, where it belongs and what the message
// said, and nothing is written.
func TestNoMessageTouchesAnotherPlansRows(t *testing.T) {
	ph := func(id string) workout.PhaseData { return workout.PhaseData{ID: id, Name: "x", OrderNumber: 1} }
	se := func(id string) workout.SessionData { return workout.SessionData{ID: id, Name: "x", OrderNumber: 1} }
	ex := func(id string) workout.ExerciseData { return workout.ExerciseData{ID: id, Name: "x", Sets: 1, Reps: 1} }
	name := workout.PhaseChanges{Name: ptr("mine now")}
	reps := workout.ExerciseChanges{Reps: ptr(99)}
	save := func(client string, phases ...workout.PhaseTree) workout.PlanFullSave {
		return workout.PlanFullSave{PlanID: "C", Name: "C's plan", ClientID: client, TrainerID: "tC", Phases: phases}
	}
	cases := []struct {
		msg  flow.Message
		want string
	}{
		// creates naming a row of plan B under plan C (the takeover)
		{workout.PhaseCreate{PlanID: "C", Phase: ph("bph")}, `phase "bph" belongs to plan "B", not "C"`},
		{workout.SessionCreate{PlanID: "C", PhaseID: "cph", Session: se("bs")}, `session "bs" belongs to plan "B", not "C"`},
		{workout.ExerciseCreate{PlanID: "C", PhaseID: "cph", SessionID: "cs", Exercise: ex("be")}, `exercise "be" belongs to plan "B", not "C"`},
		// a plan of another client or trainer
		{workout.PlanCreate{PlanID: "B", Name: "x", ClientID: "cC", TrainerID: "tB"}, `plan "B" belongs to client "cB", not "cC"`},
		{workout.PlanCreate{PlanID: "B", Name: "x", ClientID: "cB", TrainerID: "tC"}, `plan "B" belongs to trainer "tB", not "tC"`},
		{workout.PhaseCreate{PlanID: "B", ClientID: "cC", Phase: ph("new")}, `plan "B" belongs to client "cB", not "cC"`},
		// a parent of another plan, for a new row
		{workout.SessionCreate{PlanID: "C", PhaseID: "bph", Session: se("new")}, `phase "bph" belongs to plan "B", not "C"`},
		{workout.ExerciseCreate{PlanID: "C", PhaseID: "cph", SessionID: "bs", Exercise: ex("new")}, `session "bs" belongs to plan "B", not "C"`},
		{workout.ExerciseCreate{PlanID: "C", PhaseID: "cph2", SessionID: "cs", Exercise: ex("new")}, `session "cs" belongs to phase "cph", not "cph2"`},
		// a create moving its row within the plan: only a full save may
		{workout.SessionCreate{PlanID: "C", PhaseID: "cph2", Session: se("cs")}, `session "cs" belongs to phase "cph", not "cph2"`},
		{workout.ExerciseCreate{PlanID: "C", PhaseID: "cph2", SessionID: "cs2", Exercise: ex("ce")}, `exercise "ce" belongs to session "cs", not "cs2"`},
		// updates
		{workout.PhaseUpdate{PlanID: "C", PhaseID: "bph", Changes: name}, `phase "bph" belongs to plan "B", not "C"`},
		{workout.SessionUpdate{PlanID: "C", PhaseID: "cph", SessionID: "bs", Changes: workout.SessionChanges{Name: ptr("x")}}, `session "bs" belongs to plan "B", not "C"`},
		{workout.SessionUpdate{PlanID: "C", PhaseID: "bph", SessionID: "bs", Changes: workout.SessionChanges{Name: ptr("x")}}, `phase "bph" belongs to plan "B", not "C"`},
		{workout.SessionUpdate{PlanID: "C", PhaseID: "cph2", SessionID: "cs", Changes: workout.SessionChanges{Name: ptr("x")}}, `session "cs" belongs to phase "cph", not "cph2"`},
		{workout.ExerciseUpdate{PlanID: "C", PhaseID: "cph", SessionID: "cs", ExerciseID: "be", Changes: reps}, `exercise "be" belongs to plan "B", not "C"`},
		{workout.WorkoutUpdate{ExercisePlanID: "C", PhaseID: "bph", SessionID: "bs", ExerciseID: "be", Changes: reps}, `phase "bph" belongs to plan "B", not "C"`},
		// deletes check the whole path too (they ignored planId and phaseId)
		{workout.PhaseDelete{PlanID: "C", PhaseID: "bph"}, `phase "bph" belongs to plan "B", not "C"`},
		{workout.SessionDelete{PlanID: "C", PhaseID: "bph", SessionID: "bs"}, `phase "bph" belongs to plan "B", not "C"`},
		{workout.SessionDelete{PlanID: "C", PhaseID: "cph", SessionID: "bs"}, `session "bs" belongs to plan "B", not "C"`},
		{workout.SessionDelete{PlanID: "C", PhaseID: "bph", SessionID: "gone"}, `phase "bph" belongs to plan "B", not "C"`},
		{workout.ExerciseDelete{PlanID: "C", PhaseID: "bph", SessionID: "bs", ExerciseID: "be"}, `phase "bph" belongs to plan "B", not "C"`},
		{workout.ExerciseDelete{PlanID: "C", PhaseID: "cph", SessionID: "cs", ExerciseID: "be"}, `exercise "be" belongs to plan "B", not "C"`},
		// a full save's explicit IDs (a CSV's), and its plan's owners
		{save("cC", workout.PhaseTree{PhaseData: ph("cph")}, workout.PhaseTree{PhaseData: ph("bph")}),
			`phases[1].id: phase "bph" belongs to plan "B", not "C"`},
		{save("cC", workout.PhaseTree{PhaseData: ph("cph"), Sessions: []workout.SessionTree{{SessionData: se("bs")}}}),
			`phases[0].sessions[0].id: session "bs" belongs to plan "B", not "C"`},
		{save("cC", workout.PhaseTree{PhaseData: ph("cph"), Sessions: []workout.SessionTree{{SessionData: se("cs"), Exercises: []workout.ExerciseData{ex("ce"), ex("be")}}}}),
			`phases[0].sessions[0].exercises[1].id: exercise "be" belongs to plan "B", not "C"`},
		{save("cB"), `plan "C" belongs to client "cC", not "cB"`},
	}
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		r := steptest.New(t, workout.Steps(db))
		twoClients(t, r)
		before := steptest.Snapshot(t, db)
		for i, c := range cases {
			_, _, err := r.Run(ctx, fmt.Sprintf("foreign-%d", i), 1, c.msg)
			require.Error(t, err, "%d: %T", i, c.msg)
			require.True(t, flow.IsPermanent(err), "%d: %v", i, err)
			var oe *workout.OwnershipError
			require.True(t, errors.As(err, &oe), "%d: %v", i, err)
			require.Equal(t, c.want, err.Error(), "%d", i)
		}
		require.Equal(t, before, steptest.Snapshot(t, db), "nothing was written")
	})
}

// The report, end to end: a WORKOUT_PHASE_CREATE for plan C that
// names a phase of plan B, sent as a JSON envelope, fails on its first
// attempt with the error naming both plans, and plan B keeps its phase.
// A fullSave marker, which would let a create move rows within a plan, is
// refused at enqueue.
func TestForeignPhaseCreateFailsAtOnce(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		twoClients(t, steptest.New(t, workout.Steps(e.DB)))
		e.Start(nil, workout.Steps(e.DB)...)
		reg := flow.NewRegistry()
		workout.RegisterTypes(reg)
		j, err := e.Client.AddJSON(ctx, reg, []byte(`{"messageType":"WORKOUT_PHASE_CREATE","timestamp":"2026-01-02T03:04:05Z",
			"data":{"planId":"C","phase":{"id":"bph","name":"taken","orderNumber":1}}}`), nil)
		require.NoError(t, err)
		e.Wait(j.ID)
		job := e.Job(j.ID)
		require.Equal(t, dag.Failed, job.State)
		require.Equal(t, 1, job.Attempt, "a permanent error: no retries")
		require.Equal(t, `phase "bph" belongs to plan "B", not "C"`, job.Error.Message)
		var phase schema.Phase
		require.NoError(t, e.DB.NewSelect().Model(&phase).Where("id = ?", "bph").Scan(ctx))
		require.Equal(t, []string{"B", "B1"}, []string{phase.PlanID, phase.Name})
		require.Equal(t, 1, steptest.Count(t, e.DB, "workout_sessions", "phase_id = 'bph'"), "its session stays with it")

		for _, data := range []string{
			`{"planId":"C","phase":{"id":"cph9","name":"x"},"fullSave":"fs"}`,
		} {
			_, err := e.Client.AddJSON(ctx, reg, []byte(`{"messageType":"WORKOUT_PHASE_CREATE","data":`+data+`}`), nil)
			require.ErrorIs(t, err, flow.ErrInvalidMessage)
			require.ErrorContains(t, err, `unknown field "fullSave"`)
		}
		for _, typ := range []string{workout.TypeSessionCreate, workout.TypeExerciseCreate} {
			_, err := e.Client.AddJSON(ctx, reg, []byte(`{"messageType":"`+typ+`","data":{"fullSave":"fs"}}`), nil)
			require.ErrorContains(t, err, `unknown field "fullSave"`, typ)
		}
	})
}

// A second create of a row where it already is (a duplicate send) is an
// idempotent success: "unchanged" when the row holds the message's data
// (nothing is written, updated_at included), "updated" when it differs. A
// replay of the same job returns the first run's result.
func TestCreatingAnExistingRowAgain(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		r := steptest.New(t, workout.Steps(db))
		twoClients(t, r)
		action := func(job string, m flow.Message) string {
			t.Helper()
			raw, _, err := r.Run(ctx, job, 1, m)
			require.NoError(t, err)
			var res workout.Result
			require.NoError(t, json.Unmarshal(raw, &res))
			return res.Action
		}
		same := workout.PhaseCreate{PlanID: "C", Phase: workout.PhaseData{ID: "cph", Name: "C1", OrderNumber: 1}}
		before := steptest.Snapshot(t, db, "job_id", "attempt", "result", "message_type", "enqueued_at", "created_at")
		require.Equal(t, "unchanged", action("again-1", same))
		after := steptest.Snapshot(t, db, "job_id", "attempt", "result", "message_type", "enqueued_at", "created_at")
		delete(before, "trellis_step_runs")
		delete(after, "trellis_step_runs")
		require.Equal(t, before, after, "nothing written, updated_at included")

		for i, m := range []flow.Message{
			workout.PlanCreate{PlanID: "C", Name: "C's plan", ClientID: "cC", TrainerID: "tC"},
			workout.SessionCreate{PlanID: "C", PhaseID: "cph", Session: workout.SessionData{ID: "cs", Name: "C1a", OrderNumber: 1}},
			workout.ExerciseCreate{PlanID: "C", PhaseID: "cph", SessionID: "cs", Exercise: workout.ExerciseData{ID: "ce", Name: "Squat", Sets: 3, Reps: 5}},
		} {
			require.Equal(t, "unchanged", action(fmt.Sprintf("same-%d", i), m), "%T", m)
		}

		changed := same
		changed.Phase.Name = "C1, renamed"
		require.Equal(t, "updated", action("again-2", changed))
		var phase schema.Phase
		require.NoError(t, db.NewSelect().Model(&phase).Where("id = ?", "cph").Scan(ctx))
		require.Equal(t, "C1, renamed", phase.Name)
		require.Equal(t, "updated", action("again-2", same), "a replay returns the first run's result")
		require.Equal(t, "updated", action("again-3", workout.PlanCreate{PlanID: "C", Name: "Renamed", ClientID: "cC", TrainerID: "tC", IsActive: true}))
	})
}
