package system_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
	"github.com/trellisflow/trellis/steps/internal/steptest"
	"github.com/trellisflow/trellis/steps/system"
)

// hook is a webhook receiver on loopback that checks each request's
// signature itself and answers with the next scripted status.
type hook struct {
	t      *testing.T
	secret string
	srv    *httptest.Server

	mu      sync.Mutex
	answers []int // then 204
	got     []hookCall
}

type hookCall struct {
	key     string
	payload system.WebhookPayload
}

func newHook(t *testing.T, secret string, answers ...int) *hook {
	h := &hook{t: t, secret: secret, answers: answers}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	ts := r.Header.Get("Trellis-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		http.Error(w, "stale", http.StatusUnauthorized)
		return
	}
	mac := hmac.New(sha256.New, []byte(h.secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	if !hmac.Equal([]byte(r.Header.Get("Trellis-Signature")), []byte("sha256="+hex.EncodeToString(mac.Sum(nil)))) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	require.NoError(h.t, system.VerifyWebhook(h.secret, r.Header, body, time.Now(), time.Minute))
	var p system.WebhookPayload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.got = append(h.got, hookCall{key: r.Header.Get("Idempotency-Key"), payload: p})
	code := http.StatusNoContent
	if len(h.answers) > 0 {
		code, h.answers = h.answers[0], h.answers[1:]
	}
	h.mu.Unlock()
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(code)
	_, _ = io.WriteString(w, http.StatusText(code))
}

func (h *hook) calls() []hookCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookCall(nil), h.got...)
}

func (h *hook) script(answers ...int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.answers = answers
}

func TestWebhookNotifier(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHook(t, "hush")
	w := &system.WebhookNotifier{URL: h.srv.URL + "/notify?token=abc", Secret: "hush"}
	n := system.Notification{UserID: "user-123", Title: "Workout Complete!", Message: "Great job", Type: "success", ActionURL: "/workouts"}
	require.NoError(t, w.Notify(ctx, "job-1", n))
	calls := h.calls()
	require.Len(t, calls, 1)
	require.Equal(t, "job-1", calls[0].key)
	require.Equal(t, system.WebhookPayload{ID: "job-1", Notification: n}, calls[0].payload)

	for _, c := range []struct {
		code      int
		permanent bool
		after     time.Duration
	}{
		{500, false, 0}, {502, false, 0}, {503, false, time.Second}, {408, false, 0}, {429, false, 0},
		{400, true, 0}, {401, true, 0}, {404, true, 0}, {410, true, 0}, {302, true, 0},
	} {
		h.script(c.code)
		err := w.Notify(ctx, "job-2", n)
		require.ErrorContains(t, err, strconv.Itoa(c.code), c.code)
		require.NotContains(t, err.Error(), "token=abc", "the URL's query stays out of errors")
		require.Equal(t, c.permanent, flow.IsPermanent(err), "%d: %v", c.code, err)
		d, ok := flow.RetryAfterDelay(err)
		require.Equal(t, c.after, d, c.code)
		require.Equal(t, c.after != 0, ok, c.code)
	}
	// A wrong secret is refused by the receiver: 401, permanent.
	err := (&system.WebhookNotifier{URL: h.srv.URL, Secret: "wrong"}).Notify(ctx, "job-3", n)
	require.ErrorContains(t, err, "401")
	require.True(t, flow.IsPermanent(err))
	// Nobody listening: retried.
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	err = (&system.WebhookNotifier{URL: gone.URL, Secret: "hush"}).Notify(ctx, "job-4", n)
	require.Error(t, err)
	require.False(t, flow.IsPermanent(err), "%v", err)

	for _, bad := range []system.WebhookNotifier{{URL: "ftp://example.com/x", Secret: "s"}, {URL: "http://example.com/x"}, {URL: "/relative", Secret: "s"}} {
		require.Error(t, bad.Check(), bad.URL)
		require.True(t, flow.IsPermanent(bad.Notify(ctx, "j", n)))
	}

	// VerifyWebhook refuses a changed body and an old timestamp.
	body := []byte(`{"id":"j"}`)
	hdr := http.Header{}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	hdr.Set(system.HeaderTimestamp, ts)
	hdr.Set(system.HeaderSignature, system.SignWebhook("hush", ts, body))
	require.NoError(t, system.VerifyWebhook("hush", hdr, body, time.Now(), time.Minute))
	require.ErrorContains(t, system.VerifyWebhook("hush", hdr, []byte(`{"id":"k"}`), time.Now(), time.Minute), "does not match")
	require.ErrorContains(t, system.VerifyWebhook("hush", hdr, body, time.Now().Add(time.Hour), time.Minute), "outside")
}

// NOTIFICATION through the webhook on each engine: a 503 is retried into
// one delivery with the same idempotency key; a 400 fails the job and
// leaves the row undelivered; a redelivery then delivers it, and the ones
// stored while no Notifier was configured.
func TestNotificationWebhookDelivery(t *testing.T) {
	steptest.EachEngine(t, func(t *testing.T, e *steptest.Engine) {
		ctx := context.Background()
		h := newHook(t, "hush", http.StatusServiceUnavailable)
		notifier := &system.WebhookNotifier{URL: h.srv.URL, Secret: "hush"}
		// stored while no Notifier was configured
		r := steptest.New(t, system.Steps(e.DB, system.Options{}))
		raw, _, err := r.Run(ctx, "early", 1, system.Notification{UserID: "u", Title: "Early", Message: "m"})
		require.NoError(t, err)
		require.JSONEq(t, `{"id":"early","delivered":false,"status":"undelivered","reason":"no Notifier configured: stored, not delivered"}`, string(raw))

		e.Start(nil, system.Steps(e.DB, system.Options{Notifier: notifier})...)
		backoff := flow.Fixed(50 * time.Millisecond)
		job, err := system.SendNotification(ctx, e.Client, "user-123", "Workout Complete!", "Great job", "success", "/workouts")
		require.NoError(t, err)
		e.Wait(job.ID)
		j := e.Job(job.ID)
		require.Equal(t, dag.Succeeded, j.State, "%v", j.Error)
		require.Equal(t, 2, j.Attempt, "the 503 was retried (after its Retry-After)")
		calls := h.calls()
		require.Len(t, calls, 2)
		require.Equal(t, []string{job.ID, job.ID}, []string{calls[0].key, calls[1].key})
		require.Equal(t, "Workout Complete!", calls[1].payload.Title)
		var row schema.Notification
		require.NoError(t, e.DB.NewSelect().Model(&row).Where("id = ?", job.ID).Scan(ctx))
		require.Equal(t, schema.NotificationDone, row.Status)
		require.NotNil(t, row.DeliveredAt)
		require.Equal(t, 2, row.Attempts)

		h.script(http.StatusBadRequest)
		bad, err := e.Client.Add(ctx, system.Notification{UserID: "u", Title: "Refused", Message: "m"}, &flow.NodeOpts{Backoff: &backoff})
		require.NoError(t, err)
		e.Wait(bad.ID)
		j = e.Job(bad.ID)
		require.Equal(t, dag.Failed, j.State)
		require.Equal(t, 1, j.Attempt, "a 400 is not retried")
		require.Contains(t, j.Error.Message, "400 Bad Request")
		row = schema.Notification{}
		require.NoError(t, e.DB.NewSelect().Model(&row).Where("id = ?", bad.ID).Scan(ctx))
		require.Equal(t, schema.OutboxUndelivered, row.Status)
		require.Contains(t, row.LastError, "400 Bad Request")
		require.Nil(t, row.DeliveredAt)

		got, err := system.Redeliver(ctx, e.DB, system.Options{Notifier: notifier}, 0)
		require.NoError(t, err)
		require.Len(t, got, 2)
		for _, g := range got {
			require.NoError(t, g.Err)
			require.True(t, g.Delivered)
		}
		require.ElementsMatch(t, []string{"early", bad.ID}, []string{got[0].ID, got[1].ID})
		require.Equal(t, 3, steptest.Count(t, e.DB, "notifications", "status = ? AND delivered_at IS NOT NULL", schema.NotificationDone))
		require.Len(t, h.calls(), 5)
		got, err = system.Redeliver(ctx, e.DB, system.Options{Notifier: notifier}, 0)
		require.NoError(t, err)
		require.Empty(t, got)
	})
}
