package monitor

import (
	"container/list"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// maxThrottled bounds how many clients the throttle remembers at once; past
// it, the client touched longest ago is forgotten.
const maxThrottled = 10_000

// throttle slows down guessing credentials: each client has a bucket of
// Config.AuthFailureBurst failures that refills by one every
// Config.AuthFailureEvery. A request with credentials takes a failure from
// the bucket before they are checked (so parallel guesses cannot overshoot)
// and gives it back when they were right. An empty bucket refuses the
// client, whatever it sends, until one failure has refilled.
type throttle struct {
	now   func() time.Time
	burst float64
	every time.Duration
	max   int

	mu      sync.Mutex
	lru     *list.List // of *bucket, most recently touched first
	clients map[string]*list.Element
}

type bucket struct {
	client string
	left   float64 // failures left at `at`
	at     time.Time
}

func newThrottle(now func() time.Time, burst int, every time.Duration, max int) *throttle {
	return &throttle{now: now, burst: float64(burst), every: every, max: max,
		lru: list.New(), clients: map[string]*list.Element{}}
}

// leftAt is what b holds at now: a client's bucket refills whether or not it
// comes back.
func (t *throttle) leftAt(b *bucket, now time.Time) float64 {
	return min(t.burst, b.left+float64(now.Sub(b.at))/float64(t.every))
}

// take reserves one failure for a request that brings credentials. When the
// bucket is empty it returns false and how long until it holds one again;
// empty says this take emptied it.
func (t *throttle) take(client string) (wait time.Duration, ok, empty bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.forgetIdle(now)
	b := t.touch(client, now)
	if b.left < 1 {
		return t.waitFor(b), false, false
	}
	b.left--
	return 0, true, b.left < 1
}

// check reports whether a request without credentials may go on (it costs
// nothing, but an empty bucket refuses it too).
func (t *throttle) check(client string) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.clients[client]
	if e == nil {
		return 0, true
	}
	b := e.Value.(*bucket)
	if left := t.leftAt(b, t.now()); left < 1 {
		return time.Duration((1 - left) * float64(t.every)), false
	}
	return 0, true
}

// refund gives back the failure take reserved, for credentials that were
// right; a full bucket is forgotten.
func (t *throttle) refund(client string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.clients[client]
	if e == nil {
		return
	}
	b := e.Value.(*bucket)
	now := t.now()
	b.left, b.at = min(t.burst, t.leftAt(b, now)+1), now
	if b.left >= t.burst {
		t.lru.Remove(e)
		delete(t.clients, client)
	}
}

// touch returns client's bucket brought up to now, making a full one for a
// new client and forgetting the oldest when the throttle is full.
func (t *throttle) touch(client string, now time.Time) *bucket {
	if e := t.clients[client]; e != nil {
		b := e.Value.(*bucket)
		b.left, b.at = t.leftAt(b, now), now
		t.lru.MoveToFront(e)
		return b
	}
	if t.lru.Len() >= t.max {
		old := t.lru.Back()
		t.lru.Remove(old)
		delete(t.clients, old.Value.(*bucket).client)
	}
	b := &bucket{client: client, left: t.burst, at: now}
	t.clients[client] = t.lru.PushFront(b)
	return b
}

func (t *throttle) waitFor(b *bucket) time.Duration {
	return time.Duration((1 - b.left) * float64(t.every))
}

// forgetIdle drops the least recently touched clients whose buckets have
// refilled: remembering them changes nothing. Two per call keep up with
// the one a call may add.
func (t *throttle) forgetIdle(now time.Time) {
	for range 2 {
		e := t.lru.Back()
		if e == nil || t.leftAt(e.Value.(*bucket), now) < t.burst {
			return
		}
		t.lru.Remove(e)
		delete(t.clients, e.Value.(*bucket).client)
	}
}

func (t *throttle) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lru.Len()
}

// clientOf names the client a request's failures count against: its IP
// address, or for IPv6 its /64, which one host usually holds whole.
// Forwarding headers are ignored (a client could forge them).
func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.WithZone("").Prefix(64)
		return p.String()
	}
	return ip.String()
}
