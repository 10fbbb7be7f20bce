package workout_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/runner"
	"github.com/trellisflow/trellis/schema/schematest"
	"github.com/trellisflow/trellis/steps/internal/steptest"
	"github.com/trellisflow/trellis/steps/workout"
)

// BenchmarkFullPlanSave runs full plan saves of 1 plan × 4 phases × 5
// sessions × 6 exercises (145 jobs each) through one runner on the real
// Redis and PostgreSQL, and reports jobs per second.
func BenchmarkFullPlanSave(b *testing.B) {
	e := steptest.NewEngine(b, schematest.Postgres(b), steptest.RealRedis(b))
	e.Start(&runner.Config{Concurrency: 32, Lease: 30 * time.Second, IdleWait: 50 * time.Millisecond}, workout.Steps(e.DB)...)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	jobs := 0
	for i := 0; b.Loop(); i++ {
		m := bigPlan(fmt.Sprintf("bench-%d", i), 4, 5, 6)
		j, err := workout.QueueFullPlanSave(ctx, e.Client, m, nil)
		require.NoError(b, err)
		f := e.Wait(j.ID)
		for _, n := range f.Nodes {
			if n.State != dag.Succeeded {
				b.Fatalf("%s is %s", n.ID, n.State)
			}
		}
		jobs += len(f.Nodes)
	}
	b.ReportMetric(float64(jobs)/time.Since(start).Seconds(), "jobs/s")
}
