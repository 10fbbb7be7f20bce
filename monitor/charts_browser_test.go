package monitor_test

import (
	"context"
	"fmt"
	"net/http/httptest"
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
	now := e.settle()
	for ago := 59; ago >= 1; ago-- {
		e.putMinute(now.Add(-time.Duration(ago)*time.Minute),
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
	do(chromedp.EmulateViewport(1280, 900), chromedp.Navigate(srv.URL+"/"), poll(`document.querySelectorAll('#counts .stat').length > 0`))
	do(chromedp.Navigate(eval(`document.querySelector('nav a[data-nav=charts]').href`)),
		poll(`document.querySelectorAll('#charts svg.chart').length === 4`))
	require.Empty(t, eval(`document.getElementById('flash').textContent`))
	require.Equal(t, "Throughput Failures Duration p50 Duration p95",
		eval(`[...document.querySelectorAll('#charts h2')].map(h => h.firstChild.textContent.trim()).join(' ')`))
	require.Equal(t, "60 60", eval(`[...document.querySelectorAll('[data-series=finished] circle.point, [data-series=failed] circle.point')].length / 2 + ' ' + document.querySelectorAll('[data-series=p50Ms] circle.point').length`))
	require.Equal(t, "4", eval(`String(document.querySelectorAll('#charts path.series').length)`))
	require.Equal(t, "3 3", eval(`document.querySelectorAll('[data-series=finished] .x-label').length + ' ' + document.querySelectorAll('[data-series=finished] .y-label').length`))
	// the current minute is the runner's: three succeeded and one failed
	require.Regexp(t, `^\d\d:\d\d: 4 runs/min$`, eval(`[...document.querySelectorAll('[data-series=finished] circle.point title')].pop().textContent`))
	require.Regexp(t, `^\d\d:\d\d: 1 failed for good/min$`, eval(`[...document.querySelectorAll('[data-series=failed] circle.point title')].pop().textContent`))
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
