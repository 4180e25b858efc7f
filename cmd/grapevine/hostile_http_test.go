package main

// Hostile HTTP clients against the real daemon (`grapevine serve`
// in-process, configured through sksconf): slowloris, bodies over
// grapevine_max_post_bytes, absurd requests and random bytes. The promises
// and measured figures are in docs/reliability.md.

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit when it is
// below need (Go already does this at start-up since 1.19; this is explicit).
func raiseFileLimit(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= need {
		return
	}
	lim.Cur = min(lim.Max, need)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < need {
		t.Fatalf("RLIMIT_NOFILE is %d, need %d: %v", lim.Cur, need, err)
	}
}

func uploadFixture(t *testing.T, base, name string) {
	t.Helper()
	data, err := os.ReadFile(fixture(t, name))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(base+"/pks/add", "application/pgp-keys", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("upload %s: status %d", name, resp.StatusCode)
	}
}

// TestDaemonSlowloris: hundreds of connections dribbling their headers do
// not keep a normal client waiting: it is answered within a second while
// they hang (the daemon's ReadHeaderTimeout is 10 s). The long variant
// holds 1000 of them past ReadHeaderTimeout and checks they are dropped.
func TestDaemonSlowloris(t *testing.T) {
	n := 300
	if soak() {
		n = 1000
	}
	raiseFileLimit(t, uint64(2*n+256))
	base, _ := startDaemon(t)
	uploadFixture(t, base, "grace.pgp")
	grace := fixtureKeyList(t, "grace.pgp")[0].Fingerprint().String()
	addr := strings.TrimPrefix(base, "http://")

	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("slow connection %d: %v", i, err)
		}
		c.Write([]byte("GET /pks/lookup?op=stats HTTP/1.1\r\nHost: keys.test\r\n"))
		conns = append(conns, c)
	}
	// One goroutine dribbles a header byte on every connection each 200 ms.
	stopDribble := make(chan struct{})
	dribbled := make(chan struct{})
	go func() {
		defer close(dribbled)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		line := "X-Slow-Header: " + strings.Repeat("z", 1<<10)
		for i := 0; ; i++ {
			select {
			case <-stopDribble:
				return
			case <-tick.C:
			}
			for _, c := range conns {
				c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
				c.Write([]byte{line[i%len(line)]})
			}
		}
	}()

	// A normal client, a fresh connection per request, meanwhile.
	normal := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var worst, total time.Duration
	const requests = 20
	for i := 0; i < requests; i++ {
		path := "/pks/lookup?op=stats"
		if i%2 == 1 {
			path = "/pks/lookup?op=get&options=mr&search=0x" + grace
		}
		t0 := time.Now()
		resp, err := normal.Get(base + path)
		if err != nil {
			t.Fatalf("normal client among %d slow connections: %v", n, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took := time.Since(t0)
		if resp.StatusCode != 200 {
			t.Fatalf("normal client: %s: status %d", path, resp.StatusCode)
		}
		worst, total = max(worst, took), total+took
		time.Sleep(50 * time.Millisecond)
	}
	if worst > time.Second {
		t.Errorf("normal client waited %v among %d slow connections", worst, n)
	}
	t.Logf("%d slow connections; normal client: %d requests, mean %v, slowest %v",
		n, requests, (total / requests).Round(time.Microsecond), worst.Round(time.Microsecond))

	if !soak() {
		close(stopDribble)
		<-dribbled
		return
	}
	// Long variant: past ReadHeaderTimeout (10 s) every slow connection
	// has been dropped by the server, however politely it dribbles.
	time.Sleep(11 * time.Second)
	close(stopDribble)
	<-dribbled
	open := 0
	buf := make([]byte, 512)
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			_, err := c.Read(buf)
			if err == nil {
				continue
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				open++
			}
			break
		}
	}
	if open > 0 {
		t.Errorf("%d of %d slow connections still open after ReadHeaderTimeout", open, n)
	}
	t.Logf("after 11 s, %d of %d slow connections had been closed by the server", n-open, n)
}

// TestDaemonHostileHTTP: a daemon with grapevine_max_post_bytes 64 KiB
// refuses oversized bodies with 413 and stores nothing, answers absurd
// requests deliberately, survives 2,000 (long: 10,000) connections of
// random bytes with bounded heap and goroutines, and still serves.
func TestDaemonHostileHTTP(t *testing.T) {
	base, dir := startDaemon(t, "grapevine_max_post_bytes: 65536")
	addr := strings.TrimPrefix(base, "http://")
	arm, err := os.ReadFile(fixture(t, "grace.pgp"))
	if err != nil {
		t.Fatal(err)
	}
	form := "keytext=" + url.QueryEscape(string(armorOf(t, arm)))

	// Over the limit: 413, Connection: close, nothing stored.
	for _, body := range []string{
		form + "&pad=" + strings.Repeat("A", 65536),
		strings.Repeat("keytext=", 1<<20),
	} {
		resp, err := http.Post(base+"/pks/add", "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			t.Logf("oversized upload: %v", err) // a reset while sending also refuses it
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 || !resp.Close {
			t.Errorf("oversized upload: %d close=%v %q", resp.StatusCode, resp.Close, b)
		}
	}
	if st := statsOf(t, dir); st["keys"] != "0" || st["log_offset"] != "0" {
		t.Fatalf("oversized uploads stored something: keys %s, log_offset %s", st["keys"], st["log_offset"])
	}

	// Absurd requests get a deliberate answer (never "internal error").
	for _, q := range []string{
		"op=get&search=" + strings.Repeat("A", 9000),
		"op=index&search=" + strings.Repeat("%zz%4%", 1000),
		"op=get&search=%00%00%00&options=mr",
		"op=vindex&search=%ff%fe%80&fingerprint=on&hash=on",
		"op=index&search=" + strings.Repeat("a+", 4000),
		strings.Repeat("&", 8000),
		"op=get&search=x&limit=99999999999999999999",
	} {
		out := rawExchange(t, addr, "GET /pks/lookup?"+q+" HTTP/1.0\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
		if err != nil {
			t.Errorf("%.50s: no HTTP answer: %v", q, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 500 && !bytes.Contains(b, []byte("Too many")) || bytes.Contains(b, []byte("internal error")) {
			t.Errorf("%.50s: status %d %q", q, resp.StatusCode, b)
		}
	}
	// Headers over MaxHeaderBytes (64 KiB): 431, and the request line.
	if out := rawExchange(t, addr, "GET /pks/lookup?op=stats HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("x", 200<<10)+"\r\n\r\n"); !bytes.HasPrefix(out, []byte("HTTP/1.1 431")) {
		t.Errorf("200 KiB header: %.60q, want 431", out)
	}

	// Random bytes on raw connections.
	n := 2000
	if soak() {
		n = 10000
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	start := time.Now()
	answered := testenv.RandomByteConnections(t, addr, n, 2)
	took := time.Since(start)
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutines+5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > goroutines+5 {
		t.Errorf("%d goroutines after %d random connections, %d before", g, n, goroutines)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if growth > 64<<20 {
		t.Errorf("heap grew by %d MiB over %d random connections", growth>>20, n)
	}
	t.Logf("%d random-byte connections in %v (%d answered with HTTP); heap %+d KiB, sys %d MiB",
		n, took.Round(time.Millisecond), answered, growth>>10, after.Sys>>20)

	// Still serving, and still storing.
	uploadFixture(t, base, "grace.pgp")
	resp, err := http.Get(base + "/pks/lookup?op=get&options=mr&search=grace%40example.org")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the abuse: %v %v", err, resp)
	}
	resp.Body.Close()
	if st := settledStatsOf(t, dir); st["keys"] != "1" || st["log_offset"] != "1" {
		t.Fatalf("after the abuse: keys %s, log_offset %s, want 1 and 1", st["keys"], st["log_offset"])
	}
}

// armorOf armors binary key bytes.
func armorOf(t *testing.T, raw []byte) []byte {
	t.Helper()
	return []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n" + base64Lines(raw) + "-----END PGP PUBLIC KEY BLOCK-----\n")
}

// rawExchange sends req on a fresh connection, half-closes it, and returns
// the answer (up to 1 MiB).
func rawExchange(t *testing.T, addr, req string) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(req))
	c.(*net.TCPConn).CloseWrite()
	out, _ := io.ReadAll(io.LimitReader(c, 1<<20))
	return out
}

// TestDaemonRateLimitsForwardedClients: the sksconf rate options reach the
// daemon, and a client forwarded by a proxy on loopback (nginx on the same
// host) is limited by its own address, with 429 and Retry-After.
func TestDaemonRateLimitsForwardedClients(t *testing.T) {
	url, _ := startDaemon(t, "grapevine_rate_limit: 0.5", "grapevine_rate_burst: 3")
	get := func(client string) *http.Response {
		req, _ := http.NewRequest("GET", url+"/pks/lookup?op=stats", nil)
		req.Header.Set("X-Forwarded-For", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for i := 0; i < 3; i++ {
		if resp := get("198.51.100.7"); resp.StatusCode != 200 {
			t.Fatalf("request %d within the burst: %d", i, resp.StatusCode)
		}
	}
	resp := get("198.51.100.7")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the limit: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := get("198.51.100.8"); resp.StatusCode != 200 {
		t.Fatalf("another client was limited: %d", resp.StatusCode)
	}
}
