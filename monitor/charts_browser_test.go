package monitor_test

import (
	"context"
	"fmt"
	"math"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/store"
	"github.com/trellisflow/trellis/monitor"
)

// The charts page draws a chart per series from /api/charts: an hour of
// recorded minutes and the current one, run by a real runner; its queue
// selector narrows them and the backlog.
func TestChartsInBrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	now := e.settle(false)
	// nothing recorded in the last two minutes before now: the runner's runs
	// land in now's minute or, on a slow machine, a later one, and the last
	// three points hold them either way
	for ago := 59; ago >= 3; ago-- {
		e.putMinute(now.Add(-time.Duration(ago)*time.Minute), map[store.Lane][2]int64{{Queue: "default", Type: "ECHO"}: {int64(40 + 30*math.Sin(float64(ago)/6)), int64(ago % 9)}},
			run{"default", "ECHO", store.OutcomeOK, false, time.Duration(10+ago%7*15) * time.Millisecond, 20 + (ago*7)%13},
			run{"default", "ECHO", store.OutcomeOK, false, time.Duration(300+ago%5*200) * time.Millisecond, 1 + ago%3},
			run{"default", "ECHO", store.OutcomeFail, false, 50 * time.Millisecond, ago % 4 / 3})
	}
	r := e.run()
	for i := range 3 {
		e.add(fmt.Sprint("ok-", i), "fine")
	}
	e.add("bad", "fail now")
	for i := range 3 {
		e.wait(fmt.Sprint("ok-", i), dag.Succeeded)
	}
	e.wait("bad", dag.Failed)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, r.Stop(ctx)) // a stopping runner writes its minute
	for _, opts := range []*flow.NodeOpts{{Queue: "side"}, {Queue: "side"}, {Delay: time.Hour}} {
		_, err := e.client.Add(t.Context(), Echo{Text: "waits"}, opts)
		require.NoError(t, err)
	}

	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close) // after the browser closes, which holds an event stream open
	b := newBrowser(t)
	do, poll, eval := b.do, b.poll, b.eval
	do(chromedp.EmulateViewport(1280, 1180), chromedp.Navigate(srv.URL+"/"), poll(`document.querySelectorAll('#counts .stat').length > 0`))
	do(chromedp.Navigate(eval(`document.querySelector('nav a[data-nav=charts]').href`)),
		poll(`document.querySelectorAll('#charts svg.chart').length === 5`))
	require.Empty(t, eval(`document.getElementById('flash').textContent`))
	require.Equal(t, "Throughput Failures Duration p50 Duration p95 Backlog",
		eval(`[...document.querySelectorAll('#charts h2')].map(h => h.firstChild.textContent.trim()).join(' ')`))
	// a point a minute for counts; durations only for minutes with runs (57
	// recorded, the runner's one or two, less the oldest if the hour moved on)
	require.Equal(t, "60", eval(`String([...document.querySelectorAll('[data-series=finished] circle.point, [data-series=failed] circle.point')].length / 2)`))
	p50, err := strconv.Atoi(eval(`String(document.querySelectorAll('[data-series=p50Ms] circle.point').length)`))
	require.NoError(t, err)
	require.True(t, p50 >= 57 && p50 <= 59, "%d duration points", p50)
	require.Equal(t, "5", eval(`String(document.querySelectorAll('#charts path.series').length)`))
	// the recorded backlog, and the runner's sample in its minute
	backlog, err := strconv.Atoi(eval(`String(document.querySelectorAll('[data-series=backlog] circle.point').length)`))
	require.NoError(t, err)
	require.True(t, backlog >= 57 && backlog <= 59, "%d backlog points", backlog)
	require.Equal(t, "3 3", eval(`document.querySelectorAll('[data-series=finished] .x-label').length + ' ' + document.querySelectorAll('[data-series=finished] .y-label').length`))
	// the last minutes are the runner's: three succeeded and one failed
	last3 := func(series string) string {
		return eval(`String([...document.querySelectorAll('[data-series=` + series + `] circle.point title')].slice(-3).map(t => +t.textContent.match(/: ([0-9.]+) /)[1]).reduce((a, b) => a + b, 0))`)
	}
	require.Equal(t, "4", last3("finished"))
	require.Equal(t, "1", last3("failed"))
	require.Regexp(t, `^\d\d:\d\d: \d+ runs/min$`, eval(`[...document.querySelectorAll('[data-series=finished] circle.point title')].pop().textContent`))
	require.Equal(t, "2 1", eval(`document.getElementById('backlog-ready').textContent + ' ' + document.getElementById('backlog-delayed').textContent`))
	require.Equal(t, "all queues default side", eval(`[...document.getElementById('chart-queue').options].map(o => o.textContent).join(' ')`))
	b.screenshot("charts.png")

	// the queue "side" has run nothing; its backlog is the two ready jobs
	do(chromedp.SetValue(chromedp.CSS(`#chart-queue`), "side"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('chart-filter').dispatchEvent(new Event('change'))`),
		poll(`location.search.includes('queue=side') && document.getElementById('backlog-delayed').textContent === '0'`))
	require.Equal(t, "2", eval(`document.getElementById('backlog-ready').textContent`))
	require.Equal(t, "0", eval(`document.querySelectorAll('[data-series=p50Ms] circle.point').length + ''`))
	require.Regexp(t, `^\d\d:\d\d: 0 runs/min$`, eval(`[...document.querySelectorAll('[data-series=finished] circle.point title')].pop().textContent`))
}
