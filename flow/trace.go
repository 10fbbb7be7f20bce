package flow

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TracerName names the tracer Trellis uses.
const TracerName = "github.com/trellisflow/trellis"

// Traceparent returns the W3C traceparent of ctx's span, or "".
func Traceparent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// SpanContext parses a traceparent; the zero SpanContext when invalid.
func SpanContext(traceparent string) trace.SpanContext {
	if traceparent == "" {
		return trace.SpanContext{}
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent})
	return trace.SpanContextFromContext(ctx)
}

// startEnqueueSpan opens the span every node of this enqueue descends from.
func (c *Client) startEnqueueSpan(ctx context.Context, flowID string, nodes int) (context.Context, trace.Span) {
	if c.cfg.TracerProvider == nil {
		return ctx, nil
	}
	return c.cfg.TracerProvider.Tracer(TracerName).Start(ctx, "trellis.enqueue",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("trellis.flow", flowID), attribute.Int("trellis.nodes", nodes)))
}

func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
