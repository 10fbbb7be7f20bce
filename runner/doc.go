// Package runner executes the nodes of Trellis flows: it claims ready nodes
// from Redis, runs the step registered for each node's message type (a
// flow.BatchStep's nodes several at a time, up to its Batching), renews
// leases while steps run, reports outcomes in batches, recovers the nodes of
// dead runners, and shuts down gracefully.
package runner
