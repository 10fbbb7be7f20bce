package dag

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// State is where a node is in its lifecycle.
//
//	blocked ──parents done──► ready ◄── delayed (backoff or delay elapsed)
//	                            │ claim (lease)
//	                            ▼
//	                          active ─► succeeded | failed | (retry ─► delayed/ready)
//	                                   (lease expired ─► ready, stall count +1)
//	any non-terminal state ──parent outcome / condition false / cancel──► skipped | cancelled | failed
//
// Succeeded, Failed, Skipped and Cancelled are terminal.
type State string

const (
	Blocked   State = "blocked"   // waiting for parents (or, after expansion, for its sub-graph)
	Ready     State = "ready"     // claimable; BullMQ's "waiting"
	Delayed   State = "delayed"   // ready once its due time passes (delay or backoff)
	Active    State = "active"    // claimed by a runner holding a lease
	Succeeded State = "succeeded" // BullMQ's "completed"
	Failed    State = "failed"
	Skipped   State = "skipped"
	Cancelled State = "cancelled"
)

// Transitions are the legal moves of a node's state, as data: from each
// state (Created for a node's creation), the states it may move to. Every
// transition the scripts make is one of them; the random-run property test
// holds every event of the stream to this table.
//
//	created   → blocked | ready | delayed (parents, delay) · skipped | cancelled (a parent ended so at enqueue)
//	blocked   → ready | delayed (parents done) · succeeded | failed (an expanded node's sub-graph ended) · skipped | cancelled
//	ready     → active (claim) · blocked (a parent retried) · skipped | cancelled
//	delayed   → ready (due) · blocked (a parent retried) · skipped | cancelled
//	active    → succeeded | failed | skipped (the step's outcome) · ready | delayed (retry, stall, hand-back) · blocked (expanded) · cancelled
//	failed, cancelled, skipped → blocked (retry)
//	succeeded → (none: a retry reopens only failed and cancelled jobs and what they ended)
var Transitions = map[State][]State{
	Created:   {Blocked, Ready, Delayed, Skipped, Cancelled},
	Blocked:   {Ready, Delayed, Succeeded, Failed, Skipped, Cancelled},
	Ready:     {Active, Blocked, Skipped, Cancelled},
	Delayed:   {Ready, Blocked, Skipped, Cancelled},
	Active:    {Succeeded, Failed, Skipped, Ready, Delayed, Blocked, Cancelled},
	Failed:    {Blocked},
	Cancelled: {Blocked},
	Skipped:   {Blocked},
	Succeeded: {},
}

// Created is the "from" of a node's first transition: its creation.
const Created State = ""

// CanMove reports whether a node may move from one state to another.
func CanMove(from, to State) bool { return slices.Contains(Transitions[from], to) }

// States lists every state in lifecycle order.
var States = []State{Blocked, Ready, Delayed, Active, Succeeded, Failed, Skipped, Cancelled}

// Terminal reports whether no further transition happens without a manual retry.
func (s State) Terminal() bool {
	return s == Succeeded || s == Failed || s == Skipped || s == Cancelled
}

// Policy decides what a node does when a parent does not succeed.
type Policy string

const (
	// Require (the default): run only if every parent succeeded. A failed or
	// cancelled parent cancels the node, a skipped parent skips it.
	Require Policy = "require"
	// Ignore: run once every parent is terminal, whatever the outcome.
	Ignore Policy = "ignore"
	// Skip: any parent that does not succeed skips the node.
	Skip Policy = "skip"
)

// Valid reports whether p is one of the known policies.
func (p Policy) Valid() bool { return p == Require || p == Ignore || p == Skip }

// BackoffKind selects how the delay before a retry grows.
type BackoffKind string

const (
	Exponential BackoffKind = "exponential" // base·2^(attempt-1): 2s, 4s, 8s with the default base
	Fixed       BackoffKind = "fixed"       // base every time
	Custom      BackoffKind = "custom"      // a function registered on the runner under Name
)

// Backoff is the persisted retry-delay policy of a node.
type Backoff struct {
	Kind   BackoffKind   `json:"k,omitempty"`
	Base   time.Duration `json:"b,omitempty"`
	Max    time.Duration `json:"m,omitempty"`
	Jitter bool          `json:"j,omitempty"`
	Name   string        `json:"n,omitempty"`
}

// Spec is a node as it is enqueued: everything the caller decides.
type Spec struct {
	ID          string          `json:"-"`
	Type        string          `json:"-"`
	Payload     json.RawMessage `json:"e"`
	Parents     []string        `json:"p,omitempty"`
	MaxAttempts int             `json:"-"`
	Backoff     Backoff         `json:"bo,omitzero"`
	Timeout     time.Duration   `json:"to,omitempty"`
	Priority    int             `json:"-"`
	Delay       time.Duration   `json:"-"`
	Queue       string          `json:"-"`
	Policy      Policy          `json:"-"`
	When        string          `json:"w,omitempty"`
	// Trace carries a W3C traceparent from the enqueuer to the runners.
	Trace string `json:"tr,omitempty"`
	// Label is a short name for people (a plan's or an exercise's), shown
	// in place of the ID in pictures of the flow; empty for none.
	Label string `json:"lb,omitempty"`
	// Identity decides whether a re-enqueue of the same ID is the same job:
	// equal identities return the existing node, different ones conflict.
	// Empty means a hash of the payload and options.
	Identity string `json:"-"`
	// Fresh says the ID was just generated and cannot exist yet, so enqueue
	// skips the idempotency check; it only looks up the call's first such
	// ID, which exists when the client sent the same call twice (a retry
	// after a read timeout).
	Fresh bool `json:"-"`
}

// Transition is one entry of a node's timeline.
type Transition struct {
	To      State     `json:"to"`
	At      time.Time `json:"at"`
	Attempt int       `json:"attempt"`
	Worker  string    `json:"worker,omitempty"`
	// Batch names the batch of a batch step's run that this change ended.
	Batch string `json:"batch,omitempty"`
}

// ErrorInfo is the last error a node's step returned.
type ErrorInfo struct {
	Message string `json:"message"`
	Stack   string `json:"stack,omitempty"`
	Attempt int    `json:"attempt"`
	// Logs are the step's log records of that attempt, in a node's error
	// history (Node.Errors) only: Node.Logs has the last run's.
	Logs string `json:"logs,omitempty"`
}

// Node is a persisted node with its current state.
type Node struct {
	Spec
	FlowID   string          `json:"flowId"`
	State    State           `json:"state"`
	Attempt  int             `json:"attempt"`
	Stalls   int             `json:"stalls"`
	Pending  int             `json:"pending"` // parents a blocked node waits for; 0 in other states
	Children []string        `json:"children,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    *ErrorInfo      `json:"error,omitempty"`
	// Errors are the errors of its failed attempts since it was enqueued
	// (or retried by hand), oldest first, the last 25, each message cut to
	// 1 KiB, its stack and its step logs to 2 KiB each (Error has the last
	// one whole).
	Errors []ErrorInfo `json:"errors,omitempty"`
	// Reason says why a node was cancelled, skipped or failed without an error
	// of its own ("parent plan failed", "condition false", "stalled 3 times").
	Reason   string       `json:"reason,omitempty"`
	Cause    string       `json:"cause,omitempty"`
	Worker   string       `json:"worker,omitempty"`
	Timeline []Transition `json:"timeline"`
	// Expanded is true for a node whose step added a sub-graph; it finishes
	// when that sub-graph does.
	Expanded bool `json:"expanded,omitempty"`
	// Logs are the records the step logged through its StepContext.Logger
	// in its last reported run (at most 8 KiB).
	Logs string `json:"logs,omitempty"`
	// Batch names the batch its last reported run was part of, when its
	// step is a batch step: "runner/number of size".
	Batch string `json:"batch,omitempty"`
}

// CreatedAt is the time of the node's first transition.
func (n *Node) CreatedAt() time.Time {
	if len(n.Timeline) == 0 {
		return time.Time{}
	}
	return n.Timeline[0].At
}

// FinishedAt is the time the node became terminal, or zero.
func (n *Node) FinishedAt() time.Time {
	if !n.State.Terminal() || len(n.Timeline) == 0 {
		return time.Time{}
	}
	return n.Timeline[len(n.Timeline)-1].At
}

// StartedAt is the time of the node's last claim, or zero.
func (n *Node) StartedAt() time.Time {
	for i := len(n.Timeline) - 1; i >= 0; i-- {
		if n.Timeline[i].To == Active {
			return n.Timeline[i].At
		}
	}
	return time.Time{}
}

// Flow is a whole graph: its nodes (with their children) in a stable order.
type Flow struct {
	ID    string  `json:"id"`
	Nodes []*Node `json:"nodes"`
}

// Done reports whether every node of the flow is terminal.
func (f *Flow) Done() bool {
	for _, n := range f.Nodes {
		if !n.State.Terminal() {
			return false
		}
	}
	return true
}

// Counts returns the number of nodes in each state.
func (f *Flow) Counts() map[State]int {
	c := make(map[State]int, len(States))
	for _, n := range f.Nodes {
		c[n.State]++
	}
	return c
}

// WithMax caps the delay at max.
func (b Backoff) WithMax(max time.Duration) Backoff { b.Max = max; return b }

// WithJitter randomises each delay between half and all of it, so retries
// of many nodes that failed together spread out.
func (b Backoff) WithJitter() Backoff { b.Jitter = true; return b }

// Delay is the retry timing, a pure function: the delay after the given
// failed attempt (1-based). jitter draws from [0, 1) (nil: math/rand);
// custom resolves Custom backoffs by name. The result is capped by Max
// when set.
func (b Backoff) Delay(attempt int, jitter func() float64, custom func(name string) func(attempt int) time.Duration) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	var d time.Duration
	switch b.Kind {
	case Fixed:
		d = b.Base
	case Custom:
		if custom != nil {
			if fn := custom(b.Name); fn != nil {
				d = fn(attempt)
			}
		}
	default:
		f := float64(b.Base) * math.Pow(2, float64(attempt-1))
		if f > float64(math.MaxInt64/2) {
			f = float64(math.MaxInt64 / 2)
		}
		d = time.Duration(f)
	}
	if b.Max > 0 && d > b.Max {
		d = b.Max
	}
	if b.Jitter && d > 0 {
		if jitter == nil {
			jitter = rand.Float64
		}
		// "equal jitter": keep half, randomise the other half
		d = d/2 + time.Duration(jitter()*float64(d/2))
	}
	if d < 0 {
		d = 0
	}
	return d
}
