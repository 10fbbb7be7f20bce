package monitor

import "context"

// SetMaxmemoryPolicy makes health read policy instead of asking Redis, so
// tests need not reconfigure the shared Redis.
func SetMaxmemoryPolicy(h *Handler, policy string) {
	h.health.maxmemoryPolicy = func(context.Context) (string, error) { return policy, nil }
}
