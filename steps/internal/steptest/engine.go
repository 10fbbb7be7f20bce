package steptest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/embedded"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
	"github.com/trellisflow/trellis/schema/schematest"
)

// Engine is one test's database, Redis namespace and client.
type Engine struct {
	t      testing.TB
	DB     *bun.DB
	Client *flow.Client
}

// EachEngine runs fn twice in parallel: "postgres" on the real PostgreSQL
// and the real Redis (REDIS_URL, default redis://127.0.0.1:6379/0), and
// "sqlite" on SQLite and the in-process Redis — each with a fresh schema or
// file and a fresh namespace.
func EachEngine(t *testing.T, fn func(t *testing.T, e *Engine)) {
	t.Helper()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, NewEngine(t, schematest.Postgres(t), RealRedis(t)))
	})
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		er, err := embedded.NewRedis()
		require.NoError(t, err)
		t.Cleanup(func() { _ = er.Close() })
		fn(t, NewEngine(t, schematest.SQLite(t), er.Client()))
	})
}

// NewEngine makes a client on a fresh namespace of rdb, cleared at cleanup.
func NewEngine(t testing.TB, db *bun.DB, rdb redis.UniversalClient) *Engine {
	c, err := flow.NewClient(rdb, &flow.Config{
		Namespace: fmt.Sprintf("steps-%08x", rand.Uint32()), Development: true, Logger: Logger(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = c.Clear(context.Background()) })
	return &Engine{t: t, DB: db, Client: c}
}

var (
	realOnce sync.Once
	realRDB  *redis.Client
	realErr  error
)

// RealRedis is the shared client of the real Redis.
func RealRedis(t testing.TB) redis.UniversalClient {
	t.Helper()
	realOnce.Do(func() {
		url := os.Getenv("REDIS_URL")
		if url == "" {
			url = "redis://127.0.0.1:6379/0"
		}
		opt, err := redis.ParseURL(url)
		if err != nil {
			realErr = err
			return
		}
		opt.PoolSize = 100
		realRDB = redis.NewClient(opt)
		realErr = realRDB.Ping(context.Background()).Err()
	})
	require.NoError(t, realErr, "the tests need Redis at REDIS_URL (default redis://127.0.0.1:6379/0); `make test` starts it")
	return realRDB
}

// Start runs a runner with steps until the test ends. cfg may be nil.
func (e *Engine) Start(cfg *runner.Config, steps ...flow.Step) *runner.Runner {
	e.t.Helper()
	c := runner.Config{Concurrency: 16, Lease: 5 * time.Second, IdleWait: 50 * time.Millisecond, Logger: Logger()}
	if cfg != nil {
		c = *cfg
		if c.Logger == nil {
			c.Logger = Logger()
		}
	}
	r, err := runner.New(e.Client, &c)
	require.NoError(e.t, err)
	require.NoError(e.t, r.Register(steps...))
	require.NoError(e.t, r.Start(context.Background()))
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Stop(ctx)
	})
	return r
}

// Wait waits up to a minute for the flow of job id to finish.
func (e *Engine) Wait(id string) *dag.Flow {
	e.t.Helper()
	j, err := e.Client.Job(context.Background(), id)
	require.NoError(e.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f, err := e.Client.Wait(ctx, j.FlowID)
	require.NoError(e.t, err)
	return f
}

// Job reads job id.
func (e *Engine) Job(id string) *dag.Node {
	e.t.Helper()
	j, err := e.Client.Job(context.Background(), id)
	require.NoError(e.t, err)
	return j
}
