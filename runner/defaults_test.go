package runner_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/flowtest"
)

// The defaults the seed promised — 3 attempts, exponential backoff from 2s
// (2s, 4s, 8s…) — checked on flowtest's fake clock: the real-Redis suite
// uses small bases because it cannot wait that long.
func TestDefaultRetryPolicy(t *testing.T) {
	t.Parallel()
	h := flowtest.New(t,
		flowtest.Fails[Task](errors.New("database down")),
		flowtest.FailsFirst[Probe](2, errors.New("plan not found"), 7),
	)
	g := flow.New()
	doomed := g.Add(Task{Name: "doomed"}, &flow.NodeOpts{ID: "doomed"})
	g.Add(Probe{N: 1}, &flow.NodeOpts{ID: "after"}).After(doomed)
	g.Add(Probe{N: 2}, &flow.NodeOpts{ID: "flaky"})
	f := h.Run(g)

	h.RequireState("doomed", dag.Failed)
	h.RequireAttempts("doomed", 3)
	h.RequireState("after", dag.Cancelled)
	h.RequireNotRan("after")
	h.RequireSucceeded("flaky")
	h.RequireAttempts("flaky", 3)
	var starts []time.Time
	for _, tr := range h.Job("doomed").Timeline {
		if tr.To == dag.Active {
			starts = append(starts, tr.At)
		}
	}
	require.Len(t, starts, 3)
	require.Equal(t, 2*time.Second, starts[1].Sub(starts[0]), "first retry after 2s")
	require.Equal(t, 4*time.Second, starts[2].Sub(starts[1]), "second after 4s")
	require.Equal(t, 6*time.Second, h.Elapsed(), "both jobs retried in parallel: 2s + 4s of fake time")
	require.Len(t, f.Nodes, 3)
}
