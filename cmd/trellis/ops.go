package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/dag/render"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/monitor"
	"github.com/trellisflow/trellis/schema"
)

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ---- enqueue ----------------------------------------------------------------

var cmdEnqueue = &command{
	summary: "enqueue a JSON message envelope from a file or stdin",
	usage:   "[flags] [FILE | -]",
	detail: `The envelope is the uniform message:
  {"messageType": "WORKOUT_PLAN_CREATE", "timestamp": "…", "userId": "…", "data": {…}}
It is decoded strictly: unknown fields and invalid data are refused with the
field named. The timestamp (when the user acted) is kept as sent, or is the
enqueue time when missing; the job records its enqueue time beside it
(enqueuedAt). Prints {"jobId", "state", "existed"}.`,
	run: runEnqueue,
}

func runEnqueue(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("enqueue")
	o := c.commonFlags(fs)
	var after stringList
	var id, queue string
	var attempts, priority int
	var delay, timeout, backoff time.Duration
	fs.Var(&after, "after", "run after these earlier job IDs (comma-separated or repeated)")
	fs.StringVar(&id, "id", "", "the job ID (default: a new UUIDv7); the same ID and message again returns the existing job")
	fs.IntVar(&attempts, "attempts", 0, "how often the step may run (default: the message type's own, else 3; the workout creates and updates 20, full plan saves 10)")
	fs.IntVar(&priority, "priority", 0, "higher runs first, -1000 to 1000")
	fs.DurationVar(&delay, "delay", 0, "hold the job this long once it is ready")
	fs.DurationVar(&timeout, "timeout", 0, "bound one run of the step (default: the worker's, 5m)")
	fs.DurationVar(&backoff, "backoff", 0, "base of the exponential delay between retries (default: the message type's own, else 2s)")
	fs.StringVar(&queue, "queue", "", `the queue (default "default")`)
	wait := fs.Duration("wait", 0, "wait up to this long for the job to finish; exit 1 unless it succeeded")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("one FILE at most, got %d arguments", len(pos))
	}
	switch {
	case attempts < 0:
		return usagef("--attempts %d: must not be negative", attempts)
	case priority < -1000 || priority > 1000:
		return usagef("--priority %d: must be from -1000 to 1000", priority)
	case delay < 0:
		return usagef("--delay %s: must not be negative", delay)
	case timeout < 0:
		return usagef("--timeout %s: must not be negative", timeout)
	case backoff < 0:
		return usagef("--backoff %s: must not be negative", backoff)
	case *wait < 0:
		return usagef("--wait %s: must not be negative", *wait)
	}
	var raw []byte
	if len(pos) == 0 || pos[0] == "-" {
		raw, err = io.ReadAll(c.stdin)
	} else {
		raw, err = os.ReadFile(pos[0])
	}
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(raw))) == 0 {
		return usagef("no message: give a FILE or pipe the JSON envelope to stdin")
	}
	e, err := c.connect(o)
	if err != nil {
		return err
	}
	defer e.Close()
	reg := flow.NewRegistry()
	registerTypes(reg)
	opts := &flow.NodeOpts{ID: id, Attempts: attempts, Priority: priority, Delay: delay, Timeout: timeout, Queue: queue}
	if backoff > 0 {
		b := flow.Exponential(backoff)
		opts.Backoff = &b
	}
	job, err := e.client.AddJSON(ctx, reg, raw, opts, after...)
	if err != nil {
		return err
	}
	out := map[string]any{"jobId": job.ID, "state": job.State, "existed": job.Existed}
	if *wait <= 0 {
		return c.printJSON(out)
	}
	j, err := waitJob(ctx, e.client, job.ID, *wait)
	if err != nil {
		return err
	}
	out["state"] = j.State
	if j.Error != nil {
		out["error"] = j.Error.Message
	}
	if len(j.Result) > 0 {
		out["result"] = j.Result
	}
	if err := c.printJSON(out); err != nil {
		return err
	}
	if j.State != dag.Succeeded {
		return errQuiet
	}
	return nil
}

// ---- stats and health -------------------------------------------------------

var cmdStats = &command{
	summary: "counts per state and type, processing rate, error rate, durations",
	usage:   "[flags]",
	run:     runStats,
}

func runStats(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("stats")
	o := c.commonFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON (the monitor's /api/queue-stats)")
	jobs := fs.Int("jobs", 0, "also list this many recently changed jobs")
	window := fs.Duration("window", time.Hour, "span of the rates, 1m to 2h")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	if *jobs < 0 || *jobs > 100 {
		return usagef("--jobs %d: must be from 0 to 100", *jobs)
	}
	if *window < time.Minute || *window > 2*time.Hour {
		return usagef("--window %s: must be from 1m to 2h", *window)
	}
	e, err := c.connect(o)
	if err != nil {
		return err
	}
	defer e.Close()
	st, err := e.client.Stats(ctx, &flow.StatsOpts{IncludeJobs: *jobs > 0, Limit: *jobs, Window: *window})
	if err != nil {
		return err
	}
	if *asJSON {
		v := map[string]any{
			"namespace": e.client.Config().Namespace, "counts": st.Counts, "byQueue": st.ByQueue, "byType": st.ByType,
			"processingRate": st.ProcessingRate, "errorRate": st.ErrorRate, "retries": st.Retries,
			"avgDurationMs": float64(st.AvgDuration.Microseconds()) / 1000, "p95DurationMs": float64(st.P95Duration.Microseconds()) / 1000,
			"p95Capped":     p95Capped(st.P95Duration),
			"windowMinutes": int(st.Window / time.Minute), "paused": st.Paused,
		}
		if *jobs > 0 {
			views := make([]monitor.JobView, len(st.Recent))
			for i, j := range st.Recent {
				views[i] = monitor.ViewJob(j)
				views[i].Payload, views[i].Result, views[i].Timeline = nil, nil, nil
			}
			v["jobs"] = views
		}
		return c.printJSON(v)
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "namespace\t%s\n", e.client.Config().Namespace)
	for _, s := range dag.States {
		fmt.Fprintf(w, "%s\t%d\n", s, st.Counts[s])
	}
	fmt.Fprintf(w, "total\t%d\n", st.Counts.Total())
	fmt.Fprintf(w, "processing rate\t%.1f jobs/min over %s\n", st.ProcessingRate, st.Window)
	fmt.Fprintf(w, "error rate\t%.1f%%\n", st.ErrorRate)
	fmt.Fprintf(w, "retries\t%d\n", st.Retries)
	fmt.Fprintf(w, "average time\t%s\n", st.AvgDuration.Round(time.Microsecond))
	fmt.Fprintf(w, "p95 time\t%s\n", p95Text(st.P95Duration))
	if len(st.Paused) > 0 {
		fmt.Fprintf(w, "paused\t%s\n", strings.Join(st.Paused, ", "))
	}
	if len(st.ByType) > 0 {
		fmt.Fprintln(w)
		fmt.Fprint(w, "type")
		for _, s := range dag.States {
			fmt.Fprintf(w, "\t%s", s)
		}
		fmt.Fprintln(w)
		types := make([]string, 0, len(st.ByType))
		for t := range st.ByType {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			fmt.Fprint(w, t)
			for _, s := range dag.States {
				fmt.Fprintf(w, "\t%d", st.ByType[t][s])
			}
			fmt.Fprintln(w)
		}
	}
	if len(st.Recent) > 0 {
		fmt.Fprintln(w, "\nrecent job\ttype\tstate\tattempt")
		for _, j := range st.Recent {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d\n", j.ID, j.Type, j.State, j.Attempt, j.MaxAttempts)
		}
	}
	return w.Flush()
}

var cmdHealth = &command{
	summary: "healthy, warning or critical, with reasons and recommendations",
	usage:   "[flags]",
	detail:  `Exits 0 when healthy or warning and 1 when critical, like the monitor's 200 / 503.`,
	run:     runHealth,
}

func runHealth(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("health")
	o := c.commonFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON (the monitor's /api/admin/queue-health)")
	var thresholds stringList
	fs.Var(&thresholds, "threshold", "health threshold NAME=VALUE, repeatable (see `trellis monitor --help`)")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	th, err := parseThresholds(thresholds)
	if err != nil {
		return err
	}
	e, err := c.connect(o)
	if err != nil {
		return err
	}
	defer e.Close()
	checker, err := monitor.NewChecker(e.client, th)
	if err != nil {
		return usagef("%v", err)
	}
	hl, err := checker.Check(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		if err := c.printJSON(hl); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.stdout, "%s\n", hl.Status)
		for _, f := range hl.Findings {
			fmt.Fprintf(c.stdout, "  %s %s: %s\n    → %s\n", f.Severity, f.Check, f.Reason, f.Recommendation)
		}
	}
	if hl.Status == monitor.Critical {
		return errQuiet
	}
	return nil
}

// ---- inspect, graph ---------------------------------------------------------

var cmdInspect = &command{
	summary: "print one job as JSON: payload, timeline, attempts, error and stack",
	usage:   "[flags] JOB_ID",
	run:     runInspect,
}

func runInspect(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("inspect")
	o := c.commonFlags(fs)
	asFlow := fs.Bool("flow", false, "JOB_ID is a flow ID: print the whole flow")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give exactly one JOB_ID")
	}
	e, err := c.connect(o)
	if err != nil {
		return err
	}
	defer e.Close()
	if *asFlow {
		f, err := e.client.Flow(ctx, pos[0])
		if err != nil {
			return err
		}
		return c.printJSON(monitor.ViewFlow(f))
	}
	j, err := e.client.Job(ctx, pos[0])
	if err != nil {
		return err
	}
	return c.printJSON(monitor.ViewJob(j))
}

var cmdGraph = &command{
	summary: "draw a flow as DOT, Mermaid, SVG or PNG, colored by state",
	usage:   "[flags] FLOW_ID",
	run:     runGraph,
}

func runGraph(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("graph")
	o := c.commonFlags(fs)
	format := fs.String("format", "dot", "dot, mermaid, svg or png")
	out := fs.String("out", "", "write to this file (default stdout)")
	dir := fs.String("dir", "", "layout direction: TB, LR, BT or RL (default: LR for a fan-out, else TB)")
	siblings := fs.Int("siblings", 8, "siblings drawn one by one before they collapse into \"+N more\" (negative: never, as far as --boxes allows)")
	boxes := fs.Int("boxes", render.DefaultMaxBoxes, fmt.Sprintf("the most boxes drawn; larger flows collapse further (2 to %d)", render.HardMaxBoxes))
	rank := fs.Int("rank", render.DefaultMaxRank, "the most boxes in one rank (row or column); wider ranks collapse further (negative: no bound)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give exactly one FLOW_ID")
	}
	draw := map[string]func(*render.Picture, io.Writer) error{
		"dot":     (*render.Picture).DOT,
		"mermaid": (*render.Picture).Mermaid,
		"mmd":     (*render.Picture).Mermaid,
		"svg":     func(p *render.Picture, w io.Writer) error { return p.SVG(ctx, w) },
		"png":     func(p *render.Picture, w io.Writer) error { return p.PNG(ctx, w) },
	}[strings.ToLower(*format)]
	if draw == nil {
		return usagef("--format %q: must be dot, mermaid, svg or png", *format)
	}
	d := strings.ToUpper(*dir)
	if d != "" && d != "TB" && d != "LR" && d != "BT" && d != "RL" {
		return usagef("--dir %q: must be TB, LR, BT or RL", *dir)
	}
	if *siblings == 0 {
		return usagef("--siblings 0: must be positive, or negative for no collapsing")
	}
	if *boxes < 2 || *boxes > render.HardMaxBoxes {
		return usagef("--boxes %d: must be from 2 to %d", *boxes, render.HardMaxBoxes)
	}
	e, err := c.connect(o)
	if err != nil {
		return err
	}
	defer e.Close()
	f, err := e.client.Flow(ctx, pos[0])
	if err != nil {
		return err
	}
	if *rank == 0 {
		return usagef("--rank 0: must be positive, or negative for no bound")
	}
	pic, err := render.Prepare(ctx, f, &render.Options{Direction: d, MaxSiblings: *siblings, MaxBoxes: *boxes, MaxRank: *rank})
	if err != nil {
		return err
	}
	if info := pic.Info(); info.Wide {
		fmt.Fprintf(c.stderr, "trellis graph: %s (--rank and --boxes raise the limits, --boxes up to %d)\n", info.Note(), render.HardMaxBoxes)
	} else if note := info.Note(); note != "" {
		fmt.Fprintf(c.stderr, "trellis graph: %s (--boxes raises the limit, up to %d)\n", note, render.HardMaxBoxes)
	}
	w := c.stdout
	if *out != "" {
		file, err := os.Create(*out)
		if err != nil {
			return usagef("--out: %v", err)
		}
		defer file.Close()
		w = file
	}
	return draw(pic, w)
}

// ---- retry, cancel, clear ---------------------------------------------------

var cmdRetry = &command{
	summary: "retry failed or cancelled jobs (and what they cancelled)",
	usage:   "[flags] JOB_ID...",
	run:     runRetry,
}

func runRetry(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("retry")
	o := c.commonFlags(fs)
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("give at least one JOB_ID")
	}
	e, err := c.connect(o)
	if err != nil {
		return err
	}
	defer e.Close()
	failed := false
	for _, id := range pos {
		n, err := e.client.Retry(ctx, id)
		if err != nil {
			fmt.Fprintf(c.stderr, "trellis retry: %v\n", err)
			failed = true
			continue
		}
		fmt.Fprintf(c.stdout, "%s: retried (%d jobs reopened)\n", id, n)
	}
	if failed {
		return errQuiet
	}
	return nil
}

var cmdCancel = &command{
	summary: "cancel unfinished jobs, or whole flows with --flow",
	usage:   "[flags] ID...",
	run:     runCancel,
}

func runCancel(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("cancel")
	o := c.commonFlags(fs)
	reason := fs.String("reason", "cancelled from the command line", "why, shown on the job and its descendants")
	whole := fs.Bool("flow", false, "the IDs are flow IDs: cancel every unfinished job of each")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("give at least one ID")
	}
	e, err := c.connect(o)
	if err != nil {
		return err
	}
	defer e.Close()
	failed := false
	for _, id := range pos {
		if *whole {
			n, err := e.client.CancelFlow(ctx, id, *reason)
			if err != nil {
				fmt.Fprintf(c.stderr, "trellis cancel: %v\n", err)
				failed = true
				continue
			}
			fmt.Fprintf(c.stdout, "%s: cancelled; %d jobs ended\n", id, n)
			continue
		}
		n, err := e.client.Cancel(ctx, id, *reason)
		if err != nil {
			fmt.Fprintf(c.stderr, "trellis cancel: %v\n", err)
			failed = true
			continue
		}
		fmt.Fprintf(c.stdout, "%s: cancelled; %d jobs ended\n", id, n)
	}
	if failed {
		return errQuiet
	}
	return nil
}

var cmdClear = &command{
	summary: "delete every key of the namespace (development only)",
	usage:   "--dev [flags]",
	detail:  `Refused unless --dev is given or TRELLIS_DEVELOPMENT is true.`,
	run:     runClear,
}

func runClear(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("clear")
	o := c.commonFlags(fs)
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	if !c.development(o) {
		return fmt.Errorf("refused: clear deletes the whole namespace and runs only in development mode (--dev or TRELLIS_DEVELOPMENT=1)")
	}
	e, err := c.connect(o)
	if err != nil {
		return err
	}
	defer e.Close()
	n, err := e.client.Clear(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "namespace %s cleared: %d keys deleted\n", e.client.Config().Namespace, n)
	return nil
}

var cmdReindex = &command{
	summary: "add the jobs an older Trellis wrote to the state indexes the listings read",
	usage:   "[flags]",
	run:     runReindex,
}

func runReindex(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("reindex")
	o := c.commonFlags(fs)
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	e, err := c.connect(o)
	if err != nil {
		return err
	}
	defer e.Close()
	n, err := e.client.Inspector().Reindex(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "namespace %s: %d jobs added to the state indexes\n", e.client.Config().Namespace, n)
	return nil
}

// ---- migrate, save-plan -----------------------------------------------------

var cmdMigrate = &command{
	summary: "bring the database schema up to date (or roll back with --down)",
	usage:   "[flags]",
	run:     runMigrate,
}

func runMigrate(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("migrate")
	dbURL := fs.String("database-url", "", "the database (default $DATABASE_URL)")
	down := fs.Bool("down", false, "roll back the last group of migrations instead")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	db, err := c.openDB(*dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	var names []string
	if *down {
		names, err = schema.Rollback(ctx, db)
	} else {
		names, err = schema.Migrate(ctx, db)
	}
	if err != nil {
		return err
	}
	verb := "applied"
	if *down {
		verb = "rolled back"
	}
	if len(names) == 0 {
		if *down {
			fmt.Fprintln(c.stdout, "nothing to roll back")
		} else {
			fmt.Fprintln(c.stdout, "nothing to do: the schema is up to date")
		}
		return nil
	}
	for _, n := range names {
		fmt.Fprintf(c.stdout, "%s %s\n", verb, n)
	}
	return nil
}

// waitJob polls a job until it is terminal or d passes.
func waitJob(ctx context.Context, c *flow.Client, id string, d time.Duration) (*dag.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	delay := 10 * time.Millisecond
	for {
		j, err := c.Job(ctx, id)
		if err != nil {
			return nil, err
		}
		if j.State.Terminal() {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("--wait %s: job %s is still %s", d, id, j.State)
		case <-time.After(delay):
		}
		delay = min(delay*2, 250*time.Millisecond)
	}
}

// p95Text shows the p95 as the estimate it is: interpolated within a
// histogram bucket, or at least the histogram's last bound.
func p95Text(d time.Duration) string {
	switch {
	case d == 0:
		return "–"
	case p95Capped(d):
		return fmt.Sprintf("≥ %s (past the duration histogram's last bound)", d)
	}
	return fmt.Sprintf("≈ %s (estimated from a histogram of durations)", d.Round(100*time.Microsecond))
}

func p95Capped(d time.Duration) bool { return d >= dag.DurationBuckets[len(dag.DurationBuckets)-1] }
