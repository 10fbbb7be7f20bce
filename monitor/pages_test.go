package monitor_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/monitor"
)

const evil = `<script>alert("x")</script><img src=x onerror=alert(1)>`

func TestPagesRender(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{Development: true})
	e.add("p1", "hello")
	for path, marker := range map[string]string{
		"/":           `id="health"`,
		"/failed":     `id="failed-groups"`,
		"/jobs":       `id="job-filter"`,
		"/jobs/p1":    `id="job-payload"`,
		"/flows/p1":   `id="graph"`,
		"/cleanup":    `id="clear"`,
		"/queue-test": `id="enqueue-form"`,
	} {
		w := e.get(path)
		require.Equal(t, http.StatusOK, w.Code, path)
		require.Equal(t, "text/html; charset=utf-8", w.Header().Get("Content-Type"), path)
		body := w.Body.String()
		require.Contains(t, body, marker, path)
		require.Contains(t, body, `<meta name="csrf-token" content="`+e.h.CSRFToken()+`">`, path)
		require.Contains(t, body, `<script src="assets/app.js" defer></script>`, path)
		require.NotContains(t, body, "<script>", "no inline script on %s", path)
	}
	w := e.get("/jobs/ghost")
	require.Equal(t, http.StatusNotFound, w.Code)
	require.Contains(t, w.Body.String(), "No such job.")

	// clear is offered in development mode only
	plain := newEnv(t, monitor.Config{})
	require.Contains(t, plain.get("/cleanup").Body.String(), "development mode only")
	require.Equal(t, http.StatusNotFound, plain.get("/nope").Code)
}

func TestAssets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	w := e.get("/assets/app.js")
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Header().Get("Content-Type"), "javascript")
	js := w.Body.String()
	require.Contains(t, js, `new EventSource("api/events")`)
	require.NotContains(t, js, "innerHTML", "the script never writes HTML")
	require.NotContains(t, js, "insertAdjacentHTML")
	for _, typ := range []string{"TEST", "USER_ACTION", "NOTIFICATION", "EMAIL", "DATA_SYNC", "WORKOUT_UPDATE",
		"WORKOUT_PLAN_CREATE", "WORKOUT_PHASE_CREATE", "WORKOUT_PHASE_UPDATE", "WORKOUT_PHASE_DELETE",
		"WORKOUT_SESSION_CREATE", "WORKOUT_SESSION_UPDATE", "WORKOUT_SESSION_DELETE", "WORKOUT_EXERCISE_CREATE",
		"WORKOUT_EXERCISE_UPDATE", "WORKOUT_EXERCISE_DELETE", "WORKOUT_PLAN_FULL_SAVE"} {
		require.Contains(t, js, "  "+typ+": () =>", "a sample generator for %s", typ)
	}
	w = e.get("/assets/style.css")
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Header().Get("Content-Type"), "text/css")
	require.Equal(t, http.StatusNotFound, e.get("/assets/nope.js").Code)
}

// Job data holding HTML and script is escaped wherever it is shown.
func TestJobDataIsEscaped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	e.run()
	_, err := e.client.Add(context.Background(), Echo{Text: "fail " + evil}, &flow.NodeOpts{ID: "xss", Attempts: 1,
		Metadata: map[string]any{"note": evil}})
	require.NoError(t, err)
	e.wait("xss", flow.Failed)

	// the server-rendered job page
	w := e.get("/jobs/xss")
	require.Equal(t, http.StatusOK, w.Code)
	page := w.Body.String()
	require.NotContains(t, page, "<script>alert")
	require.NotContains(t, page, "<img src=x")
	require.Contains(t, page, `&#34;note&#34;: &#34;&lt;script&gt;alert(\&#34;x\&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&#34;`, "payload escaped in <pre>")
	require.Contains(t, page, `echo refused: fail &lt;script&gt;`, "error escaped")

	// every JSON reply
	for _, path := range []string{"/api/jobs/xss", "/api/jobs?q=alert", "/api/failures", "/api/queue-stats?includeJobs=true", "/api/flows/xss"} {
		w := e.get(path)
		require.Equal(t, http.StatusOK, w.Code, path)
		body := w.Body.String()
		require.NotContains(t, body, "<script>", path)
		require.NotContains(t, body, "<img", path)
		require.True(t, strings.Contains(body, `\u003cscript\u003e`) || path == "/api/flows/xss", "%s: %s", path, body)
	}

	// IDs in paths are escaped too
	w = e.get("/jobs/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
	require.Equal(t, http.StatusNotFound, w.Code)
	require.NotContains(t, w.Body.String(), "<script>alert(1)")
	require.Contains(t, w.Body.String(), "&lt;script&gt;alert(1)&lt;/script&gt;")
}
