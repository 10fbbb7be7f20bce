package monitor_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/seam"
	"github.com/trellisflow/trellis/internal/store"
	"github.com/trellisflow/trellis/monitor"
)

// settle moves the env's clock to ten seconds into the next minute and
// returns that time; a test that runs no runner may stop the clock there
// (freeze), so what it writes and reads stays in that minute.
func (e *env) settle(freeze bool) time.Time {
	now := time.Now()
	at := now.Truncate(time.Minute).Add(time.Minute + 10*time.Second)
	e.offset.Store(int64(at.Sub(now)))
	if freeze {
		e.fixed.Store(at.UnixNano())
	}
	return at
}

// run is one observed run for putMinute.
type run struct {
	queue, typ string
	kind       store.OutcomeKind
	final      bool
	took       time.Duration
	n          int
}

// putMinute records runs in the minute stats of the minute at, with a
// backlog sample when waiting is not nil.
func (e *env) putMinute(at time.Time, waiting map[store.Lane][2]int64, runs ...run) {
	e.t.Helper()
	m := store.NewMinute(at)
	if waiting != nil {
		m.Sampled, m.Waiting = true, waiting
	}
	for _, r := range runs {
		for range r.n {
			m.Observe(r.queue, r.typ, r.kind, r.final, r.took)
		}
	}
	require.NoError(e.t, seam.Store(e.client).AddMinute(context.Background(), m))
}

// putChartStats records two minutes of runs (the one before last and the
// current one) and enqueues a backlog: ECHO in q1 (two ready, one delayed)
// and one ready OTHER in the default queue.
func (e *env) putChartStats() time.Time {
	e.t.Helper()
	now := e.settle(true)
	e.putMinute(now.Add(-2*time.Minute), nil,
		run{"q1", "ECHO", store.OutcomeOK, false, 20 * time.Millisecond, 8},
		run{"q1", "ECHO", store.OutcomeFail, false, 200 * time.Millisecond, 1},
		run{"q1", "ECHO", store.OutcomeRetry, true, 200 * time.Millisecond, 1}, // out of attempts: a failure
		run{"q2", "OTHER", store.OutcomeOK, false, 3 * time.Millisecond, 2},
		run{"q2", "OTHER", store.OutcomeRetry, false, time.Second, 1})
	e.putMinute(now, nil, run{"q1", "ECHO", store.OutcomeOK, false, 2 * time.Minute, 1})
	ctx := context.Background()
	for _, opts := range []*flow.NodeOpts{{Queue: "q1"}, {Queue: "q1"}, {Queue: "q1", Delay: time.Hour}} {
		_, err := e.client.Add(ctx, Echo{Text: "wait"}, opts)
		require.NoError(e.t, err)
	}
	_, err := e.client.Add(ctx, Other{N: 1}, nil)
	require.NoError(e.t, err)
	return now
}

// The charts' series are the minute stats of the lane asked for, minute by
// minute, with the percentiles estimated from the lane's histogram.
func TestChartsSeries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	now := e.putChartStats()
	charts := func(query string) monitor.Charts {
		w := e.get("/api/charts?minutes=3" + query)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		return decode[monitor.Charts](t, w)
	}
	start := func(ago int) time.Time { return now.Truncate(time.Minute).Add(-time.Duration(ago) * time.Minute).UTC() }
	capped := monitor.ChartPoint{Start: start(0), Finished: 1, P50MS: 60_000, P95MS: 60_000, P95Capped: true}

	all := charts("")
	require.Equal(t, monitor.Charts{
		Minutes: 3,
		Points: []monitor.ChartPoint{
			// 2 in (1, 5] ms, 8 in (10, 25] ms, 2 in (100, 250] ms
			{Start: start(2), Finished: 12, Failed: 2, Retried: 1, P50MS: 17.5, P95MS: 205},
			{Start: start(1)},
			capped,
		},
		Backlog: monitor.Backlog{Ready: 3, Delayed: 1},
		Queues:  []string{"default", "q1", "q2"}, Types: []string{"ECHO", "OTHER"},
	}, all)

	q1 := charts("&queue=q1")
	require.Equal(t, "q1", q1.Queue)
	require.Equal(t, []monitor.ChartPoint{
		{Start: start(2), Finished: 10, Failed: 2, P50MS: 19.375, P95MS: 212.5},
		{Start: start(1)},
		capped,
	}, q1.Points)
	require.Equal(t, monitor.Backlog{Ready: 2, Delayed: 1}, q1.Backlog)

	other := charts("&type=OTHER")
	require.Equal(t, []monitor.ChartPoint{
		{Start: start(2), Finished: 2, Retried: 1, P50MS: 3, P95MS: 4.8},
		{Start: start(1)},
		{Start: start(0)},
	}, other.Points)
	require.Equal(t, monitor.Backlog{Ready: 1}, other.Backlog)

	none := charts("&queue=q2&type=ECHO")
	require.Equal(t, monitor.ChartPoint{Start: start(2)}, none.Points[0])
	require.Equal(t, monitor.Backlog{}, none.Backlog)

	require.Len(t, charts("").Points, 3)
	w := e.get("/api/charts")
	require.Equal(t, http.StatusOK, w.Code)
	require.Len(t, decode[monitor.Charts](t, w).Points, 60, "an hour by default")
}

func TestChartsRefusesBadParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	for path, want := range map[string]string{
		"/api/charts?minutes=0":   `minutes: "0" is not a whole number from 1 to 120`,
		"/api/charts?minutes=121": `minutes: "121" is not a whole number from 1 to 120`,
		"/api/charts?queue=a%20b": `queue: "a b" holds ' '`,
		"/api/charts?type=x%7Cy":  `type: "x|y" holds '|'`,
	} {
		w := e.get(path)
		require.Equal(t, http.StatusBadRequest, w.Code, path)
		require.Contains(t, errorOf(t, w), want, path)
	}
}

// The backlog's history is what runners sampled, minute by minute, by
// lane; a minute no runner sampled has no point.
func TestChartsBacklogHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	now := e.putChartStats() // two ready and one delayed ECHO in q1, one ready OTHER in default
	require.NoError(t, seam.Store(e.client).SampleBacklog(context.Background(), now.Add(-time.Minute)))
	for query, want := range map[string]*monitor.Backlog{
		"":               {Ready: 3, Delayed: 1},
		"&queue=q1":      {Ready: 2, Delayed: 1},
		"&type=OTHER":    {Ready: 1},
		"&queue=nothing": {},
	} {
		w := e.get("/api/charts?minutes=3" + query)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		c := decode[monitor.Charts](t, w)
		require.Len(t, c.Points, 3)
		require.Nil(t, c.Points[0].Backlog, query)
		require.Equal(t, want, c.Points[1].Backlog, query)
		require.Nil(t, c.Points[2].Backlog, query)
	}
}
