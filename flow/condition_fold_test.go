package flow

import (
	"strings"
	"testing"

	"github.com/expr-lang/expr/parser"
	"github.com/stretchr/testify/require"
)

// TestConditionConstantCheckLinear: checking the constants of a condition
// is linear in its size: each constant, once evaluated, stands in its
// parent as a value, so a chain of n additions compiles O(n) instructions
// for its evaluations, not O(n²).
func TestConditionConstantCheckLinear(t *testing.T) {
	t.Parallel()
	ran := func(n int) int {
		src := strings.Repeat("1 + ", n) + "1 > 0"
		tree, err := parser.Parse(src)
		require.NoError(t, err)
		f := foldConstants(src, tree.Node)
		require.NoError(t, f.err)
		return f.ran
	}
	small, large := ran(40), ran(80)
	require.Positive(t, small)
	require.LessOrEqual(t, large, small*5/2, "twice the additions, %d instructions against %d", large, small)
}
