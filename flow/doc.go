// Package flow is Trellis's public API: compose a graph of jobs in code,
// enqueue it, and inspect, wait for, cancel and retry its jobs.
//
// # Messages and steps
//
// A job carries a Message: a struct with a MessageType method (value
// receiver), encoded as the data of the uniform envelope
// {messageType, timestamp, enqueuedAt, userId?, metadata?, data}. The
// timestamp is when the message was made: a JSON envelope's own (AddJSON,
// the CLI, the HTTP API), WithTimestamp's, or else the enqueue time;
// enqueuedAt is always the enqueue time. A message may check itself with
// Validate (use FieldError so errors name the field); enqueue refuses
// invalid messages.
//
// A Step runs the jobs of one message type. StepFunc adapts a typed handler,
// which receives its decoded message and returns a typed result that is
// stored as JSON for the job's children:
//
//	step := flow.StepFunc(func(ctx context.Context, sc *flow.StepContext, m PhaseCreate) (string, error) {
//		plan, err := flow.ParentResult[string](ctx, sc, "plan-1")
//		return m.Name + " after " + plan, err
//	})
//
// Register steps on a runner (package runner). An error is retried with
// the node's backoff until its attempts are spent; Permanent(err) fails the
// job at once and RetryAfter(d, err) sets the delay of the next attempt.
// Unavailable(err) says a dependency (a database, a service) is down: the
// attempt is retried as usual and the runner claims no new job until that
// retry is due, so a backlog keeps its attempts through an outage.
//
// # Composing
//
// New returns a Graph; Add adds a node with per-node NodeOpts (ID, attempts,
// backoff, timeout, priority, delay, queue, failure policy, When condition);
// After makes a node wait for nodes of the same graph and AfterJob for jobs
// enqueued earlier. Client.Enqueue writes the whole graph atomically: a
// cycle, a duplicate ID, an unknown dependency, an invalid message or a bad
// condition is refused and nothing is written. Enqueueing an existing job ID
// with the same message returns the existing job. Client.Add enqueues one
// message as its own job.
//
// When a parent does not succeed, each child follows its policy
// (dag.Policy): dag.Require (the default) cancels it, dag.Ignore runs it
// anyway once every parent is finished, dag.Skip skips it. A When condition
// (an expr-lang expression over the parents' states and results,
// type-checked at enqueue, where a part of it that reads no data and fails
// is refused) skips the node when false. A running step may add a sub-graph
// with StepContext.Expand; the job then finishes when the sub-graph does,
// and its children wait.
//
// # The model
//
// The types the API hands back come from package dag, the graph model: a
// job is a *dag.Node (its dag.State, attempts, result, last error and
// timeline), a flow a *dag.Flow, a type's limit a dag.Limit, a backoff a
// dag.Backoff (built here with Exponential, Fixed and CustomBackoff). The
// states move by the legal moves of dag.Transitions.
//
// # Operating
//
// Client.Job and Client.Flow read jobs with their state, attempts, result,
// last error and timeline; Wait blocks until a flow is finished; Cancel,
// CancelFlow and Retry change running flows; Pause and Resume stop and
// restart claiming from a queue; Stats counts jobs per state, queue and
// type; Clear empties a development namespace. Client.Inspector reads the
// rest (counters, events, runners' heartbeats, job listings, per-minute
// series of a queue and type): the one read
// API the monitor, the CLI and flowtest share.
//
// For tests, package flowtest runs whole graphs in process on a fake clock.
package flow
