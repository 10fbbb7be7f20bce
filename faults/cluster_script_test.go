package faults_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
)

// freeRun finds three consecutive loopback ports that are free, together
// with their cluster bus ports (+10000).
func freeRun(t *testing.T) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(9000)
		ok := true
		var held []net.Listener
		for _, p := range []int{base, base + 1, base + 2, base + 10000, base + 10001, base + 10002} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			_ = l.Close()
		}
		if ok {
			return base
		}
	}
	require.FailNow(t, "no free run of ports")
	return 0
}

// TestClusterScript starts a cluster with scripts/redis-cluster.sh, runs a
// flow on it and stops it with the script: what `make test-cluster` relies on.
func TestClusterScript(t *testing.T) {
	t.Parallel()
	base := freeRun(t)
	env := append(os.Environ(), "REDIS_CLUSTER_PORT="+strconv.Itoa(base), "REDIS_CLUSTER_DIR="+t.TempDir())
	script := func(arg string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "../scripts/redis-cluster.sh", arg)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "redis-cluster.sh %s:\n%s", arg, out)
		return string(out)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			script("stop")
		}
	})
	out := script("start")
	want := fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", base, base+1, base+2)
	require.Contains(t, out, "REDIS_CLUSTER_ADDRS="+want)
	require.Equal(t, want, strings.TrimSpace(script("addrs")))

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(want, ",")})
	t.Cleanup(func() { _ = cc.Close() })
	ctx := context.Background()
	info, err := cc.ClusterInfo(ctx).Result()
	require.NoError(t, err)
	require.Contains(t, info, "cluster_state:ok")
	require.Contains(t, info, "cluster_size:3")

	c := newClient(t, cc, "script", newLogsT())
	rec := newRuns()
	r := startRunner(t, c, runnerCfg("script-runner"), rec)
	_, err = c.Enqueue(ctx, ladder("script-flow", 20, 0))
	require.NoError(t, err)
	f := waitFlow(t, c, "script-flow", 60*time.Second)
	require.Equal(t, 20, f.Counts()[dag.Succeeded])
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, r.Stop(sctx))

	script("stop")
	stopped = true
	single := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", base), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer single.Close()
	require.Error(t, single.Ping(ctx).Err(), "stop took the nodes down")
}
