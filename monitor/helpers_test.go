package monitor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/testredis"
	"github.com/trellisflow/trellis/monitor"
	"github.com/trellisflow/trellis/runner"
)

func realRedis(t *testing.T) *redis.Client {
	t.Helper()
	return testredis.Client(t)
}

var nonName = regexp.MustCompile(`[^A-Za-z0-9]+`)

// Echo is the test message: the step returns its text, or fails when the
// text starts with "fail".
type Echo struct {
	Text string `json:"text"`
}

func (Echo) MessageType() string { return "ECHO" }

func (m Echo) Validate() error {
	if len(m.Text) > 1000 {
		return flow.FieldError("text", "is over 1000 bytes")
	}
	return nil
}

// Other is a second message type, for filters.
type Other struct {
	N int `json:"n"`
}

func (Other) MessageType() string { return "OTHER" }

// env is one test's namespace, client, clock and monitor.
type env struct {
	t      *testing.T
	ns     string
	rdb    *redis.Client
	client *flow.Client
	h      *monitor.Handler
	reg    *flow.Registry
	offset atomic.Int64 // added to the clock, in ns
	fixed  atomic.Int64 // when not 0, the clock stands at this time (Unix ns)
}

func newEnv(t *testing.T, cfg monitor.Config) *env {
	t.Helper()
	e := &env{t: t, rdb: realRedis(t)}
	e.ns = fmt.Sprintf("mon-%s-%06x", nonName.ReplaceAllString(t.Name(), "-"), rand.IntN(1<<24))
	client, err := flow.NewClient(e.rdb, &flow.Config{
		Namespace: e.ns, Development: true, Logger: quiet(),
		Clock: func() time.Time {
			if f := e.fixed.Load(); f != 0 {
				return time.Unix(0, f)
			}
			return time.Now().Add(time.Duration(e.offset.Load()))
		},
	})
	require.NoError(t, err)
	e.client = client
	t.Cleanup(func() { _, _ = client.Clear(context.Background()) })
	e.reg = flow.NewRegistry()
	flow.RegisterType[Echo](e.reg)
	flow.RegisterType[Other](e.reg)
	if cfg.Registry == nil {
		cfg.Registry = e.reg
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	e.h, err = monitor.New(client, cfg)
	require.NoError(t, err)
	return e
}

func quiet() *slog.Logger {
	if os.Getenv("TRELLIS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// run starts a runner for Echo and Other (a batch step); it stops at cleanup.
func (e *env) run() *runner.Runner {
	e.t.Helper()
	r, err := runner.New(e.client, &runner.Config{Concurrency: 4, IdleWait: 100 * time.Millisecond, Lease: 5 * time.Second,
		Logger: quiet(), Observer: e.h.Metrics()})
	require.NoError(e.t, err)
	require.NoError(e.t, runner.Handle(r, func(ctx context.Context, sc *flow.StepContext, m Echo) (string, error) {
		if strings.HasPrefix(m.Text, "failbig") {
			return "", flow.Permanent(errors.New("echo refused: " + strings.Repeat(m.Text, 100_000/len(m.Text))))
		}
		if strings.HasPrefix(m.Text, "fail") {
			return "", flow.Permanent(errors.New("echo refused: " + m.Text))
		}
		if strings.HasPrefix(m.Text, "twice") && sc.Attempt <= 2 { // fails twice, then succeeds
			return "", errors.New("echo failed: attempt " + strconv.Itoa(sc.Attempt))
		}
		if strings.HasPrefix(m.Text, "stacked") { // retryable, with a stack and a log line
			sc.Logger.Info("trying", "attempt", sc.Attempt)
			return "", flow.WithStack(errors.New("echo failed: " + m.Text))
		}
		if strings.HasPrefix(m.Text, "flaky") { // retryable
			return "", errors.New("echo failed: " + m.Text)
		}
		return m.Text, nil
	}))
	require.NoError(e.t, r.Register(flow.BatchFunc(flow.Batching{Size: 10, Linger: 20 * time.Millisecond},
		func(ctx context.Context, items []flow.Item[Other]) ([]flow.ItemResult[int], error) {
			out := make([]flow.ItemResult[int], len(items))
			for i, it := range items {
				out[i].Value = it.Msg.N
			}
			return out, nil
		})))
	require.NoError(e.t, r.Start(context.Background()))
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.Stop(ctx)
	})
	return r
}

// add enqueues one Echo job with the given ID.
func (e *env) add(id, text string, after ...string) {
	e.t.Helper()
	_, err := e.client.Add(context.Background(), Echo{Text: text}, &flow.NodeOpts{ID: id, Attempts: 1}, after...)
	require.NoError(e.t, err)
}

// failures counts the times the job has failed, from its timeline.
func (e *env) failures(id string) int {
	e.t.Helper()
	j, err := e.client.Job(context.Background(), id)
	require.NoError(e.t, err)
	n := 0
	for _, tr := range j.Timeline {
		if tr.To == dag.Failed {
			n++
		}
	}
	return n
}

// wait blocks until the job reaches state.
func (e *env) wait(id string, state dag.State) {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		j, err := e.client.Job(context.Background(), id)
		return err == nil && j.State == state
	}, 45*time.Second, 10*time.Millisecond, "job %s never became %s", id, state)
}

type req struct {
	method, path string
	body         string
	header       map[string]string
	remote       string
}

// do serves one request from loopback, with the CSRF token on POSTs unless
// the header map sets X-CSRF-Token itself (to "" to leave it out).
func (e *env) do(r req) *httptest.ResponseRecorder {
	e.t.Helper()
	if r.method == "" {
		r.method = http.MethodGet
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	hr.RemoteAddr = "127.0.0.1:40000"
	if r.remote != "" {
		hr.RemoteAddr = r.remote
	}
	if r.method == http.MethodPost {
		hr.Header.Set("X-CSRF-Token", e.h.CSRFToken())
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, hr)
	return w
}

func (e *env) get(path string) *httptest.ResponseRecorder { return e.do(req{path: path}) }

func (e *env) post(path, body string) *httptest.ResponseRecorder {
	return e.do(req{method: http.MethodPost, path: path, body: body})
}

func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &v), "body: %s", w.Body.String())
	return v
}

func errorOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	return decode[struct {
		Error string `json:"error"`
	}](t, w).Error
}
