package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// chromium is Debian's browser; scripts/services.sh installs it.
const chromium = "/usr/bin/chromium"

var sampleTypes = []string{"TEST", "USER_ACTION", "NOTIFICATION", "EMAIL", "DATA_SYNC", "WORKOUT_UPDATE",
	"WORKOUT_PLAN_CREATE", "WORKOUT_PHASE_CREATE", "WORKOUT_PHASE_UPDATE", "WORKOUT_PHASE_DELETE",
	"WORKOUT_SESSION_CREATE", "WORKOUT_SESSION_UPDATE", "WORKOUT_SESSION_DELETE", "WORKOUT_EXERCISE_CREATE",
	"WORKOUT_EXERCISE_UPDATE", "WORKOUT_EXERCISE_DELETE", "WORKOUT_PLAN_FULL_SAVE"}

// TestDashboardInBrowser drives `trellis dev` (in-process Redis and SQLite,
// worker and monitor in one process) from headless Chromium: every sample
// of the queue-test page is accepted, a TEST message completes live, its
// flow graph draws and opens a node, payload markup stays text, and a
// screenshot is a real PNG.
func TestDashboardInBrowser(t *testing.T) {
	t.Parallel()
	_, err := os.Stat(chromium)
	require.NoError(t, err, "the browser test needs Debian's chromium at %s; `make test` (scripts/services.sh) installs it", chromium)

	dir := t.TempDir()
	c := &cliEnv{t: t, dir: dir, env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}}
	_, out, _ := c.start("dev", "--addr", "127.0.0.1:0")
	base := out.wait(t, `monitor listening.*url=(http://\S+/)`, 60*time.Second)[1]

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(filepath.Join(dir, "chrome")))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	require.NoError(t, chromedp.Do(ctx), "start chromium") // the browser lives as long as ctx

	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		require.NoError(t, chromedp.Do(sctx, steps...))
	}
	poll := func(expr string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(45*time.Second))(ctx, tg)
			return chromedp.Void{}, err
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
		require.NoError(t, err)
		return v
	}
	eval := func(expr string) int {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[int](expr))
		require.NoError(t, err)
		return v
	}

	// the overview shows health over the API
	do(chromedp.Navigate(base), poll(`document.querySelector('#health h2') !== null`))
	require.Contains(t, text(`#health h2`), "Health: ")

	// every sample generator makes a message the registry accepts
	do(chromedp.Navigate(base+"queue-test"), poll(`document.querySelectorAll('#msg-type option').length >= 17`))
	send := func() string {
		t.Helper()
		do(chromedp.Evaluate[chromedp.Void](`document.getElementById('flash').textContent = ''`),
			chromedp.Click(chromedp.CSS(`#enqueue-form button[type=submit]`)),
			poll(`document.getElementById('flash').textContent !== ''`))
		return text(`#flash`)
	}
	ids := map[string]string{}
	for _, typ := range sampleTypes {
		do(chromedp.SetValue(chromedp.CSS(`#msg-type`), typ), chromedp.Click(chromedp.CSS(`#sample`)))
		flash := send()
		id, ok := strings.CutPrefix(flash, "Enqueued ")
		require.True(t, ok, "%s sample refused: %s", typ, flash)
		ids[typ] = id
	}

	// the TEST job completes, and the page sees it without a reload
	testID := ids["TEST"]
	do(poll(fmt.Sprintf(`[...document.querySelectorAll('#sent tbody tr')].some(r => r.textContent.includes(%q) && r.textContent.includes('succeeded'))`, testID)))
	// so does the EMAIL job: dev logs emails when no SMTP server is set
	do(poll(fmt.Sprintf(`[...document.querySelectorAll('#sent tbody tr')].some(r => r.textContent.includes(%q) && r.textContent.includes('succeeded'))`, ids["EMAIL"])))

	// markup in a payload is shown as text, never run
	evil := map[string]any{"messageType": "TEST", "timestamp": time.Now().UTC().Format(time.RFC3339),
		"data": map[string]any{"message": `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`}}
	raw, err := json.Marshal(evil)
	require.NoError(t, err)
	do(chromedp.SetValue(chromedp.CSS(`#message`), string(raw)))
	flash := send()
	evilID, ok := strings.CutPrefix(flash, "Enqueued ")
	require.True(t, ok, flash)
	do(chromedp.Navigate(base+"jobs/"+evilID), poll(`document.getElementById('job-state').textContent === 'succeeded'`))
	require.Contains(t, text(`#job-payload`), `<img src=x onerror=\"window.__xss=1\">`)
	require.Zero(t, eval(`window.__xss === undefined ? 0 : window.__xss`), "payload markup ran")
	require.Zero(t, eval(`document.querySelectorAll('main img, main script').length`), "payload markup became elements")

	// the flow graph draws the job in its state; a click opens its detail
	do(chromedp.Navigate(base+"flows/"+testID),
		poll(`document.querySelector('#graph g.node.s-succeeded') !== null`),
		chromedp.Click(chromedp.CSS(`#graph g.node`)),
		chromedp.WaitVisible(chromedp.CSS(`#node-panel`)))
	panel := text(`#node-title`)
	require.Contains(t, panel, testID)
	require.Contains(t, panel, "succeeded")
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(shot), "\x89PNG\r\n\x1a\n"), "the screenshot is a PNG")
	require.Greater(t, len(shot), 5000)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "flow.png"), shot, 0o600))

	// the Graphviz drawing loads as an image
	do(chromedp.Click(chromedp.CSS(`#rendered`)),
		poll(`(() => { const i = document.getElementById('graph-img'); return !i.hidden && i.complete && i.naturalWidth > 0 })()`))

	// the full plan save expanded into a graph of many jobs, all saved
	do(chromedp.Navigate(base+"flows/"+ids["WORKOUT_PLAN_FULL_SAVE"]),
		poll(`document.querySelectorAll('#graph g.node').length > 10 && document.getElementById('flow-summary').textContent.includes('finished')`))
	require.Equal(t, eval(`document.querySelectorAll('#graph g.node').length`), eval(`document.querySelectorAll('#graph g.node.s-succeeded').length`))

	// the overview's feed shows transitions as they happen
	do(chromedp.Navigate(base), poll(`document.getElementById('live').className === 'live on'`),
		chromedp.Evaluate[chromedp.Void](`api("api/enqueue", { method: "POST", body: { message: {
			messageType: "TEST", timestamp: new Date().toISOString(), data: { message: "live" } }, options: { jobId: "live-1" } } })`),
		poll(`[...document.querySelectorAll('#activity li')].some(li => li.textContent.includes('live-1') && li.textContent.includes('succeeded'))`))

	// TRELLIS_SCREENSHOTS=DIR keeps pictures of the pages, to look at them
	if out := os.Getenv("TRELLIS_SCREENSHOTS"); out != "" {
		for name, path := range map[string]string{"full-save": "flows/" + ids["WORKOUT_PLAN_FULL_SAVE"], "overview": "",
			"failed": "failed", "jobs": "jobs", "queue-test": "queue-test", "job": "jobs/" + evilID} {
			do(chromedp.Navigate(base+path), chromedp.Sleep(700*time.Millisecond))
			png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(out, name+".png"), png, 0o600))
		}
	}
}
