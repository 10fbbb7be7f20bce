package flow_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
)

// TestConditionEvalErrorOneLine: an evaluation error is one line (expr's
// message and position, no source snippet), since it becomes a node's last
// error, which the runner prefixes with the condition.
func TestConditionEvalErrorOneLine(t *testing.T) {
	t.Parallel()
	c, err := flow.CompileCondition(`parents["a"].state == "succeeded" && int(parents["a"].result.v) > 0`, []string{"a"})
	require.NoError(t, err)
	_, err = c.Eval(flow.ConditionEnv{Parents: map[string]flow.ConditionParent{
		"a": {State: "succeeded", Result: map[string]any{"v": "abc"}},
	}})
	require.EqualError(t, err, "invalid operation: int(abc) (1:38)")
}
