package main_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/schema/schematest"
	"github.com/trellisflow/trellis/steps/system"
)

// smtpServer is an smtptest server in its own process (smtpd).
type smtpServer struct {
	addr, ca string
	msgs     chan smtpMessage
}

// smtpMessage is smtptest.Message as smtpd prints it.
type smtpMessage struct {
	From string
	To   []string
	Data string
	TLS  bool
	User string
}

func startSMTP(t *testing.T, args ...string) *smtpServer {
	t.Helper()
	s := &smtpServer{ca: filepath.Join(t.TempDir(), "ca.pem"), msgs: make(chan smtpMessage, 100)}
	cmd := exec.Command(smtpd, append(args, "-ca", s.ca)...)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = stdin.Close() // smtpd stops when its stdin closes
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	require.True(t, sc.Scan(), "smtpd printed no address")
	s.addr = strings.TrimPrefix(sc.Text(), "addr=")
	go func() {
		for sc.Scan() {
			var m smtpMessage
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				s.msgs <- m
			}
		}
	}()
	return s
}

func (s *smtpServer) next(t *testing.T) smtpMessage {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(30 * time.Second):
		t.Fatal("no message reached the SMTP server")
		return smtpMessage{}
	}
}

// webhook receives NOTIFICATION deliveries on loopback, refusing any
// whose signature is wrong, and answers 503 to the first fail of them.
type webhook struct {
	url  string
	mu   sync.Mutex
	fail int
	keys []string
	got  []system.WebhookPayload
}

func startWebhook(t *testing.T, secret string, fail int) *webhook {
	w := &webhook{fail: fail}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := system.VerifyWebhook(secret, r.Header, body, time.Now(), 5*time.Minute); err != nil {
			http.Error(rw, err.Error(), http.StatusUnauthorized)
			return
		}
		var p system.WebhookPayload
		if err := json.Unmarshal(body, &p); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.keys = append(w.keys, r.Header.Get(system.HeaderIdempotencyKey))
		if w.fail > 0 {
			w.fail--
			rw.Header().Set("Retry-After", "1")
			http.Error(rw, "busy", http.StatusServiceUnavailable)
			return
		}
		w.got = append(w.got, p)
		rw.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	w.url = srv.URL + "/trellis"
	return w
}

func (w *webhook) delivered() ([]string, []system.WebhookPayload) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.keys...), append([]system.WebhookPayload(nil), w.got...)
}

func (s *smtpServer) env() []string {
	host, port, _ := strings.Cut(s.addr, ":")
	return []string{"SMTP_HOST=" + host, "SMTP_PORT=" + port, "SMTP_TLS=starttls", "SMTP_CA_FILE=" + s.ca,
		"SMTP_USER=coach", "SMTP_PASSWORD=s3cret", "SMTP_FROM=Coach <coach@example.com>"}
}

const (
	emailEnvelope        = `{"messageType":"EMAIL","timestamp":"2026-01-02T03:04:05Z","data":{"to":"Bob <bob@example.com>","subject":"Plan ready","body":"See you Monday."}}`
	notificationEnvelope = `{"messageType":"NOTIFICATION","timestamp":"2026-01-02T03:04:05Z","data":{"userId":"user-123","title":"Workout Complete!","message":"Great job","type":"success"}}`
)

func enqueued(t *testing.T, r result) (id string, res map[string]any) {
	t.Helper()
	require.Equal(t, 0, r.code, r.stderr)
	var out struct {
		JobID  string         `json:"jobId"`
		State  string         `json:"state"`
		Result map[string]any `json:"result"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	require.Equal(t, "succeeded", out.State, r.stdout)
	return out.JobID, out.Result
}

// trellis worker on PostgreSQL sends EMAIL through a submission server
// that wants STARTTLS and AUTH (SMTP_HOST/SMTP_PORT, a CA file), and posts
// NOTIFICATION to a signed webhook, retrying its 503.
func TestWorkerDeliversOverSTARTTLSAndWebhook(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	smtp := startSMTP(t, "-tls", "starttls", "-user", "coach:s3cret")
	hook := startWebhook(t, "hush", 1)
	c.env = append(c.env, "DATABASE_URL="+schematest.PostgresURL(t), "TRELLIS_NOTIFY_URL="+hook.url, "TRELLIS_NOTIFY_SECRET=hush")
	c.env = append(c.env, smtp.env()...)
	cmd, out, exited := c.start("worker", "--migrate", "--concurrency", "2")
	out.wait(t, `runner started`, 30*time.Second)
	require.NotContains(t, strings.Join(out.all, "\n"), "no SMTP server")
	require.NotContains(t, strings.Join(out.all, "\n"), "no notification webhook")

	_, res := enqueued(t, c.run(emailEnvelope, "enqueue", "--wait", "30s"))
	require.Equal(t, true, res["sent"])
	m := smtp.next(t)
	require.True(t, m.TLS)
	require.Equal(t, "coach", m.User)
	require.Equal(t, "coach@example.com", m.From)
	require.Equal(t, []string{"bob@example.com"}, m.To)
	require.Contains(t, m.Data, "To: \"Bob\" <bob@example.com>")

	id, res := enqueued(t, c.run(notificationEnvelope, "enqueue", "--wait", "30s"))
	require.Equal(t, true, res["delivered"])
	keys, got := hook.delivered()
	require.Equal(t, []string{id, id}, keys, "the 503 was retried with the same idempotency key")
	require.Len(t, got, 1)
	require.Equal(t, system.WebhookPayload{ID: id, Notification: system.Notification{UserID: "user-123", Title: "Workout Complete!",
		Message: "Great job", Type: "success"}}, got[0])

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, exitCode(t, exited))
}

// A worker with no SMTP server and no webhook says so at start; EMAIL and
// NOTIFICATION jobs keep their messages, and trellis redeliver sends them
// once it has both.
func TestWorkerWithoutSMTPKeepsMessages(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.env = append(c.env, "DATABASE_URL="+filepath.Join(c.dir, "w.db"))
	cmd, out, exited := c.start("worker", "--migrate", "--concurrency", "2")
	out.wait(t, `level=WARN msg="trellis worker: no SMTP server \(--smtp-addr, SMTP_ADDR or SMTP_HOST\): EMAIL jobs are stored in the outbox, not sent`, 30*time.Second)
	out.wait(t, `level=WARN msg="trellis worker: no notification webhook \(--notify-url or TRELLIS_NOTIFY_URL\)`, 10*time.Second)
	out.wait(t, `runner started`, 30*time.Second)

	emailID, res := enqueued(t, c.run(emailEnvelope, "enqueue", "--wait", "30s", "--attempts", "1"))
	require.Equal(t, map[string]any{"id": emailID, "messageId": system.MessageID(emailID), "to": "Bob <bob@example.com>", "sent": false,
		"status": "undelivered", "reason": "no Mailer configured: stored, not sent"}, res)
	noteID, res := enqueued(t, c.run(notificationEnvelope, "enqueue", "--wait", "30s"))
	require.Equal(t, false, res["delivered"])
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, exitCode(t, exited))

	r := c.run("", "redeliver", "--list")
	require.Equal(t, 0, r.code, r.stderr)
	var list []system.Undelivered
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list))
	require.Len(t, list, 2)
	require.Equal(t, []string{"email " + emailID, "notification " + noteID}, []string{list[0].Kind + " " + list[0].ID, list[1].Kind + " " + list[1].ID})

	// A failed redelivery says why and exits 1; the row stays for later.
	hook := startWebhook(t, "hush", 1)
	c.env = append(c.env, "TRELLIS_NOTIFY_URL="+hook.url, "TRELLIS_NOTIFY_SECRET=hush")
	r = c.run("", "redeliver", "--kind", "notification")
	require.Equal(t, 1, r.code, r.stdout)
	require.Contains(t, r.stdout, "notification "+noteID+": failed: webhook POST http://127.0.0.1:")
	require.Contains(t, r.stdout, "503 Service Unavailable: busy\n0 delivered, 1 failed\n")

	smtp := startSMTP(t, "-tls", "starttls", "-user", "coach:s3cret")
	c.env = append(c.env, smtp.env()...)
	r = c.run("", "redeliver")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, fmt.Sprintf("email %s: sent\nnotification %s: delivered\n2 delivered, 0 failed\n", emailID, noteID), r.stdout)
	m := smtp.next(t)
	require.True(t, m.TLS)
	require.Equal(t, []string{"bob@example.com"}, m.To)
	require.Contains(t, m.Data, "Message-ID: "+system.MessageID(emailID))
	keys, _ := hook.delivered()
	require.Equal(t, []string{noteID, noteID}, keys)

	r = c.run("", "redeliver")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "0 delivered, 0 failed\n", r.stdout)
	r = c.run("", "redeliver", "--list")
	require.Equal(t, "[]\n", r.stdout)
}
