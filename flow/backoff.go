package flow

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/trellisflow/trellis/dag"
)

// Backoff decides the delay before a retry. Build one with Exponential,
// Fixed or CustomBackoff, then refine it with WithMax and WithJitter.
type Backoff = dag.Backoff

// Exponential waits base·2^(attempt-1): with base 2s, 2s, 4s, 8s… (the default).
func Exponential(base time.Duration) Backoff { return Backoff{Kind: dag.Exponential, Base: base} }

// Fixed waits d before every retry.
func Fixed(d time.Duration) Backoff { return Backoff{Kind: dag.Fixed, Base: d} }

// CustomBackoff uses the function registered on the runner under name
// (runner.Config.Backoffs), so the policy survives the trip through Redis.
func CustomBackoff(name string) Backoff { return Backoff{Kind: dag.Custom, Name: name} }

// BackoffFunc computes a delay from the attempt that just failed (1-based).
type BackoffFunc func(attempt int) time.Duration

// RetryDelay is the pure retry-timing function: the delay after the given
// failed attempt (1-based). jitter draws from [0, 1); custom resolves
// Custom backoffs. The result is capped by b.Max when set.
func RetryDelay(b Backoff, attempt int, jitter func() float64, custom func(name string) BackoffFunc) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	var d time.Duration
	switch b.Kind {
	case dag.Fixed:
		d = b.Base
	case dag.Custom:
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
