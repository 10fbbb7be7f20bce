package workout

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/trellisflow/trellis/flow"
)

func TestRegistryDecodesAllWorkoutTypes(t *testing.T) {
	t.Parallel()
	reg := flow.NewRegistry()
	RegisterTypes(reg)
	require.Equal(t, []string{
		"WORKOUT_EXERCISE_CREATE", "WORKOUT_EXERCISE_DELETE", "WORKOUT_EXERCISE_UPDATE",
		"WORKOUT_PHASE_CREATE", "WORKOUT_PHASE_DELETE", "WORKOUT_PHASE_UPDATE",
		"WORKOUT_PLAN_CREATE", "WORKOUT_PLAN_FULL_SAVE",
		"WORKOUT_SESSION_CREATE", "WORKOUT_SESSION_DELETE", "WORKOUT_SESSION_UPDATE",
		"WORKOUT_UPDATE",
	}, reg.Types())

	_, msg, err := reg.Decode([]byte(`{"messageType":"WORKOUT_UPDATE","timestamp":"2026-01-01T00:00:00Z","userId":"user-123",
		"data":{"exercisePlanId":"plan-456","phaseId":"phase-789","sessionId":"session-101","exerciseId":"exercise-202",
		"changes":{"sets":4,"reps":12,"weight":135}}}`))
	require.NoError(t, err)
	u := msg.(WorkoutUpdate)
	require.Equal(t, "plan-456", u.ExercisePlanID)
	require.Equal(t, 4, *u.Changes.Sets)
	require.Equal(t, 135.0, *u.Changes.Weight)
	require.Nil(t, u.Changes.Name)

	_, msg, err = reg.Decode([]byte(`{"messageType":"WORKOUT_PLAN_FULL_SAVE","timestamp":"2026-01-01T00:00:00Z",
		"data":{"planId":"p1","name":"Plan","clientId":"c","trainerId":"t","isActive":true,
		"phases":[{"id":"ph1","name":"Strength","orderNumber":1,"isActive":true,
		"sessions":[{"id":"s1","name":"Day 1","orderNumber":1,
		"exercises":[{"id":"e1","name":"Squat","orderNumber":1,"sets":5,"reps":5,"weight":100,"rest":120,"tempo":"3-1-1","notes":"deep"}]}]}]}}`))
	require.NoError(t, err)
	fs := msg.(PlanFullSave)
	require.Equal(t, "3-1-1", fs.Phases[0].Sessions[0].Exercises[0].Tempo)
	require.Equal(t, "ph1", fs.Phases[0].ID)
}

func TestValidationNamesTheField(t *testing.T) {
	t.Parallel()
	neg := -1
	empty := " "
	tree := func(mut func(*PlanFullSave)) PlanFullSave {
		m := PlanFullSave{PlanID: "p", Name: "n", ClientID: "c", TrainerID: "t", Phases: []PhaseTree{{
			PhaseData: PhaseData{ID: "ph", Name: "P"},
			Sessions: []SessionTree{{SessionData: SessionData{ID: "s", Name: "S"},
				Exercises: []ExerciseData{{ID: "e", Name: "E"}, {ID: "e2", Name: "E2"}}}},
		}}}
		mut(&m)
		return m
	}
	cases := []struct {
		msg   flow.Message
		field string
	}{
		{PlanCreate{Name: "x", ClientID: "c", TrainerID: "t"}, "planId"},
		{PlanCreate{PlanID: "p", ClientID: "c", TrainerID: "t"}, "name"},
		{PhaseCreate{PlanID: "p", Phase: PhaseData{ID: "ph"}}, "phase.name"},
		{PhaseCreate{PlanID: "p", Phase: PhaseData{ID: "ph", Name: "x", OrderNumber: -2}}, "phase.orderNumber"},
		{PhaseUpdate{PlanID: "p", PhaseID: "ph"}, "changes"},
		{PhaseUpdate{PlanID: "p", PhaseID: "ph", Changes: PhaseChanges{Name: &empty}}, "changes.name"},
		{PhaseDelete{PlanID: "p"}, "phaseId"},
		{SessionCreate{PlanID: "p", PhaseID: "ph", Session: SessionData{Name: "x"}}, "session.id"},
		{SessionUpdate{PlanID: "p", PhaseID: "ph", SessionID: "s", Changes: SessionChanges{OrderNumber: &neg}}, "changes.orderNumber"},
		{SessionDelete{PlanID: "p", PhaseID: "ph"}, "sessionId"},
		{ExerciseCreate{PlanID: "p", PhaseID: "ph", SessionID: "s", Exercise: ExerciseData{ID: "e", Name: "x", Sets: -1}}, "exercise.sets"},
		{ExerciseCreate{PlanID: "p", PhaseID: "ph", SessionID: "s", Exercise: ExerciseData{ID: "e", Name: "x", Reps: -3}}, "exercise.reps"},
		{ExerciseUpdate{PlanID: "p", PhaseID: "ph", SessionID: "s", ExerciseID: "e", Changes: ExerciseChanges{Reps: &neg}}, "changes.reps"},
		{ExerciseDelete{PlanID: "p", PhaseID: "ph", SessionID: "s"}, "exerciseId"},
		{WorkoutUpdate{PhaseID: "ph", SessionID: "s", ExerciseID: "e", Changes: ExerciseChanges{Sets: &neg}}, "exercisePlanId"},
		{tree(func(m *PlanFullSave) { m.Phases[0].Sessions[0].Exercises[1].Sets = -1 }), "phases[0].sessions[0].exercises[1].sets"},
		{tree(func(m *PlanFullSave) { m.Phases[0].Sessions[0].Exercises[1].ID = "e" }), "phases[0].sessions[0].exercises[1].id"},
		{tree(func(m *PlanFullSave) { m.Phases[0].Name = "" }), "phases[0].name"},
	}
	for _, c := range cases {
		err := c.msg.(flow.Validator).Validate()
		var me *flow.MessageError
		require.True(t, errors.As(err, &me), "%T: %v", c.msg, err)
		require.Equal(t, c.field, me.Field, "%T: %v", c.msg, err)
	}
	require.NoError(t, tree(func(*PlanFullSave) {}).Validate())
}

func TestUnknownChangeFieldIsRejected(t *testing.T) {
	t.Parallel()
	reg := flow.NewRegistry()
	RegisterTypes(reg)
	_, _, err := reg.Decode([]byte(`{"messageType":"WORKOUT_UPDATE","timestamp":"2026-01-01T00:00:00Z",
		"data":{"exercisePlanId":"p","phaseId":"ph","sessionId":"s","exerciseId":"e","changes":{"sets":4,"colour":"red"}}}`))
	require.ErrorIs(t, err, flow.ErrInvalidMessage)
	var me *flow.MessageError
	require.True(t, errors.As(err, &me))
	require.Equal(t, "changes.colour", me.Field, "%v", err)
}
