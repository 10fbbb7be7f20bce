package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The binary's servers bound the header and the whole request, so a
// trickled body cannot hold a connection even on routes that never read
// it (the worker's /metrics); a long answer is not cut.
func TestServerCutsSlowBodies(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			fmt.Fprintf(w, "tick %d\n", i)
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
		fmt.Fprintln(w, "done")
	})
	srv := newServer(mux)
	require.Positive(t, srv.ReadHeaderTimeout)
	require.Positive(t, srv.ReadTimeout, "without ReadTimeout a body may trickle forever")
	require.Zero(t, srv.WriteTimeout, "a WriteTimeout would cut the event stream")
	srv.ReadTimeout = 300 * time.Millisecond // short for the test
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	require.NoError(t, err)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	require.NoError(t, err, "no answer while the body trickles in")
	require.Equal(t, "HTTP/1.1 200 OK", strings.TrimSpace(status))
	// then EOF, or a reset: the server closes with body bytes it never read
	_, err = io.Copy(io.Discard, br)
	if !errors.Is(err, syscall.ECONNRESET) {
		require.NoError(t, err, "the connection of a slow body is closed")
	}

	// an answer that takes three times ReadTimeout arrives whole
	resp, err := http.Get("http://" + ln.Addr().String() + "/stream")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "tick 0\ntick 1\ntick 2\ndone\n", string(body))
}
