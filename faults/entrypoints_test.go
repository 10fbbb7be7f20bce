package faults_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/internal/redistest"
	"github.com/trellisflow/trellis/monitor"
	"github.com/trellisflow/trellis/steps/system"
	"github.com/trellisflow/trellis/steps/workout"
	"github.com/trellisflow/trellis/steps/workout/csvplan"
)

// TestBadInputThroughEveryEntryPoint feeds the same bad messages through the
// Go API (AddJSON), `trellis enqueue` and the HTTP API (POST /api/enqueue),
// and bad CSV through csvplan and `trellis save-plan`: each is refused with a
// message naming the problem, and Redis is unchanged after each one.
func TestBadInputThroughEveryEntryPoint(t *testing.T) {
	t.Parallel()
	srv := redistest.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	const ns = "entry"
	c := newClient(t, rdb, ns, &redistest.Logs{})
	reg := flow.NewRegistry()
	workout.RegisterTypes(reg)
	system.RegisterTypes(reg)
	ctx := context.Background()
	plan := func(name string) string {
		return `{"messageType":"WORKOUT_PLAN_CREATE","timestamp":"2026-01-02T03:04:05Z","data":{"planId":"p-1","name":"` + name + `","clientId":"c-1","trainerId":"t-1","isActive":true}}`
	}
	_, err := c.AddJSON(ctx, reg, []byte(plan("Strength")), &flow.NodeOpts{ID: "earlier"})
	require.NoError(t, err)

	bin := trellisBinary(t)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "REDIS_URL=redis://" + srv.Addr() + "/0", "TRELLIS_NAMESPACE=" + ns}
	cli := func(stdin string, args ...string) (int, string) {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, bin, args...)
		cmd.Env, cmd.Dir, cmd.Stdin = env, t.TempDir(), strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String()
		}
		require.NoError(t, err)
		return 0, out.String()
	}
	mon, err := monitor.New(c, monitor.Config{Token: "s3cret", Registry: reg})
	require.NoError(t, err)
	post := func(body string) (int, string) {
		req := httptest.NewRequest(http.MethodPost, "/api/enqueue", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer s3cret")
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		mon.ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}

	huge := plan(strings.Repeat("x", 2<<20))
	cases := []struct {
		name, envelope, id string
		after              []string
		names              string
	}{
		{name: "malformed JSON", envelope: `{"messageType":"WORKOUT_PLAN_CREATE",`, names: "malformed"},
		{name: "unknown message type", envelope: `{"messageType":"NOPE","timestamp":"2026-01-02T03:04:05Z","data":{}}`, names: `unknown message type \"NOPE\"`},
		{name: "missing data", envelope: `{"messageType":"WORKOUT_PLAN_CREATE","timestamp":"2026-01-02T03:04:05Z"}`, names: "data: is missing"},
		{name: "mistyped field", envelope: strings.Replace(plan("n"), `"isActive":true`, `"isActive":"yes"`, 1), names: "isActive"},
		{name: "unknown field", envelope: strings.Replace(plan("n"), `"isActive":true`, `"isActive":true,"colour":"red"`, 1), names: "colour"},
		{name: "missing required field", envelope: strings.Replace(plan(""), `"name":"",`, ``, 1), names: "name"},
		{name: "oversize payload", envelope: huge, names: "limit"},
		{name: "unknown dependency", envelope: plan("later"), id: "later", after: []string{"ghost"}, names: `unknown job \"ghost\"`},
		{name: "ID with a control character", envelope: plan("n"), id: "bad\x1bid", names: "control character"},
		{name: "conflicting re-enqueue", envelope: plan("Another name"), id: "earlier", names: `\"earlier\" already exists`},
	}
	keys := func() []string {
		k, err := rdb.Keys(ctx, "*").Result()
		require.NoError(t, err)
		return k
	}
	before := keys()
	for _, tc := range cases {
		// Go API
		var opts *flow.NodeOpts
		if tc.id != "" {
			opts = &flow.NodeOpts{ID: tc.id}
		}
		_, err := c.AddJSON(ctx, reg, []byte(tc.envelope), opts, tc.after...)
		require.Error(t, err, "go: %s", tc.name)
		require.Contains(t, strings.ReplaceAll(err.Error(), `"`, `\"`), tc.names, "go: %s", tc.name)
		require.ElementsMatch(t, before, keys(), "go: %s: Redis unchanged", tc.name)

		// trellis enqueue
		args := []string{"enqueue"}
		if tc.id != "" {
			args = append(args, "--id", tc.id)
		}
		for _, a := range tc.after {
			args = append(args, "--after", a)
		}
		code, out := cli(tc.envelope, args...)
		require.NotZero(t, code, "cli: %s: %s", tc.name, out)
		require.Contains(t, strings.ReplaceAll(out, `"`, `\"`), tc.names, "cli: %s", tc.name)
		require.Less(t, len(out), 8192, "cli: %s: the error does not echo the input", tc.name)
		require.ElementsMatch(t, before, keys(), "cli: %s: Redis unchanged", tc.name)

		// HTTP API
		body, _ := json.Marshal(map[string]any{"message": json.RawMessage(tc.envelope), "after": tc.after, "options": map[string]any{"jobId": tc.id}})
		httpNames := tc.names
		if !json.Valid([]byte(tc.envelope)) {
			// the request body itself is then malformed JSON
			body, httpNames = []byte(`{"message":`+tc.envelope+`}`), "invalid character"
		}
		status, resp := post(string(body))
		require.GreaterOrEqual(t, status, 400, "http: %s: %s", tc.name, resp)
		require.Less(t, status, 500, "http: %s: a client error, not a server one: %s", tc.name, resp)
		require.Contains(t, resp, httpNames[:min(len(httpNames), 20)], "http: %s", tc.name)
		require.ElementsMatch(t, before, keys(), "http: %s: Redis unchanged", tc.name)
	}

	// bad CSV rows: every problem reported with its line and column, nothing queued
	csv := "plan_name,client_id,trainer_id,phase_order,phase_name,session_order,session_name,exercise_order,exercise_name,sets,reps\n" +
		"Block,c1,t1,1,Base,1,Lower,1,Squat,three,10\n" +
		"Block,c1,t1,1,Base,1,Lower,2,,3,-4\n"
	_, err = csvplan.Parse(strings.NewReader(csv), nil)
	require.ErrorIs(t, err, csvplan.ErrInvalid)
	for _, want := range []string{"line 2", "sets", "line 3", "exercise_name", "reps"} {
		require.Contains(t, err.Error(), want)
	}
	path := filepath.Join(t.TempDir(), "bad.csv")
	require.NoError(t, os.WriteFile(path, []byte(csv), 0o644))
	code, out := cli("", "save-plan", path)
	require.NotZero(t, code, out)
	for _, want := range []string{"line 2", "sets", "line 3", "exercise_name", "reps"} {
		require.Contains(t, out, want)
	}
	require.ElementsMatch(t, before, keys(), "csv: Redis unchanged")

	// IDs holding quotes and HTML are accepted and never break out in pictures or pages
	odd := `x" -> "y" <script>alert(1)</script>`
	body, _ := json.Marshal(map[string]any{"message": json.RawMessage(plan("odd")), "options": map[string]any{"jobId": odd}})
	status, resp := post(string(body))
	require.Equal(t, http.StatusCreated, status, resp)
	for _, p := range []string{".dot", ".mmd"} {
		req := httptest.NewRequest(http.MethodGet, "/api/flows/"+pathEscape(odd)+"/graph"+p, nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		w := httptest.NewRecorder()
		mon.ServeHTTP(w, req)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		require.NotContains(t, w.Body.String(), `x" -> "y"`, "%s: the quote is escaped", p)
		if p == ".mmd" { // Mermaid renders labels as HTML; DOT's quoted strings are plain text
			require.NotContains(t, w.Body.String(), "<script>", "%s", p)
		}
	}
	req := httptest.NewRequest(http.MethodGet, "/jobs/"+pathEscape(odd), nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	w := httptest.NewRecorder()
	mon.ServeHTTP(w, req)
	require.Equal(t, http.StatusOK, w.Code)
	require.NotContains(t, w.Body.String(), "<script>alert(1)")
	t.Logf("FIGURES bad input through Go, CLI, HTTP and CSV: cases=%d×3 + csv×2, refused=all, redis_unchanged=true", len(cases))
}

func pathEscape(s string) string {
	return strings.NewReplacer("%", "%25", "/", "%2F", " ", "%20", `"`, "%22", "<", "%3C", ">", "%3E", "#", "%23", "?", "%3F").Replace(s)
}
