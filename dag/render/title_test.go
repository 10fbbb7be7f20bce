package render_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/dag/render"
)

func TestMermaidTitleHasNoMarkup(t *testing.T) {
	t.Parallel()
	id := `x" <script>alert(1)</script>`
	f := &dag.Flow{ID: id, Nodes: []*dag.Node{{Spec: dag.Spec{ID: id, Type: "T", MaxAttempts: 1}, State: dag.Ready}}}
	var b bytes.Buffer
	require.NoError(t, render.Mermaid(t.Context(), &b, f, nil))
	require.NotContains(t, b.String(), "<script>")
	require.Contains(t, b.String(), `title: "flow x\" ‹script›alert(1)‹/script›`)
}
