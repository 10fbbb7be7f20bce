package monitor

import (
	"context"
	"time"
)

// SetMaxmemoryPolicy makes health read policy instead of asking Redis, so
// tests need not reconfigure the shared Redis.
func SetMaxmemoryPolicy(h *Handler, policy string) {
	h.health.maxmemoryPolicy = func(context.Context) (string, error) { return policy, nil }
}

// HoldGraphSlots takes every slot for drawing pictures, as if that many
// were being drawn, and makes a request wait at most wait for one; release
// undoes both.
func HoldGraphSlots(wait time.Duration) (release func()) {
	for range cap(graphSlots) {
		graphSlots <- struct{}{}
	}
	old := graphWait
	graphWait = wait
	return func() {
		graphWait = old
		for range cap(graphSlots) {
			<-graphSlots
		}
	}
}
