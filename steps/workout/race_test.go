package workout_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/flowtest"
	"github.com/trellisflow/trellis/schema/schematest"
	"github.com/trellisflow/trellis/steps/internal/steptest"
	"github.com/trellisflow/trellis/steps/workout"
)

// RaceOpts gives a missing row 4 to 8 minutes to arrive: the sum of its
// retry delays with the least and the most jitter.
func TestRaceBudget(t *testing.T) {
	t.Parallel()
	sum := func(jitter float64) time.Duration {
		var d time.Duration
		for attempt := 1; attempt < workout.RaceAttempts; attempt++ {
			d += workout.RaceBackoff.Delay(attempt, func() float64 { return jitter }, nil)
		}
		return d
	}
	require.Equal(t, 4*time.Minute, sum(0))
	most := sum(0.999999)
	require.True(t, most < 8*time.Minute && most > 8*time.Minute-time.Second, "at most %s", most)
}

// The seed's promise: "a phase create that runs before its plan exists is
// retried until the plan exists". Here the plan's create runs three minutes
// late (on the harness's fake clock), far past the engine's default policy
// (3 attempts over 6 s); phase creates enqueued through a Queue… helper and
// as a JSON envelope (trellis enqueue, the HTTP API) both land. A plan that
// never comes fails its phase after RaceAttempts, 4 to 8 minutes in.
func TestPhaseCreateWaitsMinutesForItsPlan(t *testing.T) {
	schematest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		h := flowtest.New(t, workout.Steps(db)...)
		c := h.Client()
		reg := flow.NewRegistry()
		workout.RegisterTypes(reg)

		viaGo, err := workout.QueuePhaseCreate(ctx, c, workout.PhaseCreate{PlanID: "p1",
			Phase: workout.PhaseData{ID: "ph1", Name: "Strength", OrderNumber: 1}}, nil)
		require.NoError(t, err)
		viaJSON, err := c.AddJSON(ctx, reg, []byte(`{"messageType":"WORKOUT_PHASE_CREATE","timestamp":"2026-01-01T00:00:00Z",
			"data":{"planId":"p1","phase":{"id":"ph2","name":"Power","orderNumber":2}}}`), nil)
		require.NoError(t, err)
		_, err = workout.QueuePlanCreate(ctx, c, workout.PlanCreate{PlanID: "p1", Name: "Plan", ClientID: "c", TrainerID: "t"},
			&flow.NodeOpts{Delay: 3 * time.Minute})
		require.NoError(t, err)
		h.Drain()
		for _, id := range []string{viaGo.ID, viaJSON.ID} {
			j, err := c.Job(ctx, id)
			require.NoError(t, err)
			require.Equal(t, dag.Succeeded, j.State, "%s: %v", id, j.Error)
			require.Equal(t, workout.RaceAttempts, j.MaxAttempts)
			require.Equal(t, workout.RaceBackoff, j.Backoff)
			require.Greater(t, j.Attempt, 3, "it ran before its plan, more often than the old policy allowed")
		}
		require.GreaterOrEqual(t, h.Elapsed(), 3*time.Minute)

		start := h.Now()
		never, err := workout.QueuePhaseCreate(ctx, c, workout.PhaseCreate{PlanID: "p-never",
			Phase: workout.PhaseData{ID: "ph3", Name: "Lost", OrderNumber: 1}}, nil)
		require.NoError(t, err)
		h.Drain()
		j, err := c.Job(ctx, never.ID)
		require.NoError(t, err)
		require.Equal(t, dag.Failed, j.State)
		require.Equal(t, workout.RaceAttempts, j.Attempt)
		require.Equal(t, "plan p-never not found", j.Error.Message)
		waited := h.Now().Sub(start)
		require.True(t, waited >= 4*time.Minute && waited < 8*time.Minute, "waited %s", waited)
	})
}

// A full plan save enqueued as a JSON envelope retries like one queued
// with QueueFullPlanSave; a delete keeps the client's defaults.
func TestJSONEnvelopesGetTheirTypesRetryPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := steptest.Client(t)
	reg := flow.NewRegistry()
	workout.RegisterTypes(reg)
	j, err := c.AddJSON(ctx, reg, []byte(`{"messageType":"WORKOUT_PLAN_FULL_SAVE","data":{"planId":"p","name":"P","clientId":"c","trainerId":"t","phases":[]}}`), nil)
	require.NoError(t, err)
	n, err := c.Job(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, []any{workout.SturdyAttempts, workout.SturdyBackoff}, []any{n.MaxAttempts, n.Backoff})

	j, err = c.AddJSON(ctx, reg, []byte(`{"messageType":"WORKOUT_PHASE_DELETE","data":{"planId":"p","phaseId":"ph"}}`), nil)
	require.NoError(t, err)
	n, err = c.Job(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, []any{3, flow.Exponential(2 * time.Second)}, []any{n.MaxAttempts, n.Backoff})
}
