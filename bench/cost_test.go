package main

import (
	"context"
	_ "embed"
	"io"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/internal/store"
)

//go:embed lua/straight_sync.lua
var straightSyncLua string

// BenchmarkJobCost is where a job's Redis time goes: on a Redis of its
// own, b.N no-op jobs are enqueued with AddBulk in chunks of 500, then
// claimed and completed in calls of 15 (a runner of 50's batch), without
// a runner. It reports the script time of each phase (usec in INFO
// commandstats, the commands inside the scripts included) per job, and
// Redis's CPU per job over both:
//
//	go test ./bench -run '^$' -bench JobCost -benchtime 20000x -count 3
//
// engine claims and completes with Store.Sync; straight with
// lua/straight_sync.lua, the same commands without the state machine's
// structure, on the same nodes.
func BenchmarkJobCost(b *testing.B) {
	b.Run("engine", func(b *testing.B) {
		jobCost(b, func(ctx context.Context, c *costRun) {
			st := seam.Store(c.t.client)
			req := store.SyncRequest{Worker: "cost", Lease: 30 * time.Second, StallLimit: 3, Queues: []string{"default"}, Types: []string{noop{}.MessageType()}, RetainCount: -1}
			for done := 0; done < b.N; {
				req.Want = 15
				res, err := st.Sync(ctx, time.Now(), req)
				require.NoError(b, err)
				req.Outcomes = req.Outcomes[:0]
				for _, cl := range res.Claimed {
					req.Outcomes = append(req.Outcomes, store.Outcome{ID: cl.ID, Token: cl.Token, Kind: store.OutcomeOK, Result: []byte("{}")})
				}
				done += len(res.Claimed)
				require.False(b, len(res.Claimed) == 0 && done < b.N, "claimed nothing with %d of %d done", done, b.N)
			}
			req.Want = 0
			_, err := st.Sync(ctx, time.Now(), req)
			require.NoError(b, err)
		}, "fcall")
	})
	b.Run("straight", func(b *testing.B) {
		jobCost(b, func(ctx context.Context, c *costRun) {
			sc := redis.NewScript(straightSyncLua)
			prefix := "trellis:{" + c.t.ns + "}:"
			lane := "default|" + noop{}.MessageType()
			var held []string // id, token
			for done := 0; done < b.N; {
				now := time.Now().UnixMilli()
				args := []any{now, 15, "cost", now + 30000, lane, len(held) / 2}
				for k := 0; k < len(held); k += 2 {
					args = append(args, held[k], held[k+1], "{}")
				}
				res, err := sc.Run(ctx, c.b.rdb, []string{prefix}, args...).StringSlice()
				require.NoError(b, err)
				for _, s := range res[:len(held)/2] {
					require.Equal(b, "1", s, "every completion applies")
				}
				done += len(held) / 2
				claimed := res[len(held)/2:]
				held = held[:0]
				for k := 0; k < len(claimed); k += 6 {
					held = append(held, claimed[k], claimed[k+3])
				}
				require.False(b, len(held) == 0 && done < b.N, "claimed nothing with %d of %d done", done, b.N)
			}
		}, "evalsha")
	})
}

type costRun struct {
	b *bench
	t *trellisRun
}

// jobCost enqueues b.N no-op jobs on a Redis of its own, runs them with
// work, and reports the phases' time in the scripts of cmd (fcall,
// evalsha).
func jobCost(b *testing.B, work func(context.Context, *costRun), cmd string) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		b.Skip("redis-server is not installed")
	}
	ctx := context.Background()
	url, stop, err := ownRedis(ctx)
	require.NoError(b, err)
	b.Cleanup(stop)
	opt, err := parseFlags([]string{"-redis", url})
	require.NoError(b, err)
	bb, err := newBench(ctx, opt, io.Discard)
	require.NoError(b, err)
	b.Cleanup(func() { _ = bb.rdb.Close() })
	t, err := bb.newTrellisRun("cost", b.N)
	require.NoError(b, err)
	b.Cleanup(t.close)
	usec := func(cmd string) float64 {
		m, err := info(ctx, bb.rdb, "commandstats")
		require.NoError(b, err)
		v, _ := statField(m["cmdstat_"+cmd], "usec")
		x, _ := strconv.ParseFloat(v, 64)
		return x
	}
	s0, err := takeSnapshot(ctx, bb.rdb)
	require.NoError(b, err)
	u0 := usec("fcall")
	b.ResetTimer()
	jobs := make([]flow.BulkJob, 500)
	for i := range jobs {
		jobs[i].Msg = noop{}
	}
	for left := b.N; left > 0; left -= len(jobs) {
		_, err := t.client.AddBulk(ctx, jobs[:min(left, len(jobs))])
		require.NoError(b, err)
	}
	u1, w1 := usec("fcall"), usec(cmd)
	work(ctx, &costRun{b: bb, t: t})
	b.StopTimer()
	w2 := usec(cmd)
	s1, err := takeSnapshot(ctx, bb.rdb)
	require.NoError(b, err)
	n := float64(b.N)
	b.ReportMetric((u1-u0)/n, "enqueue-µs/job")
	b.ReportMetric((w2-w1)/n, "sync-µs/job")
	b.ReportMetric((s1.redisCPU-s0.redisCPU)*1e6/n, "redis-cpu-µs/job")
}
