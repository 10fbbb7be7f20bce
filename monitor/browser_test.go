package monitor_test

import (
	"context"
	"encoding/json"
	"fmt"
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
	b.do(chromedp.EmulateViewport(1280, 1000))
	b.do(chromedp.Navigate(srv.URL+"/job?id=t"), b.poll(`document.querySelector('#job-timeline tbody') !== null`))
	b.screenshot("job-attempts.png")
	require.Equal(t, "3", b.eval(`String(document.querySelectorAll('#job-attempt-list tbody tr').length)`))
	require.NotContains(t, b.eval(`document.querySelector('#job-attempt-list thead').textContent`), "Batch", "no column for what a job has not")
	require.Equal(t, "delayed delayed succeeded", b.eval(`[...document.querySelectorAll('#job-attempt-list tbody tr')].map(r => r.children[5].textContent).join(' ')`))
	require.Equal(t, "echo failed: attempt 1|echo failed: attempt 2|", b.eval(`[...document.querySelectorAll('#job-attempt-list tbody tr')].map(r => r.children[6].textContent).join('|')`))
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

// layoutFacts is a script that checks the live view as the browser drew
// it: boxes apart, every edge ending on the border of its own box, and
// every box inside the view after fit. It returns a JSON summary.
const layoutFacts = `(() => {
  const svg = document.getElementById('graph-svg');
  const view = svg.getBoundingClientRect();
  const gs = [...document.querySelectorAll('#graph g.node')];
  const rects = gs.map((g) => g.querySelector('rect').getBoundingClientRect());
  let overlaps = 0, outside = 0, offEdges = 0;
  for (let i = 0; i < rects.length; i++) {
    const a = rects[i];
    if (a.left < view.left - 0.5 || a.top < view.top - 0.5 || a.right > view.right + 0.5 || a.bottom > view.bottom + 0.5) outside++;
    for (let j = i + 1; j < rects.length; j++) {
      const b = rects[j];
      if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) overlaps++;
    }
  }
  const byI = {};
  for (const g of gs) byI[g.dataset.i] = g.querySelector('rect');
  const edges = [...document.querySelectorAll('#graph polyline.edge')];
  for (const e of edges) {
    const pts = e.getAttribute('points').split(' ').map((p) => p.split(',').map(Number));
    const [x, y] = pts[pts.length - 1];
    const r = byI[e.dataset.to];
    const bx = +r.dataset.x, by = +r.dataset.y, bw = +r.getAttribute('width'), bh = +r.getAttribute('height');
    const near = (u, v) => Math.abs(u - v) < 0.01;
    const inside = x >= bx - 0.01 && x <= bx + bw + 0.01 && y >= by - 0.01 && y <= by + bh + 0.01;
    if (!inside || !(near(x, bx) || near(x, bx + bw) || near(y, by) || near(y, by + bh))) offEdges++;
  }
  return JSON.stringify({boxes: gs.length, edges: edges.length, overlaps, outside, offEdges,
    groups: gs.filter((g) => g.classList.contains('k-group')).length});
})()`

type layoutSummary struct {
	Boxes, Edges, Overlaps, Outside, OffEdges, Groups int
}

func (b *browser) layout() layoutSummary {
	b.t.Helper()
	var s layoutSummary
	require.NoError(b.t, json.Unmarshal([]byte(b.eval(layoutFacts)), &s))
	return s
}

// The flow view fits the 145-node plan save and a 5,011-node flow to the
// screen, with no two boxes overlapping, every edge ending on its own
// box and every group in view; a group expands on a click, the view zooms
// and fits again, a job of another flow is a box that opens it, and a
// state change recolours its box live.
func TestFlowViewInBrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	e.run()
	planShaped(t, e, "fps")
	e.wait("fps/p1/s2/x3", dag.Failed)
	e.wait("fps/p3/s4/x5", dag.Succeeded)
	// 5,011 nodes in a queue no runner serves, so they stay put
	g := flow.New().WithID("big")
	plan := g.Add(Echo{Text: "plan"}, &flow.NodeOpts{ID: "big/plan", Queue: "later"})
	for p := range 10 {
		phase := g.Add(Echo{Text: "phase"}, &flow.NodeOpts{ID: fmt.Sprintf("big/p%d", p), Queue: "later"}).After(plan)
		for s := range 10 {
			session := g.Add(Echo{Text: "session"}, &flow.NodeOpts{ID: fmt.Sprintf("big/p%d/s%d", p, s), Queue: "later"}).After(phase)
			for x := range 49 {
				g.Add(Echo{Text: "exercise"}, &flow.NodeOpts{ID: fmt.Sprintf("big/p%d/s%d/x%d", p, s, x), Queue: "later"}).After(session)
			}
		}
	}
	_, err := e.client.Enqueue(t.Context(), g)
	require.NoError(t, err)

	b := newBrowser(t)
	b.do(chromedp.EmulateViewport(1280, 900))
	drawn := `document.querySelectorAll('#graph g.node').length > 0 && document.getElementById('graph-svg').getAttribute('viewBox') !== null`
	b.do(chromedp.Navigate(srv.URL+"/flow?id=fps"), b.poll(drawn))
	s := b.layout()
	require.Zero(t, s.Overlaps, "boxes overlap")
	require.Zero(t, s.OffEdges, "edges end off their boxes")
	require.Zero(t, s.Outside, "boxes outside the view after fit")
	require.Equal(t, s.Boxes-1, s.Edges, "a tree: every box but the plan has its edge")
	require.Greater(t, s.Groups, 0)
	require.Equal(t, "12-week strength block", b.eval(`document.querySelector('#graph g.node[data-id="fps/plan"] text').textContent`))
	b.screenshot("flow-view.png")

	// a group expands on a click, and collapses again
	b.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('#graph g.k-group').dispatchEvent(new MouseEvent('click', {bubbles: true}))`),
		b.poll(`document.querySelectorAll('#graph g.node.expanded').length >= 5`))
	s = b.layout()
	require.Zero(t, s.Overlaps+s.OffEdges)
	// zoom in, then fit again
	before := b.eval(`document.getElementById('graph-svg').getAttribute('viewBox')`)
	b.do(chromedp.Click(chromedp.CSS(`#graph-in`)))
	require.NotEqual(t, before, b.eval(`document.getElementById('graph-svg').getAttribute('viewBox')`))
	b.do(chromedp.Click(chromedp.CSS(`#graph-fit`)))
	require.Zero(t, b.layout().Outside)
	b.do(chromedp.Click(chromedp.CSS(`#graph-collapse`)), b.poll(`document.querySelectorAll('#graph g.node.expanded').length === 0`))

	// a job of another flow that this one waits for is a box that opens it
	e.add("after", "x", "fps/plan")
	b.do(chromedp.Navigate(srv.URL+"/flow?id=after"), b.poll(drawn+` && document.querySelector('#graph g.k-external') !== null`))
	require.Equal(t, "fps/plan", b.eval(`document.querySelector('#graph g.k-external').dataset.id`))
	require.Zero(t, b.layout().OffEdges)
	b.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('#graph g.k-external').dispatchEvent(new MouseEvent('click', {bubbles: true}))`),
		chromedp.WaitReady(chromedp.CSS(`body[data-page="job"][data-id="fps/plan"]`)))

	b.do(chromedp.Navigate(srv.URL+"/flow?id=big"), b.poll(drawn))
	s = b.layout()
	require.Zero(t, s.Overlaps, "boxes overlap")
	require.Zero(t, s.OffEdges, "edges end off their boxes")
	require.Zero(t, s.Outside, "boxes outside the view after fit")
	require.LessOrEqual(t, s.Boxes, 300)
	require.Greater(t, s.Groups, 0)
	b.screenshot("flow-view-5k.png")

	// states change colour live: a job cancelled elsewhere turns in place
	require.Equal(t, "true", b.eval(`String(document.querySelector('#graph g.node[data-id="big/plan"]').classList.contains('s-ready'))`))
	_, err = e.client.Cancel(t.Context(), "big/plan", "by the test")
	require.NoError(t, err)
	b.do(b.poll(`document.querySelector('#graph g.node[data-id="big/plan"]').classList.contains('s-cancelled')`))
}

// The jobs list pages by cursor: Next and Prev step through every job once,
// and the count says which rows are shown.
func TestJobsPagingInBrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	for i := range 120 {
		e.add(fmt.Sprintf("p%03d", i), "x")
	}
	b := newBrowser(t)
	rows := `[...document.querySelectorAll('#jobs tbody tr')].map(r => r.querySelector('td a').textContent)`
	count := `document.getElementById('job-count').textContent`
	seen := map[string]bool{}
	page := func(want string) {
		t.Helper()
		b.do(b.poll(count + ` === ` + fmt.Sprintf("%q", want)))
		var ids []string
		require.NoError(t, json.Unmarshal([]byte(b.eval(`JSON.stringify(`+rows+`)`)), &ids))
		for _, id := range ids {
			seen[id] = true
		}
	}
	b.do(chromedp.Navigate(srv.URL + "/jobs"))
	page("120 jobs · showing 1–50")
	require.Equal(t, "true", b.eval(`String(document.getElementById('prev').disabled)`))
	b.do(chromedp.Click(chromedp.CSS(`#next`)))
	page("120 jobs · showing 51–100")
	b.do(chromedp.Click(chromedp.CSS(`#next`)))
	page("120 jobs · showing 101–120")
	require.Equal(t, "true", b.eval(`String(document.getElementById('next').disabled)`))
	require.Len(t, seen, 120, "every job on one page")
	b.do(chromedp.Click(chromedp.CSS(`#prev`)))
	page("120 jobs · showing 51–100")
	require.Equal(t, "p050", b.eval(rows+`[0]`), "ready jobs in the order they start")
}
