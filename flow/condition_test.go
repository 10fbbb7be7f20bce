package flow_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
)

// TestConditionConstantFailures: a sub-expression that reads no data and
// fails is refused at compile, naming it and the problem, also where a
// branch or a short circuit would keep some runs from reaching it.
func TestConditionConstantFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ src, names, problem string }{
		{`int("abc") > 0`, `int("abc")`, "invalid operation: int(abc) (1:1)"},
		{`float("x") > 0`, `float("x")`, "invalid operation"},
		{`[1, 2][5] == 1`, `[1, 2][5]`, "index out of range: 5"},
		{`[1, 2][-5] == 1`, `[1, 2][-5]`, "index out of range"},
		{`1 / 0 > 0`, `1 / 0`, "+Inf on every run: a division by zero"},
		{`0 / 0 > 1`, `0 / 0`, "NaN"},
		{`parents["a"].result.n > 1e308 * 10`, `1e+308 * 10`, "+Inf"},
		{`1 % int("0") == 0`, `1 % int("0")`, "integer divide by zero"},
		{`1 % 0 == 0`, ``, "integer divide by zero"}, // expr's optimiser refuses this one itself
		// hidden by a short circuit or a branch on some runs
		{`true || int("abc") > 0`, `int("abc")`, "invalid operation"},
		{`parents["a"].state == "x" && int("abc") > 0`, `int("abc")`, "invalid operation"},
		{`parents["a"].state == "x" ? true : int("x") > 0`, `int("x")`, "invalid operation"},
		{`(parents["a"].result.n ?? int("x")) > 0`, `int("x")`, "invalid operation"},
		// in a loop's body, and a loop over constants
		{`all(parents["a"].result.items, # > int("x"))`, `int("x")`, "invalid operation"},
		{`all([1, 0], 1 % # == 0)`, `all([1, 0], 1 % # == 0)`, "integer divide by zero"},
		// through lets bound to constants, also beside lets bound to data
		{`let x = 0; parents["a"].state == "s" && 1 % x == 0`, `1 % x`, "integer divide by zero"},
		{`let p = parents["a"]; let y = 0; p.state == "s" || 1 % y == 0`, `1 % y`, "integer divide by zero"},
		{`let r = "("; "a" matches r`, `"a" matches r`, "error parsing regexp"},
		{`let x = int("z"); x > 0`, `int("z")`, "invalid operation"},
		// inside a map, and an optional chain over a non-nil constant
		{`len({"a": 1, "b": int("x")}) == 2`, `int("x")`, "invalid operation"},
		{`{"a": 1}.a?.b == nil`, `{a: 1}.a?.b`, "cannot fetch b from int"},
		// names expr's checker lets through: a builtin without a call, any
		// name in a slice's bounds
		{`parents["a"].state == "x" || len == nil`, "len is a function, not a value: call it, len(…) (1:30)", ""},
		{`{}.k[0:x] == nil`, "unknown name x (1:8)", ""},
		{`parents["a"].state == "s" || {}.k[(let x = 1; 0):x] == nil`, "unknown name x (1:50)", ""},
		// a constant condition that is not a bool
		{`true ? 1 : "a"`, "is 1 (int) on every run, not a bool", ""},
	} {
		_, err := flow.CompileCondition(tc.src, []string{"a"})
		require.Error(t, err, tc.src)
		require.ErrorContains(t, err, tc.names, tc.src)
		require.ErrorContains(t, err, tc.problem, tc.src)
	}
}

// TestConditionConstantsAccepted: constant conditions, constants that do
// not fail, and conditions that may fail only on some data are accepted, and
// evaluate as before.
func TestConditionConstantsAccepted(t *testing.T) {
	t.Parallel()
	env := flow.ConditionEnv{Parents: map[string]flow.ConditionParent{
		"a": {State: "succeeded", Result: map[string]any{"n": 3.0, "v": "12", "items": []any{1.0, 2.0}}},
	}}
	for src, want := range map[string]bool{
		// constant as a whole: legal; false skips the node on every run
		`true`:  true,
		`1 > 2`: false,
		// constants that do not fail
		`int("12") == 12 && 1 / 2 == 0.5`:   true,
		`len({"a": 1, "b": int("3")}) == 2`: true,
		`first([]) == nil`:                  true,
		`{"a": 1}.b == nil`:                 true,
		`{"a": nil}.a?.b == nil`:            true,
		`all([1, 2], # > 0)`:                true,
		`"abc"[1:10] == "bc"`:               true,
		`let x = 2; x * 2 == 4`:             true,
		// may fail on other data, so only at run time
		`int(parents["a"].result.v) > 0`:                 true,
		`parents["a"].result.n % 2 == 1`:                 false, // float64 % int fails on this data: see below
		`all(parents["a"].result.items, # > 0)`:          true,
		`let x = parents["a"].result; 1 / x.n > 0.3`:     true,
		`parents["a"].state == "succeeded" || 1 / 2 > 0`: true,
	} {
		c, err := flow.CompileCondition(src, []string{"a"})
		require.NoError(t, err, src)
		ok, err := c.Eval(env)
		if strings.Contains(src, "% 2") {
			require.ErrorContains(t, err, "invalid operation: float64 % int", src)
			continue
		}
		require.NoError(t, err, src)
		require.Equal(t, want, ok, src)
	}
}

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

// adversarial conditions: odd syntax, limits, numbers at their edges, nil
// and empty values, loops, lets and optional chains.
var adversarial = []string{
	``, ` `, `(`, `)`, `((((true))))`, `!`, `!!true`, `not not true`, `#`, `# > 0`, `#index == 0`,
	`$env == nil`, `$env.parents == nil`, `len($env) > 0`, `nil`, `nil == nil`, `nil.a == 1`, `nil?.a == nil`,
	`[][0] == 1`, `[][-1] == 1`, `[1][1:0] == []`, `{}.a.b == 1`, `{}?.a?.b == nil`, `{"a": {"b": 1}}.a.b == 1`,
	`9223372036854775807 + 1 > 0`, `-9223372036854775808 < 0`, `9223372036854775808 > 0`, `1e309 > 0`,
	`-1 / 0 < 0`, `int(1e300) > 0`, `0x10 == 16`, `1_000 == 1000`, `0b11 == 3`, `0o7 == 7`, `.5 == 0.5`,
	`"\xff" == "a"`, `"\u00e9" == "é"`, `"a" + "b" == "ab"`, `"a" * 2 == "aa"`, `"abc"[0] == "a"`,
	`"abc"[1:] == "bc"`, `"abc"[5:] == ""`, `lower(1) == "1"`, `upper("é") == "É"`, `trim(" a ") == "a"`,
	`hasPrefix("ab", "a")`, `hasSuffix("ab", "")`, `keys({}) == []`, `values({"a": 1})[0] == 1`,
	`first([1]) == 1`, `last([]) == nil`, `sum([]) == 0`, `sum(["a"]) == "a"`, `sum([1, 2.5]) > 3`,
	`max(1, "a") == 1`, `min([]) == 0`, `abs(-9223372036854775808) > 0`, `ceil("1") == 1`, `round(1/0) > 0`,
	`count([true, false], #)`, `one([1, 2], # == 1)`, `none([], # > 0)`, `any([nil], # == nil)`,
	`filter([1, 2], # > 1)[0] == 2`, `map([1, 2], # * 2)[1] == 4`, `map([1, 0], 1 % #)[0] == 0`,
	`map([1, 2], #index)[1] == 1`, `all([1, 2], all([1], # > 0))`, `len(1..3) == 3`, `1 in 1..3`,
	`1 in [1, 2]`, `"a" in {"a": 1}`, `"a" in "abc"`, `"a" contains "a"`, `"a" matches "["`,
	`"a" startsWith "a"`, `[1, 2] | len() == 2`, `1 ?? 2 == 1`, `nil ?? 2 == 2`, `true ? 1 : "a"`,
	`if true { true } else { int("x") > 0 }`, `let a = 1; let b = a + 1; b == 2`, `let a = 1; let a = 2; a == 2`,
	`let f = [0]; 1 % f[0] == 0`, `let m = {"z": 0}; 1 % m.z == 0`, `let x = 1; x.y == nil`,
	`true; false`, `int("1"); true`, `int("x"); true`, `1 == 1.0`, `1 < "a"`, `"1" == 1`,
	`parents == nil`, `len(parents) == 0`, `parents["a"] == nil`, `parents.a.state == "x"`,
	`parents["a"].result[0] == 1`, `parents["a"].result.x.y.z == 1`, `parents["a"]?.result?.x == nil`,
	`message.sets >= 3`, `message == nil`, `message["a"] ?? int("x") > 0`, `int(message.v) > 0`,
	`float(message.v) > 1 / 0`, `all(parents["a"].result, # > 0)`, `map(parents["a"].result, 1 % #)[0] == 0`,
	`now() > 0`, `date("x") == nil`, `repeat("a", 1000000) == ""`, `fromJSON("{") == nil`,
	strings.Repeat("(", 300) + "true" + strings.Repeat(")", 300),
	strings.Repeat("!", 199) + "true", `"` + strings.Repeat("a", 990) + `" == ""`,
	strings.Repeat("1 + ", 80) + "1 > 0", `{}.k[(let x = ""; false):x[1:[]]] == nil`,
	`(first((true ?? 1)[int(0):(-1 ?? x)])) == nil`, `(([] ?? -1)[(true || {}):int(x)]) == nil`,
	`len == nil`, `[int][0] != nil`, `all == nil`,
}

// checkConditionInvariant holds one condition to what enqueue promises: no
// panic; an accepted condition that reads no data (no parent, no message)
// never fails when it runs; and any accepted condition evaluates on odd
// data without a panic.
func checkConditionInvariant(t *testing.T, src string) {
	t.Helper()
	c, err := flow.CompileCondition(src, []string{"a"})
	if err != nil {
		require.NotEmpty(t, err.Error(), src)
		return
	}
	readsData := strings.Contains(src, "parents") || strings.Contains(src, "message") || strings.Contains(src, "$env")
	_, err = c.Eval(flow.ConditionEnv{})
	if !readsData {
		require.NoError(t, err, "%q was accepted and reads no data, so it must not fail at run time", src)
	}
	for _, r := range []any{nil, "abc", 0.0, []any{0.0, "x", nil}, map[string]any{"x": map[string]any{}}} {
		_, err = c.Eval(flow.ConditionEnv{
			Parents: map[string]flow.ConditionParent{"a": {State: "failed", Result: r, Error: "boom"}},
			Message: map[string]any{"sets": r, "v": r},
		})
		if err != nil {
			require.NotContains(t, err.Error(), "\n", "%q: an evaluation error is one line", src)
		}
	}
}

// TestConditionAdversarial holds the adversarial table to the invariant.
func TestConditionAdversarial(t *testing.T) {
	t.Parallel()
	for _, src := range adversarial {
		checkConditionInvariant(t, src)
	}
}

// FuzzCondition: the same invariant on generated conditions.
func FuzzCondition(f *testing.F) {
	for _, src := range adversarial {
		f.Add(src)
	}
	f.Fuzz(checkConditionInvariant)
}
