package flow

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// equalsN evaluates c with parent a's result n.
func equalsN(t *testing.T, c *Condition, n int) bool {
	t.Helper()
	ok, err := c.Eval(ConditionEnv{Parents: map[string]ConditionParent{"a": {Result: map[string]any{"n": float64(n)}}}})
	require.NoError(t, err)
	return ok
}

// TestConditionCacheBounded: more distinct conditions than the bound keep the
// cache at the bound, each still evaluates right, the least recently used go
// first, and one in steady use stays.
func TestConditionCacheBounded(t *testing.T) {
	t.Parallel()
	l := newConditionLRU(conditionCacheSize)
	hot, err := l.compile(`parents["a"].result.n < 0`, []string{"a"})
	require.NoError(t, err)
	first, err := l.compile(`parents["a"].result.n == 0`, []string{"a"})
	require.NoError(t, err)
	for i := range conditionCacheSize + 100 {
		c, err := l.compile(fmt.Sprintf(`parents["a"].result.n == %d`, i), []string{"a"})
		require.NoError(t, err)
		require.True(t, equalsN(t, c, i))
		require.False(t, equalsN(t, c, i+1))
		require.LessOrEqual(t, l.len(), conditionCacheSize)
		if i%100 == 0 {
			again, err := l.compile(`parents["a"].result.n < 0`, []string{"a"})
			require.NoError(t, err)
			require.Same(t, hot, again, "a condition in use stays cached")
		}
	}
	require.Equal(t, conditionCacheSize, l.len())

	again, err := l.compile(`parents["a"].result.n == 0`, []string{"a"})
	require.NoError(t, err)
	require.NotSame(t, first, again, "the least recently used was dropped, and is compiled again")
	require.True(t, equalsN(t, again, 0))
	require.Equal(t, conditionCacheSize, l.len())

	// the same text for other parents is another entry, checked for those parents
	_, err = l.compile(`parents["a"].result.n < 0`, []string{"b"})
	require.ErrorContains(t, err, `parents["a"], which is not a parent`)
}

// TestConditionCacheProcessBound: the cache the runner uses (through
// StepContext.Condition) is bounded too.
func TestConditionCacheProcessBound(t *testing.T) {
	t.Parallel()
	for i := range conditionCacheSize + 10 {
		c, err := cachedCondition(fmt.Sprintf(`parents["a"].result.n == %d || parents["a"].state == "process"`, i), []string{"a"})
		require.NoError(t, err)
		require.True(t, equalsN(t, c, i))
	}
	require.Equal(t, conditionCacheSize, conditionCache.len())
}

// TestConditionCacheConcurrent: goroutines sharing a hot condition and
// adding their own keep a small cache at its bound, and every condition
// they get back is the one they asked for (run with -race).
func TestConditionCacheConcurrent(t *testing.T) {
	t.Parallel()
	const size = 16
	l := newConditionLRU(size)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				n := g*1000 + i
				src := fmt.Sprintf(`parents["a"].result.n == %d`, n)
				if i%2 == 0 {
					n, src = -1, `parents["a"].result.n == -1`
				}
				c, err := l.compile(src, []string{"a"})
				if !equalsCond(c, err, n) {
					t.Errorf("%s did not come back right", src)
					return
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, size, l.len())
}

// equalsCond is equalsN for goroutines other than the test's.
func equalsCond(c *Condition, err error, n int) bool {
	if err != nil {
		return false
	}
	yes, err1 := c.Eval(ConditionEnv{Parents: map[string]ConditionParent{"a": {Result: map[string]any{"n": float64(n)}}}})
	no, err2 := c.Eval(ConditionEnv{Parents: map[string]ConditionParent{"a": {Result: map[string]any{"n": float64(n + 1)}}}})
	return err1 == nil && err2 == nil && yes && !no
}
