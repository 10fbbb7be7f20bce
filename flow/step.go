package flow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/trellisflow/trellis/internal/store"

	"github.com/trellisflow/trellis/dag"
)

// Step runs the jobs of one message type. Build one with StepFunc.
type Step interface {
	MessageType() string
	// Run decodes the job's message and runs the handler; it returns the
	// result as JSON.
	Run(ctx context.Context, sc *StepContext) (json.RawMessage, error)
}

// StepFunc adapts a typed handler to a Step: the handler receives its typed
// message (decoded from the envelope's data, then validated; invalid data is
// a permanent failure) and returns a typed result, stored as JSON for the
// node's children.
func StepFunc[M Message, R any](fn func(ctx context.Context, sc *StepContext, msg M) (R, error)) Step {
	var m M
	return &typedStep[M, R]{typ: m.MessageType(), fn: fn}
}

type typedStep[M Message, R any] struct {
	typ string
	fn  func(context.Context, *StepContext, M) (R, error)
}

func (s *typedStep[M, R]) MessageType() string { return s.typ }

func (s *typedStep[M, R]) Run(ctx context.Context, sc *StepContext) (json.RawMessage, error) {
	var msg M
	if err := json.Unmarshal(sc.Envelope.Data, &msg); err != nil {
		return nil, Permanent(&MessageError{Type: s.typ, Field: "data", Reason: jsonReason(err)})
	}
	if err := validate(msg); err != nil {
		return nil, Permanent(err)
	}
	res, err := s.fn(ctx, sc, msg)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(res)
	if err != nil {
		return nil, Permanent(fmt.Errorf("encode result: %w", err))
	}
	return out, nil
}

// StepContext is a running job as its step sees it.
type StepContext struct {
	JobID       string
	FlowID      string
	Type        string
	Attempt     int // 1 on the first run
	MaxAttempts int
	Envelope    Envelope
	Logger      *slog.Logger
	// Batch names the batch this run is part of ("runner/number", and how
	// many jobs it held) when the job's step is a BatchStep; "" otherwise.
	Batch string

	parentIDs []string
	client    *Client

	mu        sync.Mutex
	parents   []ParentInfo
	expansion *Graph
}

// newStepContext builds the context for one run of job (seam.NewStepContext).
func newStepContext(client *Client, job store.Claimed, logger *slog.Logger) (*StepContext, error) {
	sc := &StepContext{
		JobID: job.ID, FlowID: job.FlowID, Type: job.Type,
		Attempt: job.Attempt, MaxAttempts: job.MaxAttempts,
		Logger: logger, parentIDs: job.Parents, client: client,
	}
	if sc.Logger == nil {
		sc.Logger = slog.Default()
	}
	if err := decodeEnvelope(job.Payload, &sc.Envelope); err != nil {
		return sc, Permanent(&MessageError{Type: job.Type, Reason: "malformed envelope: " + jsonReason(err)})
	}
	return sc, nil
}

// ParentInfo is a parent job as a child sees it.
type ParentInfo struct {
	ID     string
	State  dag.State
	Result json.RawMessage
	Error  *dag.ErrorInfo
}

// Parents reads the parents' states and results (once; later calls reuse it).
func (sc *StepContext) Parents(ctx context.Context) ([]ParentInfo, error) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.parents != nil || len(sc.parentIDs) == 0 {
		return sc.parents, nil
	}
	peeks, err := sc.client.store.Peek(ctx, sc.parentIDs)
	if err != nil {
		return nil, err
	}
	sc.parents = make([]ParentInfo, len(peeks))
	for i, p := range peeks {
		sc.parents[i] = ParentInfo{ID: p.ID, State: p.State, Result: p.Result, Error: p.Error}
	}
	return sc.parents, nil
}

// ParentResult decodes the result of parent id into v.
func (sc *StepContext) ParentResult(ctx context.Context, id string, v any) error {
	parents, err := sc.Parents(ctx)
	if err != nil {
		return err
	}
	for _, p := range parents {
		if p.ID == id {
			if len(p.Result) == 0 {
				return fmt.Errorf("parent %q has no result (it is %s)", id, p.State)
			}
			return json.Unmarshal(p.Result, v)
		}
	}
	return fmt.Errorf("%q is not a parent of job %q", id, sc.JobID)
}

// ParentResult decodes the result of the step's parent id as T.
func ParentResult[T any](ctx context.Context, sc *StepContext, id string) (T, error) {
	var v T
	err := sc.ParentResult(ctx, id, &v)
	return v, err
}

// Expand adds g to this job's flow when the step succeeds. The job then
// finishes only when g's sinks are done (it fails if one of them fails), and
// the job's children wait for it. If the step fails, g is discarded, so a
// retried step can expand again. Call it at most once per run. An invalid g
// is refused with a permanent error (see Permanent): running the step again
// would build the same graph.
func (sc *StepContext) Expand(g *Graph) error {
	if g == nil || g.Len() == 0 {
		return Permanent(dag.ErrEmptyGraph)
	}
	for _, n := range g.nodes {
		for _, p := range n.parents {
			if p == sc.JobID {
				return Permanent(&dag.InvalidNodeError{ID: n.id, Field: "dependency", Reason: "a sub-graph cannot depend on the job that expands it; it runs after the job's step"})
			}
		}
	}
	if _, err := sc.client.specs(g, sc.client.wall()); err != nil {
		return Permanent(err)
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.expansion != nil {
		return Permanent(errors.New("flow: Expand called twice in one run"))
	}
	sc.expansion = g
	return nil
}

// grown is the sub-graph a step added with Expand, as specs in
// topological order, for the runner to write with the job's completion
// (seam.Expansion).
func (sc *StepContext) grown() ([]dag.Spec, error) {
	sc.mu.Lock()
	g := sc.expansion
	sc.mu.Unlock()
	if g == nil {
		return nil, nil
	}
	return sc.client.specs(g, sc.client.wall())
}

// Condition evaluates a When expression for this job's parents, compiling
// it once per process.
func (sc *StepContext) Condition(ctx context.Context, src string) (bool, error) {
	cond, err := cachedCondition(src, sc.parentIDs)
	if err != nil {
		return false, err
	}
	parents, err := sc.Parents(ctx)
	if err != nil {
		return false, err
	}
	env := ConditionEnv{Parents: make(map[string]ConditionParent, len(parents))}
	for _, p := range parents {
		cp := ConditionParent{State: string(p.State), Result: decodeAny(p.Result)}
		if p.Error != nil {
			cp.Error = p.Error.Message
		}
		env.Parents[p.ID] = cp
	}
	if m, ok := decodeAny(sc.Envelope.Data).(map[string]any); ok {
		env.Message = m
	}
	return cond.evalBounded(ctx, env)
}

// Clock is the time of the job's client: its Config.Clock, or the machine's.
func (sc *StepContext) Clock() time.Time { return sc.client.wall() }
