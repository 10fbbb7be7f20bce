package monitor_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/monitor"
)

func (e *env) bulk(action string, ids ...string) monitor.BulkResponse {
	e.t.Helper()
	body, err := json.Marshal(monitor.BulkRequest{Action: action, IDs: ids})
	require.NoError(e.t, err)
	w := e.post("/api/jobs/bulk", string(body))
	require.Equal(e.t, http.StatusOK, w.Code, w.Body.String())
	return decode[monitor.BulkResponse](e.t, w)
}

// held enqueues an Echo job in a queue no runner serves: it stays ready.
func (e *env) held(id string) {
	e.t.Helper()
	_, err := e.client.Add(e.t.Context(), Echo{Text: "held"}, &flow.NodeOpts{ID: id, Queue: "held"})
	require.NoError(e.t, err)
}

// A bulk action acts on each job once, in the order given, and says what
// became of each: ok, or the engine's reason.
func TestBulkActions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{Development: true})
	e.run()
	e.add("f1", "fail one")
	e.add("f2", "fail two")
	e.add("ok", "fine")
	e.held("h1")
	e.held("h2")
	e.held("h3")
	e.wait("f1", dag.Failed)
	e.wait("f2", dag.Failed)
	e.wait("ok", dag.Succeeded)
	errs := func(r monitor.BulkResponse) map[string]string {
		m := map[string]string{}
		for _, x := range r.Results {
			require.Equal(t, x.Error == "", x.OK, x.ID)
			m[x.ID] = x.Error
		}
		return m
	}

	r := e.bulk("retry", "f1", "f2", "ok", "ghost", "f1")
	require.Equal(t, "retry", r.Action)
	require.Equal(t, []string{"f1", "f2", "ok", "ghost"}, ids(r))
	require.Equal(t, 2, r.OK)
	require.Equal(t, 2, r.Failed)
	got := errs(r)
	require.Empty(t, got["f1"])
	require.Empty(t, got["f2"])
	require.Contains(t, got["ok"], "succeeded")
	require.Equal(t, `job "ghost" not found`, got["ghost"])
	e.wait("f1", dag.Failed) // it ran again, and failed again
	e.wait("f2", dag.Failed)
	for _, id := range []string{"f1", "f2"} {
		require.Equal(t, 2, e.failures(id), "%s ran again", id)
	}

	r = e.bulk("cancel", "h1", "h2", "ok")
	require.Equal(t, 2, r.OK)
	require.Contains(t, errs(r)["ok"], "succeeded")
	e.wait("h1", dag.Cancelled)
	e.wait("h2", dag.Cancelled)

	r = e.bulk("remove", "f1", "h3", "h1", "ghost")
	require.Equal(t, 2, r.OK)
	got = errs(r)
	require.Equal(t, `job "h3" is ready; cancel it before removing it`, got["h3"])
	require.Equal(t, `job "ghost" not found`, got["ghost"])
	for _, id := range []string{"f1", "h1"} {
		_, err := e.client.Job(t.Context(), id)
		require.True(t, errors.Is(err, flow.ErrNotFound), "%s removed: %v", id, err)
	}
	e.wait("h3", dag.Ready)
}

func ids(r monitor.BulkResponse) []string {
	out := make([]string, len(r.Results))
	for i, x := range r.Results {
		out[i] = x.ID
	}
	return out
}

// A bulk request is refused whole, naming the problem, when its action is
// unknown or not allowed, or its IDs are none or too many.
func TestBulkRefusesBadRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{Development: true})
	many := make([]string, 1001)
	for i := range many {
		many[i] = "j" + strings.Repeat("x", i%3)
	}
	tooMany, err := json.Marshal(monitor.BulkRequest{Action: "retry", IDs: many})
	require.NoError(t, err)
	for body, want := range map[string]string{
		`{"action": "delete", "ids": ["a"]}`: `action: "delete" is not retry, cancel or remove`,
		`{"action": "retry", "ids": []}`:     `ids: none given`,
		`{"action": "retry"}`:                `ids: none given`,
		string(tooMany):                      `ids: 1001 given, over the limit of 1000 per request`,
		`{"action": "retry", "id": ["a"]}`:   `body: json: unknown field "id"`,
		`not json`:                           `body: invalid character`,
	} {
		w := e.post("/api/jobs/bulk", body)
		require.Equal(t, http.StatusBadRequest, w.Code, body)
		require.Contains(t, errorOf(t, w), want, body)
	}

	plain := newEnv(t, monitor.Config{})
	plain.held("h")
	w := plain.post("/api/jobs/bulk", `{"action": "remove", "ids": ["h"]}`)
	require.Equal(t, http.StatusForbidden, w.Code)
	require.Contains(t, errorOf(t, w), "development-only")

	// a write like the others: the CSRF token is required
	w = e.do(req{method: http.MethodPost, path: "/api/jobs/bulk", body: `{"action": "retry", "ids": ["a"]}`, header: map[string]string{"X-CSRF-Token": ""}})
	require.Equal(t, http.StatusForbidden, w.Code)
	require.Contains(t, errorOf(t, w), "X-CSRF-Token")
}
