// Package dag is Trellis's graph model: the types a user of package flow
// meets, the way River keeps them in rivertype.
//
// A flow is a directed acyclic graph of nodes (Node, Flow). Each node
// carries one message (the uniform envelope) and the options that steer
// its execution (Policy, Backoff), and moves through the states of State
// by the legal moves of Transitions. Validate checks a graph before it is
// written; the errors (ErrCycle, ErrConflict, …) name what is wrong. What
// Trellis reports of itself (Count, Event, Heartbeat, FlowStatus, Limit) is
// here too, and package dag/render draws flows.
//
// Storing flows is the machinery's (the Redis store under internal/);
// package flow enqueues, inspects and controls them.
package dag
