package system_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/steps/internal/steptest"
	"github.com/trellisflow/trellis/steps/system"
	"github.com/trellisflow/trellis/steps/workout"
)

// A USER_ACTION records when the user acted: the envelope's timestamp as
// the client sent it, not when the job was enqueued or ran.
func TestUserActionRecordsWhenTheUserActed(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		e.Start(nil, system.Steps(e.DB, system.Options{})...)
		reg := flow.NewRegistry()
		system.RegisterTypes(reg)
		workout.RegisterTypes(reg)
		j, err := e.Client.AddJSON(ctx, reg, []byte(`{"messageType":"USER_ACTION","timestamp":"2026-01-02T03:04:05.678Z",
			"userId":"user-1","data":{"userId":"user-1","action":"plan.viewed"}}`), nil)
		require.NoError(t, err)
		e.Wait(j.ID)
		require.Equal(t, dag.Succeeded, e.Job(j.ID).State)
		var row schema.UserAction
		require.NoError(t, e.DB.NewSelect().Model(&row).Where("id = ?", j.ID).Scan(ctx))
		acted := time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC)
		require.True(t, acted.Equal(row.ActedAt), "acted at %s", row.ActedAt)
		require.False(t, acted.Equal(row.CreatedAt))

		var env flow.Envelope
		require.NoError(t, json.Unmarshal(e.Job(j.ID).Payload, &env))
		require.True(t, acted.Equal(env.Timestamp), "the job keeps it too")
		require.True(t, env.EnqueuedAt.After(acted), "and records its enqueue time beside it")

		// A message composed in Go was made when it was enqueued.
		j, err = system.SendUserAction(ctx, e.Client, "user-1", "plan.saved", nil)
		require.NoError(t, err)
		e.Wait(j.ID)
		require.NoError(t, json.Unmarshal(e.Job(j.ID).Payload, &env))
		row = schema.UserAction{}
		require.NoError(t, e.DB.NewSelect().Model(&row).Where("id = ?", j.ID).Scan(ctx))
		require.WithinDuration(t, env.EnqueuedAt, row.ActedAt, time.Millisecond)
	})
}
