package flow

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Batching says how a runner groups the jobs of a batch step.
type Batching struct {
	// Size is the most jobs in one batch. Default 50.
	Size int
	// Linger is how long a runner holding fewer than Size ready jobs of
	// the type waits for more before it runs them. Default 0: it runs what
	// it has at once.
	Linger time.Duration
}

// WithDefaults returns b with zero fields set to their defaults.
func (b Batching) WithDefaults() Batching {
	if b.Size == 0 {
		b.Size = 50
	}
	return b
}

// Validate reports a size under 1 (after defaults) or a negative linger.
func (b Batching) Validate() error {
	if b.Size < 1 {
		return fmt.Errorf("flow: Batching.Size %d must be at least 1", b.Size)
	}
	if b.Linger < 0 {
		return fmt.Errorf("flow: Batching.Linger %s is negative", b.Linger)
	}
	if b.Size > MaxBatch {
		return fmt.Errorf("flow: Batching.Size %d is over %d", b.Size, MaxBatch)
	}
	return nil
}

// MaxBatch is the largest Batching.Size.
const MaxBatch = 1000

// BatchStep runs the jobs of one message type several at a time: a runner
// hands it up to Batching().Size ready jobs of its type at once, so that it
// can write them together (one transaction, multi-row statements). Build
// one with BatchFunc. Each job still has its own outcome, retries, leases
// and record; Run runs a batch of one.
type BatchStep interface {
	Step
	Batching() Batching
	// RunBatch runs jobs together and returns one outcome per job, in
	// their order. An error instead fails every job of the batch (each is
	// retried by its own policy).
	RunBatch(ctx context.Context, jobs []*StepContext) ([]BatchResult, error)
}

// BatchResult is how one job of a batch ended: its result as JSON, or its
// error (Permanent, RetryAfter and Unavailable steer it as for a Step).
type BatchResult struct {
	Result json.RawMessage
	Err    error
}

// Item is one job of a batch as a BatchFunc handler sees it: its context
// and its decoded, validated message.
type Item[M Message] struct {
	*StepContext
	Msg M
}

// ItemResult is the outcome of one Item: its value, or its error.
type ItemResult[R any] struct {
	Value R
	Err   error
}

// BatchFunc adapts a typed batch handler to a BatchStep. The handler gets
// the jobs whose data decodes and validates (the others fail permanently
// on their own) and returns one ItemResult per item, in order; an error
// instead fails them all.
func BatchFunc[M Message, R any](b Batching, fn func(ctx context.Context, items []Item[M]) ([]ItemResult[R], error)) BatchStep {
	var m M
	return &typedBatch[M, R]{typ: m.MessageType(), b: b.WithDefaults(), fn: fn}
}

type typedBatch[M Message, R any] struct {
	typ string
	b   Batching
	fn  func(context.Context, []Item[M]) ([]ItemResult[R], error)
}

func (s *typedBatch[M, R]) MessageType() string { return s.typ }
func (s *typedBatch[M, R]) Batching() Batching  { return s.b }

func (s *typedBatch[M, R]) Run(ctx context.Context, sc *StepContext) (json.RawMessage, error) {
	out, err := s.RunBatch(ctx, []*StepContext{sc})
	if err != nil {
		return nil, err
	}
	return out[0].Result, out[0].Err
}

func (s *typedBatch[M, R]) RunBatch(ctx context.Context, jobs []*StepContext) ([]BatchResult, error) {
	out := make([]BatchResult, len(jobs))
	items := make([]Item[M], 0, len(jobs))
	at := make([]int, 0, len(jobs)) // items[k] is jobs[at[k]]
	for i, sc := range jobs {
		var msg M
		if err := json.Unmarshal(sc.Envelope.Data, &msg); err != nil {
			out[i].Err = Permanent(&MessageError{Type: s.typ, Field: "data", Reason: jsonReason(err)})
			continue
		}
		if err := validate(msg); err != nil {
			out[i].Err = Permanent(err)
			continue
		}
		items = append(items, Item[M]{StepContext: sc, Msg: msg})
		at = append(at, i)
	}
	if len(items) == 0 {
		return out, nil
	}
	res, err := s.fn(ctx, items)
	if err != nil {
		return nil, err
	}
	if len(res) != len(items) {
		return nil, Permanent(fmt.Errorf("flow: the batch step of %s returned %d results for %d jobs", s.typ, len(res), len(items)))
	}
	for k, r := range res {
		o := &out[at[k]]
		if r.Err != nil {
			o.Err = r.Err
			continue
		}
		raw, err := json.Marshal(r.Value)
		if err != nil {
			o.Err = Permanent(fmt.Errorf("encode result: %w", err))
			continue
		}
		o.Result = raw
	}
	return out, nil
}
