package monitor_test

import (
	"context"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
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
		"/runners":    `id="runners"`,
		"/cleanup":    `id="clear"`,
		"/queue-test": `id="enqueue-form"`,
		"/charts":     `id="chart-filter"`,
	} {
		w := e.get(path)
		require.Equal(t, http.StatusOK, w.Code, path)
		require.Equal(t, "text/html; charset=utf-8", w.Header().Get("Content-Type"), path)
		body := w.Body.String()
		require.Contains(t, body, marker, path)
		require.Contains(t, body, `<meta name="csrf-token" content="`+e.h.CSRFToken()+`">`, path)
		require.Contains(t, body, `<script src="assets/app.js" defer></script>`, path)
		require.NotContains(t, body, "<script>", "no inline script on %s", path)
		require.Contains(t, body, `<a href="runners" data-nav="runners">Runners</a>`, "the nav links the runners page on %s", path)
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
	e.wait("xss", dag.Failed)

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

// legalIDs are job, flow and queue-free IDs that dag.CheckID accepts and a
// URL path cannot carry as they are: dot segments, which browsers resolve
// away, and characters with a meaning in URLs.
var legalIDs = []string{".", "..", "...", "a/b", "../x", "./..", "%", "%2e%2e", "100%", "a b", "ünï✓", "?x=1#y",
	"a&b=c", "a+b", `<b>"'`, `\`, "~"}

var (
	hrefRe  = regexp.MustCompile(`(?:href|src)="([^"]*)"`)
	titleRe = regexp.MustCompile(`<code id="title-id">([^<]*)</code>`)
)

// Every legal job and flow ID gets its page, its API and its actions, by
// the links the server-rendered pages build.
func TestPagesForEveryLegalID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{Development: true})
	for _, id := range legalIDs {
		require.NoError(t, dag.CheckID(id), id)
		g := flow.New().WithID(id)
		g.Add(Echo{Text: "hi"}, &flow.NodeOpts{ID: id})
		_, err := e.client.Enqueue(t.Context(), g)
		require.NoError(t, err, id)
	}
	// follow resolves a link of the page at base as a browser would (dot
	// segments removed) and serves it
	follow := func(base, link string) (*url.URL, *httptest.ResponseRecorder) {
		t.Helper()
		b, err := url.Parse("http://monitor.test" + base)
		require.NoError(t, err)
		l, err := url.Parse(html.UnescapeString(link))
		require.NoError(t, err)
		u := b.ResolveReference(l)
		return u, e.get(u.RequestURI())
	}
	title := func(w *httptest.ResponseRecorder) string {
		m := titleRe.FindStringSubmatch(w.Body.String())
		require.NotNil(t, m, "no title ID in %s", w.Body.String())
		return html.UnescapeString(m[1])
	}
	for _, id := range legalIDs {
		page := "/job?id=" + url.QueryEscape(id)
		w := e.get(page)
		require.Equal(t, http.StatusOK, w.Code, id)
		require.Equal(t, id, title(w), "the page of job %q", id)
		require.Contains(t, w.Body.String(), `id="job-payload"`)

		// the job page links to its flow; the flow page to its pictures
		var flowLinks []string
		for _, m := range hrefRe.FindAllStringSubmatch(w.Body.String(), -1) {
			if strings.HasPrefix(m[1], "flow") {
				flowLinks = append(flowLinks, m[1])
			}
		}
		require.Len(t, flowLinks, 1, id)
		u, fw := follow(page, flowLinks[0])
		require.Equal(t, http.StatusOK, fw.Code, "%s: %s", id, u)
		require.Equal(t, id, title(fw), "the flow page of %q", id)
		pictures := 0
		for _, m := range hrefRe.FindAllStringSubmatch(fw.Body.String(), -1) {
			if !strings.Contains(m[1], "/graph.") || strings.Contains(m[1], ".png") || strings.Contains(m[1], ".svg") && id != ".." {
				continue // drawing every picture of every ID is slow; the DOT and Mermaid text say as much
			}
			pu, pw := follow(u.RequestURI(), m[1])
			require.Equal(t, http.StatusOK, pw.Code, "%s: %s", id, pu)
			pictures++
		}
		require.Positive(t, pictures, id)

		// the API twins the dashboard's script calls
		w = e.get("/api/job?id=" + url.QueryEscape(id))
		require.Equal(t, http.StatusOK, w.Code, id)
		require.Equal(t, id, decode[monitor.JobView](t, w).ID)
		w = e.get("/api/flow?id=" + url.QueryEscape(id))
		require.Equal(t, http.StatusOK, w.Code, id)
		require.Equal(t, id, decode[monitor.FlowView](t, w).ID)
		require.Equal(t, http.StatusOK, e.post("/api/job/cancel?id="+url.QueryEscape(id), "").Code, id)
		require.Equal(t, http.StatusOK, e.post("/api/job/retry?id="+url.QueryEscape(id), "").Code, id)
		require.Equal(t, http.StatusOK, e.post("/api/flow/cancel?id="+url.QueryEscape(id), "").Code, id)
		j, err := e.client.Job(t.Context(), id)
		require.NoError(t, err)
		require.Equal(t, dag.Cancelled, j.State, id)
	}
	require.Equal(t, http.StatusOK, e.post("/api/job/remove?id=..", "").Code)
	_, err := e.client.Job(t.Context(), "..")
	require.ErrorIs(t, err, flow.ErrNotFound)

	// queue names may be dots too
	for _, q := range []string{".", ".."} {
		require.Equal(t, http.StatusOK, e.post("/api/queue/pause?queue="+q, "").Code)
		st, err := e.client.Stats(t.Context(), nil)
		require.NoError(t, err)
		require.Contains(t, st.Paused, q)
		require.Equal(t, http.StatusOK, e.post("/api/queue/resume?queue="+q, "").Code)
	}

	// a twin needs its parameter, once
	for _, p := range []string{"/api/job", "/api/job?id=", "/api/job?id=a&id=b", "/job", "/api/flow/graph.dot"} {
		w := e.get(p)
		require.Equal(t, http.StatusBadRequest, w.Code, p)
		require.Contains(t, errorOf(t, w), "id: give it once, as ?id=NAME", p)
	}
	require.Equal(t, http.StatusNotFound, e.get("/api/job?id=ghost").Code)
	require.Equal(t, http.StatusNotFound, e.get("/job?id=ghost").Code)
}

// The dashboard's script puts every job, flow and queue name in a query
// parameter: it builds no path from one (the browser test runs it).
func TestScriptBuildsNoPathFromAName(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	js := e.get("/assets/app.js").Body.String()
	for _, re := range []string{`"[a-z/]*(jobs|flows|queues)/" *\+`, `\+ *"/(retry|cancel|remove|pause|resume|graph)`} {
		require.NotRegexp(t, re, js)
	}
	// every encodeURIComponent of a name is the one in named()
	require.Equal(t, 1, strings.Count(js, `"=" + encodeURIComponent(id)`))
	require.Regexp(t, `function named\(path, id, param\) \{ return path \+ "\?" \+ \(param \|\| "id"\) \+ "=" \+ encodeURIComponent\(id\); \}`, js)
	for _, re := range []string{`api\("api/job` + `s?/`, `act\("api/`} {
		for _, m := range regexp.MustCompile(re+`[^)]*`).FindAllString(js, -1) {
			// only the fixed paths: the bulk action's IDs travel in its body
			require.Regexp(t, `^(act\("api/jobs/retry-failed|api\("api/jobs/retry-failed|api\("api/jobs/bulk", )`, m, "a call that names nothing: %s", m)
		}
	}
}

// The dashboard names states as the engine does: every page carries
// dag.States for the script, and the script has no other names for them
// (BullMQ's waiting and completed stay API aliases only).
func TestOneVocabularyOfStates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	names := make([]string, len(dag.States))
	for i, s := range dag.States {
		names[i] = string(s)
	}
	for _, path := range []string{"/", "/jobs", "/queue-test", "/runners"} {
		require.Contains(t, e.get(path).Body.String(), `data-states="`+strings.Join(names, " ")+`"`, path)
	}
	js := e.get("/assets/app.js").Body.String()
	require.Contains(t, js, `const STATES = body.dataset.states.split(" ");`)
	for _, word := range []string{"waiting", "completed"} {
		require.False(t, strings.Contains(js, word), "the script says %q", word)
	}
}

// The queue-test page offers a queue (the client's default first), a job
// ID and, in development mode only, the clear-queue button.
func TestQueueTestPage(t *testing.T) {
	t.Parallel()
	dev := newEnv(t, monitor.Config{Development: true}).get("/queue-test").Body.String()
	require.Contains(t, dev, `<select name="queue" id="queue-select"><option value="default">default</option></select>`)
	require.Contains(t, dev, `<input name="jobId" id="job-id" placeholder="generated">`)
	require.Contains(t, dev, `<button id="clear-queue" type="button" class="danger">Clear the queue</button>`)
	plain := newEnv(t, monitor.Config{}).get("/queue-test").Body.String()
	require.Contains(t, plain, `id="queue-select"`)
	require.NotContains(t, plain, `id="clear-queue"`, "clearing is for development mode")
	ro := newEnv(t, monitor.Config{Development: true, ReadOnly: true}).get("/queue-test").Body.String()
	require.NotContains(t, ro, `id="clear-queue"`, "nor in read-only mode")
}
