package system_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/steps/internal/steptest"
	"github.com/trellisflow/trellis/steps/system"
	"github.com/trellisflow/trellis/steps/workout"
)

// pad is s padded with x to n bytes.
func pad(s string, n int) string { return s + strings.Repeat("x", n-len(s)) }

// boundCase is one message type with every field the schema bounds at its
// limit.
type boundCase struct {
	typ  string
	data map[string]any
	id   string // the job ID, when it matters
	// fields are the bounded fields, as paths into data; a path's error
	// names the part before any "=" (details=details.k: the error names
	// details, the value to grow is details.k)
	fields []string
	// stored are the rows the run at the limits leaves: a table and a
	// condition whose ? take the values at the paths in args; n rows
	// match (1 unless set)
	stored []storedRow
}

type storedRow struct {
	table, where string
	args         []string
	n            int
}

var (
	planID, clientID, trainerID = pad("plan", schema.MaxID), pad("client", schema.MaxID), pad("trainer", schema.MaxID)
	phaseID, sessionID, exID    = pad("phase", schema.MaxID), pad("session", schema.MaxID), pad("exercise", schema.MaxID)
	userID                      = pad("user", schema.MaxID)
	exportID                    = pad("export", schema.MaxJobID)
	name                        = func(s string) string { return pad(s, schema.MaxName) }
)

func exerciseAtLimit(id, prefix string) map[string]any {
	return map[string]any{"id": id, "name": name(prefix), "orderNumber": schema.MaxInt, "sets": schema.MaxInt,
		"reps": schema.MaxInt, "weight": 1e300, "rest": schema.MaxInt, "tempo": pad("3-1-1", schema.MaxTempo), "notes": pad(prefix, schema.MaxNotes)}
}

func changesAtLimit(prefix string) map[string]any {
	return map[string]any{"name": name(prefix), "orderNumber": schema.MaxInt, "sets": schema.MaxInt, "reps": schema.MaxInt,
		"rest": schema.MaxInt, "tempo": pad("4-0", schema.MaxTempo), "notes": pad(prefix, schema.MaxNotes)}
}

var exerciseFields = []string{"id", "name", "orderNumber", "sets", "reps", "rest", "tempo", "notes"}
var changeFields = []string{"changes.name", "changes.orderNumber", "changes.sets", "changes.reps", "changes.rest", "changes.tempo", "changes.notes"}

func prefixed(prefix string, fields []string) []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = prefix + f
	}
	return out
}

const exerciseRow = "id = ? AND name = ? AND order_number = ? AND sets = ? AND reps = ? AND rest_seconds = ? AND tempo = ? AND notes = ?"

// boundCases covers all 17 message types, in an order that runs: the
// creates before what needs their rows, the deletes last.
func boundCases() []boundCase {
	fs := "phases[0].sessions[0].exercises[0]."
	return []boundCase{
		{typ: workout.TypePlanCreate,
			data:   map[string]any{"planId": planID, "name": name("plan"), "clientId": clientID, "trainerId": trainerID, "isActive": true},
			fields: []string{"planId", "name", "clientId", "trainerId"},
			stored: []storedRow{{table: "workout_plans", where: "id = ? AND name = ? AND client_id = ? AND trainer_id = ?", args: []string{"planId", "name", "clientId", "trainerId"}}}},
		{typ: workout.TypePhaseCreate,
			data: map[string]any{"planId": planID, "clientId": clientID, "trainerId": trainerID,
				"phase": map[string]any{"id": phaseID, "name": name("phase"), "orderNumber": schema.MaxInt, "isActive": true}},
			fields: []string{"planId", "clientId", "trainerId", "phase.id", "phase.name", "phase.orderNumber"},
			stored: []storedRow{{table: "workout_phases", where: "id = ? AND plan_id = ? AND name = ? AND order_number = ?", args: []string{"phase.id", "planId", "phase.name", "phase.orderNumber"}}}},
		{typ: workout.TypeSessionCreate,
			data:   map[string]any{"planId": planID, "phaseId": phaseID, "session": map[string]any{"id": sessionID, "name": name("session"), "orderNumber": schema.MaxInt}},
			fields: []string{"planId", "phaseId", "session.id", "session.name", "session.orderNumber"},
			stored: []storedRow{{table: "workout_sessions", where: "id = ? AND phase_id = ? AND name = ? AND order_number = ?", args: []string{"session.id", "phaseId", "session.name", "session.orderNumber"}}}},
		{typ: workout.TypeExerciseCreate,
			data:   map[string]any{"planId": planID, "phaseId": phaseID, "sessionId": sessionID, "exercise": exerciseAtLimit(exID, "exercise")},
			fields: append([]string{"planId", "phaseId", "sessionId"}, prefixed("exercise.", exerciseFields)...),
			stored: []storedRow{{table: "workout_exercises", where: exerciseRow, args: prefixed("exercise.", exerciseFields)}}},
		{typ: workout.TypePhaseUpdate,
			data:   map[string]any{"planId": planID, "phaseId": phaseID, "changes": map[string]any{"name": name("renamed phase"), "orderNumber": schema.MaxInt}},
			fields: []string{"planId", "phaseId", "changes.name", "changes.orderNumber"},
			stored: []storedRow{{table: "workout_phases", where: "id = ? AND name = ? AND order_number = ?", args: []string{"phaseId", "changes.name", "changes.orderNumber"}}}},
		{typ: workout.TypeSessionUpdate,
			data:   map[string]any{"planId": planID, "phaseId": phaseID, "sessionId": sessionID, "changes": map[string]any{"name": name("renamed session"), "orderNumber": schema.MaxInt}},
			fields: []string{"planId", "phaseId", "sessionId", "changes.name", "changes.orderNumber"},
			stored: []storedRow{{table: "workout_sessions", where: "id = ? AND name = ? AND order_number = ?", args: []string{"sessionId", "changes.name", "changes.orderNumber"}}}},
		{typ: workout.TypeExerciseUpdate,
			data:   map[string]any{"planId": planID, "phaseId": phaseID, "sessionId": sessionID, "exerciseId": exID, "changes": changesAtLimit("changed")},
			fields: append([]string{"planId", "phaseId", "sessionId", "exerciseId"}, changeFields...),
			stored: []storedRow{{table: "workout_exercises", where: exerciseRow, args: append([]string{"exerciseId"}, changeFields...)}}},
		{typ: workout.TypeWorkoutUpdate,
			data:   map[string]any{"exercisePlanId": planID, "phaseId": phaseID, "sessionId": sessionID, "exerciseId": exID, "changes": changesAtLimit("legacy")},
			fields: append([]string{"exercisePlanId", "phaseId", "sessionId", "exerciseId"}, changeFields...),
			stored: []storedRow{{table: "workout_exercises", where: exerciseRow, args: append([]string{"exerciseId"}, changeFields...)}}},
		{typ: workout.TypePlanFullSave,
			data: map[string]any{"planId": pad("saved plan", schema.MaxID), "name": name("saved"), "clientId": clientID, "trainerId": trainerID,
				"phases": []any{map[string]any{"id": pad("saved phase", schema.MaxID), "name": name("saved phase"), "orderNumber": schema.MaxInt,
					"sessions": []any{map[string]any{"id": pad("saved session", schema.MaxID), "name": name("saved session"), "orderNumber": schema.MaxInt,
						"exercises": []any{exerciseAtLimit(pad("saved exercise", schema.MaxID), "saved exercise")}}}}}},
			fields: append([]string{"planId", "name", "clientId", "trainerId", "phases[0].id", "phases[0].name", "phases[0].orderNumber",
				"phases[0].sessions[0].id", "phases[0].sessions[0].name", "phases[0].sessions[0].orderNumber"}, prefixed(fs, exerciseFields)...),
			stored: []storedRow{
				{table: "workout_plans", where: "id = ? AND name = ? AND client_id = ? AND trainer_id = ?", args: []string{"planId", "name", "clientId", "trainerId"}},
				{table: "workout_phases", where: "id = ? AND plan_id = ? AND name = ? AND order_number = ?", args: []string{"phases[0].id", "planId", "phases[0].name", "phases[0].orderNumber"}},
				{table: "workout_sessions", where: "id = ? AND name = ? AND order_number = ?", args: []string{"phases[0].sessions[0].id", "phases[0].sessions[0].name", "phases[0].sessions[0].orderNumber"}},
				{table: "workout_exercises", where: exerciseRow, args: prefixed(fs, exerciseFields)},
			}},
		{typ: system.TypeDataSync, id: exportID,
			data:   map[string]any{"planId": planID, "direction": "export"},
			fields: []string{"planId"},
			stored: []storedRow{{table: "data_sync_runs", where: "plan_id = ? AND direction = 'export' AND id = '" + exportID + "'", args: []string{"planId"}}}},
		{typ: system.TypeDataSync,
			data:   map[string]any{"planId": planID, "direction": "import", "runId": exportID},
			fields: []string{"planId", "runId"},
			stored: []storedRow{{table: "data_sync_runs", where: "plan_id = ? AND direction = 'import'", args: []string{"planId"}}}},
		{typ: system.TypeUserAction,
			data:   map[string]any{"userId": userID, "action": name("action"), "details": map[string]any{"k": pad("", schema.MaxDetails-len(`{"k":""}`))}},
			fields: []string{"userId", "action", "details=details.k"},
			stored: []storedRow{{table: "user_actions", where: "user_id = ? AND action = ? AND details = ?", args: []string{"userId", "action", "details"}}}},
		{typ: system.TypeNotification,
			data: map[string]any{"userId": userID, "title": pad("title", schema.MaxTitle), "message": pad("message", schema.MaxMessage),
				"type": "success", "actionUrl": pad("/workouts/", schema.MaxURL)},
			fields: []string{"userId", "title", "message", "actionUrl"},
			stored: []storedRow{{table: "notifications", where: "user_id = ? AND title = ? AND message = ? AND action_url = ?", args: []string{"userId", "title", "message", "actionUrl"}}}},
		{typ: system.TypeEmail,
			data: map[string]any{"to": strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 57) + ".com",
				"subject": pad("subject", schema.MaxSubject), "body": pad("body", schema.MaxBody)},
			fields: []string{"to", "subject", "body"},
			stored: []storedRow{{table: "email_outbox", where: "to_address = ? AND subject = ? AND body = ?", args: []string{"to", "subject", "body"}}}},
		{typ: system.TypeTest, data: map[string]any{"message": "no field of TEST is stored"}},
		{typ: workout.TypeExerciseDelete,
			data:   map[string]any{"planId": planID, "phaseId": phaseID, "sessionId": sessionID, "exerciseId": exID},
			fields: []string{"planId", "phaseId", "sessionId", "exerciseId"},
			stored: []storedRow{{table: "workout_exercises", where: "id = ?", args: []string{"exerciseId"}, n: -1}}},
		{typ: workout.TypeSessionDelete,
			data:   map[string]any{"planId": planID, "phaseId": phaseID, "sessionId": sessionID},
			fields: []string{"planId", "phaseId", "sessionId"},
			stored: []storedRow{{table: "workout_sessions", where: "id = ?", args: []string{"sessionId"}, n: -1}}},
		{typ: workout.TypePhaseDelete,
			data:   map[string]any{"planId": planID, "phaseId": phaseID},
			fields: []string{"planId", "phaseId"},
			stored: []storedRow{{table: "workout_phases", where: "id = ?", args: []string{"phaseId"}, n: -1}}},
	}
}

var step = regexp.MustCompile(`^([A-Za-z]+)(?:\[(\d+)\])?$`)

// at returns the value at path in v and a function that replaces it.
func at(t *testing.T, v any, path string) (any, func(any)) {
	t.Helper()
	parts := strings.Split(path, ".")
	for i, p := range parts {
		m := step.FindStringSubmatch(p)
		require.NotNil(t, m, path)
		obj := v.(map[string]any)
		last := i == len(parts)-1
		if m[2] == "" {
			if last {
				return obj[m[1]], func(x any) { obj[m[1]] = x }
			}
			v = obj[m[1]]
			continue
		}
		n, _ := strconv.Atoi(m[2])
		list := obj[m[1]].([]any)
		if last {
			return list[n], func(x any) { list[n] = x }
		}
		v = list[n]
	}
	panic("unreachable")
}

// clone copies data through JSON, as the envelope carries it.
func clone(t *testing.T, data map[string]any) map[string]any {
	raw, err := json.Marshal(data)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out))
	return out
}

func envelope(t *testing.T, typ string, data map[string]any) []byte {
	raw, err := json.Marshal(map[string]any{"messageType": typ, "timestamp": "2026-01-02T03:04:05Z", "userId": "u", "data": data})
	require.NoError(t, err)
	return raw
}

type okMailer struct{}

func (okMailer) Send(context.Context, system.OutgoingEmail) error { return nil }

// Issue 17, part 3: every field the schema bounds, of every message type,
// is bounded at enqueue with the field named (here through AddJSON, the
// path of `trellis enqueue` and POST /api/enqueue), and a message with
// every such field at its limit is accepted and stored whole.
func TestEveryBoundedFieldAtAndOverItsLimit(t *testing.T) {
	cases := boundCases()
	reg := flow.NewRegistry()
	system.RegisterTypes(reg)
	workout.RegisterTypes(reg)
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.typ] = true
	}
	require.Len(t, covered, len(reg.Types()), "a case for every message type")

	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		// over the limit: refused at enqueue, naming the field
		for _, c := range cases {
			for _, f := range c.fields {
				field, path, _ := strings.Cut(f, "=")
				if path == "" {
					path = field
				}
				data := clone(t, c.data)
				v, set := at(t, data, path)
				switch v := v.(type) {
				case string:
					set(v + "x")
				case float64:
					set(v + 1)
				default:
					t.Fatalf("%s %s: %T", c.typ, path, v)
				}
				_, err := e.Client.AddJSON(ctx, reg, envelope(t, c.typ, data), nil)
				var me *flow.MessageError
				require.True(t, errors.As(err, &me), "%s %s: %v", c.typ, path, err)
				require.Equal(t, field, me.Field, "%s: %v", c.typ, err)
				require.Contains(t, err.Error(), "over the limit", "%s %s", c.typ, path)
			}
		}
		st, err := e.Client.Stats(ctx, nil)
		require.NoError(t, err)
		require.Zero(t, st.Counts.Total(), "nothing was enqueued")

		// at the limits: accepted, run and stored
		e.Start(nil, append(workout.Steps(e.DB), system.Steps(e.DB, system.Options{Mailer: okMailer{}})...)...)
		for i, c := range cases {
			j, err := e.Client.AddJSON(ctx, reg, envelope(t, c.typ, c.data), &flow.NodeOpts{ID: c.id})
			require.NoError(t, err, "%d %s", i, c.typ)
			for _, n := range e.Wait(j.ID).Nodes {
				require.Equal(t, dag.Succeeded, n.State, "%d %s: %s %v", i, c.typ, n.ID, n.Error)
			}
			for _, s := range c.stored {
				args := make([]any, len(s.args))
				for k, p := range s.args {
					v, _ := at(t, c.data, p)
					if m, ok := v.(map[string]any); ok {
						raw, err := json.Marshal(m)
						require.NoError(t, err)
						v = string(raw)
					}
					args[k] = v
				}
				want := max(s.n, 0)
				if s.n == 0 {
					want = 1
				}
				require.Equal(t, want, steptest.Count(t, e.DB, s.table, s.where, args...), "%d %s: %s", i, c.typ, fmt.Sprint(s.table, " ", s.where))
			}
		}
	})
}
