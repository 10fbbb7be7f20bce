package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRedisURLErrorsHideThePassword(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"redis://u:s3cretpw@127.0.0.1:bad/0",
		"redis://:s3cretpw@127.0.0.1:6379/notanumber",
		"rediss://user:s3cretpw@[::1/0",
	} {
		_, err := parseRedisURL(raw)
		require.Error(t, err, raw)
		require.NotContains(t, err.Error(), "s3cretpw", raw)
	}
	opt, err := parseRedisURL("redis://u:s3cretpw@127.0.0.1:6379/2")
	require.NoError(t, err)
	require.Equal(t, "s3cretpw", opt.Password)
	require.Equal(t, 2, opt.DB)
}
