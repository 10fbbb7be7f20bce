package flow_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
)

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	exp := flow.Exponential(2 * time.Second)
	for attempt, want := range map[int]time.Duration{1: 2 * time.Second, 2: 4 * time.Second, 3: 8 * time.Second, 6: 64 * time.Second} {
		require.Equal(t, want, exp.Delay(attempt, nil, nil), "attempt %d", attempt)
	}
	require.Equal(t, 10*time.Second, exp.WithMax(10*time.Second).Delay(5, nil, nil))
	require.Equal(t, 3*time.Second, flow.Fixed(3*time.Second).Delay(9, nil, nil))
	half := func() float64 { return 0.5 }
	require.Equal(t, 6*time.Second, exp.WithJitter().Delay(3, half, nil), "equal jitter: 4s + 0.5·4s")
	zero := func() float64 { return 0 }
	require.Equal(t, 4*time.Second, exp.WithJitter().Delay(3, zero, nil))
	custom := func(name string) func(int) time.Duration {
		if name == "linear" {
			return func(a int) time.Duration { return time.Duration(a) * time.Second }
		}
		return nil
	}
	require.Equal(t, 7*time.Second, flow.CustomBackoff("linear").Delay(7, nil, custom))
	require.Equal(t, time.Duration(0), flow.CustomBackoff("missing").Delay(7, nil, custom))
	require.Positive(t, exp.Delay(200, nil, nil), "no overflow")
}

type Greeting struct {
	To    string `json:"to"`
	Times int    `json:"times"`
}

func (Greeting) MessageType() string { return "GREETING" }

func (g Greeting) Validate() error {
	if g.To == "" {
		return flow.FieldError("to", "is required")
	}
	if g.Times < 0 {
		return flow.FieldError("times", "must not be negative, got %d", g.Times)
	}
	return nil
}

func TestRegistryDecode(t *testing.T) {
	t.Parallel()
	reg := flow.NewRegistry()
	flow.RegisterType[Greeting](reg)
	env, msg, err := reg.Decode([]byte(`{"messageType":"GREETING","timestamp":"2026-01-02T03:04:05Z","userId":"u1","data":{"to":"Ann","times":2}}`))
	require.NoError(t, err)
	require.Equal(t, Greeting{To: "Ann", Times: 2}, msg)
	require.Equal(t, "u1", env.UserID)

	for raw, want := range map[string]string{
		`{"messageType":`:                                         "malformed envelope",
		`{"data":{}}`:                                             "field messageType: is missing",
		`{"messageType":"NOPE","data":{}}`:                        `unknown message type "NOPE"`,
		`{"messageType":"GREETING"}`:                              "GREETING: field data: is missing",
		`{"messageType":"GREETING","data":{"to":1}}`:              "field to: expected string, got JSON number",
		`{"messageType":"GREETING","data":{"to":"a","x":1}}`:      `unknown field "x"`,
		`{"messageType":"GREETING","data":{"times":1}}`:           "GREETING: field to: is required",
		`{"messageType":"GREETING","data":{"to":"a","times":-1}}`: "field times: must not be negative, got -1",
		`{"messageType":"GREETING","data":{"to":"a"},"extra":1}`:  `unknown field "extra"`,
		`{"messageType":"GREETING","data":{"to":"a"}} {}`:         "trailing data",
	} {
		_, _, err := reg.Decode([]byte(raw))
		require.ErrorIs(t, err, flow.ErrInvalidMessage, raw)
		require.Contains(t, err.Error(), want, raw)
	}
	require.Equal(t, []string{"GREETING"}, reg.Types())
}

func TestConditionLimits(t *testing.T) {
	t.Parallel()
	c, err := flow.CompileCondition(`parents["a"].state == "succeeded" && len(parents) == 1`, []string{"a"})
	require.NoError(t, err)
	ok, err := c.Eval(flow.ConditionEnv{Parents: map[string]flow.ConditionParent{"a": {State: "succeeded"}}})
	require.NoError(t, err)
	require.True(t, ok)

	_, err = flow.CompileCondition(string(make([]byte, flow.MaxConditionLen+1)), nil)
	require.ErrorContains(t, err, "over the limit")
	long := "true"
	for range 150 {
		long += " && true"
	}
	_, err = flow.CompileCondition(long, nil)
	require.Error(t, err, "too many nodes")
	_, err = flow.CompileCondition(`now() > 0`, nil)
	require.Error(t, err)
	_, err = flow.CompileCondition(`"x"`, nil)
	require.Error(t, err, "not boolean")
	// ranges and loops inside loops are refused: evaluation stays linear
	_, err = flow.CompileCondition(`len(1..100000000) > 0`, nil)
	require.ErrorContains(t, err, "ranges")
	_, err = flow.CompileCondition(`let a = [1, 2]; all(a, all(a, # > 0))`, nil)
	require.ErrorContains(t, err, "loop inside a loop")
	c, err = flow.CompileCondition(`all(parents["a"].result.items, # > 0) && any(parents["a"].result.items, # > 1)`, []string{"a"})
	require.NoError(t, err, "loops side by side are fine")
	ok, err = c.Eval(flow.ConditionEnv{Parents: map[string]flow.ConditionParent{"a": {Result: map[string]any{"items": []any{1.0, 2.0}}}}})
	require.NoError(t, err)
	require.True(t, ok)
}
