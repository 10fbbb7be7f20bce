package monitor_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/monitor"
)

func (e *env) job(id string) monitor.JobView {
	e.t.Helper()
	w := e.get("/api/job?id=" + id)
	require.Equal(e.t, http.StatusOK, w.Code, w.Body.String())
	return decode[monitor.JobView](e.t, w)
}

// waitingFor holds that one of the job's reasons to wait contains want.
func waitingFor(t *testing.T, j monitor.JobView, want string) {
	t.Helper()
	for _, w := range j.WaitsFor {
		if strings.Contains(w, want) {
			return
		}
	}
	require.Failf(t, "no such reason", "%q not among %q", want, j.WaitsFor)
}

func TestJobAttempts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	e.run()
	_, err := e.client.Add(context.Background(), Echo{Text: "flaky"}, &flow.NodeOpts{ID: "f", Attempts: 3,
		Backoff: &dag.Backoff{Kind: dag.Fixed, Base: 10 * time.Millisecond}})
	require.NoError(t, err)
	e.wait("f", dag.Failed)

	j := e.job("f")
	require.Len(t, j.Attempts, 3)
	for i, a := range j.Attempts {
		require.Equal(t, i+1, a.Attempt)
		require.NotEmpty(t, a.Worker)
		require.NotNil(t, a.End)
		require.NotNil(t, a.DurationMS)
		require.False(t, a.End.Before(a.Start))
		require.Equal(t, "echo failed: flaky", a.Error)
	}
	require.Len(t, j.Errors, 3)
	require.Equal(t, dag.Delayed, j.Attempts[0].Outcome) // retried after its backoff
	require.Equal(t, dag.Failed, j.Attempts[2].Outcome)
	require.Empty(t, j.WaitsFor, "a finished job waits for nothing")

	page := e.get("/job?id=f").Body.String()
	require.Contains(t, page, `id="job-attempts-card">`)
	require.Equal(t, 3, strings.Count(page, "<tr><td>")-strings.Count(page, "<tr><td>parent")-strings.Count(page, "<tr><td>child"))
	require.Contains(t, page, `id="job-error-card">`)
	require.Contains(t, page, `id="job-result-card" hidden>`)
	require.Contains(t, page, `id="job-logs-card" hidden>`)
	require.Contains(t, page, `id="job-waits-card" hidden>`)
	require.Contains(t, page, `id="job-related-card" hidden>`)
	require.NotContains(t, page, "<details><summary>echo failed", "no stacks: plain errors")

	// an error with a stack keeps it on each attempt
	_, err = e.client.Add(context.Background(), Echo{Text: "stacked"}, &flow.NodeOpts{ID: "s", Attempts: 2,
		Backoff: &dag.Backoff{Kind: dag.Fixed, Base: 10 * time.Millisecond}})
	require.NoError(t, err)
	e.wait("s", dag.Failed)
	j = e.job("s")
	require.Len(t, j.Attempts, 2)
	for i, a := range j.Attempts {
		require.Equal(t, "echo failed: stacked", a.Error)
		require.Contains(t, a.Stack, "monitor_test")
		require.Contains(t, a.Logs, "trying", "each attempt's own step logs")
		require.Contains(t, a.Logs, fmt.Sprintf("attempt=%d", i+1))
	}
	require.Equal(t, 2, strings.Count(e.get("/job?id=s").Body.String(), "<details><summary>echo failed: stacked</summary><pre>"))
}

func TestJobParentsAndChildren(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	e.add("p1", "one")
	e.add("p2", "two")
	e.add("c", "child", "p1", "p2")

	j := e.job("c")
	require.Equal(t, []monitor.RelatedView{{ID: "p1", Type: "ECHO", State: dag.Ready}, {ID: "p2", Type: "ECHO", State: dag.Ready}}, j.ParentJobs)
	waitingFor(t, j, "parent p1 is ready")
	waitingFor(t, j, "parent p2 is ready")
	require.Equal(t, []monitor.RelatedView{{ID: "c", Type: "ECHO", State: dag.Blocked}}, e.job("p1").ChildJobs)

	page := e.get("/job?id=c").Body.String()
	require.Contains(t, page, `<a href="job?id=p1">p1</a>`)
	require.Contains(t, page, "<li>parent p2 is ready</li>")
	require.Contains(t, page, `id="job-attempts-card" hidden>`)
	require.Contains(t, page, `id="job-error-card" hidden>`)
}

func TestJobWaiting(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	ctx := context.Background()
	_, err := e.client.Add(ctx, Echo{Text: "later"}, &flow.NodeOpts{ID: "d", Attempts: 1, Delay: time.Hour})
	require.NoError(t, err)
	j := e.job("d")
	require.Equal(t, dag.Delayed, j.State)
	due := j.CreatedAt.Add(time.Hour).UTC().Format("2006-01-02T15:04")
	waitingFor(t, j, "delayed until "+due)

	_, err = e.client.Add(ctx, Echo{Text: "x"}, &flow.NodeOpts{ID: "q", Attempts: 1, Queue: "held"})
	require.NoError(t, err)
	require.NoError(t, e.client.Pause(ctx, "held"))
	require.NoError(t, e.client.SetLimit(ctx, "ECHO", dag.Limit{Concurrency: 2, Rate: 5, Per: time.Minute}))
	j = e.job("q")
	waitingFor(t, j, "queue held is paused")
	waitingFor(t, j, "concurrency limit of 2 (0 active)")
	waitingFor(t, j, "rate limit of 5 per 1m0s")
	waitingFor(t, j, "no live runner serves queue held and type ECHO")

	e.run() // a live runner, of the default queue only
	require.Eventually(t, func() bool {
		return len(decode[monitor.RunnersView](t, e.get("/api/runners")).Runners) == 1
	}, 5*time.Second, 20*time.Millisecond)
	waitingFor(t, e.job("q"), "no live runner serves queue held and type ECHO")
	require.NoError(t, e.client.Pause(ctx, "default")) // so the runner leaves r waiting
	e.add("r", "x")
	require.Equal(t, []string{"queue default is paused", "type ECHO has a concurrency limit of 2 (0 active)",
		"type ECHO has a rate limit of 5 per 1m0s (0 started in this window)"}, e.job("r").WaitsFor)
}

func TestJobWaitingForACondition(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	_, err := e.client.Add(context.Background(), Echo{Text: "x"}, &flow.NodeOpts{ID: "w", Attempts: 1, When: "true"})
	require.NoError(t, err)
	waitingFor(t, e.job("w"), `condition "true" is evaluated when a runner claims it`)
}

// A job page lists at most 200 parents and 200 children and says how many
// more there are; a blocked job counts its unfinished parents in all.
func TestJobRelatedAreBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	g := flow.New()
	var parents []*flow.Node
	for i := range 203 {
		parents = append(parents, g.Add(Echo{Text: "p"}, &flow.NodeOpts{ID: fmt.Sprintf("p%03d", i)}))
	}
	g.Add(Echo{Text: "join"}, &flow.NodeOpts{ID: "join"}).After(parents...)
	_, err := e.client.Enqueue(context.Background(), g)
	require.NoError(t, err)
	j := e.job("join")
	require.Len(t, j.ParentJobs, 200)
	require.Equal(t, 3, j.RelatedMore)
	waitingFor(t, j, "203 unfinished parents in all (3 not shown)")
	require.Contains(t, e.get("/job?id=join").Body.String(), "… and 3 more not listed")
}
