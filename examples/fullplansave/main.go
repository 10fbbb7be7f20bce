// Command fullplansave is Trellis's main job, end to end: it reads a workout
// plan from CSV, queues it as one WORKOUT_PLAN_FULL_SAVE job that expands into
// plan → phases → sessions → exercises, runs it, and draws the graph.
//
//	go run ./examples/fullplansave                 # the shipped sample, no setup
//	go run ./examples/fullplansave -fail-rate 0.2  # random failures: retries and backoff in the picture
//	go run ./examples/fullplansave -csv plan.csv -redis redis://127.0.0.1:6379/0 -db postgres://…
//
// With no -redis and no -db it runs on an in-process Redis and a SQLite file
// in the output folder, and says so.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/dag/render"
	"github.com/trellisflow/trellis/embedded"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/steps/workout"
	"github.com/trellisflow/trellis/steps/workout/csvplan"
)

//go:embed sample.csv
var sampleCSV []byte

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fullplansave:", err)
		os.Exit(1)
	}
}

type options struct {
	csv, redisURL, dbURL, out string
	failRate                  float64
	concurrency               int
	timeout                   time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("fullplansave", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.csv, "csv", "", "the plan as CSV (default: the shipped sample, 1 plan × 4 phases × 5 sessions × 6 exercises)")
	fs.StringVar(&o.redisURL, "redis", "", "Redis URL (default: an in-process Redis)")
	fs.StringVar(&o.dbURL, "db", "", "database URL, postgres://… or sqlite:PATH (default: a SQLite file in the output folder)")
	fs.StringVar(&o.out, "out", "", "output folder for the pictures (default: out/fullplansave-<time>)")
	fs.Float64Var(&o.failRate, "fail-rate", 0, "probability in [0, 1) that a step attempt fails, to show retries and backoff")
	fs.IntVar(&o.concurrency, "concurrency", 8, "steps running at once")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	if o.failRate < 0 || o.failRate >= 1 {
		return o, fmt.Errorf("-fail-rate %v: want a probability in [0, 1)", o.failRate)
	}
	if o.concurrency < 1 {
		return o, fmt.Errorf("-concurrency %d: want at least 1", o.concurrency)
	}
	if o.out == "" {
		o.out = filepath.Join("out", "fullplansave-"+time.Now().Format("20060102-150405"))
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	// 1. Read and check the whole CSV before anything is queued.
	src := io.Reader(strings.NewReader(string(sampleCSV)))
	name := "the shipped sample"
	if o.csv != "" {
		f, err := os.Open(o.csv)
		if err != nil {
			return err
		}
		defer f.Close()
		src, name = f, o.csv
	}
	plan, err := csvplan.Parse(src, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}

	// 2. Redis and the database: the real ones when given, else embedded.
	rdb, closeRedis, err := openRedis(o.redisURL, stdout)
	if err != nil {
		return err
	}
	defer closeRedis()
	db, err := openDB(ctx, o.dbURL, o.out, stdout)
	if err != nil {
		return err
	}
	defer db.Close()

	// the summary reports failures; keep the engine's own records out of the way
	quiet := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))
	backoff := flow.Exponential(250 * time.Millisecond) // quicker than the 2s default, for a demo
	client, err := flow.NewClient(rdb, &flow.Config{Namespace: "fullplansave", Logger: quiet, DefaultBackoff: backoff, DefaultAttempts: 4})
	if err != nil {
		return err
	}

	// 3. A runner with the workout steps; -fail-rate makes attempts fail.
	r, err := runner.New(client, &runner.Config{Concurrency: o.concurrency, Logger: quiet})
	if err != nil {
		return err
	}
	for _, s := range workout.Steps(db) {
		if err := r.Register(flaky(s, o.failRate)); err != nil {
			return err
		}
	}
	if err := r.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = r.Stop(context.Background()) }()

	// 4. Queue the plan as one job: it saves the plan, then expands.
	start := time.Now()
	job, err := workout.QueueFullPlanSave(ctx, client, *plan, nil)
	if err != nil {
		return err
	}
	phases, sessions, exercises := count(plan)
	fmt.Fprintf(stdout, "queued %s: plan %q, %d phases, %d sessions, %d exercises (%d nodes)\n",
		job.ID, plan.Name, phases, sessions, exercises, 1+phases+sessions+exercises)

	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	f, err := follow(wctx, client, job.ID, stdout)
	if err != nil {
		return err
	}
	took := time.Since(start)

	// 5. Summary and pictures.
	if err := summary(ctx, stdout, f, took, db); err != nil {
		return err
	}
	files, err := draw(ctx, f, o.out, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "graph written to %s: %s\n", o.out, strings.Join(files, ", "))
	if n := f.Counts()[dag.Succeeded]; n != len(f.Nodes) {
		if o.failRate > 0 {
			fmt.Fprintf(stdout, "%d of %d nodes ran out of attempts under -fail-rate %v; their descendants were cancelled (see the picture)\n", len(f.Nodes)-n, len(f.Nodes), o.failRate)
			return nil
		}
		return fmt.Errorf("%d of %d nodes did not succeed (see the picture)", len(f.Nodes)-n, len(f.Nodes))
	}
	return nil
}

func openRedis(url string, stdout io.Writer) (redis.UniversalClient, func(), error) {
	if url == "" {
		er, err := embedded.NewRedis()
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintln(stdout, "redis: in-process (no -redis given)")
		return er.Client(), func() { _ = er.Close() }, nil
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, nil, fmt.Errorf("-redis: %w", err)
	}
	c := redis.NewClient(opt)
	if err := c.Ping(context.Background()).Err(); err != nil {
		return nil, nil, fmt.Errorf("-redis %s: %w", opt.Addr, err)
	}
	fmt.Fprintf(stdout, "redis: %s\n", opt.Addr)
	return c, func() { _ = c.Close() }, nil
}

func openDB(ctx context.Context, url, out string, stdout io.Writer) (*bun.DB, error) {
	var db *bun.DB
	var err error
	if url == "" {
		path := filepath.Join(out, "workouts.db")
		db, err = embedded.OpenSQLite(path)
		fmt.Fprintf(stdout, "database: SQLite file %s (no -db given)\n", path)
	} else {
		db, err = schema.Open(url)
		fmt.Fprintln(stdout, "database: from -db")
	}
	if err != nil {
		return nil, fmt.Errorf("-db: %w", err)
	}
	if _, err := schema.Migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return db, nil
}

// flaky makes a step fail at random with a retryable error; a batch step
// stays one, and each job of a batch fails on its own.
func flaky(s flow.Step, rate float64) flow.Step {
	if rate == 0 {
		return s
	}
	if b, ok := s.(flow.BatchStep); ok {
		return flakyBatch{flakyStep{s, rate}, b}
	}
	return flakyStep{Step: s, rate: rate}
}

type flakyStep struct {
	flow.Step
	rate float64
}

func (f flakyStep) failure() error {
	if rand.Float64() < f.rate {
		return fmt.Errorf("simulated failure (-fail-rate %v)", f.rate)
	}
	return nil
}

func (f flakyStep) Run(ctx context.Context, sc *flow.StepContext) (json.RawMessage, error) {
	if err := f.failure(); err != nil {
		return nil, err
	}
	return f.Step.Run(ctx, sc)
}

type flakyBatch struct {
	flakyStep
	b flow.BatchStep
}

func (f flakyBatch) Batching() flow.Batching { return f.b.Batching() }

// RunBatch fails some jobs before the batch runs and runs the others.
func (f flakyBatch) RunBatch(ctx context.Context, jobs []*flow.StepContext) ([]flow.BatchResult, error) {
	out := make([]flow.BatchResult, len(jobs))
	var run []*flow.StepContext
	var at []int
	for i, sc := range jobs {
		if err := f.failure(); err != nil {
			out[i].Err = err
			continue
		}
		run = append(run, sc)
		at = append(at, i)
	}
	if len(run) == 0 {
		return out, nil
	}
	res, err := f.b.RunBatch(ctx, run)
	if err != nil {
		return nil, err
	}
	for k, r := range res {
		out[at[k]] = r
	}
	return out, nil
}

func count(p *workout.PlanFullSave) (phases, sessions, exercises int) {
	for _, ph := range p.Phases {
		phases++
		for _, s := range ph.Sessions {
			sessions++
			exercises += len(s.Exercises)
		}
	}
	return
}

// follow shows progress until the flow is done: a bar redrawn in place on
// a terminal; elsewhere (a log, a pipe) a plain line when the count has
// moved and plainEvery has passed, and the last count.
func follow(ctx context.Context, c *flow.Client, flowID string, w io.Writer) (*dag.Flow, error) {
	tty := isTerminal(w)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var printed time.Time
	printedDone := -1
	for {
		st, err := c.Inspector().FlowStatus(ctx, flowID)
		if err != nil && !flow.IsNotFound(err) {
			return nil, err
		}
		if err == nil {
			done := st.Nodes - st.Unfinished
			switch {
			case tty:
				const width = 30
				bar := strings.Repeat("█", done*width/max(st.Nodes, 1)) + strings.Repeat("░", width-done*width/max(st.Nodes, 1))
				fmt.Fprintf(w, "\r%s %d/%d nodes done", bar, done, st.Nodes)
				if st.Done {
					fmt.Fprintln(w)
				}
			case st.Done || (done != printedDone && time.Since(printed) >= plainEvery):
				fmt.Fprintf(w, "progress: %d/%d nodes done\n", done, st.Nodes)
				printed, printedDone = time.Now(), done
			}
			if st.Done { // expanded and finished, or failed before it expanded
				return c.Flow(ctx, flowID)
			}
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return nil, fmt.Errorf("flow %s did not finish: %w", flowID, ctx.Err())
		case <-tick.C:
		}
	}
}

// plainEvery is how often progress prints a line when it cannot redraw one.
const plainEvery = 2 * time.Second

// isTerminal reports whether w is a terminal, where a bar can redraw in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func summary(ctx context.Context, w io.Writer, f *dag.Flow, took time.Duration, db bun.IDB) error {
	counts := f.Counts()
	var parts []string
	for _, s := range dag.States {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, counts[s]))
		}
	}
	retries := 0
	for _, n := range f.Nodes {
		if n.Attempt > 1 {
			retries += n.Attempt - 1
		}
	}
	fmt.Fprintf(w, "done in %s: %d nodes — %s; %d retries\n", took.Round(time.Millisecond), len(f.Nodes), strings.Join(parts, ", "), retries)
	var rows []string
	for _, t := range []string{"workout_plans", "workout_phases", "workout_sessions", "workout_exercises"} {
		n, err := db.NewSelect().Table(t).Count(ctx)
		if err != nil {
			return fmt.Errorf("count %s: %w", t, err)
		}
		rows = append(rows, fmt.Sprintf("%s %d", t, n))
	}
	fmt.Fprintf(w, "rows in the database: %s\n", strings.Join(rows, ", "))
	var failed []string
	for _, n := range f.Nodes {
		if n.State == dag.Failed && n.Error != nil {
			failed = append(failed, fmt.Sprintf("  %s: %s", n.ID, firstLine(n.Error.Message)))
		}
	}
	sort.Strings(failed)
	if len(failed) > 0 {
		fmt.Fprintf(w, "failed:\n%s\n", strings.Join(failed, "\n"))
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// draw writes the graph as SVG, PNG, DOT and Mermaid, from one layout, and
// says on stderr when it had to collapse further to stay within its limits.
func draw(ctx context.Context, f *dag.Flow, dir string, stderr io.Writer) ([]string, error) {
	type out struct {
		name string
		fn   func(io.Writer) error
	}
	// the defaults: left to right, the exercises collapsed to fit a rank
	pic, err := render.Prepare(ctx, f, nil)
	if err != nil {
		return nil, err
	}
	if note := pic.Info().Note(); note != "" {
		fmt.Fprintf(stderr, "fullplansave: graph %s\n", note)
	}
	outs := []out{
		{"graph.svg", func(w io.Writer) error { return pic.SVG(ctx, w) }},
		{"graph.png", func(w io.Writer) error { return pic.PNG(ctx, w) }},
		{"graph.dot", pic.DOT},
		{"graph.mmd", pic.Mermaid},
	}
	var names []string
	for _, o := range outs {
		path := filepath.Join(dir, o.name)
		file, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		err = o.fn(file)
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.name, err)
		}
		names = append(names, o.name)
	}
	return names, nil
}
