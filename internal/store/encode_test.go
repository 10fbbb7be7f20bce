package store

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/trellisflow/trellis/dag"

	"github.com/stretchr/testify/require"
)

func TestEncodeDataMatchesJSON(t *testing.T) {
	t.Parallel()
	for _, sp := range []dag.Spec{
		{Payload: json.RawMessage(`{"messageType":"T","data":{"a":1}}`)},
		{Payload: json.RawMessage(`{"x":"y"}`), Parents: []string{"a", `q"uote`}, Backoff: dag.Backoff{Kind: dag.Exponential, Base: 2 * time.Second, Jitter: true},
			Timeout: time.Minute, When: `parents["a"].state == "succeeded"`, Trace: "00-abc-def-01"},
		{Payload: json.RawMessage(`{}`), Label: "Back \"squat\" ü\n"},
		{},
	} {
		want, err := json.Marshal(&sp)
		require.NoError(t, err)
		got := encodeData(&sp)
		require.JSONEq(t, string(want), string(got))
		var back dag.Spec
		require.NoError(t, json.Unmarshal(got, &back))
		require.Equal(t, sp.Parents, back.Parents)
	}
}

// A label leaves a node's identity hash as it is without it: the data
// hashed is the data without the label.
func TestIdentityHashLeavesTheLabelOut(t *testing.T) {
	t.Parallel()
	sp := dag.Spec{Payload: json.RawMessage(`{"a":"b"}`), Parents: []string{"p"}, When: "true"}
	want, _ := identityHash(nil, "m", &sp, encodeData(&sp))
	for _, label := range []string{"Back squat", `q"uote\ and ü`, "line\nbreak", "}"} {
		sp.Label = label
		got, _ := identityHash(nil, "m", &sp, encodeData(&sp))
		require.Equal(t, want, got, label)
	}
	sp.Label, sp.When = "x", "false"
	other, _ := identityHash(nil, "m", &sp, encodeData(&sp))
	require.NotEqual(t, want, other, "other data is another job")
}

func TestEncodeDataEscapes(t *testing.T) {
	t.Parallel()
	sp := dag.Spec{Payload: json.RawMessage(`{}`), Parents: []string{"a\"b\\c", "ü <b>&</b>"}, When: "x\ty\n", Backoff: dag.Backoff{Kind: dag.Custom, Name: `n"q`, Max: 5}}
	want, err := json.Marshal(&sp)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(encodeData(&sp)))
}

// decodeData gives what json.Unmarshal gives, for the blobs encodeData
// writes and for any other input (FuzzDecodeData).
func TestDecodeDataMatchesJSON(t *testing.T) {
	t.Parallel()
	for _, sp := range dataSpecs() {
		blob := encodeData(&sp)
		var got, want dag.Spec
		require.NoError(t, decodeData(blob, &got))
		require.NoError(t, json.Unmarshal(blob, &want))
		require.Equal(t, want, got)
		require.Equal(t, sp.Backoff, got.Backoff)
	}
	var sp dag.Spec
	require.Error(t, decodeData([]byte(`{"e":{},"to":"x"}`), &sp))
	require.Error(t, decodeData([]byte(`{"e":`), &sp))
}

func dataSpecs() []dag.Spec {
	return []dag.Spec{
		{Payload: json.RawMessage(`{"messageType":"T","data":{"a":1}}`)},
		{Payload: json.RawMessage(`{"x":"y"}`), Parents: []string{"a", `q"uote`}, Backoff: dag.Backoff{Kind: dag.Exponential, Base: 2 * time.Second, Jitter: true},
			Timeout: time.Minute, When: `parents["a"].state == "succeeded"`, Trace: "00-abc-def-01"},
		{Payload: json.RawMessage(`{}`), Parents: []string{"a\"b\\c", "ü <b>&</b>"}, When: "x\ty\n", Backoff: dag.Backoff{Kind: dag.Custom, Name: `n"q`, Max: 5}},
		{Payload: json.RawMessage(`{"s":"}]\"{"}`), Parents: []string{"p1", "p2"}, Backoff: dag.Backoff{Kind: dag.Fixed, Base: time.Second, Max: time.Hour, Name: "n"}},
		{},
	}
}

func FuzzDecodeData(f *testing.F) {
	for _, sp := range dataSpecs() {
		f.Add(encodeData(&sp))
	}
	for _, s := range []string{`{"e":null}`, `{"e":1,"e":2}`, `{"E":{}}`, `{"e":{},"p":null}`, `{"bo":{"j":false,"j":true}}`, `{"to":1e3}`, `{"w":"\u00e9"}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got, want dag.Spec
		gotErr := decodeData(append([]byte(nil), b...), &got)
		wantErr := json.Unmarshal(b, &want)
		if wantErr != nil {
			require.Error(t, gotErr)
			return
		}
		require.NoError(t, gotErr)
		require.Equal(t, want, got)
	})
}

// BenchmarkAppendNodes is the enqueue's Go-side encoding of a 145-node plan
// graph (data blobs, identities, meta, the script's arguments); ns/op per
// graph, ns/node reported too.
func BenchmarkAppendNodes(b *testing.B) {
	payload := json.RawMessage(`{"messageType":"WORKOUT_EXERCISE_CREATE","timestamp":"2026-11-26T20:00:00Z","userId":"trainer-1","data":{"planId":"plan-1","exercise":{"id":"e1","name":"Back squat","sets":4,"reps":8}}}`)
	var specs []dag.Spec
	add := func(id string, parents ...string) {
		specs = append(specs, dag.Spec{ID: id, Type: "T", Payload: payload, Parents: parents, MaxAttempts: 3, Queue: "default", Policy: dag.Require, Fresh: true})
	}
	add("plan")
	for p := range 4 {
		ph := "ph" + itoa(int64(p))
		add(ph, "plan")
		for s := range 5 {
			se := ph + "s" + itoa(int64(s))
			add(se, ph)
			for e := range 6 {
				add(se+"e"+itoa(int64(e)), se)
			}
		}
	}
	b.ReportAllocs()
	args := make([]any, 0, 16*len(specs))
	for b.Loop() {
		args = appendNodes(args[:0], specs, nil)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(specs)), "ns/node")
}

// BenchmarkEncodeData is one node's data blob.
func BenchmarkEncodeData(b *testing.B) {
	sp := dag.Spec{Payload: json.RawMessage(`{"messageType":"TEST","timestamp":"2026-11-26T20:00:00Z","data":{"n":1}}`), Parents: []string{"0193c5a2-7f3e-7b4a-9c1d-000000000001"}}
	b.ReportAllocs()
	for b.Loop() {
		_ = encodeData(&sp)
	}
}

// BenchmarkDecodeData is one claimed node's data blob, as Sync decodes it.
func BenchmarkDecodeData(b *testing.B) {
	sp := dag.Spec{Payload: json.RawMessage(`{"messageType":"TEST","timestamp":"2026-11-26T20:00:00Z","data":{"n":1}}`), Parents: []string{"0193c5a2-7f3e-7b4a-9c1d-000000000001"},
		Backoff: dag.Backoff{Kind: dag.Exponential, Base: 2 * time.Second}}
	blob := encodeData(&sp)
	for name, decode := range map[string]func([]byte, any) error{
		"decodeData":    func(b []byte, v any) error { return decodeData(b, v.(*dag.Spec)) },
		"encoding-json": json.Unmarshal, // what decodeData saves
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var got dag.Spec
				if err := decode(blob, &got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// An all-or-nothing batch sends its runs of one-node flows without parents
// as one list; everything else, and every flow of an "each" batch, alone.
func TestBatchUnits(t *testing.T) {
	t.Parallel()
	one := func(id string, parents ...string) FlowWrite {
		return FlowWrite{FlowID: id, Single: true, Specs: []dag.Spec{{ID: id, Parents: parents}}}
	}
	graph := FlowWrite{FlowID: "g", Specs: []dag.Spec{{ID: "g1"}, {ID: "g2", Parents: []string{"g1"}}}}
	flows := []FlowWrite{one("a"), one("b"), one("c", "a"), one("d"), graph, one("e"), one("f"), one("h")}
	require.Equal(t, []batchUnit{{0, 2, true}, {2, 3, false}, {3, 4, false}, {4, 5, false}, {5, 8, true}}, batchUnits(flows, "all"))
	each := batchUnits(flows, "each")
	require.Len(t, each, len(flows))
	for i, u := range each {
		require.Equal(t, batchUnit{i, i + 1, false}, u)
	}
}
