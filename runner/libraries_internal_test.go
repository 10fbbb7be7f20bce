package runner

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
)

func TestStaleLibraries(t *testing.T) {
	libs := []string{"trellis_a", "trellis_b", "trellis_c", "trellis_own"}
	live := func(libs ...string) []dag.Heartbeat {
		var hs []dag.Heartbeat
		for _, l := range libs {
			hs = append(hs, dag.Heartbeat{ID: l, Info: &dag.RunnerInfo{Library: l}})
		}
		return hs
	}
	require.Equal(t, []string{"trellis_a", "trellis_b", "trellis_c"}, staleLibraries(libs, "trellis_own", nil))
	require.Equal(t, []string{"trellis_a", "trellis_c"}, staleLibraries(libs, "trellis_own", live("trellis_b", "trellis_own")))
	// a live runner that does not say which library it calls may call any
	require.Empty(t, staleLibraries(libs, "trellis_own", append(live("trellis_b"), dag.Heartbeat{ID: "old"})))
	require.Empty(t, staleLibraries(libs, "trellis_own", append(live("trellis_b"), dag.Heartbeat{ID: "older", Info: &dag.RunnerInfo{}})))
}
