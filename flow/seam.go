package flow

import (
	"context"
	"log/slog"
	"time"

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
	seam.Maintain = func(c any, lease time.Duration, stallLimit int) (time.Time, error) {
		cl := c.(*Client)
		res, err := cl.store.Sync(context.Background(), cl.at(), store.SyncRequest{
			Worker: "maintenance", Lease: lease, StallLimit: stallLimit, Maintain: true, RetainCount: -1,
		})
		return res.NextDue, err
	}
	seam.ObserveRuns = func(c any, typ string, took ...time.Duration) error {
		cl := c.(*Client)
		m := store.NewMinute(cl.wall())
		for _, d := range took {
			m.Observe(cl.cfg.DefaultQueue, typ, store.OutcomeOK, true, d)
		}
		return cl.store.AddMinute(context.Background(), m)
	}
}
