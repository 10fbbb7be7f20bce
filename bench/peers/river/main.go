// Command river is the River peer of Trellis's benchmark, in its own module
// so that the main module never depends on River. `go run ./bench` builds
// and runs it as
//
//	river -n N -concurrency C -db URL -schema S -enqueuers E
//
// on the machine's PostgreSQL, in the schema S, which the harness creates
// before and drops (CASCADE) after; the peer runs River's migrations into
// it. It runs the independent scenario only — River's workflows are in its
// paid Pro edition: n no-op jobs inserted with Client.InsertMany in chunks
// of 500, E chunks in flight, then the same client started with one queue of
// MaxWorkers C. It prints {"progress":d,"total":t} lines and one
// {"result":{...}} line with the harness's Result fields.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// chunk is how many jobs go in one InsertMany, as the harness's bulkChunk
// for Trellis's AddBulk and BullMQ's addBulk.
const chunk = 500

func main() {
	n := flag.Int("n", 20000, "jobs")
	c := flag.Int("concurrency", 50, "the queue's MaxWorkers")
	db := flag.String("db", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL URL")
	schema := flag.String("schema", "", "an existing, empty schema to migrate and use")
	enq := flag.Int("enqueuers", 8, "InsertMany calls in flight")
	// River's default cooldown and poll interval fetch at most one batch of C jobs
	// per cooldown, which caps a no-op queue far below what River can do;
	// these are the values River's own benchmark (`river bench`) runs with.
	cooldown := flag.Duration("fetch-cooldown", 2*time.Millisecond, "Config.FetchCooldown")
	poll := flag.Duration("fetch-poll-interval", 20*time.Millisecond, "Config.FetchPollInterval")
	flag.Parse()
	if *schema == "" {
		log.Fatal("river peer: -schema is required")
	}
	cfg := config{n: *n, c: *c, enqueuers: *enq, dbURL: *db, schema: *schema, cooldown: *cooldown, poll: *poll}
	res, err := independent(context.Background(), cfg)
	if err != nil {
		log.Fatalf("river peer: %v", err)
	}
	emit(map[string]any{"result": res})
}

type config struct {
	n, c, enqueuers int
	dbURL, schema   string
	cooldown, poll  time.Duration
}

func emit(v any) {
	b, _ := json.Marshal(v)
	os.Stdout.Write(append(b, '\n'))
}

// noopArgs is a benchmark job; I is its index into the timestamps.
type noopArgs struct {
	I int `json:"i"`
}

func (noopArgs) Kind() string { return "bench_noop" }

// noopWorker records when each job started and does nothing else.
type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	started func(i int)
}

func (w *noopWorker) Work(_ context.Context, j *river.Job[noopArgs]) error {
	w.started(j.Args.I)
	return nil
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// percentile of sorted durations (nearest rank), in milliseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / 1e6
}

func riverVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/riverqueue/river" {
				return d.Version
			}
		}
	}
	return "?"
}

func independent(ctx context.Context, cfg config) (map[string]any, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.dbURL)
	if err != nil {
		return nil, fmt.Errorf("-db: %w", err)
	}
	// One connection per InsertMany in flight, and some for the client's
	// own work (fetching, completing, LISTEN, leader election); pgxpool's
	// default of max(4, cores) would queue the inserters.
	pcfg.MaxConns = int32(cfg.enqueuers + 8)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	var pgVersion string
	if err := pool.QueryRow(ctx, "SHOW server_version").Scan(&pgVersion); err != nil {
		return nil, fmt.Errorf("PostgreSQL at -db: %w", err)
	}
	if f := strings.Fields(pgVersion); len(f) > 0 {
		pgVersion = f[0] // "15.20 (Debian 15.20-0+deb12u1)" → "15.20"
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	driver := riverpgxv5.New(pool)
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Schema: cfg.schema, Logger: quiet})
	if err != nil {
		return nil, err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("migrate schema %s: %w", cfg.schema, err)
	}

	n := cfg.n
	base := time.Now()
	now := func() int64 { return int64(time.Since(base)) }
	enq := make([]int64, n)
	start := make([]int64, n)
	var started atomic.Int64
	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{started: func(i int) {
		start[i] = now()
		started.Add(1)
	}})
	client, err := river.NewClient(driver, &river.Config{
		Schema:            cfg.schema,
		Logger:            quiet,
		Workers:           workers,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.c}},
		FetchCooldown:     cfg.cooldown,
		FetchPollInterval: cfg.poll,
	})
	if err != nil {
		return nil, err
	}
	// Completion events come from the completer after it has written the
	// jobs' state, so the n-th one is the end of the run. The channel holds
	// every event: one dropped would hang the count.
	events, unsubscribe := client.SubscribeConfig(&river.SubscribeConfig{
		ChanSize: n + 1,
		Kinds:    []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled},
	})
	defer unsubscribe()

	var enqueued, done atomic.Int64
	stopProgress := make(chan struct{})
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				emit(map[string]any{"progress": enqueued.Load() + done.Load(), "total": 2 * n})
			}
		}
	}()
	defer close(stopProgress)

	p0 := processCPU()
	t0 := time.Now()
	chunks := (n + chunk - 1) / chunk
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, cfg.enqueuers)
	for w := 0; w < cfg.enqueuers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= chunks {
					return
				}
				first, last := k*chunk, min((k+1)*chunk, n)
				params := make([]river.InsertManyParams, last-first)
				for i := range params {
					params[i] = river.InsertManyParams{Args: noopArgs{I: first + i}, InsertOpts: &river.InsertOpts{MaxAttempts: 1}}
				}
				at := now()
				if _, err := client.InsertMany(ctx, params); err != nil {
					errs <- err
					return
				}
				for i := first; i < last; i++ {
					enq[i] = at
				}
				enqueued.Add(int64(last - first))
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("InsertMany: %w", err)
	}
	tEnq := time.Now()

	tRun := time.Now()
	if err := client.Start(ctx); err != nil {
		return nil, err
	}
	timeout := time.After(max(60*time.Second, time.Duration(n)*5*time.Millisecond))
	var failed int
	for done.Load() < int64(n) {
		select {
		case ev := <-events:
			if ev.Kind != river.EventKindJobCompleted {
				failed++
			}
			done.Add(1)
		case <-timeout:
			_ = client.StopAndCancel(context.Background())
			return nil, fmt.Errorf("only %d of %d jobs finished (%d started)", done.Load(), n, started.Load())
		}
	}
	tEnd := time.Now()
	p1 := processCPU()
	emit(map[string]any{"progress": 2 * n, "total": 2 * n})
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := client.Stop(stopCtx); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	if failed > 0 {
		return nil, fmt.Errorf("%d of %d jobs did not complete", failed, n)
	}
	var completed int
	q := "SELECT count(*) FROM " + pgx.Identifier{cfg.schema, "river_job"}.Sanitize() + " WHERE state = 'completed'"
	if err := pool.QueryRow(ctx, q).Scan(&completed); err != nil {
		return nil, err
	}
	if completed != n {
		return nil, fmt.Errorf("%d jobs completed in %s.river_job, want %d", completed, cfg.schema, n)
	}

	lat := make([]time.Duration, n)
	for i := range lat {
		lat[i] = time.Duration(start[i] - enq[i])
	}
	slices.Sort(lat)
	secs := tEnd.Sub(t0).Seconds()
	return map[string]any{
		"engine": "river", "scenario": "independent", "variant": fmt.Sprintf("C=%d", cfg.c), "concurrency": cfg.c, "nodes": n,
		"version":          riverVersion() + " on PostgreSQL " + pgVersion,
		"seconds":          secs,
		"nodes_per_s":      float64(n) / secs,
		"enqueue_seconds":  tEnq.Sub(t0).Seconds(),
		"enqueue_per_s":    float64(n) / tEnq.Sub(t0).Seconds(),
		"run_per_s":        float64(n) / tEnd.Sub(tRun).Seconds(),
		"enq_start_p50_ms": percentile(lat, 0.5), "enq_start_p99_ms": percentile(lat, 0.99),
		"proc_cpu_us_per_node": float64((p1 - p0).Microseconds()) / float64(n),
	}, nil
}
