package flow

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type envelopeProbe struct {
	N int    `json:"n"`
	S string `json:"s"`
}

func (envelopeProbe) MessageType() string { return "PROBE" }

func envelopeSeeds(t testing.TB) [][]byte {
	var out [][]byte
	now := time.Date(2026, 11, 27, 1, 2, 3, 456789000, time.UTC)
	for _, c := range []struct {
		user string
		md   map[string]any
	}{{"", nil}, {"user-1", map[string]any{"source": "csv", "n": 1.5, "nested": map[string]any{"a": []any{"x"}}}}, {"ü", map[string]any{}}} {
		payload, _, err := encode(envelopeProbe{N: 3, S: `q"}`}, now, c.user, c.md)
		require.NoError(t, err)
		out = append(out, payload)
	}
	for _, s := range []string{
		`{"messageType":"T","data":null}`, `{"messageType":"T","messageType":"U"}`, `{"MessageType":"T"}`,
		`{"messageType":"T","timestamp":null}`, `{"timestamp":"2026-13-01T00:00:00Z"}`, `{"metadata":[]}`,
		`{"userId":"a\u0062"}`, `{"messageType":1}`, `{}`, `[]`, `{"data":{"a":1},"extra":true}`,
		`{"enqueuedAt":"2026-01-02T03:04:05.5+01:00"}`, `{"enqueuedAt":null}`, `{"enqueuedAt":7}`,
	} {
		out = append(out, []byte(s))
	}
	return out
}

// decodeEnvelope gives what json.Unmarshal gives, for the envelopes the
// client writes and for any other input (FuzzDecodeEnvelope).
func TestDecodeEnvelopeMatchesJSON(t *testing.T) {
	t.Parallel()
	for _, b := range envelopeSeeds(t) {
		var got, want Envelope
		gotErr, wantErr := decodeEnvelope(b, &got), json.Unmarshal(b, &want)
		require.Equal(t, wantErr, gotErr, string(b))
		require.Equal(t, want, got, string(b))
	}
	var env Envelope
	payload, _, err := encode(envelopeProbe{N: 3}, time.Unix(5, 0), "u", map[string]any{"k": "v"})
	require.NoError(t, err)
	require.NoError(t, decodeEnvelope(payload, &env))
	require.Equal(t, Envelope{MessageType: "PROBE", Timestamp: time.Unix(5, 0).UTC(), EnqueuedAt: time.Unix(5, 0).UTC(),
		UserID: "u", Metadata: map[string]any{"k": "v"}, Data: json.RawMessage(`{"n":3,"s":""}`)}, env)

	// WithTimestamp: the envelope keeps the message's own time and records
	// the enqueue time beside it.
	payload, _, err = encode(WithTimestamp(envelopeProbe{N: 3}, time.Unix(2, 0)), time.Unix(5, 0), "", nil)
	require.NoError(t, err)
	env = Envelope{}
	require.NoError(t, decodeEnvelope(payload, &env))
	require.Equal(t, Envelope{MessageType: "PROBE", Timestamp: time.Unix(2, 0).UTC(), EnqueuedAt: time.Unix(5, 0).UTC(),
		Data: json.RawMessage(`{"n":3,"s":""}`)}, env)
	require.Equal(t, time.Unix(5, 0).UTC(), env.Enqueued())
	require.Equal(t, time.Unix(2, 0).UTC(), Envelope{Timestamp: time.Unix(2, 0).UTC()}.Enqueued(), "an envelope from before enqueuedAt")
}

func FuzzDecodeEnvelope(f *testing.F) {
	for _, b := range envelopeSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got, want Envelope
		gotErr := decodeEnvelope(b, &got)
		if wantErr := json.Unmarshal(b, &want); wantErr != nil {
			require.Error(t, gotErr)
			return
		}
		require.NoError(t, gotErr)
		require.Equal(t, want, got)
	})
}

// BenchmarkDecodeEnvelope is one job's envelope, as a runner decodes it
// for the step.
func BenchmarkDecodeEnvelope(b *testing.B) {
	payload, _, err := encode(envelopeProbe{N: 3, S: "set 1"}, time.Now(), "user-1", nil)
	if err != nil {
		b.Fatal(err)
	}
	for name, decode := range map[string]func([]byte, any) error{
		"decodeEnvelope": func(b []byte, v any) error { return decodeEnvelope(b, v.(*Envelope)) },
		"encoding-json":  json.Unmarshal, // what decodeEnvelope saves
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var env Envelope
				if err := decode(payload, &env); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
