package monitor_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/monitor"
)

// chromium is Debian's browser; scripts/services.sh installs it.
const chromium = "/usr/bin/chromium"

// The dashboard's own links and calls reach every legal job, flow and
// queue name in a real browser, which resolves dot segments (also spelt
// %2e) out of paths: a job page opens from the jobs list, its script reads
// the job and cancels it, the flow page draws it, and a queue named ".."
// pauses from the overview, which shows the p95 as the estimate it is.
func TestDashboardLinksInBrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close) // after the browser closes (cleanups run last first), which holds an event stream open
	ids := []string{".", "..", ".%2E", "%2e%2e", "a/b", "../x", "%", "a b", "ü✓", "?x=1#y"}
	for _, id := range ids {
		g := flow.New().WithID(id)
		g.Add(Echo{Text: "hi"}, &flow.NodeOpts{ID: id, Queue: ".."})
		_, err := e.client.Enqueue(t.Context(), g)
		require.NoError(t, err, id)
	}

	b := newBrowser(t)
	do, poll, eval := b.do, b.poll, b.eval
	js := func(s string) string { b, _ := json.Marshal(s); return string(b) }

	do(chromedp.Navigate(srv.URL+"/jobs"), poll(`document.querySelectorAll('#jobs tbody td a').length >= 20`))
	var links [][2]string // job ID, the href the script built
	require.NoError(t, json.Unmarshal([]byte(eval(`JSON.stringify([...document.querySelectorAll('#jobs tbody tr')].map(r => r.querySelector('td a')).map(a => [a.textContent, a.href]))`)), &links))
	require.Len(t, links, len(ids))
	for _, l := range links {
		id, href := l[0], l[1]
		require.Contains(t, ids, id)
		// the job page, filled in by the script (the timeline is the script's alone)
		do(chromedp.Navigate(href), poll(`document.body.dataset.page === 'job' && document.body.dataset.id === `+js(id)+
			` && document.querySelector('#job-timeline tbody') !== null`))
		require.Empty(t, eval(`document.getElementById('flash').textContent`), id)
		do(chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll('#job-actions button')].find(b => b.textContent === 'Cancel').click()`),
			poll(`document.getElementById('job-state').textContent === 'cancelled'`))
		j, err := e.client.Job(t.Context(), id)
		require.NoError(t, err)
		require.Equal(t, dag.Cancelled, j.State, id)

		// its flow, drawn by the script, whose node opens the job's detail
		flowHref := eval(`document.querySelector('#job-summary a').href`)
		do(chromedp.Navigate(flowHref), poll(`document.body.dataset.page === 'flow' && document.body.dataset.id === `+js(id)+
			` && [...document.querySelectorAll('#graph g.node')].some(g => g.dataset.id === `+js(id)+`)`),
			chromedp.Click(chromedp.CSS(`#graph g.node`)), poll(`document.querySelector('#node-title a') !== null`))
		require.Equal(t, href, eval(`document.querySelector('#node-title a').href`), id)
		require.Empty(t, eval(`document.getElementById('flash').textContent`), id)
	}
	// the Graphviz drawing of the flow ".." loads as an image
	do(chromedp.Navigate(srv.URL+"/flow?id=.."), poll(`document.querySelector('#graph g.node') !== null`),
		chromedp.Click(chromedp.CSS(`#rendered`)),
		poll(`(() => { const i = document.getElementById('graph-img'); return !i.hidden && i.complete && i.naturalWidth > 0 })()`))

	// the overview pauses the queue "..", and shows the p95 as an estimate
	e.observe(append(repeat(50, 20*time.Millisecond), repeat(50, 200*time.Millisecond)...)...)
	do(chromedp.Navigate(srv.URL+"/"), poll(`[...document.querySelectorAll('#queue-table tbody tr')].some(r => r.firstChild.textContent === '..')`),
		chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll('#queue-table tbody tr')].find(r => r.firstChild.textContent === '..').querySelector('button').click()`),
		poll(`document.getElementById('flash').textContent === 'Paused ..'`))
	require.Contains(t, eval(`[...document.querySelectorAll('#rates .stat')].map(s => s.textContent).join(' | ')`), "≈ 235 msp95 time (estimate)")
	st, err := e.client.Stats(t.Context(), nil)
	require.NoError(t, err)
	require.True(t, slices.Contains(st.Paused, ".."), "paused: %v", st.Paused)
}

// A job that failed twice and then succeeded shows its three attempts,
// filled in by the script, and hides the sections it has nothing for.
func TestJobAttemptsInBrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	e.run()
	_, err := e.client.Add(t.Context(), Echo{Text: "twice"}, &flow.NodeOpts{ID: "t", Attempts: 3,
		Backoff: &dag.Backoff{Kind: dag.Fixed, Base: 10 * time.Millisecond}})
	require.NoError(t, err)
	e.wait("t", dag.Succeeded)

	b := newBrowser(t)
	b.do(chromedp.Navigate(srv.URL+"/job?id=t"), b.poll(`document.querySelector('#job-timeline tbody') !== null`))
	require.Equal(t, "3", b.eval(`String(document.querySelectorAll('#job-attempt-list tbody tr').length)`))
	require.Equal(t, "delayed delayed succeeded", b.eval(`[...document.querySelectorAll('#job-attempt-list tbody tr')].map(r => r.children[6].textContent).join(' ')`))
	require.Equal(t, "echo failed: attempt 1|echo failed: attempt 2|", b.eval(`[...document.querySelectorAll('#job-attempt-list tbody tr')].map(r => r.children[7].textContent).join('|')`))
	require.Equal(t, "false true true", b.eval(`[document.getElementById('job-attempts-card').hidden, document.getElementById('job-waits-card').hidden, document.getElementById('job-logs-card').hidden].join(' ')`))
}

// browser is a headless Chromium for one test, closed at its end.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	_, err := os.Stat(chromium)
	require.NoError(t, err, "the browser test needs Debian's chromium at %s; `make test` (scripts/services.sh) installs it", chromium)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.UserDataDir(filepath.Join(t.TempDir(), "chrome")))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(cancelCtx)
	require.NoError(t, chromedp.Do(ctx), "start chromium")
	return &browser{t: t, ctx: ctx}
}

// do runs steps, each batch within a minute.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	sctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	require.NoError(b.t, chromedp.Do(sctx, steps...))
}

// poll waits up to 45 s for expr to be true.
func (b *browser) poll(expr string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(45*time.Second))(ctx, tg)
		return chromedp.Void{}, err
	}
}

// screenshot saves the page, as the browser shows it, as name (a PNG) in
// the directory $TRELLIS_SCREENSHOTS when it is set (`make screenshots`
// writes docs/'s pictures so); otherwise it does nothing.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	dir := os.Getenv("TRELLIS_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	require.NoError(b.t, err, "screenshot %s", name)
	require.NoError(b.t, os.WriteFile(filepath.Join(dir, name), png, 0o644))
}

// eval is expr's value, which must be a string.
func (b *browser) eval(expr string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](expr))
	require.NoError(b.t, err, expr)
	return v
}
