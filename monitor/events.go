package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
)

// hub follows the store's event stream with one goroutine, however many
// dashboards listen, and fans the events out. It runs only while someone
// listens.
type hub struct {
	insp *flow.Inspector
	log  *slog.Logger

	mu     sync.Mutex
	subs   map[chan []dag.Event]struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func newHub(insp *flow.Inspector, log *slog.Logger) *hub {
	return &hub{insp: insp, log: log, subs: map[chan []dag.Event]struct{}{}}
}

func (h *hub) subscribe() chan []dag.Event {
	ch := make(chan []dag.Event, 64)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[ch] = struct{}{}
	if h.cancel == nil {
		ctx, cancel := context.WithCancel(context.Background())
		h.cancel, h.done = cancel, make(chan struct{})
		go h.follow(ctx, h.done)
	}
	return ch
}

func (h *hub) unsubscribe(ch chan []dag.Event) {
	h.mu.Lock()
	delete(h.subs, ch)
	var done chan struct{}
	if len(h.subs) == 0 && h.cancel != nil {
		h.cancel()
		h.cancel, done = nil, h.done
	}
	h.mu.Unlock()
	if done != nil {
		<-done
	}
}

func (h *hub) follow(ctx context.Context, done chan struct{}) {
	defer close(done)
	after, err := h.insp.LastEventID(ctx)
	if err != nil {
		after = "$"
	}
	for ctx.Err() == nil {
		evs, next, err := h.insp.Events(ctx, after, 500, time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.log.Warn("trellis monitor: reading events failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		after = next
		if len(evs) == 0 {
			continue
		}
		h.mu.Lock()
		for ch := range h.subs {
			select {
			case ch <- evs:
			default: // a slow listener misses events; it refetches on the next one
			}
		}
		h.mu.Unlock()
	}
}

// events streams transitions as Server-Sent Events: "transition" events
// whose data is a JSON array of {node, from, to, at, attempt, worker}, and a
// comment every 15s to keep proxies from closing the connection.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming is not supported by this server")
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n: connected\n\n")
	fl.Flush()

	ch := h.hub.subscribe()
	defer h.hub.unsubscribe(ch)
	// a reconnecting EventSource sends the last ID it saw: replay what it
	// missed (up to 1,000 transitions) before following live ones
	if last := r.Header.Get("Last-Event-ID"); last != "" && validStreamID(last) {
		evs, _, err := h.insp.Events(r.Context(), last, 1000, 0)
		if err == nil && len(evs) > 0 {
			data, _ := json.Marshal(evs)
			fmt.Fprintf(w, "id: %s\nevent: transition\ndata: %s\n\n", evs[len(evs)-1].StreamID, data)
			fl.Flush()
		}
	}
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
			fl.Flush()
		case evs := <-ch:
			data, _ := json.Marshal(evs) // escapes <, >, &
			if _, err := fmt.Fprintf(w, "id: %s\nevent: transition\ndata: %s\n\n", evs[len(evs)-1].StreamID, data); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

// validStreamID reports whether s looks like a Redis stream ID ("ms-seq" or "0").
func validStreamID(s string) bool {
	if s == "" || len(s) > 41 {
		return false
	}
	dash := false
	for i, c := range s {
		switch {
		case c >= '0' && c <= '9':
		case c == '-' && !dash && i > 0 && i < len(s)-1:
			dash = true
		default:
			return false
		}
	}
	return true
}
