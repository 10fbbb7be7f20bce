// Command bench measures Trellis's throughput and latency, with BullMQ and
// asynq run on the same Redis and River on the machine's PostgreSQL in the
// same run for comparison, and redis-benchmark figures as the ceiling. See
// README.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

type counter = atomic.Int64

var scenarioNames = []string{"independent", "fanout", "chain", "fullplansave", "fullplansave-one", "large"}

var peerNames = []string{"bullmq", "asynq", "river"}

type options struct {
	scenarios   []string
	n           int // 0: each scenario's own size
	concurrency int // 0: each scenario's own (independent: 10 and 50)
	redisURL    string
	dbURL       string
	json        bool
	peers       map[string]bool
	runs        int
	ceiling     bool
	ownRedis    bool
	commands    bool
	cpuProfile  string
}

// bench holds what every scenario shares.
type bench struct {
	opt          options
	rdb          *redis.Client
	quiet        *slog.Logger
	cores        int
	redisVersion string
	loadStart    string // 1-minute load average when the run started
	tty          bool
	stderr       io.Writer

	mu         sync.Mutex
	namespaces []string // every Trellis namespace used, for tests to check they are gone
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	scenario := fs.String("scenario", "all", "scenario to run: "+strings.Join(scenarioNames, ", ")+", or all; several separated by commas")
	n := fs.Int("n", 0, "nodes (independent, large), flows (fanout), chains (chain), plans (fullplansave) or saves (fullplansave-one); 0: the scenario's default")
	c := fs.Int("concurrency", 0, "runner concurrency; 0: independent runs C=10 and C=50, the others C=50 (chain C=10)")
	redisURL := fs.String("redis", envOr("REDIS_URL", "redis://127.0.0.1:6379/0"), "Redis URL (every scenario uses its own namespace and deletes it)")
	dbURL := fs.String("db", envOr("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL URL for fullplansave with the real workout steps and for the River peer")
	js := fs.Bool("json", false, "print one JSON line per result on stdout")
	peers := fs.String("peers", "bullmq,asynq,river", `peers to run beside Trellis: bullmq, asynq, river, or "none"`)
	runs := fs.Int("runs", 1, "run each scenario this many times and report medians")
	ceiling := fs.Bool("ceiling", true, "measure the Redis ceiling with redis-benchmark when it exists")
	commands := fs.Bool("commands", false, "after the table, list each result's Redis commands per node by command")
	cpuProfile := fs.String("cpuprofile", "", "write a pprof CPU profile of this process (enqueuers and runners) to this file")
	own := fs.Bool("own-redis", false, "start a redis-server of this machine on a free loopback port for the run (instead of -redis) and stop it afterwards")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	o := options{n: *n, concurrency: *c, redisURL: *redisURL, dbURL: *dbURL, json: *js, runs: *runs, peers: map[string]bool{}, ceiling: *ceiling, ownRedis: *own, commands: *commands, cpuProfile: *cpuProfile}
	if *scenario == "all" {
		o.scenarios = scenarioNames
	} else {
		for _, s := range strings.Split(*scenario, ",") {
			if !slices.Contains(scenarioNames, s) {
				return o, fmt.Errorf("-scenario: unknown scenario %q (want one of %s, or all)", s, strings.Join(scenarioNames, ", "))
			}
			o.scenarios = append(o.scenarios, s)
		}
	}
	if *peers != "none" && *peers != "" {
		for _, p := range strings.Split(*peers, ",") {
			if !slices.Contains(peerNames, p) {
				return o, fmt.Errorf("-peers: unknown peer %q (want %s, or none)", p, strings.Join(peerNames, ", "))
			}
			o.peers[p] = true
		}
	}
	if o.runs < 1 {
		return o, fmt.Errorf("-runs %d must be at least 1", o.runs)
	}
	if o.n < 0 || o.concurrency < 0 {
		return o, fmt.Errorf("-n and -concurrency must not be negative")
	}
	return o, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run() error {
	opt, err := parseFlags(os.Args[1:])
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	if opt.cpuProfile != "" {
		f, err := os.Create(opt.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if opt.ownRedis {
		url, stop, err := ownRedis(ctx)
		if err != nil {
			return err
		}
		defer stop()
		opt.redisURL = url
		fmt.Fprintf(os.Stderr, "running on a redis-server of its own at %s\n", url)
	}
	b, err := newBench(ctx, opt, os.Stderr)
	if err != nil {
		return err
	}
	defer b.rdb.Close()
	results, err := b.all(ctx)
	if len(results) > 0 {
		fmt.Fprintln(os.Stderr)
		if opt.json {
			printTable(os.Stderr, b, results)
			enc := json.NewEncoder(os.Stdout)
			for _, r := range results {
				_ = enc.Encode(r)
			}
		} else {
			printTable(os.Stdout, b, results)
		}
	}
	return err
}

func newBench(ctx context.Context, opt options, stderr io.Writer) (*bench, error) {
	ropt, err := redis.ParseURL(opt.redisURL)
	if err != nil {
		return nil, fmt.Errorf("-redis: %w", err)
	}
	ropt.PoolSize = 100
	// One script call enqueues the whole large graph; a read timeout
	// shorter than it would make go-redis retry it into a BUSY Redis.
	ropt.ReadTimeout = 2 * time.Minute
	rdb := redis.NewClient(ropt)
	m, err := info(ctx, rdb, "server")
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w", opt.redisURL, err)
	}
	b := &bench{
		opt: opt, rdb: rdb, quiet: slog.New(slog.NewTextHandler(io.Discard, nil)),
		cores: runtime.NumCPU(), redisVersion: m["redis_version"], stderr: stderr, loadStart: loadAverage(),
	}
	if f, ok := stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			b.tty = true
		}
	}
	return b, nil
}

// result starts a Trellis result.
func (b *bench) result(scenario, variant string, c, n int) Result {
	r := blankResult()
	r.Engine, r.Scenario, r.Variant, r.Concurrency, r.Nodes = "trellis", scenario, variant, c, n
	r.Cores, r.RedisVersion = b.cores, b.redisVersion
	return r
}

func (b *bench) status(format string, args ...any) {
	if b.tty {
		fmt.Fprint(b.stderr, "\r\033[K")
	}
	fmt.Fprintf(b.stderr, format+"\n", args...)
}

func (b *bench) warnf(format string, args ...any) { b.status("warning: "+format, args...) }

// job is one measurement: one engine, one scenario, one size.
type job struct {
	engine, scenario string
	run              func(ctx context.Context) (Result, error)
}

// all runs the chosen scenarios, Trellis and its peers interleaved run by
// run so that the machine's drift hits them alike, and returns medians.
func (b *bench) all(ctx context.Context) ([]Result, error) {
	var jobs []job
	add := func(engine, scenario string, fn func(ctx context.Context) (Result, error)) {
		jobs = append(jobs, job{engine, scenario, fn})
	}
	pick := func(def int) int {
		if b.opt.n > 0 {
			return b.opt.n
		}
		return def
	}
	conc := func(def int) int {
		if b.opt.concurrency > 0 {
			return b.opt.concurrency
		}
		return def
	}
	bull := b.opt.peers["bullmq"] && b.bullmqReady(ctx)
	// The Go peers run independent only: no build, no PostgreSQL check without it.
	indep := slices.Contains(b.opt.scenarios, "independent")
	asq := indep && b.opt.peers["asynq"] && b.goPeerReady(ctx, "asynq")
	riv := indep && b.opt.peers["river"] && b.riverReady(ctx)
	for _, s := range b.opt.scenarios {
		switch s {
		case "independent":
			n := pick(20000)
			cs := []int{10, 50}
			if b.opt.concurrency > 0 {
				cs = []int{b.opt.concurrency}
			}
			for _, c := range cs {
				add("trellis", s, func(ctx context.Context) (Result, error) { return b.independent(ctx, n, c) })
				if bull {
					add("bullmq", s, func(ctx context.Context) (Result, error) { return b.bullmq(ctx, s, n, c) })
				}
				if asq {
					add("asynq", s, func(ctx context.Context) (Result, error) { return b.asynq(ctx, n, c) })
				}
				if riv {
					add("river", s, func(ctx context.Context) (Result, error) { return b.river(ctx, n, c) })
				}
			}
		case "fanout":
			flows, c := pick(1000), conc(50)
			add("trellis", s, func(ctx context.Context) (Result, error) { return b.fanout(ctx, flows, 10, c) })
			if bull {
				add("bullmq", s, func(ctx context.Context) (Result, error) { return b.bullmq(ctx, s, flows, c) })
			}
		case "chain":
			reps, c := pick(10), conc(10)
			add("trellis", s, func(ctx context.Context) (Result, error) { return b.chain(ctx, 100, reps, c) })
			if bull {
				add("bullmq", s, func(ctx context.Context) (Result, error) { return b.bullmq(ctx, s, reps, c) })
			}
		case "fullplansave":
			plans, c := pick(50), conc(50)
			add("trellis", s, func(ctx context.Context) (Result, error) { return b.fullPlanSave(ctx, plans, c) })
			if bull {
				add("bullmq", s, func(ctx context.Context) (Result, error) { return b.bullmq(ctx, s, plans, c) })
			}
			if b.pgReady(ctx, s+"-pg") {
				add("trellis", s+"-pg", func(ctx context.Context) (Result, error) { return b.fullPlanSavePG(ctx, plans, c) })
				for _, floor := range []string{bunRows, bunBulk} {
					add(floor, s+"-pg", func(ctx context.Context) (Result, error) { return b.bunFloor(ctx, floor, plans, c) })
				}
			}
		case "fullplansave-one":
			saves, c := pick(30), conc(50)
			if b.pgReady(ctx, s) {
				add("trellis", s, func(ctx context.Context) (Result, error) { return b.fullPlanSaveOne(ctx, saves, c) })
			}
		case "large":
			n, c := pick(100000), conc(50)
			add("trellis", s, func(ctx context.Context) (Result, error) { return b.large(ctx, n, c) })
		}
	}
	runs := make([][]Result, len(jobs))
	var firstErr error
	for k := 0; k < b.opt.runs; k++ {
		for i, j := range jobs {
			if ctx.Err() != nil {
				return collect(runs), ctx.Err()
			}
			if b.opt.runs > 1 {
				b.status("run %d of %d: %s %s", k+1, b.opt.runs, j.engine, j.scenario)
			}
			r, err := j.run(ctx)
			if err != nil {
				err = fmt.Errorf("%s %s: %w", j.engine, j.scenario, err)
				b.status("error: %v", err)
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			runs[i] = append(runs[i], r)
		}
	}
	out := collect(runs)
	if b.opt.ceiling {
		out = append(out, b.ceiling(ctx)...)
	}
	return out, firstErr
}

func collect(runs [][]Result) []Result {
	var out []Result
	for _, rs := range runs {
		if len(rs) > 0 {
			out = append(out, medianOf(rs))
		}
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

// progress draws a bar on stderr until the returned func is called: in
// place on a terminal, a line every 5 seconds otherwise.
func (b *bench) progress(label string, total int64, done func() int64) func() {
	return b.progressOf(label, func() int64 { return total }, done)
}

// progressOf is progress with a total that may change (peers report theirs).
func (b *bench) progressOf(label string, totalFn func() int64, done func() int64) func() {
	stop := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	every := 200 * time.Millisecond
	if !b.tty {
		every = 5 * time.Second
	}
	draw := func(final bool) {
		d, total := done(), totalFn()
		frac := float64(d) / float64(max(total, 1))
		frac = min(frac, 1)
		const width = 30
		bar := strings.Repeat("█", int(frac*width)) + strings.Repeat("·", width-int(frac*width))
		rate := float64(d) / time.Since(start).Seconds()
		line := fmt.Sprintf("%-32s %s %3.0f%% %d/%d %.0f/s", label, bar, frac*100, d, total, rate)
		if b.tty {
			fmt.Fprint(b.stderr, "\r\033[K"+line)
			if final {
				fmt.Fprintln(b.stderr)
			}
		} else if !final || d > 0 {
			fmt.Fprintln(b.stderr, line)
		}
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				draw(true)
				return
			case <-t.C:
				draw(false)
			}
		}
	}()
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			close(stop)
			<-finished
		}
	}
}
