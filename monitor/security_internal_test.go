package monitor

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The throttle remembers a bounded number of clients and forgets those
// whose failures have refilled.
func TestThrottleIsBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	th := newThrottle(func() time.Time { return now }, 2, time.Second, 4)
	for i := range 100 {
		_, ok, _ := th.take(fmt.Sprintf("10.0.0.%d", i))
		require.True(t, ok)
		require.LessOrEqual(t, th.len(), 4)
	}
	// a client that failed twice is throttled and stays so while other
	// clients come and go, as long as it keeps being the most recent
	_, _, _ = th.take("a")
	_, _, empty := th.take("a")
	require.True(t, empty)
	_, ok, _ := th.take("a")
	require.False(t, ok)
	require.Equal(t, 4, th.len())

	// two seconds on, every bucket has refilled: each call forgets up to two
	// idle clients, so the throttle empties without being asked to
	now = now.Add(2 * time.Second)
	_, ok = th.check("nobody")
	require.True(t, ok)
	for range 3 {
		_, ok, _ = th.take("b")
		require.True(t, ok)
		th.refund("b")
	}
	require.Equal(t, 0, th.len(), "refilled clients are forgotten")
}

func TestThrottleWait(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	th := newThrottle(func() time.Time { return now }, 1, 10*time.Second, 10)
	_, ok, empty := th.take("a")
	require.True(t, ok)
	require.True(t, empty)
	now = now.Add(4 * time.Second)
	wait, ok, _ := th.take("a")
	require.False(t, ok)
	require.Equal(t, 6*time.Second, wait)
	wait, ok = th.check("a")
	require.False(t, ok)
	require.Equal(t, 6*time.Second, wait)
	now = now.Add(6 * time.Second)
	_, ok, _ = th.take("a")
	require.True(t, ok)
}
