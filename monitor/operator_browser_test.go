package monitor_test

import (
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/monitor"
)

// An operator's pages in a real browser: the runners page lists the live
// runner, the overview's cards name states as the engine does and link to
// their jobs, times read "… ago" with the absolute time on hover, and the
// queue-test page sends to a chosen queue under a chosen ID, then clears.
func TestOperatorPagesInBrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{Development: true})
	e.run()
	e.add("op-ok", "fine")
	e.add("op-bad", "fail now")
	e.wait("op-ok", dag.Succeeded)
	e.wait("op-bad", dag.Failed)
	_, err := e.client.Add(t.Context(), Echo{Text: "aside"}, &flow.NodeOpts{ID: "op-side", Queue: "side"})
	require.NoError(t, err)
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close) // after the browser closes (cleanups run last first), which holds an event stream open
	b := newBrowser(t)
	do, poll, eval := b.do, b.poll, b.eval

	// the runners page, by the nav's link
	do(chromedp.Navigate(srv.URL+"/"), poll(`document.querySelectorAll('#counts .stat').length > 0`))
	do(chromedp.Navigate(eval(`document.querySelector('nav a[data-nav=runners]').href`)),
		poll(`document.body.dataset.page === 'runners' && document.querySelectorAll('#runners tbody tr td time').length > 0`))
	host, err := os.Hostname()
	require.NoError(t, err)
	row := eval(`[...document.querySelectorAll('#runners tbody tr')[0].children].map(td => td.textContent).join(' | ')`)
	require.Contains(t, row, host)
	require.Contains(t, row, " | default | ECHO, OTHER | 4 | 0 | ")
	require.Contains(t, eval(`document.getElementById('runner-count').textContent`), "1 live runner (a heartbeat in the last 90 s)")
	require.Equal(t, "true", eval(`String(document.querySelector('nav a[data-nav=runners]').classList.contains('current'))`))

	// a card per dag.State, in its words, linking to its jobs
	names := make([]string, len(dag.States))
	for i, s := range dag.States {
		names[i] = string(s)
	}
	do(chromedp.Navigate(srv.URL+"/"), poll(`document.querySelectorAll('#counts .stat').length === 8`))
	require.Equal(t, strings.Join(names, " "), eval(`[...document.querySelectorAll('#counts .stat span:last-child')].map(s => s.textContent).join(' ')`))
	require.Equal(t, "1", eval(`document.querySelector('#counts .stat[data-state=succeeded] .n').textContent`))
	require.Equal(t, "Queue ready delayed active failed Status", eval(`[...document.querySelectorAll('#queue-table th')].map(th => th.textContent).join(' ').trim()`))
	for _, word := range []string{"waiting", "completed"} {
		require.NotContains(t, eval(`document.getElementById('counts').textContent + document.getElementById('queue-table').textContent`), word)
	}
	// (a click would navigate under the next poll; following the href is the same)
	do(chromedp.Navigate(eval(`document.querySelector('#counts .stat[data-state=failed]').href`)),
		poll(`document.body.dataset.page === 'jobs' && document.querySelectorAll('#jobs tbody tr td a').length > 0`))
	require.Equal(t, "failed", eval(`document.querySelector('#job-filter [name=state]').value`))
	require.Equal(t, "op-bad", eval(`document.querySelector('#jobs tbody td a').textContent`))

	// relative times, the absolute one on hover
	tm := `document.querySelector('#jobs tbody time.ago')`
	require.Regexp(t, `^(just now|\d+ s ago)$`, eval(tm+`.textContent`))
	require.Equal(t, "true", eval(`String(`+tm+`.title === new Date(`+tm+`.getAttribute('datetime')).toLocaleString())`))
	require.Equal(t, "2 min ago | in 3 h | 4 d ago | just now", eval(`[ago("2026-01-01T00:00:00Z", Date.parse("2026-01-01T00:02:59Z")),
		ago("2026-01-01T03:00:30Z", Date.parse("2026-01-01T00:00:00Z")), ago("2026-01-01T00:00:00Z", Date.parse("2026-01-05T01:00:00Z")),
		ago("2026-01-01T00:00:00Z", Date.parse("2026-01-01T00:00:02Z"))].join(' | ')`))
	do(chromedp.Navigate(srv.URL+"/job?id=op-ok"), poll(`document.querySelectorAll('#job-timeline tbody time.ago').length >= 3`))
	require.NotEmpty(t, eval(`document.querySelector('#job-timeline time.ago').title`))
	do(chromedp.Navigate(srv.URL+"/failed"), poll(`document.querySelector('#failed-groups tbody time.ago') !== null`))
	require.Empty(t, eval(`document.getElementById('flash').textContent`))

	// the queue test: queue "side" (it holds a job) under the ID qt-1
	do(chromedp.Navigate(srv.URL+"/queue-test"), poll(`[...document.querySelectorAll('#queue-select option')].map(o => o.value).join(' ') === 'default side'`),
		chromedp.SetValue(chromedp.CSS(`#msg-type`), "ECHO"),
		chromedp.SetValue(chromedp.CSS(`#message`), `{"messageType":"ECHO","timestamp":"2026-01-02T03:04:05Z","data":{"text":"from the page"}}`),
		chromedp.SetValue(chromedp.CSS(`#queue-select`), "side"), chromedp.SetValue(chromedp.CSS(`#job-id`), "qt-1"),
		chromedp.Click(chromedp.CSS(`#enqueue-form button[type=submit]`)),
		poll(`document.getElementById('flash').textContent === 'Enqueued qt-1'`),
		poll(`[...document.querySelectorAll('#sent tbody tr')].some(r => r.textContent.includes('qt-1') && r.textContent.includes('side'))`))
	j, err := e.client.Job(t.Context(), "qt-1")
	require.NoError(t, err)
	require.Equal(t, "side", j.Queue)
	require.Equal(t, dag.Ready, j.State, "no runner serves side")
	do(chromedp.Click(chromedp.CSS(`#enqueue-form button[type=submit]`)),
		poll(`document.getElementById('flash').textContent === 'Already there: qt-1'`))
	require.Equal(t, "1", eval(`String(document.querySelectorAll('#sent tbody tr').length)`))
	// clear the queue (confirmed), and the page forgets what it sent
	do(chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`), chromedp.Click(chromedp.CSS(`#clear-queue`)),
		poll(`document.getElementById('flash').textContent.startsWith('Cleared ')`),
		poll(`document.querySelector('#sent tbody td.empty') !== null`))
	_, err = e.client.Job(t.Context(), "qt-1")
	require.ErrorIs(t, err, flow.ErrNotFound)
}
