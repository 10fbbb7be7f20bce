package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/embedded"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/monitor"
	"github.com/trellisflow/trellis/runner"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/steps/system"
)

// ---- worker -----------------------------------------------------------------

var cmdWorker = &command{
	summary: "run the steps of every message type until SIGINT or SIGTERM",
	usage:   "[flags]",
	detail: `On SIGINT or SIGTERM the worker stops claiming, lets running steps finish
for up to --drain-timeout, hands back the rest to other workers, and exits 0.

EMAIL jobs go through the SMTP server of --smtp-addr (or SMTP_ADDR, or
SMTP_HOST and SMTP_PORT), NOTIFICATION jobs to the webhook of --notify-url.
Without one, the worker warns at start and those jobs store their message,
marked undelivered, and succeed; ` + "`trellis redeliver`" + ` sends them later. A
setting that cannot work (a password over an unencrypted connection to
another host, a webhook without a secret) stops the worker at start.`,
	run: runWorker,
}

type workerFlags struct {
	concurrency int
	queues      stringList
	lease       time.Duration
	drain       time.Duration
	databaseURL string
	migrate     bool
	metricsAddr string
	batch       batchFlags
	steps       *stepFlags
}

func (c *cli) workerFlags(fs *flag.FlagSet) *workerFlags {
	w := &workerFlags{}
	fs.IntVar(&w.concurrency, "concurrency", 10, "steps run at once")
	fs.Var(&w.queues, "queues", `queues to take jobs from, in order of preference (comma-separated or repeated; default "default")`)
	fs.DurationVar(&w.lease, "lease", 30*time.Second, "how long a claim lasts without renewal; a dead worker's jobs return after this long")
	fs.DurationVar(&w.drain, "drain-timeout", 30*time.Second, "on shutdown, how long running steps may take to finish")
	fs.StringVar(&w.databaseURL, "database-url", "", "the steps' database (default $DATABASE_URL)")
	fs.BoolVar(&w.migrate, "migrate", false, "bring the database schema up to date before starting")
	fs.StringVar(&w.metricsAddr, "metrics-addr", "", "serve /metrics, /livez and /readyz on this address (e.g. 127.0.0.1:9090); default off")
	fs.Var(&w.batch, "batch", "a batch step's batching: TYPE=SIZE or TYPE=SIZE/LINGER (e.g. WORKOUT_EXERCISE_CREATE=500/5ms; repeatable)")
	w.steps = c.stepFlags(fs)
	return w
}

func (w *workerFlags) validate() error {
	if w.concurrency < 1 {
		return usagef("--concurrency %d: must be at least 1", w.concurrency)
	}
	if err := positiveDuration("lease", w.lease); err != nil {
		return err
	}
	return positiveDuration("drain-timeout", w.drain)
}

func runWorker(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("worker")
	o := c.commonFlags(fs)
	wf := c.workerFlags(fs)
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	if err := wf.validate(); err != nil {
		return err
	}
	sysOpts, warnings, err := c.systemOptions(wf.steps)
	if err != nil {
		return err
	}
	e, err := c.connect(o)
	if err != nil {
		return err
	}
	defer e.Close()
	for _, w := range warnings {
		e.log.Warn("trellis worker: " + w)
	}
	if err := ping(ctx, e.rdb); err != nil {
		return err
	}
	db, err := c.openDB(wf.databaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if wf.migrate {
		if err := migrateUp(ctx, db, e.log); err != nil {
			return err
		}
	}
	metrics := monitor.NewMetrics(e.client)
	r, err := startRunner(ctx, e, db, wf, sysOpts, metrics)
	if err != nil {
		return err
	}
	srv, err := serveMetrics(wf.metricsAddr, metrics, e)
	if err != nil {
		_ = r.Stop(context.Background())
		return err
	}
	<-ctx.Done()
	e.log.Info("trellis worker: shutting down; draining running steps", "timeout", wf.drain)
	stopCtx, cancel := context.WithTimeout(context.Background(), wf.drain)
	defer cancel()
	err = r.Stop(stopCtx)
	if srv != nil {
		_ = srv.Shutdown(stopCtx)
	}
	e.log.Info("trellis worker: stopped")
	return err
}

// serveMetrics serves /metrics, /livez and /readyz on addr (--metrics-addr)
// in the background, without auth; nil when addr is "".
func serveMetrics(addr string, metrics *monitor.Metrics, e *env) (*http.Server, error) {
	if addr == "" {
		return nil, nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := e.rdb.Ping(r.Context()).Err(); err != nil {
			http.Error(w, "redis: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv, err := serve(addr, mux, e.log, "metrics")
	if err != nil {
		return nil, usagef("--metrics-addr %s: %v", addr, err)
	}
	return srv, nil
}

func startRunner(ctx context.Context, e *env, db bun.IDB, wf *workerFlags, sysOpts system.Options, obs runner.Observer) (*runner.Runner, error) {
	r, err := runner.New(e.client, &runner.Config{
		Concurrency: wf.concurrency, Queues: wf.queues, Lease: wf.lease, Logger: e.log, Observer: obs, Batching: wf.batch,
	})
	if err != nil {
		return nil, err
	}
	if err := r.Register(allSteps(db, sysOpts)...); err != nil {
		return nil, err
	}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func ping(ctx context.Context, rdb redis.UniversalClient) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		addr := ""
		if c, ok := rdb.(*redis.Client); ok {
			addr = " at " + c.Options().Addr
		}
		return fmt.Errorf("redis%s: %w", addr, err)
	}
	return nil
}

func migrateUp(ctx context.Context, db *bun.DB, log *slog.Logger) error {
	applied, err := schema.Migrate(ctx, db)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	log.Info("trellis: database schema up to date", "applied", applied)
	return nil
}

// newServer bounds what a slow client can hold: the header must arrive
// within ReadHeaderTimeout and the whole request with its body within
// ReadTimeout (the monitor sets its own deadline for a body, too). No WriteTimeout: it would cut the event
// stream.
func newServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
}

// serve listens on addr and serves h in the background.
func serve(addr string, h http.Handler, log *slog.Logger, what string) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := newServer(h)
	log.Info("trellis: "+what+" listening", "url", "http://"+ln.Addr().String()+"/")
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("trellis: "+what+" server failed", "err", err)
		}
	}()
	return srv, nil
}

// ---- monitor ----------------------------------------------------------------

var cmdMonitor = &command{
	summary: "serve the dashboard and the HTTP API",
	usage:   "[flags]",
	detail: `Without --token or --user the monitor listens on loopback only (the default
:3001 becomes 127.0.0.1:3001) and refuses a non-loopback --addr.`,
	run: runMonitor,
}

type monitorFlags struct {
	addr, token, user, password, basePath string
	readOnly                              bool
	thresholds                            stringList
}

func (c *cli) monitorFlags(fs *flag.FlagSet, defAddr string) *monitorFlags {
	m := &monitorFlags{}
	fs.StringVar(&m.addr, "addr", defAddr, "listen address")
	fs.StringVar(&m.token, "token", "", "admit requests with Authorization: Bearer TOKEN (default $TRELLIS_TOKEN)")
	fs.StringVar(&m.user, "user", "", "admit HTTP basic auth as this user (default $TRELLIS_USER)")
	fs.StringVar(&m.password, "password", "", "the basic-auth password (default $TRELLIS_PASSWORD)")
	fs.StringVar(&m.basePath, "base-path", "", "serve under this path prefix, e.g. /trellis")
	fs.BoolVar(&m.readOnly, "read-only", false, "refuse every state-changing request")
	fs.Var(&m.thresholds, "threshold", "health threshold NAME=VALUE, repeatable: backlog-warning, backlog-critical, growth-warning,\n"+
		"growth-critical (jobs/min), error-rate-warning, error-rate-critical (%), error-window, stalled-warning,\n"+
		"stalled-critical, oldest-warning, oldest-critical, runner-timeout (durations like 5m)")
	return m
}

// handler builds the monitor and resolves the listen address.
func (c *cli) monitorHandler(fs *flag.FlagSet, m *monitorFlags, e *env, metrics *monitor.Metrics) (http.Handler, string, error) {
	if m.token == "" {
		m.token = c.getenv("TRELLIS_TOKEN")
	}
	if m.user == "" {
		m.user = c.getenv("TRELLIS_USER")
	}
	if m.password == "" {
		m.password = c.getenv("TRELLIS_PASSWORD")
	}
	if (m.user == "") != (m.password == "") {
		return nil, "", usagef("--user and --password (or TRELLIS_USER and TRELLIS_PASSWORD) go together")
	}
	if m.basePath != "" && (!strings.HasPrefix(m.basePath, "/") || m.basePath == "/") {
		return nil, "", usagef("--base-path %q: must start with / and name a path", m.basePath)
	}
	addr := m.addr
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, "", usagef("--addr %q: %v", addr, err)
	}
	if m.token == "" && m.user == "" && !monitor.IsLoopbackAddr(addr) {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "addr" })
		if explicit {
			return nil, "", usagef("--addr %s: without --token or --user the monitor listens on loopback only (e.g. 127.0.0.1:3001)", addr)
		}
		_, port, _ := net.SplitHostPort(addr)
		addr = net.JoinHostPort("127.0.0.1", port)
		e.log.Warn("trellis monitor: no auth configured (--token or --user); listening on loopback only", "addr", addr)
	}
	th, err := parseThresholds(m.thresholds)
	if err != nil {
		return nil, "", err
	}
	reg := flow.NewRegistry()
	registerTypes(reg)
	h, err := monitor.New(e.client, monitor.Config{
		Thresholds: th,
		Token:      m.token, Username: m.user, Password: m.password, ReadOnly: m.readOnly,
		Development: e.dev, Registry: reg, Metrics: metrics, Logger: e.log, BasePath: m.basePath,
	})
	if err != nil {
		return nil, "", usagef("%v", err) // a bad threshold or credential setting
	}
	var handler http.Handler = h
	if m.basePath != "" {
		mux := http.NewServeMux()
		mux.Handle(m.basePath+"/", http.StripPrefix(m.basePath, h))
		mux.Handle(m.basePath, http.RedirectHandler(m.basePath+"/", http.StatusMovedPermanently))
		handler = mux
	}
	return handler, addr, nil
}

func runMonitor(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("monitor")
	o := c.commonFlags(fs)
	mf := c.monitorFlags(fs, ":3001")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	e, err := c.connect(o)
	if err != nil {
		return err
	}
	defer e.Close()
	h, addr, err := c.monitorHandler(fs, mf, e, nil)
	if err != nil {
		return err
	}
	if err := ping(ctx, e.rdb); err != nil {
		return err
	}
	srv, err := serve(addr, h, e.log, "monitor")
	if err != nil {
		return usagef("--addr %s: %v", addr, err)
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	e.log.Info("trellis monitor: stopped")
	return nil
}

// ---- dev --------------------------------------------------------------------

var cmdDev = &command{
	summary: "worker and monitor in one process, on an in-process Redis and SQLite",
	usage:   "[flags]",
	detail: `Uses REDIS_URL / --redis-url and DATABASE_URL / --database-url when given;
otherwise an in-process Redis (nothing persisted) and a SQLite file in a
temporary directory, removed on exit. Without --smtp-addr, EMAIL jobs are
logged instead of sent; without --notify-url, so are NOTIFICATION jobs.
Development mode is on: the monitor offers clear
and remove. --metrics-addr serves /metrics, /livez and /readyz there
without auth, as the worker does (the monitor serves /metrics too). Not
for production.`,
	run: runDev,
}

func runDev(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("dev")
	o := c.commonFlags(fs)
	wf := c.workerFlags(fs)
	mf := c.monitorFlags(fs, "127.0.0.1:3001")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	if err := wf.validate(); err != nil {
		return err
	}
	sysOpts, _, err := c.systemOptions(wf.steps)
	if err != nil {
		return err
	}
	o.dev = true
	log, err := c.logger(o)
	if err != nil {
		return err
	}
	if sysOpts.Mailer == nil {
		sysOpts.Mailer = logMailer{log: log}
	}
	if sysOpts.Notifier == nil {
		sysOpts.Notifier = system.LogNotifier(log)
	}
	if _, from, _ := c.redisOptions(o); from == "default" {
		er, err := embedded.NewRedis()
		if err != nil {
			return err
		}
		defer er.Close()
		o.redisURL = er.URL()
		log.Info("trellis dev: no REDIS_URL; using an in-process Redis (nothing is persisted)", "url", er.URL())
	}
	e, err := c.connect(o)
	if err != nil {
		return err
	}
	defer e.Close()
	if err := ping(ctx, e.rdb); err != nil {
		return err
	}
	if u, _ := c.databaseURL(wf.databaseURL); u == "" {
		dir, err := os.MkdirTemp("", "trellis-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		wf.databaseURL = filepath.Join(dir, "trellis.db")
		log.Info("trellis dev: no DATABASE_URL; using a SQLite file removed on exit", "path", wf.databaseURL)
	}
	db, err := c.openDB(wf.databaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := migrateUp(ctx, db, log); err != nil {
		return err
	}
	metrics := monitor.NewMetrics(e.client)
	h, addr, err := c.monitorHandler(fs, mf, e, metrics)
	if err != nil {
		return err
	}
	r, err := startRunner(ctx, e, db, wf, sysOpts, metrics)
	if err != nil {
		return err
	}
	srv, err := serve(addr, h, log, "monitor")
	if err != nil {
		_ = r.Stop(context.Background())
		return usagef("--addr %s: %v", addr, err)
	}
	// the same metrics as the monitor's /metrics, without auth, as a worker serves them
	msrv, err := serveMetrics(wf.metricsAddr, metrics, e)
	if err != nil {
		_ = srv.Close()
		_ = r.Stop(context.Background())
		return err
	}
	<-ctx.Done()
	log.Info("trellis dev: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), wf.drain)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if msrv != nil {
		_ = msrv.Shutdown(sctx)
	}
	err = r.Stop(sctx)
	log.Info("trellis dev: stopped")
	return err
}

// parseThresholds reads --threshold NAME=VALUE flags.
func parseThresholds(list []string) (monitor.Thresholds, error) {
	var t monitor.Thresholds
	for _, kv := range list {
		name, v, ok := strings.Cut(kv, "=")
		if !ok {
			return t, usagef("--threshold %q: want NAME=VALUE", kv)
		}
		num := func(dst *int64) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return usagef("--threshold %s: %q is not a whole number ≥ 0", name, v)
			}
			*dst = n
			return nil
		}
		pct := func(dst *float64) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 {
				return usagef("--threshold %s: %q is not a number ≥ 0", name, v)
			}
			*dst = f
			return nil
		}
		dur := func(dst *time.Duration) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return usagef("--threshold %s: %q is not a positive duration", name, v)
			}
			*dst = d
			return nil
		}
		var err error
		switch name {
		case "backlog-warning":
			err = num(&t.BacklogWarning)
		case "backlog-critical":
			err = num(&t.BacklogCritical)
		case "growth-warning":
			err = pct(&t.GrowthWarning)
		case "growth-critical":
			err = pct(&t.GrowthCritical)
		case "error-rate-warning":
			err = pct(&t.ErrorRateWarning)
		case "error-rate-critical":
			err = pct(&t.ErrorRateCritical)
		case "error-window":
			err = dur(&t.ErrorWindow)
		case "stalled-warning":
			err = num(&t.StalledWarning)
		case "stalled-critical":
			err = num(&t.StalledCritical)
		case "oldest-warning":
			err = dur(&t.OldestWarning)
		case "oldest-critical":
			err = dur(&t.OldestCritical)
		case "runner-timeout":
			err = dur(&t.RunnerTimeout)
		default:
			err = usagef("--threshold %q: unknown name %q (see --help)", kv, name)
		}
		if err != nil {
			return t, err
		}
	}
	return t, nil
}
