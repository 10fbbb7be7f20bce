package embedded

import (
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
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
	if err := srv.Server().Register("CONFIG", configCmd); err != nil {
		srv.Close()
		return nil, fmt.Errorf("embedded: in-process Redis: %w", err)
	}
	// The in-process server runs scripts under one lock and its Lua is slow
	// (a large script takes a long time under the race detector), and a
	// reply lost to a read timeout would run the call again (a claim's nodes
	// stranded until their lease expires).
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64, ReadTimeout: 5 * time.Minute, WriteTimeout: 5 * time.Minute})
	return &Redis{srv: srv, client: client}, nil
}

// config is what CONFIG GET answers: the server has no memory limit and
// never evicts, which health checks (monitor) ask about.
var config = map[string]string{"maxmemory": "0", "maxmemory-policy": "noeviction"}

// configCmd answers CONFIG GET pattern... from config; miniredis has no
// CONFIG of its own, and nothing of it can be set.
func configCmd(c *server.Peer, cmd string, args []string) {
	if len(args) < 2 || !strings.EqualFold(args[0], "GET") {
		c.WriteError("ERR the in-process Redis answers CONFIG GET only")
		return
	}
	found := map[string]string{}
	for _, pat := range args[1:] {
		for k, v := range config {
			if ok, _ := path.Match(strings.ToLower(pat), k); ok {
				found[k] = v
			}
		}
	}
	c.WriteMapLen(len(found))
	for k, v := range found {
		c.WriteBulk(k)
		c.WriteBulk(v)
	}
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
