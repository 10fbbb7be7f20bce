package embedded_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/embedded"
)

// The in-process Redis says it never evicts, as a health check asks, and
// refuses to be configured.
func TestRedisAnswersConfigGet(t *testing.T) {
	t.Parallel()
	r, err := embedded.NewRedis()
	require.NoError(t, err)
	defer r.Close()
	ctx := context.Background()
	got, err := r.Client().ConfigGet(ctx, "maxmemory-policy").Result()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"maxmemory-policy": "noeviction"}, got)
	got, err = r.Client().ConfigGet(ctx, "maxmemory*").Result()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"maxmemory": "0", "maxmemory-policy": "noeviction"}, got)
	got, err = r.Client().ConfigGet(ctx, "save").Result()
	require.NoError(t, err)
	require.Empty(t, got)
	require.ErrorContains(t, r.Client().ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(), "CONFIG GET only")
}
