package monitor

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// maxBody bounds a request body (an enqueue's envelope is the largest).
const maxBody = 2 << 20

// hasBody reports whether the client sends a body (servers give bodiless
// requests http.NoBody).
func hasBody(r *http.Request) bool { return r.Body != nil && r.Body != http.NoBody }

// limitBody gives a request's body a read deadline and a size cap before
// anything else runs, so a client that trickles a body cannot hold the
// connection: not while a handler reads it, nor while the server drains
// what the handler left unread. The server's ReadHeaderTimeout still
// guards the header. Requests without a body get no deadline: the server
// is already reading ahead on their connection, to notice the client going
// away, and a deadline there would cancel a long answer such as the event
// stream. Writers that cannot set deadlines (http.ResponseController
// returns ErrNotSupported) keep only the cap.
func (h *Handler) limitBody(w http.ResponseWriter, r *http.Request) {
	if !hasBody(r) {
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.cfg.BodyTimeout))
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
}

// readBody reads an admitted request's whole body under limitBody's
// deadline and hands the handler a copy, answering 408 for a body too slow
// and 413 for one too large.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) bool {
	if !hasBody(r) {
		return true
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, "body: over the limit of %d bytes", tooBig.Limit)
		case errors.As(err, &ne) && ne.Timeout():
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestTimeout, "body: not received within %s (monitor Config.BodyTimeout)", h.cfg.BodyTimeout)
		default:
			writeError(w, http.StatusBadRequest, "body: %s", err.Error())
		}
		return false
	}
	// the body is in: lift the deadline, which would otherwise end a long answer
	_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	r.Body = io.NopCloser(bytes.NewReader(b))
	return true
}
