// Package testredis gives tests the Redis they run against: REDIS_URL (or
// the development Redis that `make test` starts), the local Cluster at
// REDIS_CLUSTER_ADDRS (`make test-cluster`), or an in-process one.
package testredis

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trellisflow/trellis/embedded"
)

// URL is REDIS_URL, or redis://127.0.0.1:6379/0.
func URL() string {
	if url := os.Getenv("REDIS_URL"); url != "" {
		return url
	}
	return "redis://127.0.0.1:6379/0"
}

var (
	once        sync.Once
	client      *redis.Client
	err         error
	clusterOnce sync.Once
	cluster     *redis.ClusterClient
	clusterErr  error
)

// Client is one client of that Redis for the whole test binary; it fails t
// when Redis cannot be reached. Tests share it and must not close it. Its
// replies may take long (a starved CI machine must not lose them to a
// read timeout, which would make go-redis send a script call again).
func Client(t testing.TB) *redis.Client {
	t.Helper()
	once.Do(func() {
		var opt *redis.Options
		if opt, err = redis.ParseURL(URL()); err != nil {
			return
		}
		opt.PoolSize = 200
		opt.ReadTimeout = 30 * time.Second
		client = redis.NewClient(opt)
		err = client.Ping(context.Background()).Err()
	})
	if err != nil {
		t.Fatalf("the tests need Redis at REDIS_URL (default redis://127.0.0.1:6379/0); `make test` starts it: %v", err)
	}
	return client
}

// Real is the real Redis the suite runs on: the Cluster at
// REDIS_CLUSTER_ADDRS when that is set, else Client.
func Real(t testing.TB) redis.UniversalClient {
	t.Helper()
	addrs := os.Getenv("REDIS_CLUSTER_ADDRS")
	if addrs == "" {
		return Client(t)
	}
	clusterOnce.Do(func() {
		cluster = redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ","), PoolSize: 200, ReadTimeout: 30 * time.Second})
		clusterErr = cluster.Ping(context.Background()).Err()
	})
	if clusterErr != nil {
		t.Fatalf("the Redis Cluster at REDIS_CLUSTER_ADDRS=%s: %v", addrs, clusterErr)
	}
	return cluster
}

// Embedded starts an in-process Redis for t, closed at its cleanup.
func Embedded(t testing.TB) redis.UniversalClient {
	t.Helper()
	er, err := embedded.NewRedis()
	if err != nil {
		t.Fatalf("embedded Redis: %v", err)
	}
	t.Cleanup(func() { _ = er.Close() })
	return er.Client()
}

// Backends runs fn once on the real Redis (Real) and once on an in-process
// one, as parallel subtests "redis" and "embedded": the conformance suite's
// two backends. Isolate by namespace in fn.
func Backends(t *testing.T, fn func(t *testing.T, rdb redis.UniversalClient)) {
	t.Helper()
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		fn(t, Real(t))
	})
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		fn(t, Embedded(t))
	})
}
