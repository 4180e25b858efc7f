package hkp_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections"
)

// servedHKP is an hkp.Server run by Serve on a loopback listener.
type servedHKP struct {
	srv   *hkp.Server
	addr  string
	log   *eventlog.Log
	store *projections.Store
	// requests counts what the Config's Middleware saw.
	requests atomic.Int64
	stop     func() error
}

// serveHKP runs srv on a new loopback listener until the test ends (or
// stop is called).
func serveHKP(t testing.TB, srv *hkp.Server) (addr string, stop func() error) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-served
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), stop
}

// newFrontPair returns two servers on one log and store, alike but for
// the front end: on in the first, off in the second.
func newFrontPair(t testing.TB, mutate func(*hkp.Config)) (front, plain *servedHKP) {
	t.Helper()
	log, store, logger := openBackend(t, zerolog.ErrorLevel)
	pair := make([]*servedHKP, 2)
	for i := range pair {
		sh := &servedHKP{}
		cfg := hkp.DefaultConfig()
		cfg.Logger = logger
		cfg.Hostname = "keys.test"
		cfg.DisableFrontEnd = i == 1
		cfg.Middleware = func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sh.requests.Add(1)
				if odd := r.URL.Query().Get("odd-handler"); odd != "" {
					oddHandler(w, odd)
					return
				}
				next.ServeHTTP(w, r)
			})
		}
		if mutate != nil {
			mutate(&cfg)
		}
		srv, err := hkp.New(cfg, store, log, nil)
		if err != nil {
			t.Fatal(err)
		}
		sh.srv, sh.log, sh.store = srv, log, store
		sh.addr, sh.stop = serveHKP(t, srv)
		pair[i] = sh
	}
	return pair[0], pair[1]
}

// waitApplied waits until the projections applied everything in the log.
// The two servers of a pair share one store, but each makes lookups wait
// only for the uploads it answered itself: a key uploaded through one is
// found through the other once applied (the follower may gather it for a
// moment first).
func (sh *servedHKP) waitApplied(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sh.store.WaitApplied(ctx, sh.log.LastIndex()); err != nil {
		t.Fatal(err)
	}
}

// oddHandler answers the way no lookup handler does, so that the front
// end's framing of such answers can be compared with net/http's too.
func oddHandler(w http.ResponseWriter, how string) {
	h := w.Header()
	switch how {
	case "panic":
		panic("odd handler")
	case "abort":
		w.Write([]byte("half an answer"))
		panic(http.ErrAbortHandler)
	case "over": // declares 5 bytes, writes 10
		h.Set("Content-Length", "5")
		w.Write([]byte("0123456789"))
	case "short": // declares 10 bytes, writes 5
		h.Set("Content-Length", "10")
		w.Write([]byte("01234"))
	case "bad-length":
		h.Set("Content-Length", "-3")
		w.Write([]byte("01234"))
	case "small": // no length, no type
		w.Write([]byte("<html><body>small</body></html>"))
	case "large": // no length: net/http chunks it past 2 KiB
		for i := 0; i < 3; i++ {
			w.Write(bytes.Repeat([]byte{'a' + byte(i)}, 3000))
		}
	case "large-declared": // streamed past 64 KiB
		h.Set("Content-Length", "200000")
		for i := 0; i < 4; i++ {
			w.Write(bytes.Repeat([]byte{'a' + byte(i)}, 50000))
		}
	case "empty":
	case "204":
		h.Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusNoContent)
		w.Write([]byte("dropped"))
	case "304":
		h.Set("Content-Type", "text/plain")
		h.Set("Content-Length", "3")
		w.WriteHeader(http.StatusNotModified)
	case "103":
		h.Set("Link", "</a>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Write([]byte("after hints"))
	case "599":
		w.WriteHeader(599)
	case "close":
		h.Set("Connection", "close")
		w.Write([]byte("closing"))
	case "keep-alive":
		h.Set("Connection", "keep-alive")
		h.Set("Content-Length", "4")
		w.Write([]byte("kept"))
	case "identity":
		h.Set("Transfer-Encoding", "identity")
		w.Write([]byte("identity"))
	case "chunked-declared":
		h.Set("Transfer-Encoding", "chunked")
		h.Set("Content-Length", "7")
		w.Write([]byte("chunked"))
	case "newline-header":
		h.Set("X-Odd", "a\nb\r c ")
		h["Bad Name"] = []string{"x"}
		w.Write([]byte("odd header"))
	case "sniff-date":
		h.Set("Date", "Thu, 01 Jan 1970 00:00:00 GMT")
		h.Set("Content-Encoding", "gzip")
		w.Write([]byte("\x1f\x8b not really"))
	}
}

var dateLine = regexp.MustCompile(`(?m)^Date: [^\r\n]*\r$`)

// TestFrontEndMatchesNetHTTP sends the same bytes to a server with the
// front end and to one without, and requires the same bytes back (Date
// aside): every kind of lookup answer, error and framing the front end
// serves itself, and the requests it must leave to net/http — alone, and
// after answered requests on the same connection. It also checks which
// requests the front end answered, so that a front end that handed
// everything over would fail.
func TestFrontEndMatchesNetHTTP(t *testing.T) {
	front, plain := newFrontPair(t, func(c *hkp.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.RateLimit, c.RateBurst = 0.01, 2
	})
	for _, f := range []string{"keys-a.pgp", "keys-b.pgp", "grace.pgp"} {
		resp, err := http.Post("http://"+plain.addr+"/pks/add", "application/x-www-form-urlencoded",
			strings.NewReader("keytext="+url.QueryEscape(armored(t, fixtureBytes(t, f)))))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("upload %s: %s", f, resp.Status)
		}
	}
	front.waitApplied(t)
	const alice = "3B03A965A519A6CAE8B09425CED1786732CA2E5C"
	get := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: keys.test\r\n\r\n" }
	post := func(body string) string {
		return fmt.Sprintf("POST /pks/add HTTP/1.1\r\nHost: keys.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
	multipartBody := func(form string) string {
		keytext, _ := url.QueryUnescape(strings.TrimPrefix(form, "keytext="))
		return "--XX\r\nContent-Disposition: form-data; name=\"keytext\"\r\n\r\n" + keytext + "\r\n--XX--\r\n"
	}
	lookups := []string{
		"/pks/lookup?op=get&options=mr&search=0x" + alice,
		"/pks/lookup?op=get&options=mr&search=0x" + alice, // from the armor cache now
		"/pks/lookup?op=get&search=0x" + alice,
		"/pks/lookup?op=get&options=mr&search=" + strings.ToLower(alice),
		"/pks/lookup?op=get&options=mr&search=0x" + alice[24:],
		"/pks/lookup?op=get&options=mr&search=0x" + alice[32:],
		"/pks/lookup?op=get&options=mr&search=0x" + strings.Repeat("A", 40),
		"/pks/lookup?op=get&options=mr&search=0xZZ",
		"/pks/lookup?op=get&options=mr&search=alice@example.org&exact=on",
		"/pks/lookup?op=index&options=mr&search=example.org",
		"/pks/lookup?op=index&search=alice",
		"/pks/lookup?op=vindex&search=alice&fingerprint=on&hash=on",
		"/pks/lookup?op=vindex&options=mr&search=0x" + alice,
		"/pks/lookup?search=bob",
		"/pks/lookup?op=hget&search=313310DC2038F6DFE36DE1B9A11D3179",
		"/pks/lookup?op=hget&search=nothex",
		"/pks/lookup?op=stats",
		"/pks/lookup?op=stats&options=mr",
		"/pks/lookup?op=frobnicate&search=alice",
		"/pks/lookup?op=get",
		"/pks/lookup",
		"/pks/lookup?op=index&search=" + strings.Repeat("a+", 300),
		"/pks/lookup?op=get&search=%ff%fe%00&options=mr",
	}
	type exchange struct {
		name    string
		req     string
		answers int // requests the front end must answer itself; -n: 1 to n
	}
	var cases []exchange
	for _, p := range lookups {
		cases = append(cases, exchange{p, get(p), 1})
	}
	cases = append(cases, []exchange{
		{"three pipelined", strings.Repeat(get(lookups[0]), 2) + get(lookups[6]), 3},
		{"HTTP/1.0 without Host", "GET " + lookups[0] + " HTTP/1.0\r\n\r\n", 1},
		{"HTTP/1.0 keep-alive, pipelined", strings.Repeat("GET "+lookups[0]+" HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 2), 2},
		{"HTTP/1.0 keep-alive then not", "GET " + lookups[0] + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET " + lookups[6] + " HTTP/1.0\r\n\r\n" + get(lookups[0]), 2},
		{"Connection: close", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nConnection: close\r\n\r\n" + get(lookups[0]), 1},
		{"Connection: keep-alive, close", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nConnection: keep-alive, Close\r\n\r\n", 1},
		{"bare LF", "GET " + lookups[0] + " HTTP/1.1\nHost: keys.test\n\n" + get(lookups[6]), 2},
		{"odd but valid headers", "GET " + lookups[0] + " HTTP/1.1\r\nhost: [::1]:11371\r\nuser-agent:\tgpg\t\r\nAccept: */*\r\nX-Empty:\r\n\r\n", 1},
		{"Content-Length: 0", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nContent-Length: 0\r\n\r\n", 1},
		{"Connection: foo close", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nConnection: foo close\r\n\r\n" + get(lookups[0]), 1},
		{"Connection: foo<tab>close", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nConnection: foo\tclose\r\n\r\n" + get(lookups[0]), 1},
		{"two Connection headers, close second", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nConnection: foo\r\nConnection: close\r\n\r\n" + get(lookups[0]), 1},
		{"HTTP/1.0 two Connection headers", strings.Repeat("GET "+lookups[0]+" HTTP/1.0\r\nConnection: foo\r\nConnection: keep-alive\r\n\r\n", 2), 1},
		{"HTTP/1.0 keep-alive foo", strings.Repeat("GET "+lookups[0]+" HTTP/1.0\r\nConnection: keep-alive foo\r\n\r\n", 2), 2},
		{"HTTP/1.0 KEEP-ALIVE, close", strings.Repeat("GET "+lookups[0]+" HTTP/1.0\r\nConnection: KEEP-ALIVE, close\r\n\r\n", 2), 2}, // as net/http: keep-alive wins
		{"HTTP/1.0 Kelvin-sign keep-alive", strings.Repeat("GET "+lookups[0]+" HTTP/1.0\r\nConnection: \u212aeep-alive\r\n\r\n", 2), 1},
		{"rate limited behind a proxy", strings.Repeat("GET "+lookups[0]+" HTTP/1.1\r\nHost: keys.test\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n", 4), 4},
		// What net/http answers, alone or after answered requests.
		{"HEAD", "HEAD " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\n\r\n", 0},
		{"POST lookup", "POST " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nContent-Length: 0\r\n\r\n", 0},
		{"other path", get("/pks/stats") + get(lookups[0]), 0},
		{"web page", get("/"), 0},
		{"GET with a body", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nContent-Length: 5\r\n\r\nhello" + get(lookups[0]), 0},
		{"GET chunked", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0},
		{"Expect", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nExpect: 100-continue\r\n\r\n", 0},
		{"Expect unknown", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nExpect: teapot\r\n\r\n", 0},
		{"Upgrade", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", 0},
		{"no Host in HTTP/1.1", "GET " + lookups[0] + " HTTP/1.1\r\n\r\n", 0},
		{"two Hosts", "GET " + lookups[0] + " HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0},
		{"odd Host", "GET " + lookups[0] + " HTTP/1.1\r\nHost: a b\r\n\r\n", 0},
		{"absolute URI", "GET http://keys.test" + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\n\r\n", 0},
		{"HTTP/1.2", "GET " + lookups[0] + " HTTP/1.2\r\nHost: keys.test\r\n\r\n", 0},
		{"HTTP/2.0", "GET " + lookups[0] + " HTTP/2.0\r\nHost: keys.test\r\n\r\n", 0},
		{"bad header name", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nBad Name: x\r\n\r\n", 0},
		{"control character", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nX-A: a\x01b\r\n\r\n", 0},
		{"NUL in target", "GET /pks/lookup?op=get&search=a\x00b HTTP/1.1\r\nHost: keys.test\r\n\r\n", 0},
		{"space in target", "GET /pks/lookup?op=get&search=a b HTTP/1.1\r\nHost: keys.test\r\n\r\n", 0},
		{"folded header", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nX-A: a\r\n b\r\n\r\n", 1}, // as net/http: one value
		{"escaped path", get("/pks/%6Cookup?op=get&options=mr&search=0x" + alice), 0},
		{"head over 4 KiB", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\nX-Pad: " + strings.Repeat("p", 5000) + "\r\n\r\n", 0},
		{"head cut short", "GET " + lookups[0] + " HTTP/1.1\r\nHost: keys.test\r\n", 0},
		{"blank lines first", "\r\n\r\n" + get(lookups[0]), 0},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0},
		{"answered, then an upload", get(lookups[0]) + post("keytext=x") + get(lookups[0]), 3},
	}...)
	// Uploads: the keys are stored already (uploaded above), so that
	// both servers answer alike.
	grace := "keytext=" + url.QueryEscape(armored(t, fixtureBytes(t, "grace.pgp")))
	huge := "keytext=" + strings.Repeat("x", 70<<10)
	padded := grace + "&pad=" + strings.Repeat("p", 60<<10-len(grace))
	cases = append(cases, []exchange{
		{"upload", post(grace), 1},
		{"upload, options=mr", post(grace + "&options=mr"), 1},
		{"upload as multipart", "POST /pks/add HTTP/1.1\r\nHost: keys.test\r\nContent-Type: multipart/form-data; boundary=XX\r\nContent-Length: " +
			fmt.Sprint(len(multipartBody(grace))) + "\r\n\r\n" + multipartBody(grace), 1},
		{"upload, raw armor", "POST /pks/add HTTP/1.1\r\nHost: keys.test\r\nContent-Type: application/pgp-keys\r\nContent-Length: " +
			fmt.Sprint(len(armored(t, fixtureBytes(t, "grace.pgp")))) + "\r\n\r\n" + armored(t, fixtureBytes(t, "grace.pgp")), 1},
		{"upload, garbage", post("keytext=garbage"), 1},
		{"upload, no keytext", post("options=mr"), 1},
		{"uploads and lookups pipelined", post(grace) + get(lookups[0]) + post("keytext=nokey") + get(lookups[6]), 4},
		{"HTTP/1.0 upload without Host", fmt.Sprintf("POST /pks/add HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(grace), grace), 1},
		{"HTTP/1.0 uploads, keep-alive", strings.Repeat(fmt.Sprintf("POST /pks/add HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n%s", len(grace), grace), 2), 2},
		{"upload, Connection: close", strings.Replace(post(grace), "Host: keys.test\r\n", "Host: keys.test\r\nConnection: close\r\n", 1) + get(lookups[0]), 1},
		{"upload body cut short", strings.TrimSuffix(post(grace), "A"), 1},
		{"upload body cut short by much", post(grace)[:len(post(grace))-len(grace)/2], 1},
		{"upload, garbage after the body", post("keytext=x") + "\x16\x03\x01garbage\r\n\r\n", 1},
		// Refused before the body is read (rate limited behind a proxy):
		// the rest of the body is read and dropped before the answer.
		{"uploads rate limited behind a proxy", strings.Repeat(strings.Replace(post(grace), "Host: keys.test\r\n", "Host: keys.test\r\nX-Forwarded-For: 192.0.2.9\r\n", 1), 4) + get(lookups[0]), 5},
		{"HTTP/1.0 upload rate limited behind a proxy", fmt.Sprintf("POST /pks/add HTTP/1.0\r\nX-Forwarded-For: 192.0.2.9\r\nContent-Length: %d\r\n\r\n%s", len(padded), padded), 1},
		// What net/http answers.
		{"upload over 64 KiB", post(huge), 0},
		{"upload without a length", "POST /pks/add HTTP/1.1\r\nHost: keys.test\r\n\r\n", 0},
		{"upload of length 0", post(""), 0},
		{"upload chunked", fmt.Sprintf("POST /pks/add HTTP/1.1\r\nHost: keys.test\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(grace), grace), 0},
		{"upload with Expect", strings.Replace(post(grace), "Host: keys.test\r\n", "Host: keys.test\r\nExpect: 100-continue\r\n", 1), 0},
		{"upload with a query", strings.Replace(post(grace), "/pks/add", "/pks/add?x=1", 1), 0},
		{"PUT upload", strings.Replace(post(grace), "POST", "PUT", 1), 0},
		{"upload, bad length", strings.Replace(post(grace), "Content-Length: ", "Content-Length: +", 1), 0},
		{"upload, two lengths", strings.Replace(post(grace), "Host: keys.test\r\n", "Host: keys.test\r\nContent-Length: 3\r\n", 1), 0},
	}...)
	// Answers no lookup handler gives, from the test's Middleware, each
	// followed by a second request on the connection over HTTP/1.1 and
	// HTTP/1.0 keep-alive: the framing, and whether the connection
	// stays open, must be net/http's.
	for _, odd := range []string{"panic", "abort", "over", "short", "bad-length", "small", "large", "large-declared", "empty",
		"204", "304", "103", "599", "close", "keep-alive", "identity", "chunked-declared", "newline-header", "sniff-date"} {
		p := "/pks/lookup?op=stats&odd-handler=" + odd
		answers := 2
		if odd == "panic" || odd == "abort" {
			answers = 1 // the connection is cut
		}
		cases = append(cases,
			exchange{"odd handler " + odd, get(p) + get(lookups[0]), 0},
			exchange{"odd handler " + odd + ", HTTP/1.0 keep-alive", strings.Repeat("GET "+p+" HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 2), 0})
		cases[len(cases)-2].answers, cases[len(cases)-1].answers = -answers, -answers
	}
	for _, c := range cases {
		f0, p0 := hkp.FrontServed(front.srv), hkp.FrontServed(plain.srv)
		r0, q0 := front.requests.Load(), plain.requests.Load()
		got := dateLine.ReplaceAll(rawExchange(t, front.addr, []byte(c.req), 5*time.Second), []byte("Date: (now)\r"))
		if strings.Contains(c.name, "rate limited") && !bytes.Contains(got, []byte(" 429 ")) {
			t.Errorf("%s: no 429 among the answers:\n%q", c.name, clip(got))
		}
		want := dateLine.ReplaceAll(rawExchange(t, plain.addr, []byte(c.req), 5*time.Second), []byte("Date: (now)\r"))
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the front end answered\n%q\nnet/http answered\n%q", c.name, clip(got), clip(want))
		}
		if len(want) == 0 && c.name != "head cut short" && !strings.HasPrefix(c.name, "odd handler panic") && !strings.HasPrefix(c.name, "odd handler abort") {
			t.Errorf("%s: no answer at all", c.name)
		}
		n := int(hkp.FrontServed(front.srv) - f0)
		switch {
		case c.answers >= 0 && n != c.answers:
			t.Errorf("%s: the front end answered %d requests, want %d", c.name, n, c.answers)
		case c.answers < 0 && (n < 1 || n > -c.answers):
			t.Errorf("%s: the front end answered %d requests, want 1 to %d", c.name, n, -c.answers)
		}
		if n := hkp.FrontServed(plain.srv) - p0; n != 0 {
			t.Errorf("%s: the front end answered %d requests of a server without it", c.name, n)
		}
		if r, q := front.requests.Load()-r0, plain.requests.Load()-q0; r != q {
			t.Errorf("%s: the middleware saw %d requests with the front end, %d without", c.name, r, q)
		}
	}
}

func clip(b []byte) []byte {
	if len(b) > 1500 {
		return append(b[:1500:1500], "..."...)
	}
	return b
}

// TestFrontEndTimeouts: a connection the front end serves is closed when
// it idles past IdleTimeout after an answer, or sends no whole head
// within ReadHeaderTimeout — the first request's or a later one's — as
// net/http does, and a client that stops reading a large answer is cut off
// after WriteTimeout.
func TestFrontEndTimeouts(t *testing.T) {
	const header, idle = 300 * time.Millisecond, 600 * time.Millisecond
	front, _ := newFrontPair(t, func(c *hkp.Config) {
		c.ReadHeaderTimeout, c.IdleTimeout = header, idle
	})
	const lookup = "GET /pks/lookup?op=stats&options=mr HTTP/1.1\r\nHost: keys.test\r\n\r\n"
	// closedAfter sends first, then part every 50 ms (a partial head),
	// and returns when the server closed the connection, after reading
	// every answer.
	closedAfter := func(first, part string) time.Duration {
		c, err := net.Dial("tcp", front.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		c.Write([]byte(first))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		done := make(chan struct{})
		go func() {
			defer close(done)
			io.Copy(io.Discard, c)
		}()
		for part != "" {
			select {
			case <-done:
				return time.Since(start)
			case <-time.After(50 * time.Millisecond):
				c.Write([]byte(part[:1]))
				part = part[1:]
			}
		}
		<-done
		return time.Since(start)
	}
	slowHead := "X-Slow: " + strings.Repeat("s", 200)
	for _, c := range []struct {
		name        string
		first       string
		part        string
		least, most time.Duration
	}{
		{"idle after an answer", lookup, "", idle, idle + time.Second},
		{"slow first head", "GET /pks/lookup?op=stats HTTP/1.1\r\nHost: keys.test\r\n", slowHead, header, header + time.Second},
		{"slow second head", lookup + "GET /pks/lookup?op=stats HTTP/1.1\r\n", slowHead, header, header + time.Second},
	} {
		if d := closedAfter(c.first, c.part); d < c.least || d > c.most {
			t.Errorf("%s: closed after %v, want %v to %v", c.name, d, c.least, c.most)
		}
	}
	if hkp.FrontServed(front.srv) != 2 {
		t.Errorf("the front end answered %d requests, want 2", hkp.FrontServed(front.srv))
	}
}

// TestFrontEndWriteTimeout: a client that asks for answers and never reads
// them is cut off after WriteTimeout, and other clients are served
// meanwhile.
func TestFrontEndWriteTimeout(t *testing.T) {
	const write = 500 * time.Millisecond
	front, _ := newFrontPair(t, func(c *hkp.Config) { c.WriteTimeout = write })
	c, err := net.Dial("tcp", front.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	// Enough pipelined stats pages to fill both sockets' buffers.
	go c.Write([]byte(strings.Repeat("GET /pks/lookup?op=stats HTTP/1.1\r\nHost: keys.test\r\n\r\n", 20000)))
	time.Sleep(write + time.Second)
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + front.addr + "/pks/lookup?op=stats&options=mr")
	if err != nil {
		t.Fatalf("another client: %v", err)
	}
	resp.Body.Close()
	// The stuck connection must be closed by now: reading drains what
	// was sent and ends.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("a client that stopped reading was not cut off after WriteTimeout (read %d bytes)", n)
	}
}

// TestFrontEndShutdown: Serve returns promptly with idle keep-alive
// connections on the front end, closing them; and a connection handed to
// net/http is shut down by net/http.
func TestFrontEndShutdown(t *testing.T) {
	front, _ := newFrontPair(t, nil)
	idle, handed := dialAndAsk(t, front.addr, "GET /pks/lookup?op=stats HTTP/1.1\r\nHost: keys.test\r\n\r\n"),
		dialAndAsk(t, front.addr, "GET /pks/stats HTTP/1.1\r\nHost: keys.test\r\n\r\n")
	start := time.Now()
	if err := front.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Serve took %v to return with idle connections", d)
	}
	for _, c := range []net.Conn{idle, handed} {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("idle connection after shutdown: read %v, want EOF", err)
		}
	}
}

// dialAndAsk sends req on a new connection and reads the whole answer (of
// known length), leaving the connection open.
func dialAndAsk(t *testing.T, addr, req string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Write([]byte(req))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%q: %s, %v", req, resp.Status, err)
	}
	return c
}

// TestFrontEndShutdownUnderLoad: with clients sending lookups on many
// connections, some idle and some mid-answer, Serve returns promptly once
// stopped, every client's connection ends, and (under -race) nothing the
// accept loop, the connections and Close share is raced on.
func TestFrontEndShutdownUnderLoad(t *testing.T) {
	front, _ := newFrontPair(t, nil)
	const clients = 32
	ended := make(chan error, clients)
	for i := 0; i < clients; i++ {
		go func() {
			c, err := net.Dial("tcp", front.addr)
			if err != nil {
				ended <- err
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for j := 0; ; j++ {
				if i%4 == 0 && j > 0 {
					time.Sleep(10 * time.Millisecond) // an idle client now and then
				}
				if _, err := c.Write([]byte("GET /pks/lookup?op=stats&options=mr HTTP/1.1\r\nHost: keys.test\r\n\r\n")); err != nil {
					ended <- nil
					return
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						ended <- fmt.Errorf("connection neither answered nor closed: %v", err)
						return
					}
					ended <- nil
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	served := hkp.FrontServed(front.srv)
	start := time.Now()
	if err := front.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Serve took %v to return under load", d)
	}
	for i := 0; i < clients; i++ {
		if err := <-ended; err != nil {
			t.Error(err)
		}
	}
	if served == 0 {
		t.Error("the front end answered nothing before the shutdown")
	}
}

// TestFrontEndUnreadBodyEndsCleanly: a connection closed after its answer
// while part of an upload's body is unread (refused before reading it,
// here by the rate limit, over HTTP/1.0) ends with the answer and a clean
// end of stream, not a reset: closed at once, the kernel would answer the
// unread bytes with a reset, which can destroy the answer on its way.
func TestFrontEndUnreadBodyEndsCleanly(t *testing.T) {
	front, _ := newFrontPair(t, func(c *hkp.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.RateLimit, c.RateBurst = 0.01, 1
	})
	body := "keytext=" + strings.Repeat("x", 60<<10)
	req := fmt.Sprintf("POST /pks/add HTTP/1.0\r\nX-Forwarded-For: 192.0.2.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	for i, want := range []string{"HTTP/1.0 400 ", "HTTP/1.0 429 "} {
		c, err := net.Dial("tcp", front.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(c) // without closing our side first
		c.Close()
		if !bytes.HasPrefix(out, []byte(want)) {
			t.Errorf("upload %d: answered %q, want %q", i+1, clip(out), want)
		}
		if err != nil {
			t.Errorf("upload %d: the answer ended with %v, want a clean end of stream", i+1, err)
		}
	}
	if n := hkp.FrontServed(front.srv); n != 2 {
		t.Errorf("the front end answered %d requests, want 2", n)
	}
}

// TestFrontEndShutdownFinishesUpload: an upload whose body is still
// arriving when Serve is told to stop is read to its end, stored and
// answered 200 — net/http's Shutdown, too, lets a request being read
// finish — and the connection is closed after it.
func TestFrontEndShutdownFinishesUpload(t *testing.T) {
	front, _ := newFrontPair(t, nil)
	body := "keytext=" + url.QueryEscape(armored(t, fixtureBytes(t, "grace.pgp")))
	c, err := net.Dial("tcp", front.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "POST /pks/add HTTP/1.1\r\nHost: keys.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:len(body)/2])
	time.Sleep(200 * time.Millisecond) // the front end waits for the rest of the body
	stopped := make(chan error, 1)
	go func() { stopped <- front.stop() }()
	time.Sleep(200 * time.Millisecond) // the listener is closed, idle reads ended
	if _, err := c.Write([]byte(body[len(body)/2:])); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("upload during shutdown: %s, Connection: close %v; want 200 and close\n%s", resp.Status, resp.Close, clip(answer))
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if n := front.log.LastIndex(); n != 1 {
		t.Errorf("log holds %d events, want the upload's 1", n)
	}
	if n := hkp.FrontServed(front.srv); n != 1 {
		t.Errorf("the front end answered %d requests, want 1", n)
	}
}

// TestFrontEndShutdownCutsStalledUpload: an upload whose body stops
// arriving does not hold Serve past its 10 s grace for in-flight requests,
// however long ReadTimeout is, and stores nothing.
func TestFrontEndShutdownCutsStalledUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the 10 s shutdown grace")
	}
	front, _ := newFrontPair(t, func(c *hkp.Config) { c.ReadTimeout = 5 * time.Minute })
	body := "keytext=" + url.QueryEscape(armored(t, fixtureBytes(t, "grace.pgp")))
	c, err := net.Dial("tcp", front.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /pks/add HTTP/1.1\r\nHost: keys.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:len(body)/2])
	time.Sleep(200 * time.Millisecond) // the front end waits for the rest of the body
	start := time.Now()
	if err := front.stop(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Serve took %v to return with a stalled upload", d)
	}
	if n := front.log.LastIndex(); n != 0 {
		t.Errorf("log holds %d events, want none", n)
	}
}
