package flow

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/trellisflow/trellis/internal/store"
)

// Concurrent enqueues on one client are coalesced: while script calls are
// in flight, the enqueues that arrive meanwhile wait and then go together in
// the next call. Nothing waits on a timer, so a lone enqueue pays no extra
// latency; under load the per-call cost (a round trip, the event entry, the
// counters) is shared. Each flow stays all or nothing.
const (
	batchFlows   = 128  // flows per call at most
	batchNodes   = 4096 // nodes per call at most; a bigger graph goes alone
	batchInPlay  = 2    // script calls in flight at once
	batchTimeout = 30 * time.Second
)

type writeReq struct {
	now  time.Time
	flow store.FlowWrite
	done chan store.FlowWritten
}

type batcher struct {
	mu       sync.Mutex
	queue    []*writeReq
	flushing int // callers flushing the queue
}

// write enqueues one flow, coalesced with the client's concurrent enqueues.
func (c *Client) write(ctx context.Context, now time.Time, fw store.FlowWrite) ([]store.Enqueued, error) {
	if len(fw.Specs) >= batchNodes {
		return c.store.Enqueue(ctx, now, fw)
	}
	req := &writeReq{now: now, flow: fw, done: make(chan store.FlowWritten, 1)}
	b := &c.batch
	b.mu.Lock()
	b.queue = append(b.queue, req)
	lead := b.flushing < batchInPlay
	if lead {
		b.flushing++
	}
	b.mu.Unlock()
	if lead {
		// a flusher goroutine writes until the queue is empty, so every
		// caller stays free to add to the next batch
		go c.flush(context.WithoutCancel(ctx))
	}
	select {
	case r := <-req.done:
		return r.Nodes, r.Err
	case <-ctx.Done():
		// the write may still happen, as with any call cut short
		return nil, ctx.Err()
	}
}

func (c *Client) flush(ctx context.Context) {
	b := &c.batch
	for {
		b.mu.Lock()
		n, nodes := 0, 0
		for n < len(b.queue) && n < batchFlows && (n == 0 || nodes+len(b.queue[n].flow.Specs) <= batchNodes) {
			nodes += len(b.queue[n].flow.Specs)
			n++
		}
		batch := append([]*writeReq(nil), b.queue[:n]...)
		b.queue = b.queue[n:]
		if len(batch) == 0 {
			b.flushing--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()

		flows := make([]store.FlowWrite, len(batch))
		for i, r := range batch {
			flows[i] = r.flow
		}
		cctx, cancel := context.WithTimeout(ctx, batchTimeout)
		res, err := c.store.EnqueueBatch(cctx, batch[0].now, flows)
		cancel()
		var retry []*writeReq
		for i, r := range batch {
			switch {
			case err != nil:
				r.done <- store.FlowWritten{Err: err}
			case errors.Is(res[i].Err, store.ErrNotAttempted):
				retry = append(retry, r)
			default:
				r.done <- res[i]
			}
		}
		if len(retry) > 0 {
			b.mu.Lock()
			b.queue = append(retry, b.queue...)
			b.mu.Unlock()
		}
	}
}
