package faults_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/internal/redistest"
)

// TestSentinelFailover runs the load on a primary with one replica watched
// by a Sentinel, through go-redis's failover client, and kills the primary
// (SIGKILL) mid-run. The Sentinel promotes the replica; the runners and the
// producer follow it on their own. Replication is asynchronous, so what the
// primary acknowledged just before dying may be lost: the test counts it.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	primary := redistest.StartRedis(t)
	replica := redistest.StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))
	ctx := context.Background()
	direct := redis.NewClient(&redis.Options{Addr: replica.Addr()})
	t.Cleanup(func() { _ = direct.Close() })
	eventually(t, 30*time.Second, "the replica in sync", func() bool {
		info, err := direct.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	sentinel := redistest.StartSentinel(t, "trellis", "127.0.0.1", primary.Port)
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr()})
	t.Cleanup(func() { _ = sc.Close() })
	eventually(t, 30*time.Second, "the sentinel knows the replica", func() bool {
		rs, err := sc.Replicas(ctx, "trellis").Result()
		return err == nil && len(rs) == 1
	})

	rdb := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: "trellis", SentinelAddrs: []string{sentinel.Addr()}, PoolSize: 64, MaxRetries: 3,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	masterAddr := func() string {
		a, err := sc.GetMasterAddrByName(ctx, "trellis").Result()
		if err != nil || len(a) != 2 {
			return ""
		}
		return net.JoinHostPort(a[0], a[1])
	}
	loadUnderFault(t, rdb, faultPlan{
		label:   "sentinel failover",
		mayLose: true,
		before:  func() { require.Equal(t, primary.Addr(), masterAddr()) },
		inject: func() {
			primary.Kill()
			eventually(t, 60*time.Second, "the sentinel promotes the replica", func() bool { return masterAddr() == replica.Addr() })
		},
		after: func() {
			role, err := direct.Do(ctx, "ROLE").Slice()
			require.NoError(t, err)
			require.Equal(t, "master", role[0], "the replica is the primary now")
		},
	})
}
