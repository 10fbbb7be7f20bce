package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
)

// binary is the trellis command; smtpd the test SMTP server
// (steps/internal/smtptest/smtpd), which this package cannot import.
var binary, smtpd string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trellis-cli-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "trellis")
	smtpd = filepath.Join(dir, "smtpd")
	for out, pkg := range map[string]string{binary: ".", smtpd: "github.com/trellisflow/trellis/steps/internal/smtptest/smtpd"} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", pkg, err, b)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func redisURL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

var nonName = regexp.MustCompile(`[^A-Za-z0-9]+`)

// cliEnv is one test's namespace and environment for the binary.
type cliEnv struct {
	t   *testing.T
	ns  string
	env []string
	dir string
}

func newCLI(t *testing.T) *cliEnv {
	t.Helper()
	ns := fmt.Sprintf("cli-%s-%06x", nonName.ReplaceAllString(t.Name(), "-"), rand.IntN(1<<24))
	c := &cliEnv{t: t, ns: ns, dir: t.TempDir()}
	// a clean environment: only what the binary needs
	c.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.dir, "REDIS_URL=" + redisURL(), "TRELLIS_NAMESPACE=" + ns}
	opt, err := redis.ParseURL(redisURL())
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	client, err := flow.NewClient(rdb, &flow.Config{Namespace: ns, Development: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = client.Clear(context.Background())
		_ = rdb.Close()
	})
	return c
}

type result struct {
	code           int
	stdout, stderr string
}

func (c *cliEnv) run(stdin string, args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = c.env
	cmd.Dir = c.dir
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(c.t, err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := c.run("", "--help")
	require.Equal(t, 0, r.code)
	for _, cmd := range []string{"worker", "monitor", "dev", "enqueue", "save-plan", "stats", "health", "inspect", "graph", "retry", "cancel", "clear", "migrate", "redeliver", "reindex"} {
		require.Contains(t, r.stdout, "  "+cmd+" ", "help lists %s", cmd)
		h := c.run("", cmd, "--help")
		require.Equal(t, 0, h.code, cmd)
		require.Contains(t, h.stdout, "usage: trellis "+cmd, cmd)
		require.Contains(t, h.stdout, "flags:", cmd)
		require.Empty(t, h.stderr, cmd)
	}
	require.Contains(t, c.run("", "help", "graph").stdout, "-format string")

	r = c.run("", "frobnicate")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `unknown command "frobnicate"`)
	r = c.run("")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "usage: trellis COMMAND")
}

func TestErrorsNameTheFlag(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"worker", "--concurrency", "0"}, nil, "--concurrency 0: must be at least 1"},
		{[]string{"worker", "--concurrency", "many"}, nil, `invalid value "many" for flag -concurrency`},
		{[]string{"worker", "--lease", "-1s"}, nil, "--lease -1s: must be positive"},
		{[]string{"worker", "--batch", "EMAIL"}, nil, `invalid value "EMAIL" for flag -batch: "EMAIL" is not TYPE=SIZE or TYPE=SIZE/LINGER`},
		{[]string{"worker", "--batch", "X=0"}, nil, `"X=0": the size "0" is not a whole number from 1 to 1000`},
		{[]string{"worker", "--batch", "X=5/soon"}, nil, `"X=5/soon": the linger "soon" is not a duration`},
		{[]string{"stats", "--log-level", "loud"}, nil, `--log-level: "loud" is not debug, info, warn or error`},
		{[]string{"stats", "--bogus"}, nil, "flag provided but not defined: -bogus"},
		{[]string{"stats"}, []string{"REDIS_URL=", "REDIS_PORT=abc"}, `REDIS_PORT: "abc" is not a port number`},
		{[]string{"stats", "--redis-url", "http://x"}, nil, "--redis-url: "},
		{[]string{"stats", "--namespace", "bad name!"}, nil, `--namespace: "bad name!"`},
		{[]string{"graph", "f1", "--format", "gif"}, nil, `--format "gif": must be dot, mermaid, svg or png`},
		{[]string{"graph"}, nil, "give exactly one FLOW_ID"},
		{[]string{"inspect", "a", "b"}, nil, "give exactly one JOB_ID"},
		{[]string{"enqueue", "--priority", "5000"}, nil, "--priority 5000: must be from -1000 to 1000"},
		{[]string{"monitor", "--addr", "0.0.0.0:3001"}, nil, "--addr 0.0.0.0:3001: without --token or --user the monitor listens on loopback only"},
		{[]string{"monitor", "--user", "ops"}, nil, "--user and --password"},
		{[]string{"monitor", "--addr", "nonsense"}, nil, `--addr "nonsense"`},
		{[]string{"worker"}, nil, "no database: set DATABASE_URL or --database-url"},
		{[]string{"monitor", "--threshold", "error-rate-warning=lots"}, nil, `--threshold error-rate-warning: "lots" is not a number`},
		{[]string{"monitor", "--threshold", "bogus=1"}, nil, `unknown name "bogus"`},
		{[]string{"monitor", "--threshold", "error-rate-warning=50", "--threshold", "error-rate-critical=10"}, nil, "ErrorRateWarning (50) is above ErrorRateCritical (10)"},
		{[]string{"worker", "--smtp-addr", "smtp.example.com:25", "--smtp-from", "c@example.com", "--smtp-user", "coach"}, nil,
			"--smtp-user: refusing to send the SMTP password unencrypted to smtp.example.com; set --smtp-tls starttls (port 587) or tls (port 465)"},
		{[]string{"worker", "--smtp-addr", "smtp.example.com:587", "--smtp-tls", "none"}, []string{"SMTP_USER=coach", "SMTP_FROM=c@example.com"},
			"SMTP_USER: refusing to send the SMTP password unencrypted to smtp.example.com"},
		{[]string{"worker", "--smtp-addr", "smtp.example.com:587", "--smtp-from", "c@example.com", "--smtp-tls", "ssl"}, nil,
			`--smtp-tls: "ssl" is not none, starttls or tls`},
		{[]string{"worker"}, []string{"SMTP_HOST=smtp.example.com", "SMTP_FROM=c@example.com", "SMTP_TLS=on"}, `SMTP_TLS: "on" is not none, starttls or tls`},
		{[]string{"worker"}, []string{"SMTP_HOST=smtp.example.com", "SMTP_PORT=smtp"}, `SMTP_PORT: "smtp" is not a port number`},
		{[]string{"worker", "--smtp-addr", "smtp.example.com:587"}, nil, "--smtp-from (or SMTP_FROM) is required with --smtp-addr"},
		{[]string{"worker", "--smtp-addr", "smtp.example.com:587", "--smtp-from", "Coach"}, nil, `--smtp-from "Coach": mail: `},
		{[]string{"worker", "--smtp-addr", "smtp.example.com:587", "--smtp-from", "c@example.com", "--smtp-ca-file", "/nonexistent/ca.pem"}, nil,
			"--smtp-ca-file: open /nonexistent/ca.pem"},
		{[]string{"worker", "--notify-url", "http://127.0.0.1:9/hook"}, nil, "--notify-url needs --notify-secret or TRELLIS_NOTIFY_SECRET"},
		{[]string{"worker", "--notify-url", "ftp://127.0.0.1/hook", "--notify-secret", "s"}, nil, `--notify-url: webhook: URL "ftp://127.0.0.1/hook": want http`},
		{[]string{"redeliver", "--kind", "sms"}, nil, `--kind "sms": must be email, notification or all`},
		{[]string{"redeliver"}, nil, "nothing to deliver with: set an SMTP server (--smtp-addr) or a webhook (--notify-url)"},
		{[]string{"redeliver", "--kind", "email", "--notify-url", "http://127.0.0.1:9/", "--notify-secret", "s"}, nil, "--kind email needs an SMTP server"},
		{[]string{"redeliver", "--list"}, nil, "no database"},
	} {
		c2 := *c
		c2.env = append(append([]string{}, c.env...), tc.env...)
		r := c2.run("", tc.args...)
		require.Equal(t, 2, r.code, "%v: %s", tc.args, r.stderr)
		require.Contains(t, r.stderr, tc.want, tc.args)
	}
}

const planEnvelope = `{"messageType":"WORKOUT_PLAN_CREATE","timestamp":"2026-01-02T03:04:05Z","userId":"u1",
 "data":{"planId":"plan-1","name":"Strength <b>","clientId":"c1","trainerId":"t1","isActive":true}}`

func TestEnqueueInspectCancelRetry(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := c.run(planEnvelope, "enqueue", "--id", "job-1", "--attempts", "2", "--priority", "7")
	require.Equal(t, 0, r.code, r.stderr)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
	require.Equal(t, "job-1", res["jobId"])
	require.Equal(t, "ready", res["state"])
	require.Equal(t, false, res["existed"])

	// from a file, depending on the first
	file := filepath.Join(c.dir, "phase.json")
	require.NoError(t, os.WriteFile(file, []byte(`{"messageType":"WORKOUT_PHASE_CREATE","timestamp":"2026-01-02T03:04:05Z",
	 "data":{"planId":"plan-1","phase":{"id":"ph-1","name":"Phase 1","orderNumber":1,"isActive":true}}}`), 0o600))
	r = c.run("", "enqueue", file, "--after", "job-1", "--id", "job-2")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `"state": "blocked"`)
	r = c.run("", "inspect", "job-2")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `"maxAttempts": 20`, "a phase create retries for minutes while its plan may be on its way")

	r = c.run("", "inspect", "job-1")
	require.Equal(t, 0, r.code, r.stderr)
	var job map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &job))
	require.Equal(t, "WORKOUT_PLAN_CREATE", job["type"])
	require.EqualValues(t, 2, job["maxAttempts"])
	require.EqualValues(t, 7, job["priority"])
	require.Equal(t, []any{"job-2"}, job["children"])
	require.Contains(t, r.stdout, `Strength \u003cb\u003e`)
	var payload flow.Envelope
	raw, err := json.Marshal(job["payload"])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &payload))
	require.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), payload.Timestamp, "the client's timestamp is kept")
	require.False(t, payload.EnqueuedAt.IsZero(), "beside the enqueue time")

	r = c.run("", "inspect", "nope")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, `job "nope" not found`)

	r = c.run("", "cancel", "job-1", "--reason", "changed my mind")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "job-1: cancelled")
	r = c.run("", "inspect", "job-2")
	require.Contains(t, r.stdout, `"state": "cancelled"`)
	require.Contains(t, r.stdout, `"reason": "parent job-1 cancelled"`)

	r = c.run("", "retry", "job-1")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "job-1: retried (2 jobs reopened)")
	r = c.run("", "retry", "job-1", "ghost")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "cannot retry job \"job-1\"")
	require.Contains(t, r.stderr, `job "ghost" not found`)

	r = c.run("", "stats", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var st struct {
		Namespace string           `json:"namespace"`
		Counts    map[string]int64 `json:"counts"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
	require.Equal(t, c.ns, st.Namespace)
	require.EqualValues(t, 1, st.Counts["ready"])
	require.EqualValues(t, 1, st.Counts["blocked"])
	r = c.run("", "stats", "--jobs", "2")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^ready\s+1$`, r.stdout)
	require.Contains(t, r.stdout, "WORKOUT_PHASE_CREATE")

	r = c.run("", "graph", "job-1", "--format", "dot")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "digraph")
	r = c.run("", "graph", "--format=mermaid", "job-1")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "flowchart")
	png := filepath.Join(c.dir, "g.png")
	r = c.run("", "graph", "job-1", "--format", "png", "--out", png)
	require.Equal(t, 0, r.code, r.stderr)
	b, err := os.ReadFile(png)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")))

	r = c.run("", "cancel", "--flow", "job-1")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "job-1: cancelled; 2 jobs ended", "the flow's job and its dependent in another flow")
	r = c.run("", "cancel", "job-1")
	require.NotEqual(t, 0, r.code, "a finished job cannot be cancelled")
	require.Contains(t, r.stderr, `cannot cancel job "job-1": it is cancelled`)
}

func TestEnqueueRefusesBadMessages(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	for in, want := range map[string]string{
		`{"messageType":"WORKOUT_PLAN_CREATE","timestamp":"2026-01-02T03:04:05Z","data":{"planId":"","name":"x","clientId":"c","trainerId":"t"}}`: "planId",
		`{"messageType":"NOPE","timestamp":"2026-01-02T03:04:05Z","data":{}}`:                                                                     `unknown message type "NOPE"`,
		`{"messageType":"WORKOUT_PLAN_CREATE","data":{"planId":"p"},"extra":1}`:                                                                   "extra",
		`{not json`: "malformed envelope",
	} {
		r := c.run(in, "enqueue")
		require.Equal(t, 1, r.code, in)
		require.Contains(t, r.stderr, want, in)
	}
	r := c.run("", "enqueue")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "no message")
	r = c.run(planEnvelope, "enqueue", "--after", "ghost")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, `unknown job "ghost"`)
}

func TestClearOnlyInDevelopment(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	require.Equal(t, 0, c.run(planEnvelope, "enqueue", "--id", "keep").code)
	r := c.run("", "clear")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "refused: clear deletes the whole namespace and runs only in development mode")
	require.Equal(t, 0, c.run("", "inspect", "keep").code)

	r = c.run("", "clear", "--dev")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "namespace "+c.ns+" cleared")
	require.Equal(t, 1, c.run("", "inspect", "keep").code)

	c.env = append(c.env, "TRELLIS_DEVELOPMENT=1")
	require.Equal(t, 0, c.run("", "clear").code)
}

// reindex puts jobs that are in no index (as an older Trellis wrote them)
// into their state's, so that the listings find them.
func TestReindex(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	require.Equal(t, 0, c.run(planEnvelope, "enqueue", "--id", "first").code)
	require.Equal(t, 0, c.run(planEnvelope, "enqueue", "--id", "second", "--after", "first").code)
	ctx := context.Background()
	opt, err := redis.ParseURL(redisURL())
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	keys, err := rdb.Keys(ctx, "trellis:{"+c.ns+"}:ix:blocked:*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1, "second waits for first")
	require.NoError(t, rdb.Del(ctx, keys...).Err())
	old := "trellis:{" + c.ns + "}:failed" // an older Trellis's failed set
	require.NoError(t, rdb.ZAdd(ctx, old, redis.Z{Score: 1, Member: "x"}).Err())

	r := c.run("", "reindex")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "namespace "+c.ns+": 1 jobs added to the state indexes\n", r.stdout)
	require.Equal(t, []string{"second"}, rdb.ZRange(ctx, keys[0], 0, -1).Val())
	require.Zero(t, rdb.Exists(ctx, old).Val(), "the old failed set is deleted")
	r = c.run("", "reindex")
	require.Contains(t, r.stdout, ": 0 jobs added")
}

func TestDotEnvFile(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	// .env fills what the environment leaves unset
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.dir}
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, ".env"), []byte("REDIS_URL="+redisURL()+"\nTRELLIS_NAMESPACE="+c.ns+"\n"), 0o600))
	c2 := *c
	c2.env = env
	r := c2.run("", "stats", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `"namespace": "`+c.ns+`"`)
	// flags win over both
	r = c2.run("", "stats", "--json", "--namespace", c.ns+"-other")
	require.Contains(t, r.stdout, `"namespace": "`+c.ns+`-other"`)

	require.NoError(t, os.WriteFile(filepath.Join(c.dir, ".env"), []byte("NOT VALID LINE\n'"), 0o600))
	r = c2.run("", "stats")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "env file .env")
}

func TestSavePlanRefusesBadCSV(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	bad := filepath.Join(c.dir, "bad.csv")
	require.NoError(t, os.WriteFile(bad, []byte("plan_name,phase_order,phase_name,session_order,session_name,exercise_order,exercise_name,sets,reps\n"+
		"P,1,Phase,1,Session,1,Squat,-3,10\n"), 0o600))
	r := c.run("", "save-plan", bad)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "bad.csv")
	require.Contains(t, r.stderr, "client_id: column is missing")
	r = c.run("", "save-plan", bad, "--client", "c1", "--trainer", "t1")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "line 2, column sets")
	r = c.run("", "save-plan")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "give exactly one FILE.csv")

	sample, err := filepath.Abs("../../steps/workout/csvplan/testdata/sample.csv")
	require.NoError(t, err)
	r = c.run("", "save-plan", "--dry-run", sample)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `"name": "12-week strength block"`)
}

// save-plan --id does what its help says: without it every run is a new
// save; with it a second run of the same file is the first run's job, and
// another file under that ID is refused.
func TestSavePlanID(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	h := c.run("", "save-plan", "--help")
	require.Contains(t, h.stdout, "-id string")
	require.Contains(t, h.stdout, "the full save's job ID (default: a new one, so every run saves the file again)")

	sample, err := filepath.Abs("../../steps/workout/csvplan/testdata/sample.csv")
	require.NoError(t, err)
	save := func(args ...string) map[string]any {
		t.Helper()
		r := c.run("", append([]string{"save-plan", sample}, args...)...)
		require.Equal(t, 0, r.code, r.stderr)
		var out map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
		return out
	}
	a, b := save(), save()
	require.NotEqual(t, a["jobId"], b["jobId"], "no --id: two saves")
	require.Equal(t, []any{false, false}, []any{a["existed"], b["existed"]})

	first, again := save("--id", "my-save"), save("--id", "my-save")
	require.Equal(t, []any{"my-save", "my-save"}, []any{first["jobId"], again["jobId"]})
	require.Equal(t, []any{false, true}, []any{first["existed"], again["existed"]}, "the same file again is the same job")

	other := filepath.Join(c.dir, "other.csv")
	raw, err := os.ReadFile(sample)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(other, []byte(strings.Replace(string(raw), "Back squat", "Front squat", 1)), 0o600))
	r := c.run("", "save-plan", other, "--id", "my-save")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, `"my-save" already exists`)
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	db := filepath.Join(c.dir, "m.db")
	r := c.run("", "migrate", "--database-url", db)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^applied \d+`, r.stdout)
	r = c.run("", "migrate", "--database-url", db)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "nothing to do")
	r = c.run("", "migrate", "--database-url", db, "--down")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^rolled back \d+`, r.stdout)
	r = c.run("", "migrate")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "no database")
}

func TestHealthExitCode(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	// nothing waiting and no runner: a warning, exit 0
	r := c.run("", "health")
	require.Equal(t, 0, r.code, r.stderr)
	require.True(t, strings.HasPrefix(r.stdout, "warning\n"), r.stdout)
	require.Contains(t, r.stdout, "no runner has sent a heartbeat")
	// a waiting job and no runner: critical, exit 1
	require.Equal(t, 0, c.run(planEnvelope, "enqueue").code)
	r = c.run("", "health", "--json")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stdout, `"status": "critical"`)
	r = c.run("", "health", "--threshold", "backlog-warning=1", "--threshold", "backlog-critical=5")
	require.Contains(t, r.stdout, "1 jobs are waiting (warning at 1, critical at 5)")
	r = c.run("", "health", "--threshold", "oldest-warning=soon")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `--threshold oldest-warning: "soon" is not a positive duration`)
}

// start runs the binary in the background and returns it with a reader of
// its stderr lines.
func (c *cliEnv) start(args ...string) (*exec.Cmd, *lines, chan int) {
	c.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = c.env
	cmd.Dir = c.dir
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	cmd.Stdout = io.Discard
	require.NoError(c.t, cmd.Start())
	l := &lines{ch: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			l.ch <- sc.Text()
		}
		close(l.ch)
	}()
	exited := make(chan int, 1)
	go func() {
		_ = cmd.Wait()
		pw.Close()
		exited <- cmd.ProcessState.ExitCode()
	}()
	c.t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, l, exited
}

func exitCode(t *testing.T, exited chan int) int {
	t.Helper()
	select {
	case code := <-exited:
		return code
	case <-time.After(15 * time.Second):
		t.Fatal("the process did not exit")
		return -1
	}
}

type lines struct {
	ch  chan string
	all []string
}

// wait returns the first line matching re within d.
func (l *lines) wait(t *testing.T, re string, d time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	timeout := time.After(d)
	for {
		select {
		case s, ok := <-l.ch:
			if !ok {
				t.Fatalf("the process ended before printing %q; it printed:\n%s", re, strings.Join(l.all, "\n"))
			}
			l.all = append(l.all, s)
			if m := rx.FindStringSubmatch(s); m != nil {
				return m
			}
		case <-timeout:
			t.Fatalf("no line matching %q within %s; got:\n%s", re, d, strings.Join(l.all, "\n"))
		}
	}
}

func TestWorkerRunsStepsAndDrainsOnSIGTERM(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.env = append(c.env, "DATABASE_URL="+filepath.Join(c.dir, "w.db"))
	cmd, out, exited := c.start("worker", "--migrate", "--concurrency", "2", "--metrics-addr", "127.0.0.1:0")
	out.wait(t, `database schema up to date`, 20*time.Second)
	out.wait(t, `runner started`, 10*time.Second)
	m := out.wait(t, `metrics listening.*url=(http://\S+/)`, 10*time.Second)

	require.Equal(t, 0, c.run(planEnvelope, "enqueue", "--id", "w1").code)
	require.Eventually(t, func() bool {
		return strings.Contains(c.run("", "inspect", "w1").stdout, `"state": "succeeded"`)
	}, 15*time.Second, 100*time.Millisecond)

	// --wait returns the outcome
	r := c.run(`{"messageType":"TEST","timestamp":"2026-01-02T03:04:05Z","data":{"message":"hi"}}`, "enqueue", "--wait", "20s")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `"state": "succeeded"`)
	require.Contains(t, r.stdout, `"result": {`)
	r = c.run(`{"messageType":"EMAIL","timestamp":"2026-01-02T03:04:05Z","data":{"to":"a@example.com","subject":"s","body":"b"}}`,
		"enqueue", "--wait", "20s", "--attempts", "1")
	require.Equal(t, 0, r.code, "no mailer: the EMAIL job stores its message (TestWorkerWithoutSMTPKeepsMessages)")
	require.Contains(t, r.stdout, `"sent": false`)

	// a whole plan from CSV: plan → phases → sessions → exercises
	sample, err := filepath.Abs("../../steps/workout/csvplan/testdata/sample.csv")
	require.NoError(t, err)
	r = c.run("", "save-plan", sample, "--wait", "60s")
	require.Equal(t, 0, r.code, r.stderr)
	var saved map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &saved))
	require.Equal(t, "succeeded", saved["state"])
	require.Equal(t, "3f0c1a9e-7b4d-4e6a-9c1f-2a5b8d7e6f01", saved["planId"])
	require.Greater(t, saved["exercises"], 1.0)
	require.Greater(t, saved["jobs"], saved["exercises"])

	resp, err := http.Get(m[1] + "metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), `trellis_steps_total{namespace="`+c.ns+`",outcome="ok",type="WORKOUT_PLAN_CREATE"} 1`)

	// SIGTERM while a step runs: the worker lets it finish, then exits 0
	slow := `{"messageType":"TEST","timestamp":"2026-01-02T03:04:05Z","data":{"message":"slow","sleepMs":1500}}`
	require.Equal(t, 0, c.run(slow, "enqueue", "--id", "slow-1").code)
	require.Eventually(t, func() bool {
		return strings.Contains(c.run("", "inspect", "slow-1").stdout, `"state": "active"`)
	}, 15*time.Second, 50*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	out.wait(t, `shutting down; draining running steps`, 10*time.Second)
	out.wait(t, `trellis worker: stopped`, 15*time.Second)
	require.Equal(t, 0, exitCode(t, exited))
	r = c.run("", "inspect", "slow-1")
	require.Contains(t, r.stdout, `"state": "succeeded"`, "the running step finished before the worker exited")
}

func TestMonitorServesAndStops(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.env = append(c.env, "TRELLIS_TOKEN=t0ken")
	cmd, out, exited := c.start("monitor", "--addr", "127.0.0.1:0", "--read-only")
	m := out.wait(t, `monitor listening.*url=(http://\S+/)`, 15*time.Second)
	base := m[1]

	get := func(path, auth string) int {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		require.NoError(t, err)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, get("livez", ""))
	require.Equal(t, http.StatusUnauthorized, get("api/queue-stats", ""))
	require.Equal(t, http.StatusOK, get("api/queue-stats", "Bearer t0ken"))
	require.Equal(t, http.StatusOK, get("", "Bearer t0ken"))

	req, _ := http.NewRequest(http.MethodPost, base+"api/clean?olderThan=1h", nil)
	req.Header.Set("Authorization", "Bearer t0ken")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "--read-only")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	out.wait(t, `trellis monitor: stopped`, 10*time.Second)
	require.Equal(t, 0, exitCode(t, exited))
}

func TestMonitorWithoutAuthBindsLoopback(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	// the default :3001 becomes 127.0.0.1:3001; use a free port to stay out of the way
	_, out, _ := c.start("monitor", "--addr", "localhost:0")
	m := out.wait(t, `monitor listening.*url=(http://\S+/)`, 15*time.Second)
	require.True(t, strings.HasPrefix(m[1], "http://127.0.0.1:"), m[1])
	require.Contains(t, strings.Join(out.all, "\n"), "no auth configured")
}

func TestSeedRedisVariables(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	opt, err := redis.ParseURL(redisURL())
	require.NoError(t, err)
	host, port, ok := strings.Cut(opt.Addr, ":")
	require.True(t, ok)
	// REDIS_HOST / REDIS_PORT / REDIS_PASSWORD, as the seed configured Redis
	c.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.dir, "TRELLIS_NAMESPACE=" + c.ns,
		"REDIS_HOST=" + host, "REDIS_PORT=" + port, "REDIS_PASSWORD=" + opt.Password}
	require.Equal(t, 0, c.run(planEnvelope, "enqueue", "--id", "seed-1").code)
	r := c.run("", "inspect", "seed-1")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `"type": "WORKOUT_PLAN_CREATE"`)

}

// --batch reaches the runner: an override for a type whose step is not a
// batch step stops the worker at start, naming it.
func TestWorkerBatchFlag(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.env = append(c.env, "DATABASE_URL="+filepath.Join(c.dir, "b.db"))
	r := c.run("", "worker", "--migrate", "--batch", "TEST=5")
	require.NotEqual(t, 0, r.code)
	require.Contains(t, r.stderr, "TEST")
	require.Contains(t, r.stderr, "not a batch step")
}
