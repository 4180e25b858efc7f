package hkp_test

// Tests of the HKP v2 endpoints (draft-ietf-openpgp-hkp). The full draft
// text was not readable where this was written; the expectations below
// come from the normative sentences other implementations quote with their
// section numbers (draft-gallagher-openpgp-hkp-10, which draft-ietf-00
// replaced) and from Hockeypuck master, written by the draft's editor.
// docs/compat.md lists where the two disagree and what we chose.

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// seededRand makes go-crypto key generation reproducible.
type seededRand struct{ r *rand.ChaCha8 }

func (s seededRand) Read(p []byte) (int, error) { return s.r.Read(p) }

var genTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func genConfig(seed byte, v6 bool) *packet.Config {
	var s [32]byte
	s[0] = seed
	c := &packet.Config{Rand: seededRand{rand.NewChaCha8(s)}, Time: func() time.Time { return genTime }, Algorithm: packet.PubKeyAlgoEdDSA}
	if v6 {
		c.V6Keys = true
		c.Algorithm = packet.PubKeyAlgoEd25519
	}
	return c
}

// genKey makes a key with one user ID, as go-crypto serialises it; v6 true
// gives an RFC 9580 v6 key.
func genKey(t *testing.T, seed byte, v6 bool, name, email string) (*openpgp.Entity, []byte) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", email, genConfig(seed, v6))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return e, b.Bytes()
}

func parseKey(t *testing.T, b []byte) *pgpkey.Key {
	t.Helper()
	raws, err := pgpkey.Decode(b)
	if err != nil || len(raws) != 1 {
		t.Fatalf("decode: %d keys, %v", len(raws), err)
	}
	k, err := pgpkey.ParseKey(raws[0])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (ts *testServer) do(t *testing.T, method, path, contentType string, body []byte, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

// v2Submit posts a binary bundle to /pks/v2/certs and decodes the answer.
func (ts *testServer) v2Submit(t *testing.T, bundle []byte) hkp.V2SubmissionResult {
	t.Helper()
	// The draft's media type (§7.1); Hockeypuck's application/pgp is
	// posted by the error and size tests below.
	resp, body := ts.do(t, "POST", "/pks/v2/certs", "application/pgp-keys;armor=no", bundle)
	if resp.StatusCode != 200 {
		t.Fatalf("POST /pks/v2/certs: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("submission answer Content-Type %q, want application/json", ct)
	}
	var res hkp.V2SubmissionResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("submission answer %s: %v", body, err)
	}
	return res
}

// v2Fixture is a server holding the SKS test keys (via /pks/add) and a v6
// key that shares Alice's address (via POST /pks/v2/certs).
type v2Fixture struct {
	ts    *testServer
	v4    []*pgpkey.Key // keys-a.pgp
	alice *pgpkey.Key   // keys-a.pgp's first key: alice@example.org, alice2@example.net
	v6    *pgpkey.Key
	v6bin []byte
}

func newV2Fixture(t *testing.T, mutate func(*hkp.Config)) *v2Fixture {
	t.Helper()
	ts := newTestServer(t, mutate)
	ts.uploadFixtures(t, "keys-a.pgp")
	_, v6bin := genKey(t, 6, true, "Alice Six", "alice@example.org")
	res := ts.v2Submit(t, v6bin)
	v6 := parseKey(t, v6bin)
	if len(res.Inserted) != 1 || res.Inserted[0].Version != 6 || res.Inserted[0].Fingerprint != strings.ToLower(v6.Fingerprint().String()) {
		t.Fatalf("v6 submission: %+v", res)
	}
	v4 := fixtureKeys(t, "keys-a.pgp")
	return &v2Fixture{ts: ts, v4: v4, alice: v4[0], v6: v6, v6bin: v6bin}
}

// bundleKeys parses a v2 certificate bundle: binary, never armored.
func bundleKeys(t *testing.T, resp *http.Response, body []byte) []*pgpkey.Key {
	t.Helper()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", resp.Request.URL, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/pgp-keys;armor=no" {
		t.Errorf("%s: Content-Type %q, want application/pgp-keys;armor=no (draft-10 §7.1)", resp.Request.URL, ct)
	}
	if bytes.Contains(body, []byte("-----BEGIN PGP")) {
		t.Fatalf("%s: armored bundle; v2 lookups answer binary", resp.Request.URL)
	}
	r := pgpkey.NewReader(bytes.NewReader(body))
	var keys []*pgpkey.Key
	for {
		raw, err := r.Next()
		if errors.Is(err, io.EOF) {
			return keys
		}
		if err != nil {
			t.Fatalf("%s: bundle does not parse: %v", resp.Request.URL, err)
		}
		k, err := pgpkey.ParseKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
}

func fprs(keys []*pgpkey.Key) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.Fingerprint().String())
	}
	slices.Sort(out)
	return out
}

func TestV2ByVFingerprint(t *testing.T) {
	f := newV2Fixture(t, nil)
	a, six := f.alice.Fingerprint().String(), f.v6.Fingerprint().String()
	sub := f.alice.SubkeyIDs()[0].Fingerprint.String()
	cases := []struct {
		path string
		want []string // fingerprints; nil: the status below
		code int
	}{
		{"04" + strings.ToLower(a), []string{a}, 200}, // §5.1.2: one octet of version, then the fingerprint
		{"04" + a, []string{a}, 200},                  // "The hexadecimal digits are not case sensitive"
		{"4/" + a, []string{a}, 200},                  // Hockeypuck's /:v/:fp route
		{"04/" + strings.ToLower(a), []string{a}, 200},
		{"04" + sub, []string{a}, 200}, // a subkey's fingerprint finds its certificate
		{"06" + six, []string{six}, 200},
		{"6/" + six, []string{six}, 200},
		{"05" + six, nil, 404}, // the version is part of the identifier
		{"06" + a, nil, 400},   // a v6 fingerprint has 64 digits
		{"04" + six, nil, 400}, //
		{a, nil, 400},          // no version octet
		{"0x04" + a, nil, 400}, // "without a preceding 0x"
		{"04" + a[:38] + "ZZ", nil, 400},
		{"03" + a[:32], nil, 400},
		{"04" + strings.Repeat("AB", 20), nil, 404},
		{"04/" + a + "/extra", nil, 400},
	}
	for _, c := range cases {
		resp, body := f.ts.do(t, "GET", "/pks/v2/certs/by-vfingerprint/"+c.path, "", nil)
		if c.want == nil {
			if resp.StatusCode != c.code {
				t.Errorf("%s: status %d, want %d (%s)", c.path, resp.StatusCode, c.code, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || len(body) == 0 {
				t.Errorf("%s: error answer %q %q, want a text/plain message", c.path, ct, body)
			}
			continue
		}
		if got := fprs(bundleKeys(t, resp, body)); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.path, got, c.want)
		}
	}
	// The bundle is the stored key itself: the v6 key as submitted.
	resp, body := f.ts.do(t, "GET", "/pks/v2/certs/by-vfingerprint/06"+six, "", nil)
	if got := bundleKeys(t, resp, body); len(got) != 1 || got[0].Hash() != f.v6.Hash() {
		t.Errorf("v6 bundle differs from the submitted key")
	}
}

func TestV2ByKeyID(t *testing.T) {
	f := newV2Fixture(t, nil)
	id := f.alice.KeyID().String()
	resp, body := f.ts.do(t, "GET", "/pks/v2/certs/by-keyid/"+strings.ToLower(id), "", nil)
	if got := fprs(bundleKeys(t, resp, body)); !slices.Equal(got, []string{f.alice.Fingerprint().String()}) {
		t.Errorf("by-keyid %s: %v", id, got)
	}
	resp, body = f.ts.do(t, "GET", "/pks/v2/certs/by-keyid/"+f.alice.SubkeyIDs()[0].KeyID.String(), "", nil)
	if got := fprs(bundleKeys(t, resp, body)); !slices.Equal(got, []string{f.alice.Fingerprint().String()}) {
		t.Errorf("by-keyid of a subkey: %v", got)
	}
	// §5.1.3: "certificates with versions greater than 4 MUST NOT be
	// returned in response to a certs/by-keyid request".
	resp, _ = f.ts.do(t, "GET", "/pks/v2/certs/by-keyid/"+f.v6.KeyID().String(), "", nil)
	mustStatus(t, resp, 404)
	for _, bad := range []string{"0x" + id, id[:8], f.alice.Fingerprint().String(), id + "/x", id[:15] + "G"} {
		resp, _ = f.ts.do(t, "GET", "/pks/v2/certs/by-keyid/"+bad, "", nil)
		if resp.StatusCode != 400 {
			t.Errorf("by-keyid/%s: status %d, want 400", bad, resp.StatusCode)
		}
	}
}

func TestV2ByIdentity(t *testing.T) {
	f := newV2Fixture(t, nil)
	a, six := f.alice.Fingerprint().String(), f.v6.Fingerprint().String()
	cases := []struct {
		identity string
		want     []string
	}{
		{"alice@example.org", []string{a, six}}, // v2 clients take v6 keys
		{"ALICE@Example.ORG", []string{a, six}}, // §5.1.9: not case sensitive
		{"%3Calice@example.org%3E", []string{a, six}},
		{"alice2@example.net", []string{a}},
		{"Alice%20Ed%20%3Calice@example.org%3E", []string{a}}, // a whole user ID
		{"alice%20ed%20%3Calice@example.org%3E", []string{a}},
		{"Alice%20Six%20%3Calice@example.org%3E", []string{six}},
		// §5.1.9: only exact matches.
		{"alice", nil}, {"example.org", nil}, {"alice@example.or", nil}, {"Alice%20Ed", nil},
		{"nobody@example.invalid", nil},
	}
	for _, c := range cases {
		resp, body := f.ts.do(t, "GET", "/pks/v2/certs/by-identity/"+c.identity, "", nil)
		if c.want == nil {
			if resp.StatusCode != 404 {
				t.Errorf("by-identity/%s: status %d, want 404", c.identity, resp.StatusCode)
			}
			continue
		}
		want := slices.Clone(c.want)
		slices.Sort(want)
		if got := fprs(bundleKeys(t, resp, body)); !slices.Equal(got, want) {
			t.Errorf("by-identity/%s: %v, want %v", c.identity, got, want)
		}
	}
}

func TestV2Index(t *testing.T) {
	f := newV2Fixture(t, nil)
	resp, body := f.ts.do(t, "GET", "/pks/v2/index/alice@example.org", "", nil)
	mustStatus(t, resp, 200)
	// §7.1: "MUST set Content-Type: application/json for JSON responses".
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var certs []map[string]any
	if err := json.Unmarshal(body, &certs); err != nil {
		t.Fatalf("index is not a JSON array: %v\n%s", err, body)
	}
	if len(certs) != 2 {
		t.Fatalf("%d certificates, want Alice's v4 and v6 keys:\n%s", len(certs), body)
	}
	rfc3339 := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	byFpr := map[string]map[string]any{}
	for _, c := range certs {
		// §7.1.1: "The only required fields are the version and
		// fingerprint of any key material, and the uidString of any User
		// IDs." Fingerprints are hex "without any 0x prefix"; timestamps
		// are UTC per RFC 3339 §5.6.
		fp, _ := c["fingerprint"].(string)
		if fp == "" || strings.HasPrefix(fp, "0x") || fp != strings.ToLower(fp) {
			t.Errorf("fingerprint %v", c["fingerprint"])
		}
		if _, ok := c["version"].(float64); !ok {
			t.Errorf("%s: no version", fp)
		}
		if cr, _ := c["creation"].(string); !rfc3339.MatchString(cr) {
			t.Errorf("%s: creation %q is not RFC 3339 UTC", fp, cr)
		}
		uids, _ := c["userIDs"].([]any)
		if len(uids) == 0 {
			t.Errorf("%s: no userIDs", fp)
		}
		for _, u := range uids {
			if s, _ := u.(map[string]any)["uidString"].(string); s == "" {
				t.Errorf("%s: user ID without uidString: %v", fp, u)
			}
		}
		for _, sk := range c["subkeys"].([]any) {
			m := sk.(map[string]any)
			if m["version"] == nil || m["fingerprint"] == nil {
				t.Errorf("%s: subkey without version or fingerprint: %v", fp, m)
			}
		}
		byFpr[fp] = c
	}
	a := byFpr[strings.ToLower(f.alice.Fingerprint().String())]
	six := byFpr[strings.ToLower(f.v6.Fingerprint().String())]
	if a == nil || six == nil {
		t.Fatalf("index lacks Alice's v4 or v6 key: %v", byFpr)
	}
	if a["version"].(float64) != 4 || six["version"].(float64) != 6 {
		t.Errorf("versions %v, %v", a["version"], six["version"])
	}
	alg := six["algorithm"].(map[string]any)
	if alg["code"].(float64) != 27 || alg["name"] != "Ed25519" {
		t.Errorf("v6 algorithm %v, want Ed25519 (27)", alg)
	}
	if six["creation"] != genTime.Format(time.RFC3339) {
		t.Errorf("v6 creation %v, want %s", six["creation"], genTime.Format(time.RFC3339))
	}
	var uids []string
	for _, u := range a["userIDs"].([]any) {
		uids = append(uids, u.(map[string]any)["uidString"].(string))
	}
	slices.Sort(uids)
	if !slices.Equal(uids, []string{"Alice Ed <alice@example.org>", "Alice Second <alice2@example.net>"}) {
		t.Errorf("Alice's uidStrings %q", uids)
	}
	// §5.1.5: no match is 404.
	resp, _ = f.ts.do(t, "GET", "/pks/v2/index/nobody@example.invalid", "", nil)
	mustStatus(t, resp, 404)
	resp, _ = f.ts.do(t, "GET", "/pks/v2/index/alice", "", nil)
	mustStatus(t, resp, 404)
}

func TestV2IndexRevokedUserID(t *testing.T) {
	ts := newTestServer(t, nil)
	e, bin := genKey(t, 9, false, "Revoked Rita", "rita@example.org")
	k := parseKey(t, bin)
	rev := &packet.Signature{Version: 4, SigType: packet.SigTypeCertificationRevocation, PubKeyAlgo: e.PrimaryKey.PubKeyAlgo,
		Hash: crypto.SHA256, CreationTime: genTime.Add(time.Hour), IssuerKeyId: &e.PrimaryKey.KeyId}
	if err := rev.SignUserId("Revoked Rita <rita@example.org>", e.PrimaryKey, e.PrivateKey, genConfig(10, false)); err != nil {
		t.Fatal(err)
	}
	var sig bytes.Buffer
	if err := rev.Serialize(&sig); err != nil {
		t.Fatal(err)
	}
	raws, err := pgpkey.Decode(sig.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	k.UIDs[0].Sigs = append(k.UIDs[0].Sigs, raws[0].Packets[0])
	ts.v2Submit(t, k.Marshal())
	resp, body := ts.do(t, "GET", "/pks/v2/index/rita@example.org", "", nil)
	mustStatus(t, resp, 200)
	var certs []hkp.V2IndexCert
	if err := json.Unmarshal(body, &certs); err != nil || len(certs) != 1 || len(certs[0].UserIDs) != 1 {
		t.Fatalf("index %s: %v", body, err)
	}
	if !certs[0].UserIDs[0].IsRevoked || certs[0].IsRevoked {
		t.Errorf("revoked user ID: %+v", certs[0])
	}
	// VKS reports the address as revoked.
	resp, body = ts.do(t, "POST", "/vks/v1/upload", "application/json", vksKeytext(t, armored(t, k.Marshal())))
	mustStatus(t, resp, 200)
	var up hkp.VKSUploadResult
	if err := json.Unmarshal(body, &up); err != nil || up.Status["rita@example.org"] != "revoked" {
		t.Errorf("VKS status %s (%v), want rita@example.org revoked", body, err)
	}
}

func TestV2Routing(t *testing.T) {
	f := newV2Fixture(t, nil)
	ts := f.ts
	// §5.1.7: OPTIONS on a supported category is 200 with Allow: …GET….
	for _, c := range []string{"certs/by-identity", "certs/by-vfingerprint", "certs/by-keyid", "index", "prefixlog"} {
		resp, _ := ts.do(t, "OPTIONS", "/pks/v2/"+c, "", nil)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Allow"), "GET") {
			t.Errorf("OPTIONS %s: %d, Allow %q", c, resp.StatusCode, resp.Header.Get("Allow"))
		}
		// A GET without the identifier path component: 403.
		for _, p := range []string{"/pks/v2/" + c, "/pks/v2/" + c + "/"} {
			resp, _ = ts.do(t, "GET", p, "", nil)
			if resp.StatusCode != 403 {
				t.Errorf("GET %s: %d, want 403", p, resp.StatusCode)
			}
		}
	}
	// §5.2.6: the submission category answers Allow with POST and Accept.
	resp, _ := ts.do(t, "OPTIONS", "/pks/v2/certs", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Allow"), "POST") || !strings.Contains(resp.Header.Get("Accept"), "application/pgp-keys;armor=no") {
		t.Errorf("OPTIONS certs: %d %v", resp.StatusCode, resp.Header)
	}
	// Unsupported categories: 501 (§4.2, §5.1.7), whatever the method.
	for _, m := range []string{"GET", "OPTIONS", "POST", "PUT"} {
		for _, p := range []string{"/pks/v2/canonical/alice@example.org", "/pks/v2/sendtoken", "/pks/v2/certs/by-fingerprint/x", "/pks/v2/"} {
			resp, _ = ts.do(t, m, p, "", nil)
			if resp.StatusCode != 501 {
				t.Errorf("%s %s: %d, want 501", m, p, resp.StatusCode)
			}
		}
	}
	// Wrong methods.
	resp, _ = ts.do(t, "POST", "/pks/v2/index/alice@example.org", "", nil)
	if resp.StatusCode != 405 || !strings.Contains(resp.Header.Get("Allow"), "GET") {
		t.Errorf("POST index: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	resp, _ = ts.do(t, "GET", "/pks/v2/certs", "", nil)
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST, OPTIONS" {
		t.Errorf("GET certs: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// §5.1.8: HEAD answers the headers GET would.
	path := "/pks/v2/certs/by-identity/alice@example.org"
	head, hb := ts.do(t, "HEAD", path, "", nil)
	get, gb := ts.do(t, "GET", path, "", nil)
	if head.StatusCode != 200 || len(hb) != 0 || head.Header.Get("Content-Type") != get.Header.Get("Content-Type") ||
		head.Header.Get("Content-Length") != fmt.Sprint(len(gb)) {
		t.Errorf("HEAD %d %v (%d bytes), GET %v (%d bytes)", head.StatusCode, head.Header, len(hb), get.Header, len(gb))
	}
}

// TestAPIsShareMiddleware checks that the common headers, the rate limit
// and the body limit apply to every v2 and VKS answer, errors included.
func TestAPIsShareMiddleware(t *testing.T) {
	f := newV2Fixture(t, func(c *hkp.Config) { c.MaxPostBytes = 4096 })
	ts := f.ts
	fpr := f.alice.Fingerprint().String()
	paths := []string{
		"/pks/v2/certs/by-vfingerprint/04" + fpr, "/pks/v2/certs/by-keyid/" + f.alice.KeyID().String(),
		"/pks/v2/certs/by-identity/alice@example.org", "/pks/v2/index/alice@example.org", "/pks/v2/index/nobody@example.invalid",
		"/pks/v2/prefixlog/2025-12-31", "/pks/v2/certs/by-keyid/nothex", "/pks/v2/unknown",
		"/vks/v1/by-fingerprint/" + fpr, "/vks/v1/by-keyid/" + f.alice.KeyID().String(), "/vks/v1/by-email/alice%40example.org",
		"/vks/v1/by-fingerprint/" + strings.ToLower(fpr), "/vks/v1/by-email/nobody@example.invalid", "/vks/v1/nothing",
	}
	for _, p := range paths {
		for _, m := range []string{"GET", "OPTIONS"} {
			resp, _ := ts.do(t, m, p, "", nil)
			h := resp.Header
			if h.Get("Access-Control-Allow-Origin") != "*" || h.Get("Server") != "grapevine" || h.Get("Cache-Control") != "no-cache" {
				t.Errorf("%s %s (%d): common headers missing: %v", m, p, resp.StatusCode, h)
			}
		}
	}
	big := bytes.Repeat([]byte{0x99}, 5000)
	resp, _ := ts.do(t, "POST", "/pks/v2/certs", "application/pgp", big)
	mustStatus(t, resp, 413)
	resp, body := ts.do(t, "POST", "/vks/v1/upload", "application/json", []byte(`{"keytext":"`+strings.Repeat("A", 5000)+`"}`))
	mustStatus(t, resp, 413)
	if !bytes.Contains(body, []byte(`"error"`)) {
		t.Errorf("VKS 413 body %q is not a JSON error", body)
	}

	// Rate limit: a client behind the (loopback) proxy gets 429 past its
	// burst on the new paths as on /pks/lookup.
	limited := newTestServer(t, func(c *hkp.Config) { c.RateLimit, c.RateBurst = 0.001, 2 })
	for _, p := range []string{"/pks/v2/index/alice@example.org", "/vks/v1/by-email/alice@example.org"} {
		var codes []int
		for i := 0; i < 3; i++ {
			resp, _ := limited.do(t, "GET", p, "", nil, "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", len(p)))
			codes = append(codes, resp.StatusCode)
		}
		if codes[2] != 429 {
			t.Errorf("%s: statuses %v, want the third limited (429)", p, codes)
		}
	}
}

func TestV2SubmitEncodingsAndErrors(t *testing.T) {
	ts := newTestServer(t, nil)
	_, bin := genKey(t, 20, false, "Sub Mitter", "sub@example.org")
	k := parseKey(t, bin)
	want := hkp.V2CertRef{Version: 4, Fingerprint: strings.ToLower(k.Fingerprint().String())}

	res := ts.v2Submit(t, bin)
	if len(res.Inserted) != 1 || res.Inserted[0] != want || len(res.Updated)+len(res.Ignored)+len(res.Invalid) != 0 {
		t.Errorf("first submission %+v", res)
	}
	// A resubmission carries nothing new.
	res = ts.v2Submit(t, bin)
	if len(res.Ignored) != 1 || res.Ignored[0].Fingerprint != want.Fingerprint || res.Ignored[0].Comment == "" || len(res.Inserted) != 0 {
		t.Errorf("resubmission %+v", res)
	}
	// All five lists are always there.
	resp, body := ts.do(t, "POST", "/pks/v2/certs", "application/pgp-keys", bin)
	mustStatus(t, resp, 200)
	var m map[string]json.RawMessage
	json.Unmarshal(body, &m)
	for _, name := range []string{"inserted", "updated", "deleted", "ignored", "invalid"} {
		if _, ok := m[name]; !ok {
			t.Errorf("answer %s lacks %q", body, name)
		}
	}
	// Multipart with a keytext part (§5.2.5), and armor, are accepted.
	_, bin2 := genKey(t, 21, true, "Multi Part", "multi@example.org")
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	fw, _ := mw.CreateFormFile("keytext", "cert.pgp")
	fw.Write(bin2)
	mw.Close()
	resp, body = ts.do(t, "POST", "/pks/v2/certs", mw.FormDataContentType(), mp.Bytes())
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"version":6`)) {
		t.Errorf("multipart: %d %s", resp.StatusCode, body)
	}
	_, bin3 := genKey(t, 22, false, "Ar Mor", "armor@example.org")
	resp, _ = ts.do(t, "POST", "/pks/v2/certs", "application/pgp", []byte(armored(t, bin3)))
	mustStatus(t, resp, 200)

	// §4.2: 422 for a submission that is not well formed.
	for _, bad := range [][]byte{nil, []byte("\x00not a cert"), []byte("hello")} {
		resp, body := ts.do(t, "POST", "/pks/v2/certs", "application/pgp", bad)
		if resp.StatusCode != 422 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("body %q: %d %s, want 422", bad, resp.StatusCode, body)
		}
	}
	var mp2 bytes.Buffer
	mw2 := multipart.NewWriter(&mp2)
	fw2, _ := mw2.CreateFormFile("other", "x")
	fw2.Write(bin)
	mw2.Close()
	resp, _ = ts.do(t, "POST", "/pks/v2/certs", mw2.FormDataContentType(), mp2.Bytes())
	mustStatus(t, resp, 422)
	resp, _ = ts.do(t, "POST", "/pks/v2/certs", "application/x-www-form-urlencoded", []byte("keytext="+dirmngrEscape(armored(t, bin))))
	mustStatus(t, resp, 415)
	// Secret keys are refused.
	e, _ := genKey(t, 23, false, "Sec Ret", "secret@example.org")
	var sec bytes.Buffer
	e.SerializePrivate(&sec, nil)
	resp, _ = ts.do(t, "POST", "/pks/v2/certs", "application/pgp", sec.Bytes())
	mustStatus(t, resp, 422)
}

// recordingAppender records whether Append had returned, so a test can
// check that an answer came only after the durable append.
type recordingAppender struct {
	hkp.Appender
	done atomic.Bool
	fail bool
}

func (a *recordingAppender) Append(ctx context.Context, events ...*eventlog.Event) (eventlog.Index, error) {
	if a.fail {
		return 0, errors.New("disk on fire")
	}
	i, err := a.Appender.Append(ctx, events...)
	a.done.Store(err == nil)
	return i, err
}

// TestUploadsAreDurableBeforeTheAnswer posts through POST /pks/v2/certs and
// /vks/v1/upload: each answers 200 only after the log's Append returned,
// and a failing append is 503 with nothing served.
func TestUploadsAreDurableBeforeTheAnswer(t *testing.T) {
	log, store, logger := openBackend(t, zerolog.WarnLevel)
	for i, path := range []string{"/pks/v2/certs", "/vks/v1/upload"} {
		for _, fail := range []bool{false, true} {
			app := &recordingAppender{Appender: log, fail: fail}
			cfg := hkp.DefaultConfig()
			cfg.Logger = logger
			cfg.ApplyWait = time.Second
			srv, err := hkp.New(cfg, store, app, nil)
			if err != nil {
				t.Fatal(err)
			}
			ts := &testServer{Server: httptestServer(t, srv), log: log, store: store, hkp: srv}
			_, bin := genKey(t, byte(40+2*i+map[bool]int{false: 0, true: 1}[fail]), false, "Dur Able", "durable@example.org")
			body, ct := bin, "application/pgp"
			if i == 1 {
				body, ct = vksKeytext(t, armored(t, bin)), "application/json"
			}
			resp, rb := ts.do(t, "POST", path, ct, body)
			if fail {
				if resp.StatusCode != 503 {
					t.Errorf("%s with a failing log: %d %s, want 503", path, resp.StatusCode, rb)
				}
				k := parseKey(t, bin)
				if recs, _ := store.ByFingerprint(k.Fingerprint().Bytes()); len(recs) != 0 {
					t.Errorf("%s: key served although its append failed", path)
				}
				continue
			}
			if resp.StatusCode != 200 || !app.done.Load() {
				t.Errorf("%s: status %d, append returned before the answer: %v", path, resp.StatusCode, app.done.Load())
			}
		}
	}
}

func TestV2PrefixLog(t *testing.T) {
	f := newV2Fixture(t, nil)
	last := f.ts.log.LastIndex()
	ev, err := f.ts.log.Read(last)
	if err != nil {
		t.Fatal(err)
	}
	day := ev.Time.UTC().Format(time.DateOnly)
	resp, body := f.ts.do(t, "GET", "/pks/v2/prefixlog/"+day, "", nil)
	mustStatus(t, resp, 200)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	var want []string
	for _, k := range append(slices.Clone(f.v4), f.v6) {
		want = append(want, strings.ToLower(k.Fingerprint().String()[:8]))
	}
	slices.Sort(want)
	if got := string(body); got != strings.Join(want, "\r\n")+"\r\n" {
		t.Errorf("prefix log of %s:\n%q\nwant\n%q", day, got, strings.Join(want, "\r\n")+"\r\n")
	}
	// Other days hold nothing; bad dates are 400.
	for _, other := range []string{ev.Time.UTC().AddDate(0, 0, -1).Format(time.DateOnly), ev.Time.UTC().AddDate(0, 0, 1).Format(time.DateOnly), "1999-01-01"} {
		resp, body := f.ts.do(t, "GET", "/pks/v2/prefixlog/"+other, "", nil)
		if resp.StatusCode != 200 || len(body) != 0 {
			t.Errorf("prefix log of %s: %d %q, want 200 and empty", other, resp.StatusCode, body)
		}
	}
	for _, bad := range []string{"2025-13-01", "20250101", "2025-1-1", "yesterday", day + "/x"} {
		resp, _ := f.ts.do(t, "GET", "/pks/v2/prefixlog/"+bad, "", nil)
		if resp.StatusCode != 400 {
			t.Errorf("prefixlog/%s: %d, want 400", bad, resp.StatusCode)
		}
	}
}

// TestV1KeepsV6KeysOut pins the v1 rule (docs/compat.md "v6 keys"): a v6
// key reaches a /pks/lookup answer only when the search named it by
// fingerprint or long key ID.
func TestV1KeepsV6KeysOut(t *testing.T) {
	f := newV2Fixture(t, nil)
	ts := f.ts
	six := f.v6.Fingerprint().String()
	versions := func(body string) []int {
		raws, err := pgpkey.Decode([]byte(body))
		if err != nil {
			t.Fatalf("decode %q: %v", body, err)
		}
		var v []int
		for _, r := range raws {
			k, _ := pgpkey.ParseKey(r)
			v = append(v, k.Version())
		}
		return v
	}
	for _, q := range []string{"alice@example.org", "alice", "op=get&exact=on&search=alice@example.org"} {
		path := "/pks/lookup?op=get&options=mr&search=" + q
		if strings.HasPrefix(q, "op=") {
			path = "/pks/lookup?options=mr&" + q
		}
		resp, body := ts.get(t, path)
		mustStatus(t, resp, 200)
		if v := versions(body); !slices.Equal(v, []int{4}) {
			t.Errorf("%s: versions %v, want only Alice's v4 key", path, v)
		}
	}
	for _, q := range []string{"0x" + six, six, "0x" + f.v6.KeyID().String()} {
		resp, body := ts.get(t, "/pks/lookup?op=get&options=mr&search="+q)
		mustStatus(t, resp, 200)
		if v := versions(body); !slices.Equal(v, []int{6}) {
			t.Errorf("get %s: versions %v, want the v6 key", q, v)
		}
	}
	// A short key ID names nothing exactly: 404 with "No keys found".
	resp, body := ts.get(t, fmt.Sprintf("/pks/lookup?op=get&options=mr&search=0x%08X", f.v6.KeyID().Short()))
	if resp.StatusCode != 404 || !strings.Contains(body, "No keys found") {
		t.Errorf("short ID of a v6 key: %d %q", resp.StatusCode, body)
	}
	// Indexes, machine-readable and HTML.
	for _, op := range []string{"index&options=mr", "index", "vindex", "vindex&options=mr"} {
		_, body := ts.get(t, "/pks/lookup?op="+op+"&search=alice")
		if strings.Contains(body, six) || strings.Contains(body, f.v6.KeyID().String()[8:]) {
			t.Errorf("op=%s lists the v6 key:\n%s", op, body)
		}
		resp, body = ts.get(t, "/pks/lookup?op="+op+"&fingerprint=on&search=0x"+six)
		if resp.StatusCode != 200 || !strings.Contains(strings.ReplaceAll(body, " ", ""), six) {
			t.Errorf("op=%s by the v6 fingerprint: %d\n%s", op, resp.StatusCode, body)
		}
	}
	// IndexV6 turns the rule off.
	g := newV2Fixture(t, func(c *hkp.Config) { c.IndexV6 = true })
	resp, body = g.ts.get(t, "/pks/lookup?op=get&options=mr&search=alice@example.org")
	mustStatus(t, resp, 200)
	if v := versions(body); len(v) != 2 {
		t.Errorf("IndexV6: versions %v, want both keys", v)
	}
	_, body = g.ts.get(t, "/pks/lookup?op=index&options=mr&search=alice")
	if !strings.Contains(body, "pub:"+six) {
		t.Errorf("IndexV6: MR index lacks the v6 key:\n%s", body)
	}
}
