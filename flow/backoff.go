package flow

import (
	"time"

	"github.com/trellisflow/trellis/dag"
)

// Exponential waits base·2^(attempt-1): with base 2s, 2s, 4s, 8s… (the default).
func Exponential(base time.Duration) dag.Backoff {
	return dag.Backoff{Kind: dag.Exponential, Base: base}
}

// Fixed waits d before every retry.
func Fixed(d time.Duration) dag.Backoff { return dag.Backoff{Kind: dag.Fixed, Base: d} }

// CustomBackoff uses the function registered on the runner under name
// (runner.Config.Backoffs), so the policy survives the trip through Redis.
func CustomBackoff(name string) dag.Backoff { return dag.Backoff{Kind: dag.Custom, Name: name} }

// BackoffFunc computes a delay from the attempt that just failed (1-based).
type BackoffFunc func(attempt int) time.Duration
