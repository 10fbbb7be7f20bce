package monitor

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/trellisflow/trellis/flow"
)

// Config configures the monitor. The zero value serves loopback clients
// only, read-write, without development actions.
type Config struct {
	// Token admits requests carrying "Authorization: Bearer <Token>" (the
	// scheme in any case). Default "" (no token auth).
	Token string
	// Username and Password admit HTTP basic auth when both are set.
	// Default "" (no basic auth).
	Username, Password string
	// AuthFailureBurst is how many failed authentications one client (an
	// IPv4 address or an IPv6 /64) may make in a row before it is answered
	// 429 Too Many Requests. Default 10.
	AuthFailureBurst int
	// AuthFailureEvery is how often a client gets one more failure back,
	// by the client's flow.Config.Clock. Default 10s.
	AuthFailureEvery time.Duration
	// BodyTimeout is how long a client may take to send a request's body,
	// from when the handler receives the request; a slower body is answered
	// 408 and its connection closed. It replaces the server's ReadTimeout
	// for the body. Default 10s.
	BodyTimeout time.Duration
	// ReadOnly refuses every state-changing request with 403. Default false.
	ReadOnly bool
	// Development allows the destructive actions: remove and clear (clear
	// also needs the client's Config.Development). Default false.
	Development bool
	// Thresholds steer the health classification. Zero fields take the
	// defaults listed on Thresholds.
	Thresholds Thresholds
	// Registry decodes the envelopes POSTed to /api/enqueue. Default nil:
	// enqueue answers 501.
	Registry *flow.Registry
	// Metrics is exported at /metrics. Default: a new Metrics that reads the
	// store's counters; install the same value as the runner's Observer to
	// get step histograms too.
	Metrics *Metrics
	// Logger receives the monitor's records. Default: the client's logger.
	Logger *slog.Logger
	// BasePath is the path the handler is mounted under (with
	// http.StripPrefix), e.g. "/trellis", so pages link correctly.
	// Default "" (the root).
	BasePath string
	// ScanLimit bounds how many jobs /api/failures and retry-failed read,
	// and a scan for jobs in no index (written by a Trellis without the
	// state indexes). A page of /api/jobs reads its page only. Default 100,000.
	ScanLimit int
}

// Thresholds decide when health turns warning or critical. A zero field
// takes its default.
type Thresholds struct {
	// BacklogWarning / BacklogCritical: ready plus delayed jobs. Default 1,000 / 10,000.
	BacklogWarning, BacklogCritical int64
	// GrowthWarning / GrowthCritical: backlog growth in jobs per minute,
	// measured between health checks at least a minute apart. Default 100 / 1,000.
	GrowthWarning, GrowthCritical float64
	// ErrorRateWarning / ErrorRateCritical: percent of finished runs that
	// failed over the last ErrorWindow. Default 5 / 25.
	ErrorRateWarning, ErrorRateCritical float64
	// ErrorWindow is the span of the error rate. Default 15 minutes.
	ErrorWindow time.Duration
	// StalledWarning / StalledCritical: active jobs whose lease expired. Default 1 / 10.
	StalledWarning, StalledCritical int64
	// OldestWarning / OldestCritical: how long the longest-waiting ready job
	// has waited. Default 5m / 30m.
	OldestWarning, OldestCritical time.Duration
	// RunnerTimeout: a runner whose last heartbeat is older is not live.
	// Default 90s.
	RunnerTimeout time.Duration
}

// WithDefaults returns the thresholds with zero fields set to their defaults.
func (t Thresholds) WithDefaults() Thresholds {
	setI := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	setF := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	setD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	setI(&t.BacklogWarning, 1000)
	setI(&t.BacklogCritical, 10000)
	setF(&t.GrowthWarning, 100)
	setF(&t.GrowthCritical, 1000)
	setF(&t.ErrorRateWarning, 5)
	setF(&t.ErrorRateCritical, 25)
	setD(&t.ErrorWindow, 15*time.Minute)
	setI(&t.StalledWarning, 1)
	setI(&t.StalledCritical, 10)
	setD(&t.OldestWarning, 5*time.Minute)
	setD(&t.OldestCritical, 30*time.Minute)
	setD(&t.RunnerTimeout, 90*time.Second)
	return t
}

func (t Thresholds) validate() error {
	pairs := []struct {
		name      string
		warn, crt float64
	}{
		{"Backlog", float64(t.BacklogWarning), float64(t.BacklogCritical)},
		{"Growth", t.GrowthWarning, t.GrowthCritical},
		{"ErrorRate", t.ErrorRateWarning, t.ErrorRateCritical},
		{"Stalled", float64(t.StalledWarning), float64(t.StalledCritical)},
		{"Oldest", float64(t.OldestWarning), float64(t.OldestCritical)},
	}
	for _, p := range pairs {
		if p.warn < 0 || p.crt < 0 {
			return fmt.Errorf("monitor: Config.Thresholds.%sWarning/%sCritical must not be negative", p.name, p.name)
		}
		if p.warn > p.crt {
			return fmt.Errorf("monitor: Config.Thresholds.%sWarning (%v) is above %sCritical (%v)", p.name, p.warn, p.name, p.crt)
		}
	}
	if t.ErrorWindow < time.Minute || t.ErrorWindow > 2*time.Hour {
		return fmt.Errorf("monitor: Config.Thresholds.ErrorWindow %s must be between 1m and 2h", t.ErrorWindow)
	}
	if t.RunnerTimeout < 0 {
		return fmt.Errorf("monitor: Config.Thresholds.RunnerTimeout %s is negative", t.RunnerTimeout)
	}
	return nil
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults(client *flow.Client) Config {
	c.Thresholds = c.Thresholds.WithDefaults()
	if c.Logger == nil {
		c.Logger = client.Config().Logger
	}
	if c.ScanLimit == 0 {
		c.ScanLimit = 100_000
	}
	if c.AuthFailureBurst == 0 {
		c.AuthFailureBurst = 10
	}
	if c.AuthFailureEvery == 0 {
		c.AuthFailureEvery = 10 * time.Second
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = 10 * time.Second
	}
	c.BasePath = strings.TrimRight(c.BasePath, "/")
	return c
}

func (c Config) validate() error {
	if (c.Username == "") != (c.Password == "") {
		return errors.New("monitor: Config.Username and Config.Password must be set together")
	}
	if c.ScanLimit < 0 {
		return fmt.Errorf("monitor: Config.ScanLimit %d is negative", c.ScanLimit)
	}
	if c.AuthFailureBurst < 0 {
		return fmt.Errorf("monitor: Config.AuthFailureBurst %d is negative", c.AuthFailureBurst)
	}
	if c.AuthFailureEvery < 0 {
		return fmt.Errorf("monitor: Config.AuthFailureEvery %s is negative", c.AuthFailureEvery)
	}
	if c.BodyTimeout < 0 {
		return fmt.Errorf("monitor: Config.BodyTimeout %s is negative", c.BodyTimeout)
	}
	if c.BasePath != "" && !strings.HasPrefix(c.BasePath, "/") {
		return fmt.Errorf("monitor: Config.BasePath %q must start with /", c.BasePath)
	}
	return c.Thresholds.validate()
}

// AuthConfigured reports whether the config admits anyone by credentials;
// without it the monitor serves loopback clients only.
func (c Config) AuthConfigured() bool { return c.Token != "" || c.Username != "" }

// Handler is the monitor: the JSON API, the dashboard, probes and metrics.
type Handler struct {
	cfg      Config
	client   *flow.Client
	insp     *flow.Inspector
	log      *slog.Logger
	mux      *http.ServeMux
	csrf     string
	cop      *http.CrossOriginProtection
	metrics  *Metrics
	hub      *hub
	pages    *pages
	health   *Checker
	throttle *throttle
}

// New returns the monitor of client's namespace.
func New(client *flow.Client, cfg Config) (*Handler, error) {
	if client == nil {
		return nil, errors.New("monitor: nil client")
	}
	cfg = cfg.WithDefaults(client)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	var err error
	if _, err = rand.Read(secret); err != nil {
		return nil, fmt.Errorf("monitor: csrf token: %w", err)
	}
	h := &Handler{
		cfg: cfg, client: client, insp: client.Inspector(), log: cfg.Logger,
		mux: http.NewServeMux(), csrf: hex.EncodeToString(secret),
		cop:     http.NewCrossOriginProtection(),
		metrics: cfg.Metrics,
	}
	if h.metrics == nil {
		h.metrics = NewMetrics(client)
	}
	h.hub = newHub(h.insp, h.log)
	clock := client.Config().Clock // a test's fake clock, else the machine's: the throttle's own timing
	if clock == nil {
		clock = time.Now
	}
	h.throttle = newThrottle(clock, cfg.AuthFailureBurst, cfg.AuthFailureEvery, maxThrottled)
	if h.health, err = NewChecker(client, cfg.Thresholds); err != nil {
		return nil, err
	}
	if h.pages, err = loadPages(); err != nil {
		return nil, err
	}
	h.routes()
	if !cfg.AuthConfigured() {
		h.log.Warn("trellis monitor: no auth configured; serving loopback clients only")
	}
	if cfg.ReadOnly {
		h.log.Info("trellis monitor: read-only mode")
	}
	return h, nil
}

// CSRFToken is the token state-changing requests send in X-CSRF-Token.
func (h *Handler) CSRFToken() string { return h.csrf }

// Metrics is what /metrics exports; install it as the runner's Observer.
func (h *Handler) Metrics() *Metrics { return h.metrics }

func (h *Handler) routes() {
	m := h.mux
	// probes: no auth, they reveal nothing
	m.HandleFunc("GET /livez", h.livez)
	m.HandleFunc("GET /readyz", h.readyz)

	read := func(pattern string, fn http.HandlerFunc) { m.Handle(pattern, h.authed(fn)) }
	write := func(pattern string, fn http.HandlerFunc) { m.Handle(pattern, h.authed(h.mutating(fn))) }
	// A route that names a job, flow or queue in its path has a twin that
	// takes the name as a query parameter (/api/job?id=..): browsers and
	// most HTTP clients resolve the legal IDs "." and ".." (and their %2E
	// spellings) out of a path. The dashboard builds only the twins.
	named := func(add func(string, http.HandlerFunc), pattern, twin, param string, fn http.HandlerFunc) {
		add(pattern, fn)
		add(twin, byQuery(param, fn))
	}

	read("GET /metrics", h.metrics.ServeHTTP)
	read("GET /api/queue-stats", h.queueStats)
	read("GET /api/charts", h.charts)
	read("GET /api/admin/queue-health", h.queueHealth)
	read("GET /api/jobs", h.listJobs)
	named(read, "GET /api/jobs/{id}", "GET /api/job", "id", h.jobDetail)
	named(read, "GET /api/flows/{id}", "GET /api/flow", "id", h.flowDetail)
	named(read, "GET /api/flows/{id}/view", "GET /api/flow/view", "id", h.flowScene)
	for ext := range graphFormats {
		named(read, "GET /api/flows/{id}/graph."+ext, "GET /api/flow/graph."+ext, "id", h.flowGraph(ext))
	}
	read("GET /api/events", h.events)
	read("GET /api/types", h.types)
	read("GET /api/failures", h.failures)
	read("GET /api/runners", h.runners)
	read("GET /api/csrf", h.csrfToken)

	write("POST /api/jobs/retry-failed", h.retryFailed)
	write("POST /api/jobs/bulk", h.bulkJobs)
	named(write, "POST /api/jobs/{id}/retry", "POST /api/job/retry", "id", h.retryJob)
	named(write, "POST /api/jobs/{id}/cancel", "POST /api/job/cancel", "id", h.cancelJob)
	named(write, "POST /api/jobs/{id}/remove", "POST /api/job/remove", "id", h.removeJob)
	named(write, "POST /api/flows/{id}/cancel", "POST /api/flow/cancel", "id", h.cancelFlow)
	named(write, "POST /api/queues/{queue}/pause", "POST /api/queue/pause", "queue", h.pauseQueue)
	named(write, "POST /api/queues/{queue}/resume", "POST /api/queue/resume", "queue", h.resumeQueue)
	write("POST /api/clean", h.clean)
	write("POST /api/clear", h.clear)
	write("POST /api/enqueue", h.enqueue)

	read("GET /assets/", h.asset)
	read("GET /{$}", h.page("overview"))
	read("GET /failed", h.page("failed"))
	read("GET /jobs", h.page("jobs"))
	named(read, "GET /jobs/{id}", "GET /job", "id", h.jobPage)
	named(read, "GET /flows/{id}", "GET /flow", "id", h.page("flow"))
	read("GET /runners", h.page("runners"))
	read("GET /charts", h.page("charts"))
	read("GET /cleanup", h.page("cleanup"))
	read("GET /queue-test", h.page("queue-test"))
}

// byQuery serves fn with the path value param taken from the query
// parameter of the same name, which must be given once.
func byQuery(param string, fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		vs := r.URL.Query()[param]
		if len(vs) != 1 || vs[0] == "" {
			writeError(w, http.StatusBadRequest, "%s: give it once, as ?%s=NAME (URL-encoded)", param, param)
			return
		}
		r.SetPathValue(param, vs[0])
		fn(w, r)
	}
}

// ServeHTTP serves the API, the dashboard, probes and metrics.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'")
	h.limitBody(w, r)
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) livez(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	if err := h.insp.Ping(r.Context()); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": "redis: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *Handler) types(w http.ResponseWriter, r *http.Request) {
	types := []string{}
	if h.cfg.Registry != nil {
		types = h.cfg.Registry.Types()
	}
	writeJSON(w, http.StatusOK, map[string]any{"types": types})
}

func (h *Handler) csrfToken(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"token": h.csrf, "header": csrfHeader})
}

// writeJSON writes v; encoding/json escapes <, > and & so job data is safe
// even if a browser were to sniff it as HTML.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// apiError is the body of every error reply.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, apiError{Error: fmt.Sprintf(format, args...)})
}

// writeEngineError maps engine errors to HTTP statuses.
func (h *Handler) writeEngineError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, flow.ErrNotFound):
		writeError(w, http.StatusNotFound, "%s", err.Error())
	case errors.Is(err, flow.ErrState), errors.Is(err, flow.ErrConflict):
		writeError(w, http.StatusConflict, "%s", err.Error())
	case errors.Is(err, flow.ErrInvalidMessage), errors.Is(err, flow.ErrInvalidNode),
		errors.Is(err, flow.ErrUnknownDependency), errors.Is(err, flow.ErrPayloadTooLarge),
		errors.Is(err, flow.ErrInvalidCondition), errors.Is(err, flow.ErrCycle):
		writeError(w, http.StatusBadRequest, "%s", err.Error())
	case errors.Is(err, flow.ErrNotDevelopment):
		writeError(w, http.StatusForbidden, "%s", err.Error())
	default:
		h.log.Error("trellis monitor: request failed", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "%s", err.Error())
	}
}
