// Command asynq is the asynq peer of Trellis's benchmark, in its own module
// so that the main module never depends on asynq. `go run ./bench` builds
// and runs it as
//
//	asynq -n N -concurrency C -redis URL -queue Q -enqueuers E
//
// on the same Redis, with its own queue (whose keys the harness deletes
// afterwards). It runs the independent scenario only — asynq has no
// dependencies between tasks: n no-op tasks enqueued by E goroutines, then
// one server of concurrency C. It prints {"progress":d,"total":t} lines and
// one {"result":{...}} line with the harness's Result fields.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

func main() {
	n := flag.Int("n", 20000, "tasks")
	c := flag.Int("concurrency", 50, "server concurrency")
	url := flag.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	queue := flag.String("queue", "benchasynq", "queue name (keys asynq:{queue}:*)")
	enq := flag.Int("enqueuers", 8, "goroutines enqueueing")
	flag.Parse()
	res, err := independent(context.Background(), *n, *c, *enq, *url, *queue)
	if err != nil {
		log.Fatalf("asynq peer: %v", err)
	}
	emit(map[string]any{"result": res})
}

func emit(v any) {
	b, _ := json.Marshal(v)
	os.Stdout.Write(append(b, '\n'))
}

type snapshot struct {
	cmds     int64
	byCmd    map[string]int64
	redisCPU float64
	proc     time.Duration
}

func takeSnapshot(ctx context.Context, rdb *redis.Client) (snapshot, error) {
	s, err := rdb.Info(ctx, "commandstats", "cpu").Result()
	if err != nil {
		return snapshot{}, err
	}
	out := snapshot{byCmd: map[string]int64{}}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		k, v, _ := strings.Cut(line, ":")
		switch {
		case strings.HasPrefix(k, "cmdstat_"):
			for _, f := range strings.Split(v, ",") {
				if c, ok := strings.CutPrefix(f, "calls="); ok {
					x, _ := strconv.ParseInt(c, 10, 64)
					out.cmds += x
					out.byCmd[strings.TrimPrefix(k, "cmdstat_")] = x
				}
			}
		case k == "used_cpu_sys" || k == "used_cpu_user":
			x, _ := strconv.ParseFloat(v, 64)
			out.redisCPU += x
		}
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	out.proc = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return out, nil
}

func perNode(a, b int64, n int) any {
	if b < a {
		return nil
	}
	return float64(b-a) / float64(n)
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / 1e6
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/hibiken/asynq" {
				return d.Version
			}
		}
	}
	return "?"
}

func independent(ctx context.Context, n, c, enqueuers int, url, queue string) (map[string]any, error) {
	ropt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(ropt)
	defer rdb.Close()
	connOpt, err := asynq.ParseRedisURI(url)
	if err != nil {
		return nil, err
	}
	client := asynq.NewClient(connOpt)
	defer client.Close()

	base := time.Now()
	now := func() int64 { return int64(time.Since(base)) }
	enq := make([]int64, n)
	start := make([]int64, n)
	var enqueued, done atomic.Int64
	all := make(chan struct{})
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

	s0, err := takeSnapshot(ctx, rdb)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, enqueuers)
	for w := 0; w < enqueuers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				payload := binary.AppendUvarint(nil, uint64(i))
				enq[i] = now()
				if _, err := client.Enqueue(asynq.NewTask("BENCH_NOOP", payload), asynq.Queue(queue), asynq.MaxRetry(0)); err != nil {
					errs <- err
					return
				}
				enqueued.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	tEnq := time.Now()
	s1, err := takeSnapshot(ctx, rdb)
	if err != nil {
		return nil, err
	}
	tRun := time.Now()
	srv := asynq.NewServer(connOpt, asynq.Config{
		Concurrency: c, Queues: map[string]int{queue: 1}, LogLevel: asynq.ErrorLevel,
	})
	err = srv.Start(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		i, _ := binary.Uvarint(t.Payload())
		start[i] = now()
		if done.Add(1) == int64(n) {
			close(all)
		}
		return nil
	}))
	if err != nil {
		return nil, err
	}
	select {
	case <-all:
	case <-time.After(max(60*time.Second, time.Duration(n)*5*time.Millisecond)):
		return nil, fmt.Errorf("only %d of %d tasks ran", done.Load(), n)
	}
	// The last handlers have returned; wait until asynq has marked them done.
	pending, active := "asynq:{"+queue+"}:pending", "asynq:{"+queue+"}:active"
	for {
		p, _ := rdb.LLen(ctx, pending).Result()
		a, _ := rdb.LLen(ctx, active).Result()
		if p == 0 && a == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	tEnd := time.Now()
	s2, err := takeSnapshot(ctx, rdb)
	if err != nil {
		return nil, err
	}
	srv.Shutdown()

	lat := make([]time.Duration, n)
	for i := range lat {
		lat[i] = time.Duration(start[i] - enq[i])
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	secs := tEnd.Sub(t0).Seconds()
	res := map[string]any{
		"engine": "asynq", "scenario": "independent", "variant": fmt.Sprintf("C=%d", c), "concurrency": c, "nodes": n,
		"version":          version(),
		"seconds":          secs,
		"nodes_per_s":      float64(n) / secs,
		"enqueue_seconds":  tEnq.Sub(t0).Seconds(),
		"enqueue_per_s":    float64(n) / tEnq.Sub(t0).Seconds(),
		"run_per_s":        float64(n) / tEnd.Sub(tRun).Seconds(),
		"enq_start_p50_ms": percentile(lat, 0.5), "enq_start_p99_ms": percentile(lat, 0.99),
		"cmds_per_node":         perNode(s0.cmds, s2.cmds, n),
		"enq_cmds_per_node":     perNode(s0.cmds, s1.cmds, n),
		"run_cmds_per_node":     perNode(s1.cmds, s2.cmds, n),
		"redis_cpu_us_per_node": (s2.redisCPU - s0.redisCPU) * 1e6 / float64(n),
		"proc_cpu_us_per_node":  float64((s2.proc - s0.proc).Microseconds()) / float64(n),
	}
	if s2.cmds >= s0.cmds {
		per := map[string]float64{}
		for k, v := range s2.byCmd {
			if d := v - s0.byCmd[k]; d > 0 {
				per[k] = float64(d) / float64(n)
			}
		}
		res["per_command"] = per
	}
	for k, v := range res {
		if v == nil {
			delete(res, k)
			res["note"] = "INFO commandstats went backwards (CONFIG RESETSTAT during the run?): commands not counted"
		}
	}
	return res, nil
}
