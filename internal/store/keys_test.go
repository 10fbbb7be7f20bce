package store

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/internal/testredis"
)

// The scripts build their key names in one place (begin in
// scripts/lib/8-begin.lua); they must be the names keys.go builds.
func TestLuaKeysMatchGo(t *testing.T) {
	lib, err := libText()
	require.NoError(t, err)
	body := `return {KN .. 'x', KF .. 'x', KFM .. 'x', KLANE .. 'q|t', KWAKE .. 'q|t', KOLDQ .. 'q' .. ':ready',
		KRATE .. 't' .. ':' .. '5', KCOUNTS, KCTL, KEVENTS, KEVSEQ, KRUNNERS, KRINFO, DONE, ACTIVE, DELAYED, KIX .. 'succeeded' .. ':' .. 'q|t'}`
	k := newKeys("keys-test")
	script := redis.NewScript(string(lib) + "\nbegin(KEYS, ARGV)\n" + body)
	got, err := script.Run(context.Background(), testredis.Client(t), []string{k.prefix}, "1").StringSlice()
	require.NoError(t, err)
	want := []string{k.node("x"), k.flow("x"), k.flowMeta("x"), k.ready("q", "t"), k.laneWake("q", "t"), k.oldReady("q"),
		k.rateWindow("t", 5), k.counts(), k.control(), k.events(), k.eventSeq(), k.runners(), k.runnerInfo(),
		k.done(), k.active(), k.delayed(), k.index(dag.Succeeded, "q", "t")}
	require.Equal(t, want, got)
}
