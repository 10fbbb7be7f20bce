package flowtest

import (
	"context"
	"encoding/json"

	"github.com/trellisflow/trellis/flow"
)

// Returns is a stub step for message type M that succeeds with result. The
// message is still decoded and validated, as the real step's would be.
func Returns[M flow.Message](result any) flow.Step {
	return flow.StepFunc(func(context.Context, *flow.StepContext, M) (any, error) {
		return result, nil
	})
}

// Fails is a stub step for message type M that fails every run with err.
// The engine retries it with the node's backoff until its attempts are
// spent; wrap err in flow.Permanent to fail at once.
func Fails[M flow.Message](err error) flow.Step {
	return flow.StepFunc(func(context.Context, *flow.StepContext, M) (any, error) {
		return nil, err
	})
}

// FailsFirst is a stub step for message type M that fails its first n
// attempts with err, then succeeds with result: a flaky dependency.
func FailsFirst[M flow.Message](n int, err error, result any) flow.Step {
	return flow.StepFunc(func(_ context.Context, sc *flow.StepContext, _ M) (any, error) {
		if sc.Attempt <= n {
			return nil, err
		}
		return result, nil
	})
}

// Next runs the wrapped step.
type Next func(ctx context.Context) (json.RawMessage, error)

// Wrap returns step with fn around each run: fn may look at the job, change
// the context, call next (or not), and change the result or error.
//
//	flowtest.Wrap(emailStep, func(ctx context.Context, sc *flow.StepContext, next flowtest.Next) (json.RawMessage, error) {
//		if sc.Attempt == 1 {
//			return nil, errors.New("SMTP timeout")
//		}
//		return next(ctx)
//	})
func Wrap(step flow.Step, fn func(ctx context.Context, sc *flow.StepContext, next Next) (json.RawMessage, error)) flow.Step {
	return &wrapped{step: step, fn: fn}
}

type wrapped struct {
	step flow.Step
	fn   func(context.Context, *flow.StepContext, Next) (json.RawMessage, error)
}

func (w *wrapped) MessageType() string { return w.step.MessageType() }

func (w *wrapped) Run(ctx context.Context, sc *flow.StepContext) (json.RawMessage, error) {
	return w.fn(ctx, sc, func(ctx context.Context) (json.RawMessage, error) { return w.step.Run(ctx, sc) })
}
