package flow_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
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

// patient is a message type that carries its own retry policy.
type patient struct {
	N int `json:"n"`
}

func (patient) MessageType() string { return "PATIENT" }

func (patient) DefaultOpts() flow.NodeOpts {
	b := flow.Exponential(time.Second).WithMax(time.Minute)
	return flow.NodeOpts{Attempts: 20, Backoff: &b, Timeout: time.Minute, Priority: 9}
}

// A message type's own options fill what the caller leaves unset, through
// AddJSON and DefaultedOpts; the caller's options win; other types keep
// the client's defaults.
func TestMessageTypesCarryTheirDefaultOptions(t *testing.T) {
	t.Parallel()
	er, err := embedded.NewRedis()
	require.NoError(t, err)
	t.Cleanup(func() { _ = er.Close() })
	c, err := flow.NewClient(er.Client(), &flow.Config{Namespace: "defaults", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	reg := flow.NewRegistry()
	flow.RegisterType[patient](reg)
	flow.RegisterType[Greeting](reg)
	ctx := context.Background()
	spec := func(j flow.EnqueuedJob, err error) *dag.Node {
		t.Helper()
		require.NoError(t, err)
		n, err := c.Job(ctx, j.ID)
		require.NoError(t, err)
		return n
	}
	slow := flow.Exponential(time.Second).WithMax(time.Minute)

	n := spec(c.AddJSON(ctx, reg, []byte(`{"messageType":"PATIENT","data":{"n":1}}`), nil))
	require.Equal(t, 20, n.MaxAttempts)
	require.Equal(t, slow, n.Backoff)
	require.Equal(t, time.Minute, n.Timeout)
	require.Zero(t, n.Priority, "only attempts, backoff and timeout are defaults")

	fixed := flow.Fixed(time.Second)
	n = spec(c.AddJSON(ctx, reg, []byte(`{"messageType":"PATIENT","data":{"n":2}}`), &flow.NodeOpts{Attempts: 2, Backoff: &fixed}))
	require.Equal(t, 2, n.MaxAttempts, "the caller's options win")
	require.Equal(t, fixed, n.Backoff)
	require.Equal(t, time.Minute, n.Timeout)

	n = spec(c.AddJSON(ctx, reg, []byte(`{"messageType":"GREETING","data":{"to":"Ann"}}`), nil))
	require.Equal(t, 3, n.MaxAttempts, "no defaults of its own: the client's")
	require.Equal(t, flow.Exponential(2*time.Second), n.Backoff)

	n = spec(c.Add(ctx, patient{N: 3}, flow.DefaultedOpts(flow.WithTimestamp(patient{N: 3}, time.Now()), &flow.NodeOpts{ID: "go"})))
	require.Equal(t, []any{"go", 20, slow}, []any{n.ID, n.MaxAttempts, n.Backoff})
}
