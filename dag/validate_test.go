package dag_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
)

func spec(id string, parents ...string) dag.Spec {
	return dag.Spec{ID: id, Type: "T", Queue: "default", Policy: dag.Require, MaxAttempts: 3,
		Backoff: dag.Backoff{Kind: dag.Exponential, Base: time.Second}, Payload: []byte(`{}`), Parents: parents}
}

func TestValidateOrdersAndFindsExternals(t *testing.T) {
	t.Parallel()
	specs := []dag.Spec{spec("d", "b", "c"), spec("b", "a"), spec("c", "a", "earlier"), spec("a")}
	order, ext, err := dag.Validate(specs, dag.Bounds{})
	require.NoError(t, err)
	require.Equal(t, []string{"earlier"}, ext)
	pos := map[string]int{}
	for i, idx := range order {
		pos[specs[idx].ID] = i
	}
	require.Less(t, pos["a"], pos["b"])
	require.Less(t, pos["b"], pos["d"])
	require.Less(t, pos["c"], pos["d"])
}

func TestValidateErrors(t *testing.T) {
	t.Parallel()
	long := spec("x")
	long.Payload = make([]byte, 11)
	cases := []struct {
		specs []dag.Spec
		is    error
		msg   string
	}{
		{[]dag.Spec{spec("a", "c"), spec("b", "a"), spec("c", "b"), spec("z")}, dag.ErrCycle, `"a" → "b" → "c" → "a"`},
		{[]dag.Spec{spec("a"), spec("a")}, dag.ErrDuplicateNode, `"a"`},
		{[]dag.Spec{long}, dag.ErrPayloadTooLarge, "11 bytes"},
		{[]dag.Spec{spec("a", "b", "b"), spec("b")}, dag.ErrInvalidNode, "listed twice"},
		{[]dag.Spec{spec("")}, dag.ErrInvalidNode, "ID: is empty"},
		{nil, dag.ErrEmptyGraph, "no nodes"},
	}
	for i, tc := range cases {
		_, _, err := dag.Validate(tc.specs, dag.Bounds{MaxPayload: 10})
		require.ErrorIs(t, err, tc.is, "case %d", i)
		require.ErrorContains(t, err, tc.msg, "case %d", i)
	}
	for _, id := range []string{`quote"d`, "<b>html</b>", "spaced id", "ünïcode"} {
		require.NoError(t, dag.CheckID(id), id)
	}
	for _, id := range []string{"a\nb", "a\x1fb", "a\x00", string([]byte{0xff})} {
		require.Error(t, dag.CheckID(id), fmt.Sprintf("%q", id))
	}
}

func BenchmarkValidate100k(b *testing.B) {
	specs := make([]dag.Spec, 0, 100_000)
	specs = append(specs, spec("root"))
	for i := 1; i < 100_000; i++ {
		specs = append(specs, spec(fmt.Sprintf("n%d", i), "root"))
	}
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := dag.Validate(specs, dag.Bounds{}); err != nil {
			b.Fatal(err)
		}
	}
}
