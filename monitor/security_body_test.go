package monitor_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/monitor"
)

// trickle sends head, then one byte of body every few milliseconds until
// the server stops reading or the test ends, and returns the status line
// of the server's answer once the server has closed the connection.
// Without a read deadline on the body the answer never comes and the
// generous limit fails the test.
func trickle(t *testing.T, addr, head string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, head)
	require.NoError(t, err)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	require.NoError(t, err, "no answer while the body trickles in: the body has no deadline")
	// the rest of the answer, then EOF, or a reset: the server closes with
	// body bytes it never read
	_, err = io.Copy(io.Discard, br)
	if !errors.Is(err, syscall.ECONNRESET) {
		require.NoError(t, err, "the server keeps the connection of a body that did not arrive in time")
	}
	return strings.TrimSpace(status)
}

// A client that sends its header and then trickles the body is cut off
// after Config.BodyTimeout on every route: one that reads the body, one
// that refuses the client before reading it, and a probe that never reads
// it (the server would drain it after the handler).
func TestSlowBodyIsCutOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{BodyTimeout: 300 * time.Millisecond})
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	authed := newEnv(t, monitor.Config{Token: "s3cret", BodyTimeout: 300 * time.Millisecond})
	asrv := httptest.NewServer(authed.h)
	defer asrv.Close()
	addr, aaddr := srv.Listener.Addr().String(), asrv.Listener.Addr().String()

	status := trickle(t, addr, "POST /api/enqueue HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"X-CSRF-Token: "+e.h.CSRFToken()+"\r\nContent-Length: 1000000\r\n\r\n{")
	require.Equal(t, "HTTP/1.1 408 Request Timeout", status)

	// refused before the body is read; the server drains a small unread body
	status = trickle(t, aaddr, "POST /api/jobs/x/cancel HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	require.Equal(t, "HTTP/1.1 401 Unauthorized", status)
	status = trickle(t, addr, "GET /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	require.Equal(t, "HTTP/1.1 200 OK", status)
	// chunked, with no length at all
	status = trickle(t, aaddr, "POST /api/enqueue HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"+
		"Transfer-Encoding: chunked\r\n\r\n100000\r\n")
	require.Equal(t, "HTTP/1.1 408 Request Timeout", status)
}

// Bodies that arrive in time are served, every route caps their size, and
// a stream without a body outlives the body deadline.
func TestBodyLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{}) // the default deadline: a loaded machine still sends 3 MiB in time
	srv := httptest.NewServer(e.h)
	defer srv.Close()

	post := func(path, body string) *http.Response {
		r, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		r.Header.Set("X-CSRF-Token", e.h.CSRFToken())
		resp, err := http.DefaultClient.Do(r)
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := post("/api/enqueue", `{"message": {"messageType": "ECHO", "data": {"text": "on time"}}}`) //nolint:bodyclose // closed at cleanup
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	big := strings.Repeat("x", 3<<20)
	resp = post("/api/enqueue", big) //nolint:bodyclose // closed at cleanup
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	body, _ := io.ReadAll(resp.Body)
	require.Contains(t, string(body), "body: over the limit of 2097152 bytes")
	// a GET with a body is capped too
	w := e.do(req{path: "/api/queue-stats", body: big})
	require.Equal(t, http.StatusRequestEntityTooLarge, w.Code)

	// the event stream has no body, so no deadline: it still delivers
	// events well after BodyTimeout has passed
	short := newEnv(t, monitor.Config{BodyTimeout: 200 * time.Millisecond})
	ssrv := httptest.NewServer(short.h)
	defer ssrv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, ssrv.URL+"/api/events", nil)
	require.NoError(t, err)
	resp, err = http.DefaultClient.Do(r)
	require.NoError(t, err)
	defer resp.Body.Close()
	time.Sleep(3 * 200 * time.Millisecond) // outlast the body deadline (waiting longer is always fine)
	// add jobs until one reaches the stream, however late the hub starts following
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			_, _ = short.client.Add(ctx, Echo{Text: "late"}, &flow.NodeOpts{ID: fmt.Sprintf("late-%d", i)})
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	sc := bufio.NewScanner(resp.Body)
	found := false
	for !found && sc.Scan() {
		found = strings.HasPrefix(sc.Text(), "data: ")
	}
	require.True(t, found, "the stream ended: %v", sc.Err())
}
