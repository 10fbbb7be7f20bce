package faults_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
)

// Plan is a fuzzed message type with its own validation and nested data.
type Plan struct {
	Name   string            `json:"name"`
	Weeks  int               `json:"weeks"`
	Tags   []string          `json:"tags,omitempty"`
	Extra  map[string]string `json:"extra,omitempty"`
	Parent *Plan             `json:"parent,omitempty"`
}

func (Plan) MessageType() string { return "FUZZ_PLAN" }

func (p Plan) Validate() error {
	if p.Name == "" {
		return flow.FieldError("name", "is empty")
	}
	if p.Weeks < 1 || p.Weeks > 52 {
		return flow.FieldError("weeks", "%d is outside 1..52", p.Weeks)
	}
	return nil
}

func fuzzRegistry() *flow.Registry {
	reg := flow.NewRegistry()
	flow.RegisterType[Plan](reg)
	flow.RegisterType[Work](reg)
	return reg
}

// FuzzDecode feeds arbitrary bytes to the strict envelope decoder. It never
// panics; every error matches flow.ErrInvalidMessage; what it accepts is a
// registered type that survives a round trip through the envelope.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"messageType":"FUZZ_PLAN","timestamp":"2026-01-02T03:04:05Z","data":{"name":"base","weeks":12,"tags":["a"]}}`,
		`{"messageType":"FAULT_WORK","timestamp":"2026-01-02T03:04:05Z","userId":"u1","metadata":{"k":[1,2,{"x":null}]},"data":{"name":"w","sleep":5}}`,
		`{"messageType":"FUZZ_PLAN","timestamp":"2026-01-02T03:04:05Z","data":{"name":"","weeks":0}}`,
		`{"messageType":"NOPE","timestamp":"2026-01-02T03:04:05Z","data":{}}`,
		`{"messageType":"FUZZ_PLAN","data":null}`,
		`{"messageType":"FUZZ_PLAN","timestamp":"x","data":{"weeks":"12"}}`,
		`{"messageType":"FUZZ_PLAN","timestamp":"2026-01-02T03:04:05Z","data":{"name":"n","weeks":3,"unknown":1}}`,
		`{"messageType":"FUZZ_PLAN","timestamp":"2026-01-02T03:04:05Z","data":{"name":"n","weeks":3}} {}`,
		`{"messageType":"FUZZ_PLAN","timestamp":"2026-01-02T03:04:05Z","data":{"name":"\u0000<b>\"","weeks":3,"parent":{"name":"p","weeks":1}}}`,
		`[`, ``, `null`, `{}`, `"str"`,
	} {
		f.Add([]byte(s))
	}
	reg := fuzzRegistry()
	f.Fuzz(func(t *testing.T, raw []byte) {
		env, msg, err := reg.Decode(raw)
		if err != nil {
			require.ErrorIs(t, err, flow.ErrInvalidMessage, "every decode error is an invalid-message error")
			require.Nil(t, msg)
			require.NotEmpty(t, err.Error())
			return
		}
		require.NotNil(t, msg)
		require.True(t, reg.Known(env.MessageType))
		require.Equal(t, env.MessageType, msg.MessageType())
		// round trip: the accepted message encodes to an envelope that
		// decodes to a message of the same encoding (not always an equal
		// value: an empty list under omitempty comes back nil)
		data, err := json.Marshal(msg)
		require.NoError(t, err)
		again, err := json.Marshal(flow.Envelope{MessageType: env.MessageType, Timestamp: time.Unix(0, 0).UTC(), Data: data})
		require.NoError(t, err)
		_, msg2, err := reg.Decode(again)
		require.NoError(t, err, "%s", again)
		data2, err := json.Marshal(msg2)
		require.NoError(t, err)
		require.Equal(t, string(data), string(data2), "%#v != %#v", msg, msg2)
		require.Equal(t, reflect.TypeOf(msg), reflect.TypeOf(msg2))
	})
}

// FuzzValidate builds graphs from fuzzed IDs and edges and checks the
// validator against a reference: it never panics; it accepts exactly the
// acyclic graphs of valid, unique IDs; its order puts parents first; its
// externals are the parents outside the graph; a cycle it names is real.
func FuzzValidate(f *testing.F) {
	f.Add("a,b,c,d", []byte{1, 0, 2, 0, 3, 1, 3, 2})           // diamond
	f.Add("a,b,c", []byte{0, 1, 1, 2, 2, 0})                   // cycle a←b←c←a
	f.Add("a,b", []byte{0, 0})                                 // self-dependency
	f.Add("a,a", []byte{})                                     // duplicate
	f.Add("a,b", []byte{1, 4, 0, 5, 1, 5})                     // external parents
	f.Add("x\x00y,\"q\"<b>", []byte{1, 0})                     // control character, quotes, HTML
	f.Add("", []byte{})                                        // one empty ID
	f.Add("n0,n1,n2,n3,n4,n5", []byte{5, 4, 4, 3, 3, 2, 2, 1}) // chain, given backwards
	f.Add("a,b", []byte{1, 0, 1, 0})                           // a parent listed twice
	f.Fuzz(func(t *testing.T, idList string, edges []byte) {
		ids := strings.Split(idList, ",")
		if len(ids) > 64 || len(edges) > 512 {
			return
		}
		n := len(ids)
		parentName := func(b byte) string {
			i := int(b) % (n + 3)
			if i < n {
				return ids[i]
			}
			return fmt.Sprintf("ext-%d", i-n)
		}
		specs := make([]dag.Spec, n)
		for i, id := range ids {
			specs[i] = dag.Spec{ID: id, Type: "T", Queue: "default", Policy: dag.Require, MaxAttempts: 1,
				Backoff: dag.Backoff{Kind: dag.Exponential, Base: time.Second}, Payload: []byte(`{}`)}
		}
		for k := 0; k+1 < len(edges); k += 2 {
			c := int(edges[k]) % n
			specs[c].Parents = append(specs[c].Parents, parentName(edges[k+1]))
		}
		order, external, err := dag.Validate(specs, dag.Bounds{})

		// the reference verdict
		index := map[string]int{}
		wellFormed := true
		for i, s := range specs {
			if dag.CheckID(s.ID) != nil {
				wellFormed = false
			}
			if _, dup := index[s.ID]; dup {
				wellFormed = false
			}
			index[s.ID] = i
			seen := map[string]bool{}
			for _, p := range s.Parents {
				if seen[p] || dag.CheckID(p) != nil {
					wellFormed = false
				}
				seen[p] = true
			}
		}
		if !wellFormed {
			require.Error(t, err)
			require.True(t, errors.Is(err, dag.ErrInvalidNode) || errors.Is(err, dag.ErrDuplicateNode) || errors.Is(err, dag.ErrCycle), "%v", err)
			return
		}
		cyclic := hasCycle(specs, index)
		if cyclic {
			require.ErrorIs(t, err, dag.ErrCycle)
			var ce *dag.CycleError
			require.ErrorAs(t, err, &ce)
			requireRealCycle(t, specs, index, ce.Path)
			return
		}
		require.NoError(t, err)
		require.Len(t, order, n)
		pos := make([]int, n)
		for i := range pos {
			pos[i] = -1
		}
		for k, i := range order {
			require.Equal(t, -1, pos[i], "index %d twice in the order", i)
			pos[i] = k
		}
		var wantExt []string
		seenExt := map[string]bool{}
		for i, s := range specs {
			for _, p := range s.Parents {
				if j, ok := index[p]; ok {
					require.Less(t, pos[j], pos[i], "%s comes before its child %s", p, s.ID)
				} else if !seenExt[p] {
					seenExt[p] = true
					wantExt = append(wantExt, p)
				}
			}
		}
		require.ElementsMatch(t, wantExt, external)
	})
}

// hasCycle is a plain depth-first search over the in-graph edges.
func hasCycle(specs []dag.Spec, index map[string]int) bool {
	state := make([]int, len(specs)) // 0 new, 1 on the stack, 2 done
	var visit func(i int) bool
	visit = func(i int) bool {
		state[i] = 1
		for _, p := range specs[i].Parents {
			j, ok := index[p]
			if !ok {
				continue
			}
			if state[j] == 1 || (state[j] == 0 && visit(j)) {
				return true
			}
		}
		state[i] = 2
		return false
	}
	for i := range specs {
		if state[i] == 0 && visit(i) {
			return true
		}
	}
	return false
}

// requireRealCycle checks that path (first node repeated last) follows
// dependency edges parent → child all the way round.
func requireRealCycle(t *testing.T, specs []dag.Spec, index map[string]int, path []string) {
	t.Helper()
	require.GreaterOrEqual(t, len(path), 2, "a cycle is named")
	require.Equal(t, path[0], path[len(path)-1])
	for k := 0; k+1 < len(path); k++ {
		child, ok := index[path[k+1]]
		require.True(t, ok, "%q is in the graph", path[k+1])
		require.Contains(t, specs[child].Parents, path[k], "%s → %s is an edge", path[k], path[k+1])
	}
}
