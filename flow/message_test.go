package flow_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/embedded"
	"github.com/trellisflow/trellis/flow"
)

// A JSON envelope keeps the client's timestamp (when the user acted) and
// records the enqueue time beside it; an envelope without one, and a
// message composed in Go, carry the enqueue time in both.
func TestEnvelopeKeepsTheClientsTimestamp(t *testing.T) {
	t.Parallel()
	er, err := embedded.NewRedis()
	require.NoError(t, err)
	t.Cleanup(func() { _ = er.Close() })
	enqueued := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	c, err := flow.NewClient(er.Client(), &flow.Config{Namespace: "stamps", Clock: func() time.Time { return enqueued },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	reg := flow.NewRegistry()
	flow.RegisterType[Greeting](reg)
	ctx := context.Background()
	envelope := func(id string) flow.Envelope {
		t.Helper()
		j, err := c.Job(ctx, id)
		require.NoError(t, err)
		var env flow.Envelope
		require.NoError(t, json.Unmarshal(j.Payload, &env))
		return env
	}

	// The client says when; a client-sent enqueuedAt is not believed.
	j, err := c.AddJSON(ctx, reg, []byte(`{"messageType":"GREETING","timestamp":"2026-01-02T03:04:05.678+01:00",
		"enqueuedAt":"1999-01-01T00:00:00Z","data":{"to":"Ann"}}`), &flow.NodeOpts{ID: "sent"})
	require.NoError(t, err)
	env := envelope(j.ID)
	require.Equal(t, time.Date(2026, 1, 2, 2, 4, 5, 678e6, time.UTC), env.Timestamp)
	require.Equal(t, enqueued, env.EnqueuedAt)

	// The same message and ID again, at another time, is the same job.
	again, err := c.AddJSON(ctx, reg, []byte(`{"messageType":"GREETING","timestamp":"2026-01-02T09:00:00Z","data":{"to":"Ann"}}`), &flow.NodeOpts{ID: "sent"})
	require.NoError(t, err)
	require.True(t, again.Existed)

	j, err = c.AddJSON(ctx, reg, []byte(`{"messageType":"GREETING","data":{"to":"Bea"}}`), nil)
	require.NoError(t, err)
	env = envelope(j.ID)
	require.Equal(t, []time.Time{enqueued, enqueued}, []time.Time{env.Timestamp, env.EnqueuedAt}, "no timestamp: the enqueue time")

	j, err = c.Add(ctx, Greeting{To: "Cy"}, nil)
	require.NoError(t, err)
	env = envelope(j.ID)
	require.Equal(t, []time.Time{enqueued, enqueued}, []time.Time{env.Timestamp, env.EnqueuedAt})

	acted := time.Date(2026, 3, 4, 5, 0, 0, 0, time.UTC)
	j, err = c.Add(ctx, flow.WithTimestamp(Greeting{To: "Di"}, acted), nil)
	require.NoError(t, err)
	env = envelope(j.ID)
	require.Equal(t, []time.Time{acted, enqueued}, []time.Time{env.Timestamp, env.EnqueuedAt})
	require.JSONEq(t, `{"to":"Di","times":0}`, string(env.Data))

	_, err = c.Add(ctx, flow.WithTimestamp(Greeting{}, acted), nil)
	require.ErrorContains(t, err, "field to: is required", "the wrapped message is still validated")
}
