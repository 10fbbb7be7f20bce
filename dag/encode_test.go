package dag

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestEncodeDataMatchesJSON(t *testing.T) {
	t.Parallel()
	for _, sp := range []Spec{
		{Payload: json.RawMessage(`{"messageType":"T","data":{"a":1}}`)},
		{Payload: json.RawMessage(`{"x":"y"}`), Parents: []string{"a", `q"uote`}, Backoff: Backoff{Kind: Exponential, Base: 2 * time.Second, Jitter: true},
			Timeout: time.Minute, When: `parents["a"].state == "succeeded"`, Trace: "00-abc-def-01"},
		{},
	} {
		want, err := json.Marshal(&sp)
		require.NoError(t, err)
		got := encodeData(&sp)
		require.JSONEq(t, string(want), string(got))
		var back Spec
		require.NoError(t, json.Unmarshal(got, &back))
		require.Equal(t, sp.Parents, back.Parents)
	}
}

func TestEncodeDataEscapes(t *testing.T) {
	t.Parallel()
	sp := Spec{Payload: json.RawMessage(`{}`), Parents: []string{"a\"b\\c", "ü <b>&</b>"}, When: "x\ty\n", Backoff: Backoff{Kind: Custom, Name: `n"q`, Max: 5}}
	want, err := json.Marshal(&sp)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(encodeData(&sp)))
}
