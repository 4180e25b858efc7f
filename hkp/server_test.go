package hkp_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime/trace"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

type testServer struct {
	*httptest.Server
	log   *eventlog.Log
	store *projections.Store
	hkp   *hkp.Server
}

// openBackend opens a real log and projections in a temporary directory,
// with the runner following the log as in the daemon. Everything closes at
// cleanup, after whatever the caller registers later (a server on top).
func openBackend(t testing.TB, level zerolog.Level) (*eventlog.Log, *projections.Store, zerolog.Logger) {
	t.Helper()
	dir := t.TempDir()
	logger := zerolog.New(zerolog.NewTestWriter(t)).Level(level)
	lcfg := eventlog.DefaultConfig()
	lcfg.Logger = logger
	log, err := eventlog.Open(filepath.Join(dir, "log"), lcfg)
	if err != nil {
		t.Fatal(err)
	}
	scfg := projections.DefaultConfig()
	scfg.Logger = logger
	scfg.Log = log
	store, err := projections.Open(filepath.Join(dir, "db"), scfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); store.Follow(ctx, log) }()
	t.Cleanup(func() {
		cancel()
		<-done
		store.Close()
		log.Close()
	})
	return log, store, logger
}

// newTestServer runs a real log, projections and HKP server on loopback,
// with the runner following the log as in the daemon.
func newTestServer(t *testing.T, mutate func(*hkp.Config)) *testServer {
	t.Helper()
	log, store, logger := openBackend(t, zerolog.WarnLevel)
	cfg := hkp.DefaultConfig()
	cfg.Logger = logger
	cfg.Hostname = "keys.test"
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := hkp.New(cfg, store, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: httptest.NewServer(srv), log: log, store: store, hkp: srv}
	t.Cleanup(ts.Close)
	return ts
}

func fixtureBytes(t testing.TB, name string) []byte {
	b, err := os.ReadFile(testenv.SharedFile(t, "fixtures/sks/test-keys/"+name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fixtureKeys(t *testing.T, name string) []*pgpkey.Key {
	r := pgpkey.NewReader(bytes.NewReader(fixtureBytes(t, name)))
	var keys []*pgpkey.Key
	for {
		raw, err := r.Next()
		if err == io.EOF {
			return keys
		}
		if err != nil {
			t.Fatal(err)
		}
		k, err := pgpkey.ParseKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
}

func armored(t testing.TB, data []byte) string {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, "PGP PUBLIC KEY BLOCK", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return buf.String()
}

// dirmngrEscape percent-encodes every byte but letters and digits, as GnuPG
// dirmngr does for /pks/add (hkp.md §9.1).
func dirmngrEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func (ts *testServer) upload(t *testing.T, body, contentType string) *http.Response {
	t.Helper()
	resp, err := http.Post(ts.URL+"/pks/add", contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func (ts *testServer) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(ts.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func mustStatus(t *testing.T, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: status %d, want %d; body %q", resp.Request.Method, resp.Request.URL, resp.StatusCode, want, b)
	}
}

func (ts *testServer) uploadFixtures(t *testing.T, names ...string) {
	for _, n := range names {
		resp := ts.upload(t, "keytext="+dirmngrEscape(armored(t, fixtureBytes(t, n))), "application/x-www-form-urlencoded")
		mustStatus(t, resp, 200)
		resp.Body.Close()
	}
}

func TestUploadThenLookupEveryWay(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.uploadFixtures(t, "keys-a.pgp", "keys-b.pgp")
	for _, k := range append(fixtureKeys(t, "keys-a.pgp"), fixtureKeys(t, "keys-b.pgp")...) {
		fpr := k.Fingerprint().String()
		searches := []string{"0x" + fpr, fpr, strings.ToLower(fpr), "0x" + k.KeyID().String(), fmt.Sprintf("0x%08X", k.KeyID().Short())}
		for _, sk := range k.SubkeyIDs() {
			searches = append(searches, "0x"+sk.Fingerprint.String(), "0x"+sk.KeyID.String())
		}
		for _, search := range searches {
			resp, body := ts.get(t, "/pks/lookup?op=get&options=mr&search="+url.QueryEscape(search))
			if resp.StatusCode != 200 {
				t.Fatalf("get %s: %d %s", search, resp.StatusCode, body)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/pgp-keys; charset=UTF-8" {
				t.Errorf("Content-Type %q", got)
			}
			if resp.Header.Get("X-HKP-Results-Count") != "1" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("headers %v", resp.Header)
			}
			if !strings.HasPrefix(body, "-----BEGIN PGP PUBLIC KEY BLOCK-----\n") || !strings.HasSuffix(body, "-----END PGP PUBLIC KEY BLOCK-----\n") {
				t.Fatalf("get %s: not one armor block with a final newline:\n%s", search, body)
			}
			raws, err := pgpkey.Decode([]byte(body))
			if err != nil || len(raws) != 1 {
				t.Fatalf("get %s: %d keys, %v", search, len(raws), err)
			}
			got, _ := pgpkey.ParseKey(raws[0])
			if got.Hash() != k.Hash() {
				t.Fatalf("get %s: served hash %s, want %s", search, got.Hash(), k.Hash())
			}
		}
		// hget by SKS hash.
		resp, _ := ts.get(t, "/pks/lookup?op=hget&options=mr&search="+k.Hash().String())
		mustStatus(t, resp, 200)
	}
}

func TestIndexMRWordSearch(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.uploadFixtures(t, "keys-a.pgp")
	resp, body := ts.get(t, "/pks/lookup?op=index&options=mr&fingerprint=on&search=alice%40example.org")
	mustStatus(t, resp, 200)
	alice := fixtureKeys(t, "keys-a.pgp")[0]
	if !strings.HasPrefix(body, "info:1:1\npub:"+alice.Fingerprint().String()+":22:") {
		t.Fatalf("index body:\n%s", body)
	}
	if !strings.Contains(body, "\nuid:Alice Ed <alice@example.org>:") {
		t.Errorf("index lacks Alice's uid line:\n%s", body)
	}
	if got := resp.Header.Get("X-HKP-Results-Count"); got != "1" {
		t.Errorf("X-HKP-Results-Count %q", got)
	}
	// No op means index (SKS); exact=on with an address finds it too.
	resp, body = ts.get(t, "/pks/lookup?search=alice&options=mr")
	mustStatus(t, resp, 200)
	resp, _ = ts.get(t, "/pks/lookup?op=get&options=mr&exact=on&search=%3Calice%40example.org%3E")
	mustStatus(t, resp, 200)
	// HTML index and vindex render.
	for _, op := range []string{"index", "vindex"} {
		resp, body = ts.get(t, "/pks/lookup?op="+op+"&search=alice&fingerprint=on&hash=on")
		mustStatus(t, resp, 200)
		if !strings.Contains(body, "<html") || !strings.Contains(body, "Alice") {
			t.Errorf("%s page:\n%s", op, body)
		}
	}
}

func TestNotFoundAndErrors(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.uploadFixtures(t, "keys-a.pgp")
	cases := []struct {
		path   string
		status int
		text   string
	}{
		{"/pks/lookup?op=get&search=0xDEADBEEFDEADBEEF", 404, "No keys found"},
		{"/pks/lookup?op=index&options=mr&search=nosuchword", 404, "No keys found"},
		{"/pks/lookup?op=get&search=0xZZZZ", 400, "hexadecimal"},
		{"/pks/lookup?op=get&search=0x123", 400, "hex digits"},
		{"/pks/lookup?op=get", 400, "missing search"},
		{"/pks/lookup?op=hget&search=nothex", 400, "hash"},
		{"/pks/lookup?op=hget&search=00000000000000000000000000000000", 404, "No keys found"},
		{"/pks/lookup?op=get&search=x&limit=abc", 400, "limit"},
		{"/nosuchpage", 404, "Page not found"},
	}
	for _, c := range cases {
		resp, body := ts.get(t, c.path)
		if resp.StatusCode != c.status || !strings.Contains(body, c.text) {
			t.Errorf("GET %s: %d %q, want %d containing %q", c.path, resp.StatusCode, body, c.status, c.text)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("GET %s: no CORS header on error", c.path)
		}
		if !strings.HasPrefix(resp.Header.Get("Server"), "grapevine") {
			t.Errorf("GET %s: Server %q", c.path, resp.Header.Get("Server"))
		}
	}
	// SKS fails word searches with too many matches (>= max_matches).
	ts2 := newTestServer(t, func(c *hkp.Config) { c.MaxMatches = 2 })
	ts2.uploadFixtures(t, "keys-a.pgp")
	resp, body := ts2.get(t, "/pks/lookup?op=index&options=mr&search=example")
	if resp.StatusCode != 500 || !strings.Contains(body, "Too many responses") {
		t.Errorf("too many: %d %q", resp.StatusCode, body)
	}
}

func TestUploadEncodings(t *testing.T) {
	keyBytes := fixtureBytes(t, "grace.pgp")
	arm := armored(t, keyBytes)
	sequoiaEscape := strings.NewReplacer(" ", "%20", "\n", "%0A", "+", "%2B", "/", "%2F", "-", "%2D")
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("keytext", arm)
	mw.Close()
	cases := []struct {
		name, body, ctype string
	}{
		{"dirmngr", "keytext=" + dirmngrEscape(arm), "application/x-www-form-urlencoded"},
		{"sequoia unencoded =", "keytext=" + sequoiaEscape.Replace(arm), "application/x-www-form-urlencoded"},
		{"form with charset and options", "options=nm&keytext=" + url.QueryEscape(arm), "application/x-www-form-urlencoded; charset=UTF-8"},
		{"multipart", mp.String(), mw.FormDataContentType()},
		{"raw armor", arm, "application/pgp-keys"},
		{"binary", string(keyBytes), "application/pgp-keys"},
		{"missing CRC", "keytext=" + url.QueryEscape(dropCRC(arm)), "application/x-www-form-urlencoded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts := newTestServer(t, nil)
			resp := ts.upload(t, c.body, c.ctype)
			mustStatus(t, resp, 200)
			resp.Body.Close()
			if got := ts.log.LastIndex(); got != 1 {
				t.Fatalf("log has %d events after one upload", got)
			}
			resp, _ = ts.get(t, "/pks/lookup?op=get&options=mr&search=grace%40example.org")
			mustStatus(t, resp, 200)
		})
	}
}

func dropCRC(arm string) string {
	var out []string
	for _, l := range strings.Split(arm, "\n") {
		if strings.HasPrefix(l, "=") && len(l) == 5 {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func TestUploadIsDurableAndIdempotent(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.uploadFixtures(t, "keys-a.pgp")
	if got := ts.log.LastIndex(); got != 3 {
		t.Fatalf("3 keys uploaded, log has %d events", got)
	}
	// The same keys again: 200, nothing appended.
	for i := 0; i < 5; i++ {
		ts.uploadFixtures(t, "keys-a.pgp")
	}
	if got := ts.log.LastIndex(); got != 3 {
		t.Fatalf("repeated uploads grew the log to %d events", got)
	}
}

func TestUploadRejects(t *testing.T) {
	ts := newTestServer(t, func(c *hkp.Config) { c.MaxPostBytes = 64 << 10 })
	cases := []struct {
		name, body string
		status     int
		text       string
	}{
		{"no keytext", "foo=bar", 400, "keytext"},
		{"garbage", "keytext=hello", 400, "no OpenPGP public key"},
		{"armor header cut short", "keytext=" + url.QueryEscape("-----BEGIN PGP "), 400, "no OpenPGP public key"},
		{"bad CRC", "keytext=" + url.QueryEscape(badCRC(armored(t, fixtureBytes(t, "grace.pgp")))), 400, ""},
		{"secret key", "keytext=" + url.QueryEscape(armored(t, []byte{0x95, 0x00, 0x03, 0x04, 0x00, 0x00})), 422, "secret key material refused"},
		{"too large", "keytext=" + strings.Repeat("A", 70<<10), 413, "larger than"},
	}
	for _, c := range cases {
		resp := ts.upload(t, c.body, "application/x-www-form-urlencoded")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(b), c.text) {
			t.Errorf("%s: %d %q, want %d containing %q", c.name, resp.StatusCode, b, c.status, c.text)
		}
	}
	if got := ts.log.LastIndex(); got != 0 {
		t.Fatalf("rejected uploads appended %d events", got)
	}
}

func badCRC(arm string) string {
	lines := strings.Split(arm, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "=") && len(l) == 5 {
			if l[1] == 'A' {
				lines[i] = "=B" + l[2:]
			} else {
				lines[i] = "=A" + l[2:]
			}
		}
	}
	return strings.Join(lines, "\n")
}

// TestRevocationCertificateMerges uploads a key, then a bare revocation
// certificate made by its owner: the key is then served revoked.
func TestRevocationCertificateMerges(t *testing.T) {
	ts := newTestServer(t, nil)
	cfg := &packet.Config{Time: func() time.Time { return time.Unix(1700000000, 0) }}
	e, err := openpgp.NewEntity("Rita Revoke", "", "rita@example.org", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	if err := e.Serialize(&pub); err != nil {
		t.Fatal(err)
	}
	ts.upload(t, "keytext="+url.QueryEscape(armored(t, pub.Bytes())), "application/x-www-form-urlencoded").Body.Close()
	_, body := ts.get(t, "/pks/lookup?op=index&options=mr&search=rita")
	if strings.Contains(strings.Split(body, "\n")[1], ":r") {
		t.Fatalf("key revoked before the revocation was uploaded:\n%s", body)
	}
	if err := e.RevokeKey(packet.KeyCompromised, "test", cfg); err != nil {
		t.Fatal(err)
	}
	var rev bytes.Buffer
	if err := e.Revocations[0].Serialize(&rev); err != nil {
		t.Fatal(err)
	}
	resp := ts.upload(t, "keytext="+url.QueryEscape(armored(t, rev.Bytes())), "application/x-www-form-urlencoded")
	mustStatus(t, resp, 200)
	resp.Body.Close()
	_, body = ts.get(t, "/pks/lookup?op=index&options=mr&search=rita")
	pubLine := strings.Split(body, "\n")[1]
	if !strings.HasSuffix(pubLine, ":r") {
		t.Fatalf("after the revocation upload the pub line is %q, want the r flag", pubLine)
	}
	// A revocation for a key we do not have is refused, nothing stored.
	other, _ := openpgp.NewEntity("Other", "", "other@example.org", cfg)
	other.RevokeKey(packet.KeyRetired, "", cfg)
	var rev2 bytes.Buffer
	other.Revocations[0].Serialize(&rev2)
	before := ts.log.LastIndex()
	resp = ts.upload(t, "keytext="+url.QueryEscape(armored(t, rev2.Bytes())), "application/x-www-form-urlencoded")
	if resp.StatusCode != 422 {
		t.Errorf("revocation of an unknown key: status %d, want 422", resp.StatusCode)
	}
	resp.Body.Close()
	if ts.log.LastIndex() != before {
		t.Error("revocation of an unknown key was appended")
	}
}

// TestHashqueryAsSKSSendsIt replays the exact request a real SKS sent
// (fixture hashquery-3keys) over a raw TCP connection.
func TestHashqueryAsSKSSendsIt(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.uploadFixtures(t, "keys-b.pgp")
	req, err := os.ReadFile(testenv.SharedFile(t, "fixtures/sks/hashquery-3keys.request.bin"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(req)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Proto != "HTTP/1.0" || resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) > 0 {
		t.Fatalf("status %d proto %s length %d/%d te %v", resp.StatusCode, resp.Proto, resp.ContentLength, len(body), resp.TransferEncoding)
	}
	if resp.Header.Get("Content-Type") != "pgp/keys" {
		t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	n := binary.BigEndian.Uint32(body)
	if n != 3 {
		t.Fatalf("%d keys returned, want 3", n)
	}
	want := map[pgpkey.KeyHash]bool{}
	for _, k := range fixtureKeys(t, "keys-b.pgp") {
		want[k.Hash()] = true
	}
	b := body[4:]
	for i := 0; i < 3; i++ {
		l := binary.BigEndian.Uint32(b)
		k, err := projections.ParseEventKey(b[4 : 4+l])
		if err != nil || !want[k.Hash()] {
			t.Fatalf("key %d: %v, hash wanted: %v", i, err, err == nil && want[k.Hash()])
		}
		b = b[4+l:]
	}
	if string(b) != "\r\n" {
		t.Errorf("trailer %q, want \\r\\n as SKS sends", b)
	}
}

func TestHTTP10WithoutHostAndOptions(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.uploadFixtures(t, "grace.pgp")
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /pks/lookup?op=get&options=mr&search=grace HTTP/1.0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(body)) || resp.Proto != "HTTP/1.0" {
		t.Fatalf("HTTP/1.0 get: %d %s length %d/%d", resp.StatusCode, resp.Proto, resp.ContentLength, len(body))
	}
	req, _ := http.NewRequest("OPTIONS", ts.URL+"/pks/add", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("OPTIONS: %d %v", resp.StatusCode, resp.Header)
	}
	req, _ = http.NewRequest("HEAD", ts.URL+"/pks/lookup?op=get&options=mr&search=grace", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HEAD: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest("PUT", ts.URL+"/pks/add", nil)
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("PUT: %d, want 405", resp.StatusCode)
	}
}

func TestStatsPageCountsLive(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.uploadFixtures(t, "keys-a.pgp", "keys-b.pgp")
	resp, body := ts.get(t, "/pks/lookup?op=stats")
	mustStatus(t, resp, 200)
	if !strings.Contains(body, "<h2>Statistics</h2><p>Total number of keys: 6</p>") {
		t.Errorf("stats page lacks the live key count:\n%s", body)
	}
	resp, body = ts.get(t, "/pks/lookup?op=stats&options=mr")
	mustStatus(t, resp, 200)
	if !strings.Contains(body, `"total":6`) && !strings.Contains(body, `"total": 6`) {
		t.Errorf("JSON stats: %s", body)
	}
	resp, body = ts.get(t, "/pks/health")
	mustStatus(t, resp, 200)
}

// TestRequestTraceRegion: while an execution trace is taken, each request
// is a region named "hkp request", which `go tool trace` uses to show where
// the slowest requests spent their time (docs/benchmarks.md).
func TestRequestTraceRegion(t *testing.T) {
	ts := newTestServer(t, nil)
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Skipf("tracing already on: %v", err)
	}
	resp, err := http.Get(ts.URL + "/pks/lookup?op=stats")
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	trace.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf.Bytes(), []byte("hkp request")) {
		t.Fatalf("a %d-byte trace of a request names no region \"hkp request\"", buf.Len())
	}
}
