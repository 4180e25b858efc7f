package hkp

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestRateLimiterClientAddress(t *testing.T) {
	trusted, err := ParsePrefixes("10.0.0.0/8, 192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	l := newRateLimiter(1, 1, trusted)
	cases := []struct {
		remote, xff string
		want        string // "" means exempt
	}{
		{"203.0.113.5:1000", "", "203.0.113.5"},
		{"203.0.113.5:1000", "198.51.100.7", "203.0.113.5"}, // untrusted peer: its header is ignored
		{"192.0.2.1:1000", "198.51.100.7", "198.51.100.7"},  // trusted proxy: forwarded client
		{"10.1.2.3:1000", "198.51.100.7, 10.9.9.9", "198.51.100.7"},
		{"192.0.2.1:1000", "", ""},                         // the proxy itself (health checks)
		{"127.0.0.1:1000", "", ""},                         // loopback
		{"127.0.0.1:1000", "198.51.100.8", "198.51.100.8"}, // nginx on the same host
		{"[::ffff:203.0.113.9]:1000", "", "203.0.113.9"},
		{"192.0.2.1:1000", "garbage", ""},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		got, ok := l.client(r)
		if c.want == "" {
			if ok {
				t.Errorf("%s xff %q: limited as %s, want exempt", c.remote, c.xff, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(c.want) {
			t.Errorf("%s xff %q: client %v (%v), want %s", c.remote, c.xff, got, ok, c.want)
		}
	}
}

func TestRateLimiterBuckets(t *testing.T) {
	l := newRateLimiter(2, 3, nil)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	a, b := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2")
	for i := 0; i < 3; i++ {
		if ok, _ := l.allow(a); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := l.allow(a)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("over the burst: allowed %v, wait %v; want refused, 500ms", ok, wait)
	}
	if ok, _ := l.allow(b); !ok {
		t.Fatal("another client was limited by the first")
	}
	now = now.Add(500 * time.Millisecond)
	if ok, _ := l.allow(a); !ok {
		t.Fatal("a refilled token was not granted")
	}
	if newRateLimiter(0, 10, nil) != nil {
		t.Fatal("rate 0 must turn limiting off")
	}
}

// A client over its rate gets 429 with Retry-After and the common headers.
func TestRateLimitAnswer(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RateLimit, cfg.RateBurst = 1, 2
	s, err := New(cfg, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var last *httptest.ResponseRecorder
	for i := 0; i < 3; i++ {
		r := httptest.NewRequest("GET", "/no-such-page", nil)
		r.RemoteAddr = "203.0.113.5:4000"
		last = httptest.NewRecorder()
		s.ServeHTTP(last, r)
		if i < 2 && last.Code != http.StatusNotFound {
			t.Fatalf("request %d: %d, want 404 (within the burst)", i, last.Code)
		}
	}
	if last.Code != http.StatusTooManyRequests || last.Header().Get("Retry-After") == "" || last.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("third request: %d, headers %v; want 429 with Retry-After and CORS", last.Code, last.Header())
	}
}
