package main

import (
	"context"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/internal/store"
)

// BenchmarkJobCost is where a job's Redis time goes: on a Redis of its
// own, b.N no-op jobs are enqueued with AddBulk in chunks of 500, then
// claimed and completed by Store.Sync calls of 15 (a runner of 50's
// batch), without a runner. It reports the script calls' time (FCALL usec
// in INFO commandstats, the commands inside them included) per job for
// each phase, and Redis's CPU per job over both:
//
//	go test ./bench -run '^$' -bench JobCost -benchtime 20000x -count 3
func BenchmarkJobCost(b *testing.B) {
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

	usec := func() float64 {
		m, err := info(ctx, bb.rdb, "commandstats")
		require.NoError(b, err)
		for _, f := range strings.Split(m["cmdstat_fcall"], ",") {
			if v, ok := strings.CutPrefix(f, "usec="); ok {
				x, _ := strconv.ParseFloat(v, 64)
				return x
			}
		}
		return 0
	}
	s0, err := takeSnapshot(ctx, bb.rdb)
	require.NoError(b, err)
	u0 := usec()
	b.ResetTimer()
	jobs := make([]flow.BulkJob, 500)
	for i := range jobs {
		jobs[i].Msg = noop{}
	}
	for left := b.N; left > 0; left -= len(jobs) {
		if _, err := t.client.AddBulk(ctx, jobs[:min(left, len(jobs))]); err != nil {
			b.Fatal(err)
		}
	}
	u1 := usec()
	st := seam.Store(t.client)
	req := store.SyncRequest{Worker: "cost", Lease: 30 * time.Second, StallLimit: 3, Queues: []string{"default"}, Types: []string{noop{}.MessageType()}, RetainCount: -1}
	for done := 0; done < b.N; {
		req.Want = 15
		res, err := st.Sync(ctx, time.Now(), req)
		if err != nil {
			b.Fatal(err)
		}
		req.Outcomes = req.Outcomes[:0]
		for _, c := range res.Claimed {
			req.Outcomes = append(req.Outcomes, store.Outcome{ID: c.ID, Token: c.Token, Kind: store.OutcomeOK, Result: []byte("{}")})
		}
		done += len(res.Claimed)
		if len(res.Claimed) == 0 && done < b.N {
			b.Fatalf("claimed nothing with %d of %d done", done, b.N)
		}
	}
	req.Want = 0
	if _, err := st.Sync(ctx, time.Now(), req); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	u2 := usec()
	s1, err := takeSnapshot(ctx, bb.rdb)
	require.NoError(b, err)
	n := float64(b.N)
	b.ReportMetric((u1-u0)/n, "enqueue-µs/job")
	b.ReportMetric((u2-u1)/n, "sync-µs/job")
	b.ReportMetric((s1.redisCPU-s0.redisCPU)*1e6/n, "redis-cpu-µs/job")
}
