package embedded

import (
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Redis is an in-process Redis server and a client connected to it.
type Redis struct {
	srv    *miniredis.Miniredis
	client *redis.Client
}

// NewRedis starts an in-process Redis on a free loopback port.
func NewRedis() (*Redis, error) {
	srv := miniredis.NewMiniRedis()
	if err := srv.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded: start in-process Redis: %w", err)
	}
	// The in-process server runs scripts under one lock and its Lua is slow
	// (a large script takes a long time under the race detector), and a
	// reply lost to a read timeout would run the call again (a claim's nodes
	// stranded until their lease expires).
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64, ReadTimeout: 5 * time.Minute, WriteTimeout: 5 * time.Minute})
	return &Redis{srv: srv, client: client}, nil
}

// Client is a client of the in-process Redis.
func (r *Redis) Client() *redis.Client { return r.client }

// Addr is the server's host:port.
func (r *Redis) Addr() string { return r.srv.Addr() }

// URL is the server's redis:// URL.
func (r *Redis) URL() string { return "redis://" + r.srv.Addr() + "/0" }

// Close stops the client and the server.
func (r *Redis) Close() error {
	err := r.client.Close()
	r.srv.Close()
	return err
}
