package main

import (
	"context"
	_ "embed"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The floor: a bare Lua job queue run on the same Redis, to show what any
// design with a hash per job, leases and one script call per batch costs
// there before it does anything else. It has no DAG, no flows, no
// counters, timeline, events, priorities, limits or retention: Trellis's
// figures above it are what those cost.
var (
	//go:embed lua/floor_enqueue.lua
	floorEnqueueLua string
	//go:embed lua/floor_sync.lua
	floorSyncLua string
)

const floorEngine = "bare Lua queue"

// floor enqueues n jobs in chunks of 500, then runs them with two loops of
// 25 (as a Trellis runner of 50 does): each call completes the loop's
// batch and leases the next.
func (b *bench) floor(ctx context.Context, n int) (Result, error) {
	enq, syn := redis.NewScript(floorEnqueueLua), redis.NewScript(floorSyncLua)
	prefix := fmt.Sprintf("benchfloor%06x:{f}:", rand.IntN(1<<24))
	defer b.unlinkPrefix(prefix)
	data := `{"e":{}}`
	s0, err := takeSnapshot(ctx, b.rdb)
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	for i := 0; i < n; i += 500 {
		args := []any{time.Now().UnixMilli()}
		for k := i; k < min(i+500, n); k++ {
			args = append(args, strconv.Itoa(k), data)
		}
		if err := enq.Run(ctx, b.rdb, []string{prefix}, args...).Err(); err != nil {
			return Result{}, fmt.Errorf("floor enqueue: %w", err)
		}
	}
	enqueued := time.Since(start)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			var held []any // id, token pairs
			for {
				now := time.Now().UnixMilli()
				args := append([]any{now, 25, now + 30000}, held...)
				res, err := syn.Run(ctx, b.rdb, []string{prefix}, args...).Slice()
				if err != nil {
					errs <- fmt.Errorf("floor sync: %w", err)
					return
				}
				held = held[:0]
				for i := 1; i+2 < len(res); i += 3 {
					held = append(held, res[i], res[i+1]) // the "step" does nothing
				}
				if len(held) == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return Result{}, err
	}
	s1, err := takeSnapshot(ctx, b.rdb)
	if err != nil {
		return Result{}, err
	}
	if got, err := b.rdb.ZCard(ctx, prefix+"done").Result(); err != nil || got != int64(n) {
		return Result{}, fmt.Errorf("floor: %d of %d jobs done (%v)", got, n, err)
	}
	r := blankResult()
	r.Engine, r.Scenario, r.Variant, r.Concurrency, r.Nodes = floorEngine, "ceiling", "floor: the least a Lua queue with leases does per job", 50, n
	r.NodesPerSec = float64(n) / el.Seconds()
	r.EnqueuePerSec = float64(n) / enqueued.Seconds()
	r.CmdsPerNode = float64(s1.cmds-s0.cmds) / float64(n)
	r.RedisCPUPerNodeUS = (s1.redisCPU - s0.redisCPU) * 1e6 / float64(n)
	r.ProcCPUPerNodeUS = float64((s1.procCPU - s0.procCPU).Microseconds()) / float64(n)
	r.Cores, r.RedisVersion = b.cores, b.redisVersion
	return r, nil
}
