package monitor

import (
	"context"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
)

const csrfHeader = "X-CSRF-Token"

type ctxKey int

const bearerKey ctxKey = 1

// authed admits a request by bearer token or basic auth; with no auth
// configured, only loopback clients.
func (h *Handler) authed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.cfg.AuthConfigured() {
			if !loopbackClient(r) {
				writeError(w, http.StatusForbidden, "no auth is configured, so the monitor serves loopback clients only")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		if h.cfg.Token != "" {
			if tok, ok := bearerToken(r); ok {
				if equal(tok, h.cfg.Token) {
					next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), bearerKey, true)))
					return
				}
			}
		}
		if h.cfg.Username != "" {
			if u, p, ok := r.BasicAuth(); ok && equal(u, h.cfg.Username) && equal(p, h.cfg.Password) {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="trellis", charset="UTF-8"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="trellis"`)
		}
		writeError(w, http.StatusUnauthorized, "authentication required")
	})
}

// mutating guards state-changing requests: read-only mode, cross-origin
// browser requests, and the CSRF token unless the bearer token came along
// (browsers never attach it on their own).
func (h *Handler) mutating(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.cfg.ReadOnly {
			writeError(w, http.StatusForbidden, "the monitor is read-only")
			return
		}
		if err := h.cop.Check(r); err != nil {
			writeError(w, http.StatusForbidden, "cross-origin request refused: %s", err.Error())
			return
		}
		if bearer, _ := r.Context().Value(bearerKey).(bool); !bearer {
			if !equal(r.Header.Get(csrfHeader), h.csrf) {
				writeError(w, http.StatusForbidden, "missing or wrong %s header (GET /api/csrf gives the token)", csrfHeader)
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, 2<<20)
		next.ServeHTTP(w, r)
	})
}

// bearerToken reads "Authorization: Bearer <token>". The scheme is
// case-insensitive and may be followed by several spaces (RFC 7235 §2.1).
func bearerToken(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	return tok, tok != ""
}

func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// loopbackClient reports whether the request came from a loopback address.
// Forwarding headers are ignored: behind a proxy, configure auth.
func loopbackClient(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// IsLoopbackAddr reports whether a listen address binds loopback only
// ("127.0.0.1:3001", "[::1]:3001", "localhost:3001"); ":3001" does not.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
