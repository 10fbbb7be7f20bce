// Package testredis gives tests the Redis they run against: REDIS_URL, or
// the development Redis that `make test` starts.
package testredis

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// URL is REDIS_URL, or redis://127.0.0.1:6379/0.
func URL() string {
	if url := os.Getenv("REDIS_URL"); url != "" {
		return url
	}
	return "redis://127.0.0.1:6379/0"
}

var (
	once   sync.Once
	client *redis.Client
	err    error
)

// Client is one client of that Redis for the whole test binary (pool of
// 100 connections); it fails t when Redis cannot be reached. Tests share
// it and must not close it.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	once.Do(func() {
		var opt *redis.Options
		if opt, err = redis.ParseURL(URL()); err != nil {
			return
		}
		opt.PoolSize = 100
		client = redis.NewClient(opt)
		err = client.Ping(context.Background()).Err()
	})
	if err != nil {
		t.Fatalf("the tests need Redis at REDIS_URL (default redis://127.0.0.1:6379/0); `make test` starts it: %v", err)
	}
	return client
}
