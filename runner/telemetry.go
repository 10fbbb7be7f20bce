package runner

import (
	"context"
	"time"

	"github.com/trellisflow/trellis/internal/store"
	"github.com/trellisflow/trellis/internal/tracing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/trellisflow/trellis/flow"
)

// startRunSpan opens a node run's span: a child of the enqueue span whose
// traceparent travelled in the job, linked to the parents' run spans.
func (r *Runner) startRunSpan(ctx context.Context, c *store.Claimed) (context.Context, trace.Span) {
	tp := r.client.Config().TracerProvider
	if tp == nil {
		return ctx, nil
	}
	if parent := tracing.SpanContext(c.Trace); parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	var links []trace.Link
	if len(c.Parents) > 0 {
		if peeks, err := r.store.Peek(ctx, c.Parents); err == nil {
			for _, p := range peeks {
				if sc := tracing.SpanContext(p.Span); sc.IsValid() {
					links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("trellis.parent", p.ID)}})
				}
			}
		}
	}
	return tp.Tracer(flow.TracerName).Start(ctx, "trellis.run "+c.Type,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("trellis.job", c.ID), attribute.String("trellis.type", c.Type),
			attribute.String("trellis.flow", c.FlowID), attribute.String("trellis.queue", c.Queue),
			attribute.Int("trellis.attempt", c.Attempt)))
}

func endRunSpan(span trace.Span, out *store.Outcome, err error) {
	if span == nil {
		return
	}
	if out != nil {
		span.SetAttributes(attribute.String("trellis.outcome", string(out.Kind)))
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// observers fans step events out to several observers.
type observers []Observer

func (o observers) StepStarted(run Run, queuedFor time.Duration) {
	for _, x := range o {
		x.StepStarted(run, queuedFor)
	}
}

func (o observers) StepFinished(run Run, kind Outcome, took time.Duration, err error) {
	for _, x := range o {
		x.StepFinished(run, kind, took, err)
	}
}

func (o observers) Stalled(ids []string) {
	for _, x := range o {
		x.Stalled(ids)
	}
}

// otelMetrics records step runs through the OpenTelemetry metric API, under
// the names the Prometheus exporter in package monitor uses.
type otelMetrics struct {
	duration metric.Float64Histogram
	wait     metric.Float64Histogram
	steps    metric.Int64Counter
	retries  metric.Int64Counter
	stalls   metric.Int64Counter
}

func newOtelMetrics(mp metric.MeterProvider) (*otelMetrics, error) {
	m := mp.Meter(flow.TracerName)
	var o otelMetrics
	var err error
	if o.duration, err = m.Float64Histogram("trellis_step_duration_seconds", metric.WithUnit("s"), metric.WithDescription("How long step runs took, by message type and outcome.")); err != nil {
		return nil, err
	}
	if o.wait, err = m.Float64Histogram("trellis_queue_wait_seconds", metric.WithUnit("s"), metric.WithDescription("Time from ready to started, by message type.")); err != nil {
		return nil, err
	}
	if o.steps, err = m.Int64Counter("trellis_steps_total", metric.WithDescription("Finished step runs, by message type and outcome.")); err != nil {
		return nil, err
	}
	if o.retries, err = m.Int64Counter("trellis_retries_total", metric.WithDescription("Step runs that failed and will be retried, by message type.")); err != nil {
		return nil, err
	}
	if o.stalls, err = m.Int64Counter("trellis_stalls_total", metric.WithDescription("Leases this process lost while its steps ran.")); err != nil {
		return nil, err
	}
	return &o, nil
}

func (o *otelMetrics) StepStarted(job Run, queuedFor time.Duration) {
	o.wait.Record(context.Background(), queuedFor.Seconds(), metric.WithAttributes(attribute.String("type", job.Type)))
}

func (o *otelMetrics) StepFinished(job Run, kind Outcome, took time.Duration, _ error) {
	attrs := metric.WithAttributes(attribute.String("type", job.Type), attribute.String("outcome", string(kind)))
	o.duration.Record(context.Background(), took.Seconds(), attrs)
	o.steps.Add(context.Background(), 1, attrs)
	if kind == OutcomeRetry {
		o.retries.Add(context.Background(), 1, metric.WithAttributes(attribute.String("type", job.Type)))
	}
}

func (o *otelMetrics) Stalled(ids []string) { o.stalls.Add(context.Background(), int64(len(ids))) }
