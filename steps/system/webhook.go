package system

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/trellisflow/trellis/flow"
)

// The headers of a webhook delivery.
const (
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256, keyed by the
	// secret, of the timestamp, a ".", and the body.
	HeaderSignature = "Trellis-Signature"
	// HeaderTimestamp is when the request was signed, in Unix seconds.
	HeaderTimestamp = "Trellis-Timestamp"
	// HeaderIdempotencyKey is the job ID: the same on every attempt and
	// redelivery of one notification, for the receiver to drop repeats.
	HeaderIdempotencyKey = "Idempotency-Key"
)

// WebhookPayload is the JSON body of a webhook delivery.
type WebhookPayload struct {
	// ID is the NOTIFICATION job's ID, as in HeaderIdempotencyKey.
	ID string `json:"id"`
	Notification
}

// WebhookNotifier delivers notifications by POSTing a WebhookPayload to
// URL, signed with Secret (see HeaderSignature). A 2xx answer delivers it.
// 408, 429, 5xx and failures to connect are retried (after Retry-After
// when the server sends one); redirects and other 4xx answers are
// permanent.
type WebhookNotifier struct {
	// URL is the http or https endpoint. Required.
	URL string
	// Secret keys the signature. Required.
	Secret string
	// Client sends the requests. Default: one that follows no redirects.
	Client *http.Client
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration
}

// Check reports a configuration that cannot work.
func (w *WebhookNotifier) Check() error {
	u, err := url.Parse(w.URL)
	if err != nil {
		return fmt.Errorf("webhook: URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook: URL %q: want http://host/… or https://host/…", u.Redacted())
	}
	if w.Secret == "" {
		return errors.New("webhook: a Secret is required to sign deliveries")
	}
	return nil
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// Notify POSTs n, delivered as job id.
func (w *WebhookNotifier) Notify(ctx context.Context, id string, n Notification) error {
	if err := w.Check(); err != nil {
		return flow.Permanent(err)
	}
	body, err := json.Marshal(WebhookPayload{ID: id, Notification: n})
	if err != nil {
		return flow.Permanent(fmt.Errorf("webhook: encode: %w", err))
	}
	timeout := w.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return flow.Permanent(fmt.Errorf("webhook: %w", err))
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "trellis-webhook")
	req.Header.Set(HeaderIdempotencyKey, id)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, SignWebhook(w.Secret, ts, body))
	client := w.Client
	if client == nil {
		client = noRedirects
	}
	where := w.where()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook POST %s: %w", where, unwrapURLError(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16)) // lets the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("webhook POST %s: %s", where, resp.Status)
	if s := strings.TrimSpace(string(snippet)); s != "" {
		err = fmt.Errorf("%w: %s", err, s)
	}
	switch code := resp.StatusCode; {
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		if d, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
			return flow.RetryAfter(d, err)
		}
		return err
	case code >= 300 && code < 400:
		return flow.Permanent(fmt.Errorf("%w (redirects are not followed: configure the final URL)", err))
	}
	return flow.Permanent(err)
}

// where names the endpoint without its query or credentials.
func (w *WebhookNotifier) where() string {
	u, err := url.Parse(w.URL)
	if err != nil {
		return "webhook"
	}
	return u.Scheme + "://" + u.Host + u.Path
}

// unwrapURLError drops url.Error's copy of the URL, which may carry a token.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// retryAfter reads a Retry-After of seconds, up to an hour.
func retryAfter(v string) (time.Duration, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0, false
	}
	return min(time.Duration(n)*time.Second, time.Hour), true
}

// SignWebhook is the HeaderSignature value of body sent at timestamp ts
// (Unix seconds, as in HeaderTimestamp).
func SignWebhook(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifyWebhook checks a delivery's signature, and that it was signed
// within tolerance of now, for a receiver written in Go.
func VerifyWebhook(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	ts := h.Get(HeaderTimestamp)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook: %s %q is not Unix seconds", HeaderTimestamp, ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook: signed %s ago, outside %s", d.Round(time.Second), tolerance)
	}
	if !hmac.Equal([]byte(h.Get(HeaderSignature)), []byte(SignWebhook(secret, ts, body))) {
		return errors.New("webhook: the signature does not match")
	}
	return nil
}
