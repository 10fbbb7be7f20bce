package monitor_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/embedded"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/monitor"
)

func TestQueueStats(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	e.run()
	e.add("ok1", "one")
	e.add("ok2", "two")
	e.add("bad1", "fail now")
	e.wait("ok1", dag.Succeeded)
	e.wait("ok2", dag.Succeeded)
	e.wait("bad1", dag.Failed)
	e.add("waiting", "later", "bad1") // cancelled: its parent failed

	// runners flush their run statistics every second
	var st monitor.QueueStats
	require.Eventually(t, func() bool {
		w := e.get("/api/queue-stats?includeJobs=true&limit=3")
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		st = decode[monitor.QueueStats](t, w)
		return st.ProcessingRate >= 3.0/60
	}, 5*time.Second, 50*time.Millisecond)
	require.Equal(t, e.ns, st.Namespace)
	require.EqualValues(t, 2, st.Completed)
	require.EqualValues(t, 1, st.Failed)
	require.EqualValues(t, 1, st.Cancelled)
	require.EqualValues(t, 4, st.Total)
	require.EqualValues(t, 2, st.ByType["ECHO"]["succeeded"])
	require.EqualValues(t, 4, sum(st.ByQueue["default"]))
	require.InDelta(t, 100.0/3, st.ErrorRate, 0.01)
	require.InDelta(t, 3.0/60, st.ProcessingRate, 0.001)
	require.Greater(t, st.P95DurationMS, 0.0)
	require.Len(t, st.Jobs, 3)
	require.Equal(t, "waiting", st.Jobs[0].ID, "newest change first")

	st = decode[monitor.QueueStats](t, e.get("/api/queue-stats"))
	require.Empty(t, st.Jobs)

	for _, bad := range []string{"limit=0", "limit=abc", "includeJobs=maybe", "window=500"} {
		w := e.get("/api/queue-stats?" + bad)
		require.Equal(t, http.StatusBadRequest, w.Code, bad)
		require.Contains(t, errorOf(t, w), strings.Split(bad, "=")[0]+":")
	}
}

func sum[K comparable](m map[K]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

func TestQueueHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	ctx := context.Background()

	// a waiting job and no runner: critical, 503
	e.add("h1", "hello")
	w := e.get("/api/admin/queue-health")
	require.Equal(t, http.StatusServiceUnavailable, w.Code, w.Body.String())
	hl := decode[monitor.Health](t, w)
	require.Equal(t, monitor.Critical, hl.Status)
	f := finding(hl, "runners")
	require.NotNil(t, f)
	require.Equal(t, monitor.Critical, f.Severity)
	require.Contains(t, f.Reason, "no runner has sent a heartbeat")
	require.Contains(t, f.Recommendation, "trellis worker")
	require.EqualValues(t, 1, hl.Metrics.Backlog)
	require.Equal(t, hl.Reasons[0], f.Reason)

	// a runner drains it: healthy, 200
	e.run()
	e.wait("h1", dag.Succeeded)
	require.Eventually(t, func() bool {
		return decode[monitor.Health](t, e.get("/api/admin/queue-health")).Metrics.LiveRunners == 1
	}, 5*time.Second, 20*time.Millisecond)
	w = e.get("/api/admin/queue-health")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	hl = decode[monitor.Health](t, w)
	require.Equal(t, monitor.Healthy, hl.Status, "%+v", hl.Findings)
	require.Empty(t, hl.Reasons)
	require.Equal(t, "noeviction", hl.Metrics.MaxmemoryPolicy)

	// failures over the error-rate threshold: warning, still 200
	e.add("f1", "fail a")
	e.wait("f1", dag.Failed)
	require.Eventually(t, func() bool {
		w = e.get("/api/admin/queue-health")
		hl = decode[monitor.Health](t, w)
		return finding(hl, "error_rate") != nil
	}, 5*time.Second, 50*time.Millisecond)
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, monitor.Critical, finding(hl, "error_rate").Severity, "1 of 2 runs failed: 50%% ≥ 25%%")

	// thresholds are configurable
	e2 := newEnv(t, monitor.Config{Thresholds: monitor.Thresholds{ErrorRateWarning: 40, ErrorRateCritical: 90}})
	e2.run()
	e2.add("x1", "ok")
	e2.add("x2", "fail b")
	e2.wait("x1", dag.Succeeded)
	e2.wait("x2", dag.Failed)
	require.Eventually(t, func() bool {
		hl = decode[monitor.Health](t, e2.get("/api/admin/queue-health"))
		return finding(hl, "error_rate") != nil
	}, 5*time.Second, 50*time.Millisecond)
	require.Equal(t, monitor.Warning, finding(hl, "error_rate").Severity)
	require.Contains(t, finding(hl, "error_rate").Reason, "50.0% of runs failed")

	// an evicting Redis is critical
	monitor.SetMaxmemoryPolicy(e.h, "allkeys-lru")
	hl = decode[monitor.Health](t, e.get("/api/admin/queue-health"))
	require.Equal(t, monitor.Critical, hl.Status)
	require.Contains(t, finding(hl, "redis_maxmemory_policy").Reason, `"allkeys-lru"`)
	require.Contains(t, finding(hl, "redis_maxmemory_policy").Recommendation, "noeviction")

	// paused queues and old waiting jobs warn
	e3 := newEnv(t, monitor.Config{Thresholds: monitor.Thresholds{OldestWarning: time.Minute, OldestCritical: time.Hour}})
	e3.add("old", "waits")
	require.NoError(t, e3.client.Pause(ctx, "default"))
	e3.offset.Store(int64(2 * time.Minute))
	hl = decode[monitor.Health](t, e3.get("/api/admin/queue-health"))
	require.Equal(t, monitor.Warning, finding(hl, "oldest_waiting").Severity)
	require.Equal(t, "default", hl.Metrics.OldestWaitingQueue)
	require.GreaterOrEqual(t, hl.Metrics.OldestWaitingSeconds, 119.0)
	require.NotNil(t, finding(hl, "paused"))
}

func finding(h monitor.Health, check string) *monitor.Finding {
	for i := range h.Findings {
		if h.Findings[i].Check == check {
			return &h.Findings[i]
		}
	}
	return nil
}

func TestJobsList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	e.run()
	for i := range 7 {
		e.add("ok-"+string(rune('a'+i)), "apple pie")
	}
	e.add("bad-1", "fail: broken banana")
	_, err := e.client.Add(context.Background(), Other{N: 3}, &flow.NodeOpts{ID: "other-1"})
	require.NoError(t, err)
	e.wait("bad-1", dag.Failed)
	e.wait("other-1", dag.Succeeded)
	e.wait("ok-g", dag.Succeeded)

	list := decode[monitor.JobList](t, e.get("/api/jobs"))
	require.EqualValues(t, 9, list.Total)
	require.Equal(t, 9, list.Scanned)
	require.False(t, list.Truncated)
	require.Empty(t, list.Next)

	list = decode[monitor.JobList](t, e.get("/api/jobs?state=failed"))
	require.EqualValues(t, 1, list.Total)
	require.Equal(t, "bad-1", list.Jobs[0].ID)
	require.Equal(t, "echo refused: fail: broken banana", list.Jobs[0].Error.Message)

	list = decode[monitor.JobList](t, e.get("/api/jobs?type=OTHER"))
	require.EqualValues(t, 1, list.Total)
	require.Equal(t, "other-1", list.Jobs[0].ID)

	list = decode[monitor.JobList](t, e.get("/api/jobs?q=BANANA"))
	require.EqualValues(t, 1, list.Total, "search is case-insensitive over payload and error")
	require.Equal(t, "bad-1", list.Jobs[0].ID)
	list = decode[monitor.JobList](t, e.get("/api/jobs?q=other-1"))
	require.Equal(t, 1, list.Scanned, "a job's ID is read, not searched for")
	require.Equal(t, "other-1", list.Jobs[0].ID)

	// pages go on by cursor, latest finished first, each job once
	var paged []string
	next := ""
	for range 5 {
		list = decode[monitor.JobList](t, e.get("/api/jobs?state=completed&type=ECHO&limit=3&cursor="+next))
		require.EqualValues(t, 7, list.Total)
		for _, j := range list.Jobs {
			paged = append(paged, j.ID)
		}
		if next = list.Next; next == "" {
			break
		}
		require.Len(t, list.Jobs, 3)
	}
	require.ElementsMatch(t, []string{"ok-a", "ok-b", "ok-c", "ok-d", "ok-e", "ok-f", "ok-g"}, paged)
	w := e.get("/api/jobs?offset=3")
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Contains(t, errorOf(t, w), "pages go by ?cursor=")
	w = e.get("/api/jobs?cursor=bogus")
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Contains(t, errorOf(t, w), "not a cursor a listing returned")

	w = e.get("/api/jobs?state=bogus")
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Contains(t, errorOf(t, w), `state: "bogus" is not one of`)
	require.Equal(t, http.StatusBadRequest, e.get("/api/jobs?limit=9999").Code)
}

func TestJobDetail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	e.run()
	e.add("d1", "fail hard")
	e.wait("d1", dag.Failed)

	w := e.get("/api/jobs/d1")
	require.Equal(t, http.StatusOK, w.Code)
	j := decode[monitor.JobView](t, w)
	require.Equal(t, "d1", j.ID)
	require.Equal(t, "ECHO", j.Type)
	require.Equal(t, dag.Failed, j.State)
	require.Equal(t, 1, j.Attempt)
	require.Equal(t, 1, j.MaxAttempts)
	require.Contains(t, string(j.Payload), `"messageType":"ECHO"`)
	require.Contains(t, string(j.Payload), `"text":"fail hard"`)
	require.Equal(t, "echo refused: fail hard", j.Error.Message)
	require.NotEmpty(t, j.Timeline)
	require.Equal(t, dag.Failed, j.Timeline[len(j.Timeline)-1].To)
	require.NotNil(t, j.FinishedAt)

	w = e.get("/api/jobs/nope")
	require.Equal(t, http.StatusNotFound, w.Code)
	require.Equal(t, `job "nope" not found`, errorOf(t, w))
}

func TestFlowDetail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	g := flow.New().WithID("plan-flow")
	a := g.Add(Echo{Text: "plan"}, &flow.NodeOpts{ID: "plan"})
	b := g.Add(Echo{Text: "phase 1"}, &flow.NodeOpts{ID: "phase-1"}).After(a)
	g.Add(Echo{Text: "phase 2"}, &flow.NodeOpts{ID: "phase-2"}).After(a)
	g.Add(Echo{Text: "session"}, &flow.NodeOpts{ID: "session"}).After(b)
	_, err := e.client.Enqueue(context.Background(), g)
	require.NoError(t, err)

	w := e.get("/api/flows/plan-flow")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	f := decode[monitor.FlowView](t, w)
	require.Equal(t, "plan-flow", f.ID)
	require.False(t, f.Done)
	require.Len(t, f.Nodes, 4)
	require.Equal(t, "plan", f.Nodes[0].ID)
	require.ElementsMatch(t, [][2]string{{"plan", "phase-1"}, {"plan", "phase-2"}, {"phase-1", "session"}}, f.Edges)
	require.Equal(t, 1, f.Counts[dag.Ready])
	require.Equal(t, 3, f.Counts[dag.Blocked])

	require.Equal(t, http.StatusNotFound, e.get("/api/flows/nope").Code)

	w = e.post("/api/flows/plan-flow/cancel?reason=replanned", "")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.Positive(t, decode[map[string]any](t, w)["cancelled"], "jobs cancelled directly; the rest follow their policy")
	f = decode[monitor.FlowView](t, e.get("/api/flows/plan-flow"))
	require.True(t, f.Done)
	require.Equal(t, 4, f.Counts[dag.Cancelled])
	require.Equal(t, http.StatusNotFound, e.post("/api/flows/nope/cancel", "").Code)
}

func TestRetryCancelRemove(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	e.run()
	e.add("f1", "fail once")
	e.wait("f1", dag.Failed)

	w := e.post("/api/jobs/f1/retry", "")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.EqualValues(t, 1, decode[map[string]any](t, w)["reopened"])
	e.wait("f1", dag.Failed) // the step fails again

	e.add("ok", "fine")
	e.wait("ok", dag.Succeeded)
	w = e.post("/api/jobs/ok/retry", "")
	require.Equal(t, http.StatusConflict, w.Code)
	require.Contains(t, errorOf(t, w), "it is succeeded")
	require.Equal(t, http.StatusNotFound, e.post("/api/jobs/nope/retry", "").Code)

	// cancel a job that waits for a delay
	_, err := e.client.Add(context.Background(), Echo{Text: "later"}, &flow.NodeOpts{ID: "later", Delay: time.Hour})
	require.NoError(t, err)
	w = e.post("/api/jobs/later/cancel?reason=not+needed", "")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	j, err := e.client.Job(context.Background(), "later")
	require.NoError(t, err)
	require.Equal(t, dag.Cancelled, j.State)
	require.Equal(t, "not needed", j.Reason)

	// remove is for development only
	w = e.post("/api/jobs/ok/remove", "")
	require.Equal(t, http.StatusForbidden, w.Code)
	require.Contains(t, errorOf(t, w), "development-only")

	dev := newEnv(t, monitor.Config{Development: true})
	dev.add("wait", "x")
	w = dev.post("/api/jobs/wait/remove", "")
	require.Equal(t, http.StatusConflict, w.Code)
	require.Contains(t, errorOf(t, w), "cancel it before removing")
	require.Equal(t, http.StatusOK, dev.post("/api/jobs/wait/cancel", "").Code)
	w = dev.post("/api/jobs/wait/remove", "")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	_, err = dev.client.Job(context.Background(), "wait")
	require.ErrorIs(t, err, flow.ErrNotFound, "the job and its flow are gone")
	w = dev.post("/api/jobs/wait/remove", "")
	require.Equal(t, http.StatusNotFound, w.Code, w.Body.String())
}

func TestRetryFailedAndFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	e.run()
	for _, id := range []string{"a", "b", "c"} {
		e.add(id, "fail same")
	}
	e.add("d", "fail other")
	_, err := e.client.Add(context.Background(), Other{N: -1}, &flow.NodeOpts{ID: "o"})
	require.NoError(t, err)
	for _, id := range []string{"a", "b", "c", "d"} {
		e.wait(id, dag.Failed)
	}
	e.wait("o", dag.Succeeded)

	w := e.get("/api/failures")
	require.Equal(t, http.StatusOK, w.Code)
	f := decode[struct {
		Total  int                    `json:"total"`
		ByType map[string]int         `json:"byType"`
		Groups []monitor.FailureGroup `json:"groups"`
	}](t, w)
	require.Equal(t, 4, f.Total)
	require.Equal(t, map[string]int{"ECHO": 4}, f.ByType)
	require.Len(t, f.Groups, 2)
	require.Equal(t, "echo refused: fail same", f.Groups[0].Error)
	require.Equal(t, 3, f.Groups[0].Count)
	require.ElementsMatch(t, []string{"a", "b", "c"}, f.Groups[0].JobIDs)

	w = e.post("/api/jobs/retry-failed?type=OTHER", "")
	require.Equal(t, http.StatusOK, w.Code)
	require.EqualValues(t, 0, decode[map[string]any](t, w)["retried"])
	w = e.post("/api/jobs/retry-failed", "")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.EqualValues(t, 4, decode[map[string]any](t, w)["retried"])
	j, err := e.client.Job(context.Background(), "a")
	require.NoError(t, err)
	require.NotEqual(t, 1, len(j.Timeline), "a was reopened")
}

// Failed jobs are read from their index, so the failure analysis finds
// every one of them however many other jobs a listing may scan; jobs that
// failed before the index existed send it back to scanning.
func TestFailuresReadTheIndex(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{ScanLimit: 5})
	e.run()
	for i := range 12 {
		e.add(fmt.Sprintf("ok%d", i), "fine")
	}
	for _, id := range []string{"x", "y", "z"} {
		e.add(id, "fail hard")
	}
	for i := range 12 {
		e.wait(fmt.Sprintf("ok%d", i), dag.Succeeded)
	}
	for _, id := range []string{"x", "y", "z"} {
		e.wait(id, dag.Failed)
	}
	type failures struct {
		Total     int                    `json:"total"`
		Scanned   int                    `json:"scanned"`
		Truncated bool                   `json:"truncated"`
		Groups    []monitor.FailureGroup `json:"groups"`
	}
	f := decode[failures](t, e.get("/api/failures"))
	require.Equal(t, 3, f.Total)
	require.Equal(t, 3, f.Scanned, "only the failed jobs were read")
	require.False(t, f.Truncated)
	require.Len(t, f.Groups, 1)
	require.ElementsMatch(t, []string{"x", "y", "z"}, f.Groups[0].JobIDs)

	jobs := decode[monitor.JobList](t, e.get("/api/jobs?state=failed"))
	require.EqualValues(t, 3, jobs.Total)
	require.Equal(t, 3, jobs.Scanned)
	require.False(t, jobs.Truncated)

	// without the index (as for jobs a Trellis without it wrote) the
	// listings scan again, bounded by ScanLimit
	ctx := context.Background()
	keys, err := e.rdb.Keys(ctx, "trellis:{"+e.ns+"}:ix:failed:*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	require.NoError(t, e.rdb.Del(ctx, keys...).Err())
	f = decode[failures](t, e.get("/api/failures"))
	require.Equal(t, 5, f.Scanned)
	require.True(t, f.Truncated)
	jobs = decode[monitor.JobList](t, e.get("/api/jobs?state=failed"))
	require.Equal(t, 5, jobs.Scanned)
	require.True(t, jobs.Truncated)
}

// Listings of every state read the engine's sets instead of scanning: a
// page reads its own jobs only.
func TestJobListsReadTheSets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	ctx := context.Background()
	_, err := e.client.Add(ctx, Echo{Text: "later"}, &flow.NodeOpts{ID: "gate", Delay: time.Hour})
	require.NoError(t, err)
	for i := range 20 {
		e.add(fmt.Sprintf("waits%d", i), "x", "gate")
	}
	for i := range 3 {
		e.add(fmt.Sprintf("ready%d", i), "x")
	}
	for _, c := range []struct {
		query          string
		total, scanned int
	}{
		{"state=waiting", 3, 3},
		{"state=delayed", 1, 1},
		{"state=ready,delayed", 4, 4},
		{"state=active", 0, 0},
		{"state=blocked", 20, 20},
		{"", 24, 24},
	} {
		list := decode[monitor.JobList](t, e.get("/api/jobs?"+c.query))
		require.EqualValues(t, c.total, list.Total, c.query)
		require.Equal(t, c.scanned, list.Scanned, c.query)
		require.False(t, list.Truncated, c.query)
	}
	list := decode[monitor.JobList](t, e.get("/api/jobs?state=ready&limit=2"))
	require.Equal(t, 2, list.Scanned)
	require.EqualValues(t, 3, list.Total)
	require.NotEmpty(t, list.Next)
	list = decode[monitor.JobList](t, e.get("/api/jobs?state=ready&limit=2&cursor="+list.Next))
	require.Len(t, list.Jobs, 1)
	require.Empty(t, list.Next)

	// an entry a Trellis without the indexes left behind is not listed, and
	// the listing takes it out
	keys, err := e.rdb.Keys(ctx, "trellis:{"+e.ns+"}:ix:blocked:*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.NoError(t, e.rdb.ZAdd(ctx, keys[0], redis.Z{Score: float64(time.Now().UnixMilli()), Member: "ghost"}).Err())
	list = decode[monitor.JobList](t, e.get("/api/jobs?state=blocked"))
	require.Len(t, list.Jobs, 20)
	for _, j := range list.Jobs {
		require.NotEqual(t, "ghost", j.ID)
	}
	require.ErrorIs(t, e.rdb.ZScore(ctx, keys[0], "ghost").Err(), redis.Nil, "pruned")
}

func TestCleanAndClear(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	e.run()
	e.add("old1", "x")
	e.add("old2", "y")
	e.wait("old1", dag.Succeeded)
	e.wait("old2", dag.Succeeded)

	for _, bad := range []string{"", "soon", "10ms"} {
		w := e.post("/api/clean?olderThan="+bad, "")
		require.Equal(t, http.StatusBadRequest, w.Code, bad)
		require.Contains(t, errorOf(t, w), "olderThan:")
	}
	w := e.post("/api/clean?olderThan=1h", "")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.EqualValues(t, 0, decode[map[string]any](t, w)["removed"], "nothing is an hour old")

	e.offset.Store(int64(2 * time.Hour))
	w = e.post("/api/clean?olderThan=1h", "")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.EqualValues(t, 2, decode[map[string]any](t, w)["removed"])
	require.Equal(t, http.StatusNotFound, e.get("/api/jobs/old1").Code)

	// clear is for development only
	w = e.post("/api/clear", "")
	require.Equal(t, http.StatusForbidden, w.Code)
	dev := newEnv(t, monitor.Config{Development: true})
	dev.add("z", "x")
	w = dev.post("/api/clear", "")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.Equal(t, http.StatusNotFound, dev.get("/api/jobs/z").Code)
}

func TestEnqueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	msg := `{"message":{"messageType":"ECHO","timestamp":"2026-01-02T03:04:05Z","userId":"u1","data":{"text":"hi"}},` +
		`"options":{"jobId":"e1","attempts":2,"priority":5,"delay":0}}`
	w := e.post("/api/enqueue", msg)
	require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
	res := decode[map[string]any](t, w)
	require.Equal(t, "e1", res["jobId"])
	require.Equal(t, "ready", res["state"])
	j, err := e.client.Job(context.Background(), "e1")
	require.NoError(t, err)
	require.Equal(t, 2, j.MaxAttempts)
	require.Equal(t, 5, j.Priority)
	require.Contains(t, string(j.Payload), `"userId":"u1"`)

	// the same job again is not a new one
	w = e.post("/api/enqueue", msg)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.Equal(t, true, decode[map[string]any](t, w)["existed"])

	// dependencies
	w = e.post("/api/enqueue", `{"message":{"messageType":"OTHER","timestamp":"2026-01-02T03:04:05Z","data":{"n":1}},"after":["e1"]}`)
	require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
	require.Equal(t, "blocked", decode[map[string]any](t, w)["state"])
	w = e.post("/api/enqueue", `{"message":{"messageType":"OTHER","timestamp":"2026-01-02T03:04:05Z","data":{"n":1}},"after":["ghost"]}`)
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Contains(t, errorOf(t, w), `unknown job "ghost"`)

	// bad input names the problem
	for body, want := range map[string]string{
		`{"message":{"messageType":"NOPE","timestamp":"2026-01-02T03:04:05Z","data":{}}}`:                 `unknown message type "NOPE"`,
		`{"message":{"messageType":"ECHO","timestamp":"2026-01-02T03:04:05Z","data":{"txt":"x"}}}`:        "txt",
		`{"message":{"messageType":"ECHO","timestamp":"2026-01-02T03:04:05Z","data":{"text":"x"}},"x":1}`: `unknown field "x"`,
		`{}`:       "message: is missing",
		`not json`: "body:",
		`{"message":{"messageType":"ECHO","timestamp":"2026-01-02T03:04:05Z","data":{"text":"x"}},"options":{"delay":-1}}`: "must not be negative",
	} {
		w := e.post("/api/enqueue", body)
		require.Equal(t, http.StatusBadRequest, w.Code, body)
		require.Contains(t, errorOf(t, w), want, body)
	}

	// without a registry the endpoint is not available
	e2 := newEnv(t, monitor.Config{})
	h, err := monitor.New(e2.client, monitor.Config{Logger: quiet()})
	require.NoError(t, err)
	e2.h = h
	w = e2.post("/api/enqueue", msg)
	require.Equal(t, http.StatusNotImplemented, w.Code)

	types := decode[map[string][]string](t, e.get("/api/types"))
	require.Equal(t, []string{"ECHO", "OTHER"}, types["types"])
}

func TestEventsStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	srv := httptest.NewServer(e.h)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/events", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))

	sc := bufio.NewScanner(resp.Body)
	require.True(t, sc.Scan())
	require.Equal(t, "retry: 2000", sc.Text())
	go func() {
		time.Sleep(200 * time.Millisecond) // let the hub start following
		e.add("ev<1>", "hello")
	}()
	var event, data string
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			event = v
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			data = v
			break
		}
	}
	require.Equal(t, "transition", event)
	require.Contains(t, data, `"node":"ev\u003c1\u003e"`, "job IDs are escaped in event data")
	require.Contains(t, data, `"to":"ready"`)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	e.run()
	e.add("m1", "hello")
	e.add("m2", "fail")
	e.wait("m1", dag.Succeeded)
	e.wait("m2", dag.Failed)
	e.add("m3", "waiting", "m2")

	e.wait("m3", dag.Cancelled)
	e.add("m4", "flaky, and out of attempts")
	e.wait("m4", dag.Failed)
	w := e.get("/metrics")
	require.Equal(t, http.StatusOK, w.Code)
	body := w.Body.String()
	ns := `namespace="` + e.ns + `"`
	require.Contains(t, body, `trellis_jobs{`+ns+`,queue="default",state="succeeded",type="ECHO"} 1`)
	require.Contains(t, body, `trellis_jobs{`+ns+`,queue="default",state="cancelled",type="ECHO"} 1`)
	require.Contains(t, body, `trellis_steps_total{`+ns+`,outcome="fail",type="ECHO"} 2`, "a retryable error with no attempts left is a failure")
	require.NotContains(t, body, `outcome="retry"`)
	require.NotContains(t, body, `trellis_retries_total{`+ns+`,type="ECHO"}`)
	require.Contains(t, body, `trellis_step_duration_seconds_count{`+ns+`,outcome="ok",type="ECHO"} 1`)
	require.Contains(t, body, `trellis_queue_wait_seconds_count{`+ns+`,type="ECHO"} 3`)
	require.Contains(t, body, `trellis_redis_up{`+ns+`} 1`)
	require.Contains(t, body, `trellis_stalled_jobs{`+ns+`} 0`)
	require.Contains(t, body, "go_goroutines")
}

func TestFlowGraph(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	g := flow.New().WithID("g/<1>")
	a := g.Add(Echo{Text: "plan"}, &flow.NodeOpts{ID: "plan"})
	g.Add(Echo{Text: "phase"}, &flow.NodeOpts{ID: `phase"><script>x</script>`}).After(a)
	_, err := e.client.Enqueue(context.Background(), g)
	require.NoError(t, err)
	id := url.PathEscape("g/<1>")

	w := e.get("/api/flows/" + id)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.Len(t, decode[monitor.FlowView](t, w).Nodes, 2)

	w = e.get("/api/flows/" + id + "/graph.svg")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.Equal(t, "image/svg+xml", w.Header().Get("Content-Type"))
	require.Contains(t, w.Body.String(), "<svg")
	require.Contains(t, w.Body.String(), "plan")
	require.NotContains(t, w.Body.String(), "<script>")

	w = e.get("/api/flows/" + id + "/graph.dot?dir=LR")
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Body.String(), "digraph")
	require.Contains(t, w.Body.String(), "rankdir")

	w = e.get("/api/flows/" + id + "/graph.mmd")
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Body.String(), "flowchart")

	w = e.get("/api/flows/" + id + "/graph.png")
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "image/png", w.Header().Get("Content-Type"))
	require.True(t, strings.HasPrefix(w.Body.String(), "\x89PNG\r\n\x1a\n"))

	require.Equal(t, http.StatusNotFound, e.get("/api/flows/nope/graph.svg").Code)
	w = e.get("/api/flows/" + id + "/graph.svg?dir=up")
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Contains(t, errorOf(t, w), "dir:")
	require.Equal(t, http.StatusNotFound, e.get("/api/flows/"+id+"/graph.gif").Code)

	// the flow page links with the ID escaped, in the query
	page := e.get("/flows/" + id).Body.String()
	require.Contains(t, page, `href="api/flow/graph.svg?id=g%2f%3c1%3e"`)
	require.Contains(t, page, `data-id="g/&lt;1&gt;"`)
}

func TestHealthBacklogGrowth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{Thresholds: monitor.Thresholds{GrowthWarning: 50, GrowthCritical: 500, BacklogWarning: 100}})
	hl := decode[monitor.Health](t, e.get("/api/admin/queue-health"))
	require.Nil(t, hl.Metrics.GrowthPerMinute, "one sample measures no growth")

	for i := range 150 {
		e.add(fmt.Sprintf("g%03d", i), "x")
	}
	e.offset.Store(int64(2 * time.Minute))
	hl = decode[monitor.Health](t, e.get("/api/admin/queue-health"))
	require.NotNil(t, hl.Metrics.GrowthPerMinute)
	require.InDelta(t, 75, *hl.Metrics.GrowthPerMinute, 1)
	f := finding(hl, "backlog_growth")
	require.NotNil(t, f)
	require.Equal(t, monitor.Warning, f.Severity)
	require.Contains(t, f.Reason, "grows by 75 jobs a minute")
	require.Equal(t, monitor.Warning, finding(hl, "backlog").Severity)
	require.EqualValues(t, 150, hl.Metrics.Backlog)
}

func TestPauseResumeQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	w := e.post("/api/queues/emails/pause", "")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	st := decode[monitor.QueueStats](t, e.get("/api/queue-stats"))
	require.Equal(t, []string{"emails"}, st.Paused)
	require.Contains(t, e.get("/api/admin/queue-health").Body.String(), `queues are paused: [emails]`)

	w = e.post("/api/queues/emails/resume", "")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.Empty(t, decode[monitor.QueueStats](t, e.get("/api/queue-stats")).Paused)

	w = e.post("/api/queues/bad%20name/pause", "")
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Contains(t, errorOf(t, w), `queue "bad name"`)
}

func TestEventsReplayAfterReconnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	e.add("before-1", "x")
	e.add("before-2", "y")
	srv := httptest.NewServer(e.h)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/events", nil)
	require.NoError(t, err)
	r.Header.Set("Last-Event-ID", "0") // saw nothing yet
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var id, data string
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			id = v
		}
		if v, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = v
			break
		}
	}
	require.NotEmpty(t, id)
	require.Contains(t, data, `"node":"before-1"`)
	require.Contains(t, data, `"node":"before-2"`)
}

func TestJobDetailShowsStepLogsEscaped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	e.add("logged", "x")
	// a step's log line holding markup, as a runner would store it
	rdb := seam.Store(e.client).Redis()
	require.NoError(t, rdb.HSet(context.Background(), "trellis:{"+e.client.Config().Namespace+"}:n:logged", "lg", `level=INFO msg="<script>alert(1)</script>"`+"\n").Err())
	w := e.get("/api/jobs/logged")
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, decode[map[string]any](t, w)["logs"], "<script>alert(1)</script>")
	w = e.get("/jobs/logged")
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Body.String(), `&lt;script&gt;alert(1)&lt;/script&gt;`)
	require.NotContains(t, w.Body.String(), `<script>alert(1)`)
}

// A batch step's job says which batch it ran in, in the API and on its page.
func TestJobDetailNamesItsBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	g := flow.New()
	for i := range 3 {
		g.Add(Other{N: i}, &flow.NodeOpts{ID: fmt.Sprintf("other-%d", i)})
	}
	_, err := e.client.Enqueue(context.Background(), g)
	require.NoError(t, err)
	e.run()
	e.wait("other-2", dag.Succeeded)
	v := decode[map[string]any](t, e.get("/api/jobs/other-2"))
	batch, _ := v["batch"].(string)
	require.Regexp(t, `^.+/\d+ of [1-3]$`, batch)
	w := e.get("/jobs/other-2")
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Body.String(), `<dd id="job-batch">`+batch+`</dd>`)
}

// Stranger is a message type no runner of the test has a step for.
type Stranger struct{}

func (Stranger) MessageType() string { return "TEST_STRANGER" }

// Ready jobs that no live runner can run — a type none has a step for, a
// queue none serves — make the namespace a warning, not healthy, and the
// health says which; each runner's record says what it serves.
func TestHealthWarnsOfUnservedJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	ctx := context.Background()
	e.run()
	_, err := e.client.Add(ctx, Stranger{}, &flow.NodeOpts{ID: "odd"})
	require.NoError(t, err)
	_, err = e.client.Add(ctx, Echo{Text: "aside"}, &flow.NodeOpts{ID: "aside", Queue: "side"})
	require.NoError(t, err)
	e.add("fine", "fine")
	e.wait("fine", dag.Succeeded)

	var hl monitor.Health
	require.Eventually(t, func() bool {
		hl = decode[monitor.Health](t, e.get("/api/admin/queue-health"))
		return hl.Metrics.LiveRunners == 1
	}, 5*time.Second, 20*time.Millisecond)
	require.Equal(t, monitor.Warning, hl.Status, "%+v", hl.Findings)
	require.ElementsMatch(t, []monitor.Lane{{Queue: "default", Type: "TEST_STRANGER", Ready: 1}, {Queue: "side", Type: "ECHO", Ready: 1}}, hl.Metrics.Unserved)
	var reasons []string
	for _, f := range hl.Findings {
		if f.Check == "unserved" {
			require.Equal(t, monitor.Warning, f.Severity)
			reasons = append(reasons, f.Reason)
		}
	}
	require.Len(t, reasons, 2)
	require.Contains(t, strings.Join(reasons, "\n"), `1 ready TEST_STRANGER jobs on queue "default": no live runner has a step for TEST_STRANGER`)
	require.Len(t, hl.Metrics.Live, 1)
	info := hl.Metrics.Live[0].Info
	require.NotNil(t, info)
	require.Equal(t, []string{"default"}, info.Queues)
	require.ElementsMatch(t, []string{"ECHO", "OTHER"}, info.Types)
	require.Equal(t, 4, info.Concurrency)
	// the jobs wait: nothing claimed them
	for _, id := range []string{"odd", "aside"} {
		j, err := e.client.Job(ctx, id)
		require.NoError(t, err)
		require.Equal(t, dag.Ready, j.State)
	}
}

// Listings return summaries: however big a job's payload, result, error
// and logs, one job of a listing stays small; the job's own page has it all.
func TestListingsReturnSummaries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	e.run()
	e.add("huge", "failbig"+strings.Repeat("x", 900))
	e.wait("huge", dag.Failed)
	for _, path := range []string{"/api/jobs", "/api/jobs?state=failed", "/api/jobs?q=huge", "/api/failures", "/api/flows/huge"} {
		w := e.get(path)
		require.Equal(t, http.StatusOK, w.Code, path)
		require.Less(t, w.Body.Len(), 4<<10, "%s: %d bytes for one job", path, w.Body.Len())
	}
	w := e.get("/api/jobs/huge")
	require.Equal(t, http.StatusOK, w.Code)
	j := decode[monitor.JobView](t, w)
	require.Equal(t, 16<<10, len(j.Error.Message), "the stored error is cut to flow.Config.MaxError")
	require.Contains(t, j.Error.Message, "more bytes]")
}

// The in-process Redis of `trellis dev` and the examples never evicts and
// says so: health raises no maxmemory-policy notice for it.
func TestHealthOnTheInProcessRedis(t *testing.T) {
	t.Parallel()
	r, err := embedded.NewRedis()
	require.NoError(t, err)
	defer r.Close()
	client, err := flow.NewClient(r.Client(), &flow.Config{Namespace: "inproc", Logger: quiet()})
	require.NoError(t, err)
	h, err := monitor.New(client, monitor.Config{Logger: quiet()})
	require.NoError(t, err)
	hl, err := h.Health(context.Background())
	require.NoError(t, err)
	require.Equal(t, "noeviction", hl.Metrics.MaxmemoryPolicy)
	require.Nil(t, finding(*hl, "redis_maxmemory_policy"), "%+v", hl.Findings)
}

// A search reads at most its budget of jobs per page and goes on by
// cursor: its pages together hold every match once, latest first.
func TestInspectorListSearchBudget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	_, err := e.client.Add(context.Background(), Echo{Text: "later"}, &flow.NodeOpts{ID: "gate", Delay: time.Hour})
	require.NoError(t, err)
	for i := range 30 {
		text := "hay"
		if i%10 == 4 {
			text = "needle"
		}
		e.add(fmt.Sprintf("w%02d", i), text, "gate")
	}
	insp := e.client.Inspector()
	q := flow.ListQuery{States: []dag.State{dag.Blocked}, Budget: 5, Limit: 2,
		Match: func(n *dag.Node) bool { return strings.Contains(string(n.Payload), "needle") }}
	var found []string
	pages := 0
	for {
		p, err := insp.List(context.Background(), q)
		require.NoError(t, err)
		require.LessOrEqual(t, p.Scanned, 5, "a page reads at most its budget")
		require.EqualValues(t, 30, p.Total)
		for _, n := range p.Jobs {
			found = append(found, n.ID)
		}
		pages++
		if p.Next == "" {
			break
		}
		q.After = p.Next
	}
	require.ElementsMatch(t, []string{"w04", "w14", "w24"}, found)
	require.GreaterOrEqual(t, pages, 6, "30 jobs, 5 a page")
	_, err = insp.List(context.Background(), flow.ListQuery{Limit: flow.MaxListLimit + 1})
	require.ErrorContains(t, err, "limit 1001 is not between 1 and 1000")
}
