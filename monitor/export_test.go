package monitor

import "net/http"

// SetMaxmemoryPolicy makes health read policy instead of asking Redis, so
// tests need not reconfigure the shared Redis.
func SetMaxmemoryPolicy(h *Handler, policy string) {
	h.maxmemoryPolicy = func(*http.Request) (string, error) { return policy, nil }
}
