package flow

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// TracerName names the tracer Trellis uses.
const TracerName = "github.com/trellisflow/trellis"

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
