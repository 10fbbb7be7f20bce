package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/internal/store"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
	"github.com/trellisflow/trellis/steps/workout"
)

func testBench(t testing.TB) *bench {
	t.Helper()
	opt, err := parseFlags(nil)
	require.NoError(t, err)
	b, err := newBench(context.Background(), opt, io.Discard)
	require.NoError(t, err, "the bench tests need Redis at REDIS_URL (default redis://127.0.0.1:6379/0); `make test` starts it")
	t.Cleanup(func() { _ = b.rdb.Close() })
	return b
}

// TestScenarios runs every Trellis scenario at a tiny size on the real
// Redis and checks the figures are there and the namespaces are gone.
func TestScenarios(t *testing.T) {
	t.Parallel()
	b := testBench(t)
	ctx := context.Background()
	cases := map[string]func() (Result, error){
		"independent":  func() (Result, error) { return b.independent(ctx, 300, 10) },
		"fanout":       func() (Result, error) { return b.fanout(ctx, 20, 10, 20) },
		"chain":        func() (Result, error) { return b.chain(ctx, 100, 2, 10) },
		"fullplansave": func() (Result, error) { return b.fullPlanSave(ctx, 2, 20) },
	}
	// Memory deltas are only meaningful on a Redis nobody else writes to.
	own := b
	if _, err := exec.LookPath("redis-server"); err == nil {
		url, stop, err := ownRedis(ctx)
		require.NoError(t, err)
		t.Cleanup(stop)
		opt, err := parseFlags([]string{"-redis", url})
		require.NoError(t, err)
		own, err = newBench(ctx, opt, io.Discard)
		require.NoError(t, err)
		t.Cleanup(func() { _ = own.rdb.Close() })
	}
	cases["large"] = func() (Result, error) { return own.large(ctx, 3000, 20) }
	for name, run := range cases {
		t.Run(name, func(t *testing.T) {
			r, err := run()
			require.NoError(t, err)
			require.Equal(t, "trellis", r.Engine)
			require.Greater(t, r.NodesPerSec, 0.0)
			require.Greater(t, r.EnqueuePerSec, 0.0)
			require.False(t, math.IsNaN(r.EnqStartP50MS), "enqueue→start p50")
			require.GreaterOrEqual(t, r.EnqStartP50MS, 0.0)
			require.Greater(t, r.RedisCPUPerNodeUS, 0.0)
			if !math.IsNaN(r.CmdsPerNode) { // NaN only when someone reset the stats meanwhile
				require.Greater(t, r.CmdsPerNode, 1.0)
			}
			switch name {
			case "chain":
				require.Greater(t, r.MsPerHop, 0.0)
				require.GreaterOrEqual(t, r.HopP50MS, 0.0)
			case "fanout", "fullplansave":
				require.GreaterOrEqual(t, r.HopP50MS, 0.0)
				require.Greater(t, r.FlowsPerSec, 0.0)
			case "large":
				if own != b {
					require.Greater(t, r.MemQueuedBPerNode, 0.0)
					require.Less(t, r.MemTrimmedBPerNode, r.MemDoneBPerNode)
				}
			}
			line, err := json.Marshal(r)
			require.NoError(t, err)
			require.NotContains(t, string(line), "NaN")
		})
	}
	for _, x := range []*bench{b, own} {
		x.mu.Lock()
		for _, ns := range x.namespaces {
			keys, err := x.rdb.Keys(ctx, "trellis:{"+ns+"}:*").Result()
			require.NoError(t, err)
			require.Empty(t, keys, "namespace %s left keys behind", ns)
		}
		x.mu.Unlock()
	}
}

// fullplansave-pg runs the real workout steps as batch steps and records
// the batches they ran in; both floors write every row.
func TestFullPlanSavePostgres(t *testing.T) {
	t.Parallel()
	b := testBench(t)
	ctx := context.Background()
	r, err := b.fullPlanSavePG(ctx, 2, 10)
	require.NoError(t, err, "needs PostgreSQL at DATABASE_URL; `make test` starts it")
	require.Equal(t, 2*planNodes, r.Nodes)
	require.GreaterOrEqual(t, r.HopP50MS, 0.0)
	for _, typ := range []string{workout.TypePlanCreate, workout.TypePhaseCreate, workout.TypeSessionCreate, workout.TypeExerciseCreate} {
		require.GreaterOrEqual(t, r.BatchMean[typ], 1.0, "%s ran as a batch step", typ)
		require.GreaterOrEqual(t, r.BatchMax[typ], r.BatchMean[typ], typ)
	}
	for _, floor := range []string{bunRows, bunBulk} {
		f, err := b.bunFloor(ctx, floor, 2, 10)
		require.NoError(t, err)
		require.Equal(t, floor, f.Engine)
		require.Equal(t, "fullplansave-pg", f.Scenario)
		require.Greater(t, f.NodesPerSec, 0.0)
	}
}

// fullplansave-one times each save from its CSV to its rows, and records
// the hops of its expanded nodes.
func TestFullPlanSaveOne(t *testing.T) {
	t.Parallel()
	b := testBench(t)
	r, err := b.fullPlanSaveOne(context.Background(), 3, 10)
	require.NoError(t, err)
	require.Equal(t, "fullplansave-one", r.Scenario)
	require.Greater(t, r.SaveP50MS, 0.0)
	require.GreaterOrEqual(t, r.SaveP99MS, r.SaveP50MS)
	require.Greater(t, r.HopP50MS, 0.0)
	require.GreaterOrEqual(t, r.BatchMax[workout.TypeExerciseCreate], 1.0)
	line, err := json.Marshal(r)
	require.NoError(t, err)
	require.Contains(t, string(line), `"save_p50_ms"`)
	require.Contains(t, string(line), `"batch_mean":{`)
}

// The timing wrapper keeps a batch step a batch step, with its batching,
// and counts its batches.
func TestTimedKeepsBatching(t *testing.T) {
	t.Parallel()
	rec := newRecorder(3)
	step := flow.BatchFunc(flow.Batching{Size: 7}, func(ctx context.Context, items []flow.Item[noop]) ([]flow.ItemResult[int], error) {
		return make([]flow.ItemResult[int], len(items)), nil
	})
	w, ok := timedStep(step, rec).(flow.BatchStep)
	require.True(t, ok)
	require.Equal(t, 7, w.Batching().Size)
	_, ok = timedStep(flow.StepFunc(func(context.Context, *flow.StepContext, noop) (int, error) { return 0, nil }), rec).(flow.BatchStep)
	require.False(t, ok, "a single step stays single")

	var jobs []*flow.StepContext
	for i := range 3 {
		rec.name(fmt.Sprintf("j%d", i), i)
		jobs = append(jobs, &flow.StepContext{JobID: fmt.Sprintf("j%d", i), Type: "BENCH_NOOP", Envelope: flow.Envelope{Data: []byte("{}")}})
	}
	_, err := w.RunBatch(context.Background(), jobs[:2])
	require.NoError(t, err)
	_, err = w.RunBatch(context.Background(), jobs[2:])
	require.NoError(t, err)
	require.Equal(t, int64(3), rec.done.Load())
	r := blankResult()
	rec.fill(&r)
	require.Equal(t, 1.5, r.BatchMean["BENCH_NOOP"])
	require.Equal(t, 2.0, r.BatchMax["BENCH_NOOP"])
	mean, most := r.batchSizes()
	require.Equal(t, []float64{1.5, 2}, []float64{mean, most})
}

// The table states fullplansave-pg against both floors with their targets.
func TestTableFloors(t *testing.T) {
	t.Parallel()
	row := func(engine string, nodesPerSec float64) Result {
		r := blankResult()
		r.Engine, r.Scenario, r.Concurrency, r.Nodes, r.NodesPerSec = engine, "fullplansave-pg", 50, 7250, nodesPerSec
		return r
	}
	tr := row("trellis", 12000)
	tr.BatchCalls = map[string]float64{workout.TypeExerciseCreate: 10}
	tr.BatchMean = map[string]float64{workout.TypeExerciseCreate: 60}
	tr.BatchMax = map[string]float64{workout.TypeExerciseCreate: 100}
	var out strings.Builder
	printTable(&out, &bench{opt: options{peers: map[string]bool{}}}, []Result{tr, row(bunRows, 4000), row(bunBulk, 60000)})
	require.Contains(t, out.String(), "÷ the bun-rows floor: 3.000 (12,000 vs 4,000 rows/s; target ≥ 3×: met)")
	require.Contains(t, out.String(), "÷ the bun-bulk floor: 0.200 (12,000 vs 60,000 rows/s; target ≥ ⅓: NOT met)")
	require.Contains(t, out.String(), "| 60.0 / 100.0 |")
	require.Contains(t, out.String(), "WORKOUT_EXERCISE_CREATE 60.0 / 100 in 10")
}

func TestResultJSON(t *testing.T) {
	t.Parallel()
	r := blankResult()
	r.Engine, r.Scenario, r.Nodes, r.NodesPerSec = "trellis", "independent", 10, 1234.56789
	line, err := json.Marshal(r)
	require.NoError(t, err)
	require.Contains(t, string(line), `"nodes_per_s":1234.568`)
	require.NotContains(t, string(line), "hop_p50_ms")

	var back Result
	require.NoError(t, json.Unmarshal(line, &back))
	require.Equal(t, "trellis", back.Engine)
	require.True(t, math.IsNaN(back.HopP50MS), "absent figures stay NaN")

	var l peerLine
	require.NoError(t, json.Unmarshal([]byte(`{"result":{"engine":"bullmq","scenario":"chain","nodes":100,"ms_per_hop":0.61}}`), &l))
	require.Equal(t, 0.61, l.Result.MsPerHop)
	require.True(t, math.IsNaN(l.Result.CmdsPerNode))
}

func TestMedianAndRatio(t *testing.T) {
	t.Parallel()
	runs := []Result{blankResult(), blankResult(), blankResult()}
	for i, x := range []float64{3, 1, 2} {
		runs[i].NodesPerSec = x
	}
	runs[1].MsPerHop = 0.5
	m := medianOf(runs)
	require.Equal(t, 2.0, m.NodesPerSec)
	require.Equal(t, 0.5, m.MsPerHop, "NaN runs are left out")
	require.Equal(t, 3, m.Runs)

	tr, peer := blankResult(), blankResult()
	tr.Scenario, peer.Scenario = "chain", "chain"
	tr.MsPerHop, peer.MsPerHop = 0.1, 0.6
	require.InDelta(t, 6.0, ratio(tr, peer), 1e-9)
}

func TestFlags(t *testing.T) {
	t.Parallel()
	o, err := parseFlags([]string{"-scenario", "chain,fanout", "-peers", "none", "-runs", "3"})
	require.NoError(t, err)
	require.Equal(t, []string{"chain", "fanout"}, o.scenarios)
	require.Empty(t, o.peers)
	o, err = parseFlags(nil)
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"bullmq": true, "asynq": true, "river": true}, o.peers, "every peer by default")
	for _, bad := range [][]string{{"-scenario", "nope"}, {"-peers", "sidekiq"}, {"-runs", "0"}} {
		_, err := parseFlags(bad)
		require.Error(t, err, strings.Join(bad, " "))
	}
}

// The table compares Trellis with River in independent, at the same
// concurrency, and says River has no row for the scenarios with
// dependencies.
func TestTableRiverColumn(t *testing.T) {
	t.Parallel()
	row := func(engine, scenario string, c int, nodesPerSec float64) Result {
		r := blankResult()
		r.Engine, r.Scenario, r.Concurrency, r.Nodes, r.NodesPerSec = engine, scenario, c, 100, nodesPerSec
		return r
	}
	results := []Result{
		row("trellis", "independent", 10, 3000), row("river", "independent", 10, 1000),
		row("trellis", "independent", 50, 8000), row("river", "independent", 50, 2000),
		row("trellis", "chain", 10, 500),
	}
	results[1].Version = "v0.51.2 on PostgreSQL 15"
	var out strings.Builder
	printTable(&out, &bench{opt: options{peers: map[string]bool{"river": true}}}, results)
	lines := strings.Split(out.String(), "\n")
	require.Contains(t, lines[0], "| × River |")
	last := func(line string) string { // "| a | … | z |" → "z"
		c := strings.Split(line, "|")
		return strings.TrimSpace(c[len(c)-2])
	}
	require.Equal(t, "3.00×", last(lines[2]), "C=10 against C=10")
	require.Equal(t, "", last(lines[3]), "River's own row has no ratio")
	require.Equal(t, "4.00×", last(lines[4]), "C=50 against C=50")
	require.Equal(t, "—", last(lines[6]), "River has no chain")
	require.Contains(t, out.String(), "river v0.51.2 on PostgreSQL 15")
}

func TestParseBenchmarkCSV(t *testing.T) {
	t.Parallel()
	raw := "\"test\",\"rps\",\"avg_latency_ms\"\n\"EVALSHA sha 1 k\",\"88048.23\",\"0.5\"\n"
	require.InDelta(t, 88048.23, parseBenchmarkCSV([]byte(raw)), 1e-6)
}

// The benchmarks below time the hot paths one at a time on the real Redis,
// through the public API, so regressions show up in review:
//
//	go test ./bench -run '^$' -bench . -benchtime 2000x

func benchClient(b *testing.B) (*bench, *trellisRun) {
	bb := testBench(b)
	t, err := bb.newTrellisRun("gobench", b.N*planNodes+1)
	require.NoError(b, err)
	b.Cleanup(t.close)
	return bb, t
}

// BenchmarkEnqueueSingle is Client.Add of one no-op job.
func BenchmarkEnqueueSingle(b *testing.B) {
	_, t := benchClient(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := t.client.Add(ctx, noop{}, &flow.NodeOpts{ID: nodeID(i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAddBulk500 is Client.AddBulk of 500 no-op jobs, as the
// independent scenario enqueues them; ns/node reported too.
func BenchmarkAddBulk500(b *testing.B) {
	_, t := benchClient(b)
	ctx := context.Background()
	jobs := make([]flow.BulkJob, 500)
	for i := range jobs {
		jobs[i].Msg = noop{}
	}
	b.ResetTimer()
	for k := 0; k < b.N; k++ {
		if _, err := t.client.AddBulk(ctx, jobs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(jobs)), "ns/node")
}

// BenchmarkEnqueuePlan145 is Client.Enqueue of one 145-node plan graph
// (building the graph included), reported per node too.
func BenchmarkEnqueuePlan145(b *testing.B) {
	_, t := benchClient(b)
	ctx := context.Background()
	b.ResetTimer()
	for k := 0; k < b.N; k++ {
		g := flow.New()
		addPlan(g, t.rec, k, k*planNodes)
		if _, err := t.client.Enqueue(ctx, g); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*planNodes), "ns/node")
}

// BenchmarkClaimComplete is the runner's round trip without the runner: one
// Store.Sync call completes the previous batch of 50 and claims the next.
func BenchmarkClaimComplete(b *testing.B) {
	_, t := benchClient(b)
	ctx := context.Background()
	err := parallel(ctx, b.N, enqueuers, func(i int) error {
		_, err := t.client.Add(ctx, noop{}, &flow.NodeOpts{ID: nodeID(i)})
		return err
	})
	require.NoError(b, err)
	st := seam.Store(t.client)
	req := store.SyncRequest{Worker: "gobench", Lease: 30 * time.Second, StallLimit: 3, Queues: []string{"default"}, Types: []string{noop{}.MessageType()}, RetainCount: -1}
	b.ResetTimer()
	done := 0
	for done < b.N {
		req.Want = 50
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
}

// BenchmarkRunNoop is a runner of concurrency 50 taking enqueued no-op
// jobs through to succeeded: ns/op is per node.
func BenchmarkRunNoop(b *testing.B) {
	_, t := benchClient(b)
	ctx := context.Background()
	t.rec = newRecorder(b.N)
	err := parallel(ctx, b.N, enqueuers, func(i int) error {
		_, err := t.client.Add(ctx, noop{}, &flow.NodeOpts{ID: nodeID(i)})
		return err
	})
	require.NoError(b, err)
	b.ResetTimer()
	require.NoError(b, t.startRunner(ctx, 50, runner.Config{}))
	require.NoError(b, t.waitAll(ctx, waitTimeout(b.N)))
}

func TestOwnRedis(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	url, stop, err := ownRedis(context.Background())
	require.NoError(t, err)
	opt, err := parseFlags([]string{"-redis", url})
	require.NoError(t, err)
	b, err := newBench(context.Background(), opt, io.Discard)
	require.NoError(t, err)
	require.NotEmpty(t, b.redisVersion)
	stop()
	require.Error(t, b.rdb.Ping(context.Background()).Err(), "the server is gone after stop")
	b.rdb.Close()
}

// TestRunPeer checks the harness's side of the peers' protocol with a
// stand-in peer: progress lines, stray output, one result line.
func TestRunPeer(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	b := testBench(t)
	script := `echo '{"progress":1,"total":2}'; echo 'not json'; echo '{"result":{"engine":"x","scenario":"chain","nodes":100,"ms_per_hop":0.5,"per_command":{"evalsha":2}}}'`
	r, err := b.runPeer(context.Background(), "bullmq", "chain", 10, t.TempDir(), "sh", "-c", script)
	require.NoError(t, err)
	require.Equal(t, "bullmq", r.Engine, "the harness names the engine")
	require.Equal(t, 0.5, r.MsPerHop)
	require.Equal(t, 2.0, r.PerCommand["evalsha"])
	require.Equal(t, b.redisVersion, r.RedisVersion)

	_, err = b.runPeer(context.Background(), "bullmq", "chain", 10, t.TempDir(), "sh", "-c", "exit 3")
	require.Error(t, err)
	_, err = b.runPeer(context.Background(), "bullmq", "chain", 10, t.TempDir(), "sh", "-c", "echo '{}'")
	require.ErrorContains(t, err, "no result")
}

// The floor runs every job it enqueues exactly once and leaves no keys.
func TestFloor(t *testing.T) {
	t.Parallel()
	b := testBench(t)
	ctx := context.Background()
	r, err := b.floor(ctx, 1234) // not a multiple of the chunk or the batch
	require.NoError(t, err)
	require.Equal(t, floorEngine, r.Engine)
	require.Equal(t, 1234, r.Nodes)
	require.Greater(t, r.NodesPerSec, 0.0)
	require.Greater(t, r.RedisCPUPerNodeUS, 0.0)
	if !math.IsNaN(r.CmdsPerNode) {
		require.Greater(t, r.CmdsPerNode, 3.0, "a hash write, a lease and a completion per job at least")
	}
	keys, err := b.rdb.Keys(ctx, "benchfloor*").Result()
	require.NoError(t, err)
	require.Empty(t, keys)
}

// Off a terminal (a log, a pipe) progress prints plain lines, never a bar
// redrawn with \r, and ends with the final count.
func TestProgressOffATerminalPrintsLines(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	b := &bench{stderr: &buf} // tty false: what newBench finds for anything but a terminal
	var n atomic.Int64
	stop := b.progress("chain", 10, n.Load)
	n.Store(10)
	stop()
	b.status("done")
	out := buf.String()
	require.NotContains(t, out, "\r")
	require.NotContains(t, out, "\033[K")
	require.Regexp(t, `^chain +█{30} 100% 10/10 \d+/s\ndone\n$`, out)
}
