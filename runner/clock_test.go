package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/testredis"
)

type Slow struct{ N int }

func (Slow) MessageType() string { return "TEST_SLOW" }

// TestSkewedRunnerCannotStealLeases: a second runner whose machine clock is
// 20 s ahead does not decide that the first runner's 3 s lease expired,
// because leases are decided by Redis's clock, not the caller's.
func TestSkewedRunnerCannotStealLeases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := fmt.Sprintf("skew-%06x", rand.IntN(1<<24))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	client, err := flow.NewClient(testredis.Client(t), &flow.Config{Namespace: ns, Development: true, Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = client.Clear(context.Background()) })

	started := make(chan string, 4)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	var runs atomic.Int32
	step := func(id string) func(context.Context, *flow.StepContext, Slow) (int, error) {
		return func(ctx context.Context, _ *flow.StepContext, m Slow) (int, error) {
			runs.Add(1)
			started <- id
			select {
			case <-release:
				return m.N, nil
			case <-ctx.Done():
				return 0, context.Cause(ctx)
			}
		}
	}
	newRunner := func(id string, skew time.Duration) *Runner {
		r, err := New(client, &Config{ID: id, Lease: 3 * time.Second, Concurrency: 1, IdleWait: 100 * time.Millisecond})
		require.NoError(t, err)
		r.machine = func() time.Time { return time.Now().Add(skew) }
		require.NoError(t, Handle(r, step(id)))
		require.NoError(t, r.Start(ctx))
		t.Cleanup(func() { _ = r.Stop(context.Background()) })
		t.Cleanup(free) // before Stop: let a step that ran wrongly end
		return r
	}
	newRunner("honest", 0)
	job, err := client.Add(ctx, Slow{N: 7}, &flow.NodeOpts{ID: "slow-1"})
	require.NoError(t, err)
	select {
	case w := <-started:
		require.Equal(t, "honest", w)
	case <-time.After(30 * time.Second):
		t.Fatal("the job never started")
	}
	newRunner("ahead", 20*time.Second)
	// the skewed runner maintains (recovers expired leases) every 250 ms;
	// give it well over a lease's worth of chances to steal the job
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case w := <-started:
			t.Fatalf("runner %s ran the job while the honest runner held its lease", w)
		case <-time.After(100 * time.Millisecond):
		}
	}
	free()
	f, err := client.Wait(ctx, job.ID)
	require.NoError(t, err)
	n := f.Nodes[0]
	require.Equal(t, dag.Succeeded, n.State)
	require.Equal(t, 1, n.Attempt)
	require.Zero(t, n.Stalls)
	require.Equal(t, int32(1), runs.Load())
}
