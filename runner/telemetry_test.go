package runner_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
)

// One trace from the caller's span through the enqueue to every run; each
// run links to its parents' runs.
func TestTracingDiamond(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		client, err := flow.NewClient(h.rdb, &flow.Config{Namespace: h.ns, Logger: quietLogger(), TracerProvider: tp, MeterProvider: mp})
		require.NoError(t, err)

		reqCtx, req := tp.Tracer("test").Start(ctx, "POST /plans")
		g := flow.New()
		a := g.Add(Task{Name: "a"}, &flow.NodeOpts{ID: "a"})
		b := g.Add(Task{Name: "b"}, &flow.NodeOpts{ID: "b"}).After(a)
		c := g.Add(Task{Name: "c"}, &flow.NodeOpts{ID: "c"}).After(a)
		g.Add(Task{Name: "d"}, &flow.NodeOpts{ID: "d"}).After(b, c)
		res, err := client.Enqueue(reqCtx, g)
		require.NoError(t, err)
		req.End()

		r, err := runner.New(client, &runner.Config{Concurrency: 4})
		require.NoError(t, err)
		require.NoError(t, r.Register(h.taskStep()))
		require.NoError(t, r.Start(ctx))
		defer func() { _ = r.Stop(ctx) }()
		h.wait(res.FlowID)
		require.NoError(t, r.Stop(ctx))

		spans := map[string]sdktrace.ReadOnlySpan{}
		runs := map[string]sdktrace.ReadOnlySpan{}
		for _, s := range rec.Ended() {
			spans[s.Name()] = s
			for _, kv := range s.Attributes() {
				if kv.Key == "trellis.job" {
					runs[kv.Value.AsString()] = s
				}
			}
		}
		root, enq := spans["POST /plans"], spans["trellis.enqueue"]
		require.NotNil(t, root)
		require.NotNil(t, enq)
		require.Len(t, runs, 4)
		require.Equal(t, root.SpanContext().SpanID(), enq.Parent().SpanID(), "enqueue is a child of the web request")
		for id, s := range runs {
			require.Equal(t, root.SpanContext().TraceID(), s.SpanContext().TraceID(), "%s is in the request's trace", id)
			require.Equal(t, enq.SpanContext().SpanID(), s.Parent().SpanID(), "%s descends from the enqueue", id)
			require.Equal(t, "trellis.run TEST_TASK", s.Name())
		}
		links := func(id string) []string {
			var out []string
			for _, l := range runs[id].Links() {
				for pid, p := range runs {
					if p.SpanContext().SpanID() == l.SpanContext.SpanID() {
						out = append(out, pid)
					}
				}
			}
			return out
		}
		require.Empty(t, links("a"))
		require.Equal(t, []string{"a"}, links("b"))
		require.Equal(t, []string{"a"}, links("c"))
		require.ElementsMatch(t, []string{"b", "c"}, links("d"))

		var rm metricdata.ResourceMetrics
		require.NoError(t, reader.Collect(ctx, &rm))
		names := map[string]bool{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				names[m.Name] = true
				if m.Name == "trellis_steps_total" {
					sum := m.Data.(metricdata.Sum[int64])
					var total int64
					for _, dp := range sum.DataPoints {
						total += dp.Value
					}
					require.Equal(t, int64(4), total)
				}
			}
		}
		require.True(t, names["trellis_step_duration_seconds"])
		require.True(t, names["trellis_queue_wait_seconds"])
	})
}
