package monitor_test

import (
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/monitor"
)

func TestProbesNeedNoAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{Token: "s3cret"})
	for _, p := range []string{"/livez", "/readyz"} {
		w := e.do(req{path: p, remote: "192.0.2.7:5555"})
		require.Equal(t, http.StatusOK, w.Code, p)
		require.JSONEq(t, `{"status":"ok"}`, w.Body.String())
	}
}

func TestTokenAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{Token: "s3cret"})
	remote := "192.0.2.7:5555" // auth configured: any address may connect

	w := e.do(req{path: "/api/queue-stats", remote: remote})
	require.Equal(t, http.StatusUnauthorized, w.Code)
	require.Equal(t, `Bearer realm="trellis"`, w.Header().Get("WWW-Authenticate"))
	require.Equal(t, "authentication required", errorOf(t, w))

	w = e.do(req{path: "/api/queue-stats", remote: remote, header: map[string]string{"Authorization": "Bearer wrong"}})
	require.Equal(t, http.StatusUnauthorized, w.Code)

	w = e.do(req{path: "/api/queue-stats", remote: remote, header: map[string]string{"Authorization": "Bearer s3cret"}})
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())

	// pages and metrics are behind the same gate
	for _, p := range []string{"/", "/metrics", "/assets/app.js", "/queue-test"} {
		require.Equal(t, http.StatusUnauthorized, e.do(req{path: p, remote: remote}).Code, p)
	}
}

func TestBasicAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{Username: "ops", Password: "pw"})
	basic := func(u, p string) map[string]string {
		return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p))}
	}
	w := e.do(req{path: "/", remote: "192.0.2.7:5555"})
	require.Equal(t, http.StatusUnauthorized, w.Code)
	require.Contains(t, w.Header().Get("WWW-Authenticate"), `Basic realm="trellis"`)
	require.Equal(t, http.StatusUnauthorized, e.do(req{path: "/", remote: "192.0.2.7:5555", header: basic("ops", "nope")}).Code)
	require.Equal(t, http.StatusUnauthorized, e.do(req{path: "/", remote: "192.0.2.7:5555", header: basic("root", "pw")}).Code)
	require.Equal(t, http.StatusOK, e.do(req{path: "/", remote: "192.0.2.7:5555", header: basic("ops", "pw")}).Code)
}

func TestNoAuthServesLoopbackOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	w := e.do(req{path: "/api/queue-stats", remote: "192.0.2.7:5555"})
	require.Equal(t, http.StatusForbidden, w.Code)
	require.Contains(t, errorOf(t, w), "loopback clients only")
	require.Equal(t, http.StatusOK, e.do(req{path: "/api/queue-stats", remote: "[::1]:5555"}).Code)
	require.Equal(t, http.StatusOK, e.do(req{path: "/api/queue-stats"}).Code)

	require.True(t, monitor.IsLoopbackAddr("127.0.0.1:3001"))
	require.True(t, monitor.IsLoopbackAddr("[::1]:3001"))
	require.True(t, monitor.IsLoopbackAddr("localhost:3001"))
	require.False(t, monitor.IsLoopbackAddr(":3001"))
	require.False(t, monitor.IsLoopbackAddr("0.0.0.0:3001"))
}

func TestCSRF(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{Username: "ops", Password: "pw", Token: "tok"})
	e.add("c1", "hi")
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:pw"))

	// basic auth is ambient: without the CSRF header the POST is refused
	w := e.do(req{method: http.MethodPost, path: "/api/jobs/c1/cancel", header: map[string]string{"Authorization": basic, "X-CSRF-Token": ""}})
	require.Equal(t, http.StatusForbidden, w.Code)
	require.Contains(t, errorOf(t, w), "X-CSRF-Token")
	w = e.do(req{method: http.MethodPost, path: "/api/jobs/c1/cancel", header: map[string]string{"Authorization": basic, "X-CSRF-Token": "forged"}})
	require.Equal(t, http.StatusForbidden, w.Code)

	// a cross-site browser request is refused even with the token
	w = e.do(req{method: http.MethodPost, path: "/api/jobs/c1/cancel", header: map[string]string{"Authorization": basic, "Sec-Fetch-Site": "cross-site"}})
	require.Equal(t, http.StatusForbidden, w.Code)
	require.Contains(t, errorOf(t, w), "cross-origin")

	// the token from /api/csrf works
	tok := decode[map[string]string](t, e.do(req{path: "/api/csrf", header: map[string]string{"Authorization": basic}}))
	require.Equal(t, e.h.CSRFToken(), tok["token"])
	w = e.do(req{method: http.MethodPost, path: "/api/jobs/c1/cancel", header: map[string]string{"Authorization": basic, "X-CSRF-Token": tok["token"]}})
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())

	// the bearer token is never ambient, so it needs no CSRF token
	e.add("c2", "hi")
	w = e.do(req{method: http.MethodPost, path: "/api/jobs/c2/cancel", header: map[string]string{"Authorization": "Bearer tok", "X-CSRF-Token": ""}})
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())

	// state changes are POST only
	w = e.do(req{method: http.MethodGet, path: "/api/jobs/c2/cancel", header: map[string]string{"Authorization": "Bearer tok"}})
	require.Equal(t, http.StatusMethodNotAllowed, w.Code)
}

func TestReadOnlyRefusesChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{ReadOnly: true, Development: true})
	e.add("r1", "hi")
	for _, p := range []string{"/api/jobs/r1/cancel", "/api/jobs/r1/retry", "/api/jobs/r1/remove", "/api/jobs/retry-failed",
		"/api/clean?olderThan=1h", "/api/clear", "/api/enqueue"} {
		w := e.post(p, `{}`)
		require.Equal(t, http.StatusForbidden, w.Code, p)
		require.Equal(t, "the monitor is read-only", errorOf(t, w))
	}
	j, err := e.client.Job(t.Context(), "r1")
	require.NoError(t, err)
	require.Equal(t, "ready", string(j.State))
	// reading still works
	require.Equal(t, http.StatusOK, e.get("/api/jobs/r1").Code)
	require.Contains(t, e.get("/").Body.String(), "read-only")
	require.Contains(t, e.get("/cleanup").Body.String(), "cleanup is not available")
	require.NotContains(t, e.get("/cleanup").Body.String(), `id="clean-form"`)
	require.NotContains(t, e.get("/queue-test").Body.String(), `id="enqueue-form"`)
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	w := e.get("/")
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Header().Get("Content-Security-Policy"), "script-src 'self'")
	require.Equal(t, "nosniff", w.Header().Get("X-Content-Type-Options"))
	require.Equal(t, "DENY", w.Header().Get("X-Frame-Options"))
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	_, err := monitor.New(e.client, monitor.Config{Username: "ops"})
	require.ErrorContains(t, err, "Config.Username and Config.Password")
	_, err = monitor.New(e.client, monitor.Config{Thresholds: monitor.Thresholds{ErrorRateWarning: 50, ErrorRateCritical: 10}})
	require.ErrorContains(t, err, "Config.Thresholds.ErrorRateWarning (50) is above ErrorRateCritical (10)")
	_, err = monitor.New(e.client, monitor.Config{BasePath: "trellis"})
	require.ErrorContains(t, err, "Config.BasePath")
	_, err = monitor.New(e.client, monitor.Config{AuthFailureBurst: -1})
	require.ErrorContains(t, err, "Config.AuthFailureBurst -1 is negative")
	_, err = monitor.New(e.client, monitor.Config{AuthFailureEvery: -time.Second})
	require.ErrorContains(t, err, "Config.AuthFailureEvery -1s is negative")
	_, err = monitor.New(e.client, monitor.Config{BodyTimeout: -time.Second})
	require.ErrorContains(t, err, "Config.BodyTimeout -1s is negative")
	_, err = monitor.New(nil, monitor.Config{})
	require.ErrorContains(t, err, "nil client")
}

func TestReadyzWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	client, err := flow.NewClient(rdb, &flow.Config{Namespace: "down", Logger: quiet()})
	require.NoError(t, err)
	h, err := monitor.New(client, monitor.Config{Logger: quiet()})
	require.NoError(t, err)
	for path, want := range map[string]int{"/livez": http.StatusOK, "/readyz": http.StatusServiceUnavailable, "/api/queue-stats": http.StatusInternalServerError} {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.RemoteAddr = "127.0.0.1:1234"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		require.Equal(t, want, w.Code, path)
	}
	r := httptest.NewRequest(http.MethodGet, "/readyz", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Contains(t, w.Body.String(), `"status":"unavailable"`)
	require.Contains(t, w.Body.String(), "redis:")
}

// The auth scheme is case-insensitive (RFC 7235), for bearer and basic.
func TestAuthSchemeIsCaseInsensitive(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{Token: "s3cret", Username: "ops", Password: "pw"})
	basic := base64.StdEncoding.EncodeToString([]byte("ops:pw"))
	for auth, want := range map[string]int{
		"Bearer s3cret":   http.StatusOK,
		"bearer s3cret":   http.StatusOK,
		"BEARER s3cret":   http.StatusOK,
		"bEaReR s3cret":   http.StatusOK,
		"Bearer   s3cret": http.StatusOK, // 1*SP
		"basic " + basic:  http.StatusOK,
		"BASIC " + basic:  http.StatusOK,
		"Bearer":          http.StatusUnauthorized,
		"Bearer ":         http.StatusUnauthorized,
		"Bearers3cret":    http.StatusUnauthorized,
		"Token s3cret":    http.StatusUnauthorized,
		"bearer S3CRET":   http.StatusUnauthorized, // the token itself is case-sensitive
	} {
		w := e.do(req{path: "/api/queue-stats", remote: "192.0.2.7:5555", header: map[string]string{"Authorization": auth}})
		require.Equal(t, want, w.Code, "Authorization: %s", auth)
	}
}

// lockedBuffer collects log lines written from the handler's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A client that keeps sending wrong credentials is refused with 429 once
// its failures are spent, even with the right token, until a failure has
// refilled; other clients are served meanwhile. Failures are logged with
// the client and path, never the credentials.
func TestFailedAuthIsThrottledPerClient(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	e := newEnv(t, monitor.Config{Token: "s3cret", AuthFailureBurst: 3, AuthFailureEvery: time.Minute,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	get := func(remote, auth string) *httptest.ResponseRecorder {
		return e.do(req{path: "/api/queue-stats", remote: remote, header: map[string]string{"Authorization": auth}})
	}
	const a, b = "192.0.2.7:5555", "198.51.100.9:6000"
	for i := range 3 {
		require.Equal(t, http.StatusUnauthorized, get(a, "Bearer wrong-token-xyz").Code, "failure %d", i+1)
	}
	w := get(a, "Bearer wrong-token-xyz")
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	retryAfter := func(w *httptest.ResponseRecorder) int {
		n, err := strconv.Atoi(w.Header().Get("Retry-After"))
		require.NoError(t, err, "Retry-After: %q", w.Header().Get("Retry-After"))
		return n
	}
	// a minute after the last failure, less the moments the test took
	require.InDelta(t, 60, retryAfter(w), 1)
	require.Contains(t, errorOf(t, w), "too many failed authentications from 192.0.2.7")

	// throttled: the right token and requests without credentials are refused too
	require.Equal(t, http.StatusTooManyRequests, get(a, "Bearer s3cret").Code)
	require.Equal(t, http.StatusTooManyRequests, e.do(req{path: "/", remote: a}).Code)
	// another port of the same address is the same client
	require.Equal(t, http.StatusTooManyRequests, get("192.0.2.7:7777", "Bearer s3cret").Code)
	// probes need no auth and are not throttled
	require.Equal(t, http.StatusOK, e.do(req{path: "/livez", remote: a}).Code)

	// another client is served
	require.Equal(t, http.StatusUnauthorized, get(b, "Bearer wrong").Code)
	require.Equal(t, http.StatusOK, get(b, "Bearer s3cret").Code)
	// right credentials cost nothing: b still has two failures left
	for range 10 {
		require.Equal(t, http.StatusOK, get(b, "Bearer s3cret").Code)
	}
	require.Equal(t, http.StatusUnauthorized, get(b, "Bearer wrong").Code)
	require.Equal(t, http.StatusUnauthorized, get(b, "Bearer wrong").Code)
	require.Equal(t, http.StatusTooManyRequests, get(b, "Bearer wrong").Code)

	// half a minute later a is still waiting; a minute after its last try it has one failure back
	e.offset.Add(int64(30 * time.Second))
	w = get(a, "Bearer s3cret")
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	require.InDelta(t, 30, retryAfter(w), 1)
	e.offset.Add(int64(30 * time.Second))
	require.Equal(t, http.StatusOK, get(a, "Bearer s3cret").Code)
	require.Equal(t, http.StatusUnauthorized, get(a, "Bearer wrong-token-xyz").Code)
	require.Equal(t, http.StatusTooManyRequests, get(a, "Bearer wrong-token-xyz").Code)

	out := logs.String()
	require.Contains(t, out, `msg="trellis monitor: authentication failed" client=192.0.2.7 remote=192.0.2.7:5555 path=/api/queue-stats scheme=bearer`)
	require.Contains(t, out, `msg="trellis monitor: too many failed authentications; refusing the client for a while" client=192.0.2.7`)
	require.Contains(t, out, "client=198.51.100.9")
	require.NotContains(t, out, "wrong-token-xyz")
	require.NotContains(t, out, "s3cret")
	require.Equal(t, 3+1+2+1, strings.Count(out, "authentication failed"), "refused requests are not logged one by one:\n%s", out)
}

// Parallel guesses cannot overshoot the burst: each takes its failure
// before its credentials are checked.
func TestParallelGuessesAreThrottled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{Username: "ops", Password: "pw", AuthFailureBurst: 5, AuthFailureEvery: time.Hour})
	wrong := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:guess"))
	codes := make(chan int, 50)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			codes <- e.do(req{path: "/api/queue-stats", remote: "[2001:db8:1:2::5]:4000", header: map[string]string{"Authorization": wrong}}).Code
		})
	}
	wg.Wait()
	close(codes)
	n := map[int]int{}
	for c := range codes {
		n[c]++
	}
	require.Equal(t, map[int]int{http.StatusUnauthorized: 5, http.StatusTooManyRequests: 45}, n)
	// an IPv6 client is its /64
	right := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:pw"))
	require.Equal(t, http.StatusTooManyRequests, e.do(req{path: "/", remote: "[2001:db8:1:2:ffff::1]:4000", header: map[string]string{"Authorization": right}}).Code)
	require.Equal(t, http.StatusOK, e.do(req{path: "/", remote: "[2001:db8:1:3::5]:4000", header: map[string]string{"Authorization": right}}).Code)
}
