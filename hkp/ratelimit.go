package hkp

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// rateLimiter is a token bucket per client address: Rate requests a second
// sustained, Burst at once. Loopback clients and trusted proxies that do not
// forward a client address are not limited (operators' own tools, health
// checks). Behind a trusted proxy the client is the address the proxy puts
// in X-Forwarded-For — never a header from anyone else, which a client
// could forge. Memory is bounded: at most maxClients buckets, idle ones
// dropped first.
type rateLimiter struct {
	rate    float64 // tokens a second
	burst   float64
	trusted []netip.Prefix

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
	now     func() time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

const maxClients = 100000

func newRateLimiter(rate float64, burst int, trusted []netip.Prefix) *rateLimiter {
	if rate <= 0 {
		return nil
	}
	return &rateLimiter{rate: rate, burst: float64(max(burst, 1)), trusted: trusted,
		buckets: make(map[netip.Addr]*bucket), now: time.Now}
}

// client returns the address to limit r by, and false when r is exempt.
func (l *rateLimiter) client(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	peer := ap.Addr().Unmap()
	if l.isTrusted(peer) || peer.IsLoopback() {
		// Walk X-Forwarded-For from the right: the first address not of a
		// trusted proxy is the client. Without the header (a loopback
		// client, nearly every request of a benchmark) nothing is
		// allocated.
		xff := r.Header.Values("X-Forwarded-For")
		if len(xff) == 0 {
			return netip.Addr{}, false
		}
		hops := strings.Split(strings.Join(xff, ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			a = a.Unmap()
			if !l.isTrusted(a) && !a.IsLoopback() {
				return a, true
			}
		}
		return netip.Addr{}, false
	}
	return peer, true
}

func (l *rateLimiter) isTrusted(a netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// allow takes a token for a, or returns how long until one is available.
func (l *rateLimiter) allow(a netip.Addr) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[a]
	if !ok {
		if len(l.buckets) >= maxClients {
			l.evict(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[a] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// evict drops buckets that have refilled (idle clients), or, if none has,
// half of them: forgetting a client only ever lets it through.
func (l *rateLimiter) evict(now time.Time) {
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for a, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, a)
		}
	}
	if len(l.buckets) < maxClients {
		return
	}
	n := 0
	for a := range l.buckets {
		if n%2 == 0 {
			delete(l.buckets, a)
		}
		n++
	}
}

// admit reports whether r may proceed; a client over its rate gets 429
// with Retry-After (and the common headers the caller already set).
func (l *rateLimiter) admit(s *Server, w http.ResponseWriter, r *http.Request) bool {
	if l == nil {
		return true
	}
	a, ok := l.client(r)
	if !ok {
		return true
	}
	allowed, wait := l.allow(a)
	if allowed {
		return true
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	s.writeError(w, r, &httpError{http.StatusTooManyRequests, "Too many requests",
		"too many requests from your address; try again in a few seconds"})
	return false
}

// ParsePrefixes parses a list of IP addresses and CIDR prefixes, separated
// by spaces or commas (sksconf grapevine_trusted_proxies).
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, &net.ParseError{Type: "IP address or prefix", Text: f}
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
