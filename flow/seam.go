package flow

import (
	"log/slog"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/internal/store"
)

// The machinery flow shares with its sibling packages, through the seam.
func init() {
	seam.Store = func(c any) *store.Store { return c.(*Client).store }
	seam.NewStepContext = func(c any, job store.Claimed, logger *slog.Logger) (any, error) {
		return newStepContext(c.(*Client), job, logger)
	}
	seam.Expansion = func(sc any) ([]dag.Spec, error) { return sc.(*StepContext).grown() }
}
