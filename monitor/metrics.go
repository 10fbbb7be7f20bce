package monitor

import (
	"context"
	"net/http"
	"time"

	"github.com/trellisflow/trellis/dag"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/runner"
)

// Metrics exports Trellis's Prometheus metrics. Job counts by state, queue
// and type are read from the store at each scrape, so any process can serve
// them; step durations, queue-to-start latency, retries and stalls are
// observed by the runners of this process, so install Metrics as their
// runner.Config.Observer.
type Metrics struct {
	reg      *prometheus.Registry
	insp     *flow.Inspector
	duration *prometheus.HistogramVec
	wait     *prometheus.HistogramVec
	steps    *prometheus.CounterVec
	retries  *prometheus.CounterVec
	stalls   prometheus.Counter
	jobsDesc *prometheus.Desc
	stallDsc *prometheus.Desc
	upDesc   *prometheus.Desc
}

var _ runner.Observer = (*Metrics)(nil)

// NewMetrics returns the metrics of client's namespace on a registry of
// their own (with the Go and process collectors).
func NewMetrics(client *flow.Client) *Metrics {
	ns := prometheus.Labels{"namespace": client.Config().Namespace}
	buckets := make([]float64, len(dag.DurationBuckets))
	for i, b := range dag.DurationBuckets {
		buckets[i] = b.Seconds()
	}
	m := &Metrics{
		reg:  prometheus.NewRegistry(),
		insp: client.Inspector(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "trellis_step_duration_seconds", Help: "How long step runs took, by message type and outcome.",
			Buckets: buckets, ConstLabels: ns,
		}, []string{"type", "outcome"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "trellis_queue_wait_seconds", Help: "Time from ready to started, by message type.",
			Buckets: buckets, ConstLabels: ns,
		}, []string{"type"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trellis_steps_total", Help: "Finished step runs, by message type and outcome (ok, retry, fail, skip, release).",
			ConstLabels: ns,
		}, []string{"type", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trellis_retries_total", Help: "Step runs that failed and will be retried, by message type.",
			ConstLabels: ns,
		}, []string{"type"}),
		stalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trellis_stalls_total", Help: "Leases this process lost while its steps ran.",
			ConstLabels: ns,
		}),
		jobsDesc: prometheus.NewDesc("trellis_jobs", "Jobs by state, queue and message type (finished ones until retention removes them).",
			[]string{"state", "queue", "type"}, ns),
		stallDsc: prometheus.NewDesc("trellis_stalled_jobs", "Active jobs whose lease has expired.", nil, ns),
		upDesc:   prometheus.NewDesc("trellis_redis_up", "1 when the last scrape could read the store.", nil, ns),
	}
	m.reg.MustRegister(m.duration, m.wait, m.steps, m.retries, m.stalls, storeCollector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the Prometheus registry, to add collectors of your own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ServeHTTP serves the metrics in the Prometheus text format.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

// StepStarted records how long the job waited between ready and started.
func (m *Metrics) StepStarted(job runner.Run, queuedFor time.Duration) {
	if queuedFor >= 0 {
		m.wait.WithLabelValues(job.Type).Observe(queuedFor.Seconds())
	}
}

// StepFinished records a run's duration and outcome.
func (m *Metrics) StepFinished(job runner.Run, outcome runner.Outcome, took time.Duration, err error) {
	m.steps.WithLabelValues(job.Type, string(outcome)).Inc()
	if outcome == runner.OutcomeRetry {
		m.retries.WithLabelValues(job.Type).Inc()
	}
	if outcome != runner.OutcomeRelease {
		m.duration.WithLabelValues(job.Type, string(outcome)).Observe(took.Seconds())
	}
}

// Stalled records leases lost while steps ran.
func (m *Metrics) Stalled(ids []string) { m.stalls.Add(float64(len(ids))) }

// storeCollector reads the store's counters at scrape time.
type storeCollector struct{ m *Metrics }

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.m.jobsDesc
	ch <- c.m.stallDsc
	ch <- c.m.upDesc
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.m.insp.Counts(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.m.upDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.m.upDesc, prometheus.GaugeValue, 1)
	for _, k := range counts {
		ch <- prometheus.MustNewConstMetric(c.m.jobsDesc, prometheus.GaugeValue, float64(k.N), string(k.State), k.Queue, k.Type)
	}
	if n, err := c.m.insp.Stalled(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(c.m.stallDsc, prometheus.GaugeValue, float64(n))
	}
}
