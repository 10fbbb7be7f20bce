package flow

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/trellisflow/trellis/dag"
)

// Errors returned by enqueue and the client; match them with errors.Is.
// The ones that carry data (which node, which cycle) are the dag package's
// struct errors.
var (
	ErrCycle             = dag.ErrCycle
	ErrDuplicateNode     = dag.ErrDuplicateNode
	ErrUnknownDependency = dag.ErrUnknownDependency
	ErrConflict          = dag.ErrConflict
	ErrPayloadTooLarge   = dag.ErrPayloadTooLarge
	ErrInvalidNode       = dag.ErrInvalidNode
	ErrNotFound          = dag.ErrNotFound
	ErrState             = dag.ErrState
	ErrEmptyGraph        = dag.ErrEmptyGraph
	// ErrRedisFull: Redis is at maxmemory and refused to add data; nothing
	// was written. Runners still drain, and Cancel, RemoveFlow and Trim
	// still free memory.
	ErrRedisFull = dag.ErrRedisFull
	// ErrNilMessage: a node was added without a message.
	ErrNilMessage = errors.New("nil message")
	// ErrInvalidCondition: a When expression does not compile or is not boolean.
	ErrInvalidCondition = errors.New("invalid condition")
	// ErrNotDevelopment: a destructive operation on a client not configured
	// for development.
	ErrNotDevelopment = errors.New("refused: the client is not configured for development (Config.Development)")
	// ErrUnknownType: no step or registered type for a message type.
	ErrUnknownType = errors.New("unknown message type")
)

// ConditionError names the node and what is wrong with its condition.
type ConditionError struct {
	Node, Expr, Reason string
}

func (e *ConditionError) Error() string {
	return fmt.Sprintf("node %q: condition %q: %s", e.Node, e.Expr, e.Reason)
}
func (e *ConditionError) Is(target error) bool { return target == ErrInvalidCondition }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: the node fails at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err (or an error it wraps) came from Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type retryAfterError struct {
	d   time.Duration
	err error
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter fails this attempt and sets the delay before the next one,
// instead of the node's backoff. Attempts still count.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = errors.New("retry requested")
	}
	return &retryAfterError{d: d, err: err}
}

// RetryAfterDelay returns the delay set by RetryAfter, if err carries one.
func RetryAfterDelay(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.d, true
	}
	return 0, false
}

type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

// Unavailable marks err as the failure of something the step depends on,
// its database or a remote service, rather than of the job: the attempt
// fails and is retried like any other, and the runner that ran it claims
// no new jobs until that retry is due, so that a backlog does not spend its
// attempts against a dependency that is down. The workout and system steps
// mark the errors of reaching their database this way.
func Unavailable(err error) error {
	if err == nil {
		return nil
	}
	return &unavailableError{err: err}
}

// IsUnavailable reports whether err (or an error it wraps) came from
// Unavailable.
func IsUnavailable(err error) bool {
	var u *unavailableError
	return errors.As(err, &u)
}

type stackError struct {
	err   error
	stack string
}

func (e *stackError) Error() string { return e.err.Error() }
func (e *stackError) Unwrap() error { return e.err }
func (e *stackError) Stack() string { return e.stack }

// WithStack records where it is called in err, so the node's error keeps a
// stack as a panic's does (the job page shows it). An error that already
// has one keeps it.
func WithStack(err error) error {
	if err == nil || StackOf(err) != "" {
		return err
	}
	var pcs [32]uintptr
	n := runtime.Callers(2, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	var b strings.Builder
	for {
		f, more := frames.Next()
		fmt.Fprintf(&b, "%s\n\t%s:%d\n", f.Function, f.File, f.Line)
		if !more {
			break
		}
	}
	return &stackError{err: err, stack: b.String()}
}

// StackOf is the stack an error carries: one WithStack recorded (or any
// error in its chain with a Stack() string method), or the "%+v" form of an
// error that formats itself with one (github.com/pkg/errors and its
// kind); "" if it has none.
func StackOf(err error) string {
	var s interface{ Stack() string }
	if errors.As(err, &s) {
		return s.Stack()
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if _, ok := e.(fmt.Formatter); ok {
			if v := fmt.Sprintf("%+v", e); v != e.Error() {
				return v
			}
		}
	}
	return ""
}
