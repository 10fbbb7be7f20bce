package monitor

import (
	"context"
	"crypto/subtle"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const csrfHeader = "X-CSRF-Token"

type ctxKey int

const bearerKey ctxKey = 1

// authed admits a request by bearer token or basic auth; with no auth
// configured, only loopback clients. Failed authentications are logged and
// throttled per client (see throttle): a throttled client is answered 429
// with Retry-After even when its credentials are right, or a guesser could
// tell a right guess from the answer.
func (h *Handler) authed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.cfg.AuthConfigured() {
			if !loopbackClient(r) {
				writeError(w, http.StatusForbidden, "no auth is configured, so the monitor serves loopback clients only")
				return
			}
			if h.readBody(w, r) {
				next.ServeHTTP(w, r)
			}
			return
		}
		client := clientOf(r)
		creds := r.Header.Get("Authorization") != ""
		var wait time.Duration
		var ok, emptied bool
		if creds {
			wait, ok, emptied = h.throttle.take(client)
		} else {
			wait, ok = h.throttle.check(client)
		}
		if !ok {
			secs := max(1, int(math.Ceil(wait.Seconds())))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, http.StatusTooManyRequests, "too many failed authentications from %s; retry in %d s", client, secs)
			return
		}
		if admitted, byBearer := h.admit(r); admitted {
			if creds {
				h.throttle.refund(client)
			}
			if byBearer {
				r = r.WithContext(context.WithValue(r.Context(), bearerKey, true))
			}
			if h.readBody(w, r) {
				next.ServeHTTP(w, r)
			}
			return
		}
		if creds {
			h.log.Warn("trellis monitor: authentication failed", "client", client, "remote", r.RemoteAddr,
				"path", r.URL.Path, "scheme", authScheme(r))
			if emptied {
				h.log.Warn("trellis monitor: too many failed authentications; refusing the client for a while",
					"client", client, "burst", h.cfg.AuthFailureBurst, "every", h.cfg.AuthFailureEvery)
			}
		}
		if h.cfg.Username != "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="trellis", charset="UTF-8"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="trellis"`)
		}
		writeError(w, http.StatusUnauthorized, "authentication required")
	})
}

// admit checks the request's credentials, comparing in constant time, and
// says whether the bearer token admitted it.
func (h *Handler) admit(r *http.Request) (admitted, byBearer bool) {
	if h.cfg.Token != "" {
		if tok, ok := bearerToken(r); ok && equal(tok, h.cfg.Token) {
			return true, true
		}
	}
	if h.cfg.Username != "" {
		if u, p, ok := r.BasicAuth(); ok && equal(u, h.cfg.Username) && equal(p, h.cfg.Password) {
			return true, false
		}
	}
	return false, false
}

// authScheme names the scheme of the request's credentials for the log:
// "bearer", "basic" or "other", never what the client sent (which may be
// the secret itself).
func authScheme(r *http.Request) string {
	scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return "bearer"
	case strings.EqualFold(scheme, "Basic"):
		return "basic"
	}
	return "other"
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
