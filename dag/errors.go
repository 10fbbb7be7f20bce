package dag

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Errors that carry data are structs that match their
// sentinel with errors.Is.
var (
	ErrCycle             = errors.New("dependency cycle")
	ErrDuplicateNode     = errors.New("duplicate node ID")
	ErrUnknownDependency = errors.New("unknown dependency")
	ErrConflict          = errors.New("job ID already used by a different job")
	ErrPayloadTooLarge   = errors.New("payload too large")
	ErrInvalidNode       = errors.New("invalid node")
	ErrNotFound          = errors.New("not found")
	ErrState             = errors.New("not allowed in this state")
	ErrLeaseLost         = errors.New("lease lost")
	ErrEmptyGraph        = errors.New("graph has no nodes")
	// ErrRedisFull: Redis is at its maxmemory and refused a call that adds
	// data (an enqueue, an expansion); nothing was written. Completions,
	// cancel, remove, trim and retention still run and free memory.
	ErrRedisFull = errors.New("redis is at its memory limit (maxmemory); nothing was written")
)

// CycleError names the nodes of a cycle, in order; the first is repeated at the end.
type CycleError struct{ Path []string }

func (e *CycleError) Error() string {
	return fmt.Sprintf("dependency cycle: %s", strings.Join(quoteAll(e.Path), " → "))
}
func (e *CycleError) Is(target error) bool { return target == ErrCycle }

// DuplicateError names a node ID that occurs twice in one graph.
type DuplicateError struct{ ID string }

func (e *DuplicateError) Error() string        { return fmt.Sprintf("duplicate node ID %q", e.ID) }
func (e *DuplicateError) Is(target error) bool { return target == ErrDuplicateNode }

// UnknownDependencyError names a node and the parent that neither the graph
// nor Redis knows.
type UnknownDependencyError struct{ Node, Dependency string }

func (e *UnknownDependencyError) Error() string {
	return fmt.Sprintf("node %q depends on unknown job %q", e.Node, e.Dependency)
}
func (e *UnknownDependencyError) Is(target error) bool { return target == ErrUnknownDependency }

// ConflictError names a job ID that exists with a different payload or options.
type ConflictError struct{ ID string }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("job %q already exists with a different payload or options", e.ID)
}
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// FlowIDError names a flow ID that another flow holds: a one-job flow is
// keyed by its job's ID, so a flow of several jobs cannot take it, nor a
// one-job flow the ID of a flow of several.
type FlowIDError struct{ ID string }

func (e *FlowIDError) Error() string {
	return fmt.Sprintf("flow ID %q is taken by another flow (a one-job flow is keyed by its job's ID)", e.ID)
}
func (e *FlowIDError) Is(target error) bool { return target == ErrConflict }

// PayloadTooLargeError names the node whose payload is over the limit.
type PayloadTooLargeError struct {
	ID          string
	Size, Limit int
}

func (e *PayloadTooLargeError) Error() string {
	return fmt.Sprintf("node %q: payload of %d bytes is over the limit of %d bytes", e.ID, e.Size, e.Limit)
}
func (e *PayloadTooLargeError) Is(target error) bool { return target == ErrPayloadTooLarge }

// InvalidNodeError names a node and what is wrong with it.
type InvalidNodeError struct {
	ID     string
	Field  string
	Reason string
}

func (e *InvalidNodeError) Error() string {
	if e.ID == "" {
		return fmt.Sprintf("invalid node: %s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("node %q: %s: %s", e.ID, e.Field, e.Reason)
}
func (e *InvalidNodeError) Is(target error) bool { return target == ErrInvalidNode }

// StateError says an operation does not apply to a job in its current state.
type StateError struct {
	ID    string
	State State
	Op    string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("cannot %s job %q: it is %s", e.Op, e.ID, e.State)
}
func (e *StateError) Is(target error) bool { return target == ErrState }

// NotFoundError names the job or flow that does not exist.
type NotFoundError struct{ What, ID string }

func (e *NotFoundError) Error() string        { return fmt.Sprintf("%s %q not found", e.What, e.ID) }
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func quoteAll(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprintf("%q", id)
	}
	return out
}
