package render

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/trellisflow/trellis/dag"
)

// FuzzEscape feeds arbitrary IDs, types, states and errors to DOT and
// Mermaid and checks that every node and edge stays one well-formed
// statement: nothing breaks out of a string.
func FuzzEscape(f *testing.F) {
	f.Add(`"]; x [label="`, "<script>", "failed", "a\\\nb")
	f.Add("a\\", `T"`, "weird\nstate", "#quot; &amp; `x`")
	f.Add("\xff\x00", "\u2028", "", "")
	dotStmt := regexp.MustCompile(`^\t"((?:[^"\\]|\\.)*)"( -> "((?:[^"\\]|\\.)*)")? \[ (?:[a-z]+="(?:[^"\\]|\\.)*", )*\s*weight=0 \];$`)
	mmdNode := regexp.MustCompile(`^  n\d+(?:\[|\[\[|\(\[)"([^"<>&` + "`" + `\\]|<br>|#\w+;)*"(?:\]|\]\]|\]\))$`)
	f.Fuzz(func(t *testing.T, id, typ, state, msg string) {
		a := node(id, typ, dag.State(state), 1, 2)
		a.Error = &dag.ErrorInfo{Message: msg}
		a.Reason = msg
		b := node(id+"/child", typ, dag.Failed, 1, 2, id, msg)
		fl := withChildren(&dag.Flow{ID: msg, Nodes: []*dag.Node{a, b}})

		var dot bytes.Buffer
		require.NoError(t, DOT(t.Context(), &dot, fl, nil))
		nodes, edges := 0, 0
		for _, line := range strings.Split(strings.TrimSuffix(dot.String(), "\n"), "\n") {
			if !strings.HasPrefix(line, "\t\"") {
				continue
			}
			m := dotStmt.FindStringSubmatch(line)
			require.NotNil(t, m, "DOT statement %q", line)
			if m[2] == "" {
				nodes++
			} else {
				edges++
			}
		}
		v, err := build(t.Context(), fl, (&Options{}).WithDefaults())
		require.NoError(t, err)
		require.Equal(t, len(v.nodes), nodes)
		require.Equal(t, len(v.edges), edges)

		var mmd bytes.Buffer
		require.NoError(t, Mermaid(t.Context(), &mmd, fl, nil))
		lines := strings.Split(mmd.String(), "\n")
		count := 0
		for _, line := range lines {
			if strings.HasPrefix(line, "  n") && !strings.Contains(line, "->") {
				require.Regexp(t, mmdNode, line)
				count++
			}
		}
		require.Equal(t, len(v.nodes), count)
	})
}
