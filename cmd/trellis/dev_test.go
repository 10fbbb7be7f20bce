package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// `trellis dev --metrics-addr` serves the metrics there as a worker does,
// and the health of its in-process Redis raises no maxmemory notice.
func TestDevServesMetricsAndHealthyRedis(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := &cliEnv{t: t, dir: dir, env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}} // no REDIS_URL: the in-process Redis
	_, out, _ := c.start("dev", "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	base := out.wait(t, `monitor listening.*url=(http://\S+/)`, 60*time.Second)[1]
	m := out.wait(t, `metrics listening.*url=(http://\S+/)`, 10*time.Second)

	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, body := get(m[1] + "metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `trellis_redis_up{namespace="default"} 1`)
	code, body = get(m[1] + "readyz")
	require.Equal(t, http.StatusOK, code, body)

	var hl struct {
		Metrics struct {
			MaxmemoryPolicy string `json:"maxmemoryPolicy"`
		} `json:"metrics"`
		Findings []struct {
			Check string `json:"check"`
		} `json:"findings"`
	}
	require.Eventually(t, func() bool { // healthy once the runner's first heartbeat is in
		code, body = get(base + "api/admin/queue-health")
		return code == http.StatusOK
	}, 20*time.Second, 100*time.Millisecond, body)
	require.NoError(t, json.Unmarshal([]byte(body), &hl))
	require.Equal(t, "noeviction", hl.Metrics.MaxmemoryPolicy)
	for _, f := range hl.Findings {
		require.NotEqual(t, "redis_maxmemory_policy", f.Check, body)
	}
}
