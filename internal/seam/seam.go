// Package seam connects package flow to its siblings (runner, flowtest and
// the steps' tests) without exporting machinery from flow: flow installs
// these hooks when it is initialised, and the siblings call them. Their
// flow-typed arguments and results travel as any; the callers know the
// types.
package seam

import (
	"log/slog"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/internal/store"
)

var (
	// Store is the Redis store of a *flow.Client.
	Store func(client any) *store.Store
	// NewStepContext makes the *flow.StepContext of one run of job on a
	// *flow.Client; the error says the job's envelope is malformed.
	NewStepContext func(client any, job store.Claimed, logger *slog.Logger) (any, error)
	// Expansion is the sub-graph the step of a *flow.StepContext added,
	// as specs in topological order (nil when it added none).
	Expansion func(sc any) ([]dag.Spec, error)
	// Maintain makes a *flow.Client's store do the maintenance runners do
	// (promote due delayed nodes, recover expired leases, claiming nothing)
	// and returns when it is due next (zero: nothing delayed).
	Maintain func(client any, lease time.Duration, stallLimit int) (time.Time, error)
	// ObserveRuns adds successful runs of message type typ in the default
	// queue, of the given durations, to the current minute's stats of a
	// *flow.Client.
	ObserveRuns func(client any, typ string, took ...time.Duration) error
)
