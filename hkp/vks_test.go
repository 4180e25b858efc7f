package hkp_test

// Tests of the VKS API against keys.openpgp.org's documentation (Hagrid's
// /about/api page): paths, uppercase hex without 0x, ASCII-armored
// application/pgp-keys answers, plain-text GET errors with 404 for no key,
// JSON {"error": …} for failed POSTs, and the upload answer's key_fpr,
// status and token.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

func httptestServer(t *testing.T, h http.Handler) *httptest.Server {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// vksKeytext is an upload body: {"keytext": keytext}.
func vksKeytext(t *testing.T, keytext string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]string{"keytext": keytext})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// armoredKeys decodes a VKS answer: one armor block.
func armoredKeys(t *testing.T, resp *http.Response, body []byte) []*pgpkey.Key {
	t.Helper()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", resp.Request.URL, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/pgp-keys" {
		t.Errorf("%s: Content-Type %q, want application/pgp-keys", resp.Request.URL, ct)
	}
	if !strings.HasPrefix(string(body), "-----BEGIN PGP PUBLIC KEY BLOCK-----\n") {
		t.Fatalf("%s: not ASCII armor: %q", resp.Request.URL, body)
	}
	raws, err := pgpkey.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	var keys []*pgpkey.Key
	for _, r := range raws {
		k, err := pgpkey.ParseKey(r)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

func TestVKSLookups(t *testing.T) {
	f := newV2Fixture(t, nil)
	ts := f.ts
	a, six := f.alice.Fingerprint().String(), f.v6.Fingerprint().String()
	sub := f.alice.SubkeyIDs()[0]
	ok := []struct {
		path string
		want string
	}{
		{"/vks/v1/by-fingerprint/" + a, a},
		{"/vks/v1/by-fingerprint/" + sub.Fingerprint.String(), a}, // "may refer to the primary key, or any subkey"
		{"/vks/v1/by-fingerprint/" + six, six},                    // a client naming a v6 fingerprint takes v6
		{"/vks/v1/by-keyid/" + f.alice.KeyID().String(), a},
		{"/vks/v1/by-keyid/" + sub.KeyID.String(), a},
		{"/vks/v1/by-keyid/" + f.v6.KeyID().String(), six},
		{"/vks/v1/by-email/alice%40example.org", a}, // URI-encoded; the v6 key with this address stays out (mail clients)
		{"/vks/v1/by-email/alice@example.org", a},
		{"/vks/v1/by-email/ALICE@example.org", a},
		{"/vks/v1/by-email/alice2@example.net", a},
	}
	for _, c := range ok {
		resp, body := ts.do(t, "GET", c.path, "", nil)
		keys := armoredKeys(t, resp, body)
		if len(keys) != 1 || keys[0].Fingerprint().String() != c.want {
			t.Errorf("%s: %v, want %s", c.path, fprs(keys), c.want)
		}
	}
	bad := []struct {
		path string
		code int
	}{
		{"/vks/v1/by-fingerprint/" + strings.ToLower(a), 400}, // "Hexadecimal digits MUST be uppercase"
		{"/vks/v1/by-fingerprint/0x" + a, 400},                // "MUST NOT be prefixed with 0x"
		{"/vks/v1/by-fingerprint/" + a[:20], 400},
		{"/vks/v1/by-keyid/" + strings.ToLower(f.alice.KeyID().String()), 400},
		{"/vks/v1/by-keyid/" + a, 400},
		{"/vks/v1/by-email/alice", 400},
		{"/vks/v1/by-email/alice%20ed%20%3Calice@example.org%3E", 400},
		{"/vks/v1/by-fingerprint/" + strings.Repeat("AB", 20), 404},
		{"/vks/v1/by-keyid/0123456789ABCDEF", 404},
		{"/vks/v1/by-email/nobody@example.invalid", 404},
		{"/vks/v1/by-email/alice@example.or", 404}, // "Only exact matches are accepted"
		{"/vks/v1/by-fingerprint/", 400},
		{"/vks/v1/by-fingerprint", 404},
		{"/vks/v1/lookup", 404},
	}
	for _, c := range bad {
		resp, body := ts.do(t, "GET", c.path, "", nil)
		if resp.StatusCode != c.code {
			t.Errorf("%s: %d %s, want %d", c.path, resp.StatusCode, body, c.code)
		}
		// "The response will be a plaintext error message."
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || len(body) < 5 {
			t.Errorf("%s: error answer %q %q, want a plain-text message", c.path, ct, body)
		}
	}
	resp, _ := ts.do(t, "POST", "/vks/v1/by-email/alice@example.org", "", nil)
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD, OPTIONS" {
		t.Errorf("POST by-email: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestVKSUpload(t *testing.T) {
	ts := newTestServer(t, nil)
	_, bin := genKey(t, 30, false, "Vera Vks", "vera@example.org")
	k := parseKey(t, bin)
	fpr := k.Fingerprint().String()
	before := ts.log.LastIndex()

	// Documented request and answer shapes.
	resp, body := ts.do(t, "POST", "/vks/v1/upload", "application/json", vksKeytext(t, armored(t, bin)))
	mustStatus(t, resp, 200)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var up map[string]any
	if err := json.Unmarshal(body, &up); err != nil {
		t.Fatal(err)
	}
	if len(up) != 3 || up["key_fpr"] != fpr || up["token"] == "" {
		t.Errorf("upload answer %s: want key_fpr %s, status and token", body, fpr)
	}
	if st, _ := up["status"].(map[string]any); len(st) != 1 || st["vera@example.org"] != "published" {
		t.Errorf("status %v, want vera@example.org published (no e-mail verification here)", up["status"])
	}
	if ts.log.LastIndex() != before+1 {
		t.Errorf("log index %d after the upload, want %d", ts.log.LastIndex(), before+1)
	}
	// Served at once, by VKS and by HKP v1.
	r2, b2 := ts.do(t, "GET", "/vks/v1/by-email/vera@example.org", "", nil)
	if keys := armoredKeys(t, r2, b2); len(keys) != 1 || keys[0].Hash() != k.Hash() {
		t.Errorf("uploaded key not served by e-mail")
	}
	r3, _ := ts.get(t, "/pks/lookup?op=get&options=mr&search=0x"+fpr)
	mustStatus(t, r3, 200)

	// Again: same answer, nothing appended.
	resp, body2 := ts.do(t, "POST", "/vks/v1/upload", "application/json", vksKeytext(t, armored(t, bin)))
	mustStatus(t, resp, 200)
	if string(body2) != string(body) || ts.log.LastIndex() != before+1 {
		t.Errorf("re-upload: %s (log %d)", body2, ts.log.LastIndex())
	}
	// keytext may be plain base64 of the binary key.
	_, bin6 := genKey(t, 31, true, "Vic Six", "vic@example.org")
	resp, body = ts.do(t, "POST", "/vks/v1/upload", "application/json", vksKeytext(t, base64.StdEncoding.EncodeToString(bin6)))
	mustStatus(t, resp, 200)
	var res hkp.VKSUploadResult
	json.Unmarshal(body, &res)
	if res.KeyFpr != parseKey(t, bin6).Fingerprint().String() || len(res.KeyFpr) != 64 || res.Status["vic@example.org"] != "published" {
		t.Errorf("base64 v6 upload: %s", body)
	}

	// request-verify: nothing to send, the same status back.
	rv, _ := json.Marshal(map[string]any{"token": up["token"], "addresses": []string{"vera@example.org"}, "locale": []string{"de_CH"}})
	resp, body = ts.do(t, "POST", "/vks/v1/request-verify", "application/json", rv)
	mustStatus(t, resp, 200)
	json.Unmarshal(body, &res)
	if res.KeyFpr != fpr || res.Status["vera@example.org"] != "published" || res.Token != up["token"] {
		t.Errorf("request-verify: %s", body)
	}

	// Failed POSTs answer JSON {"error": …}.
	_, two := genKey(t, 32, false, "Two", "two@example.org")
	e3, _ := genKey(t, 33, false, "Sec", "sec@example.org")
	var secBin bytes.Buffer
	e3.SerializePrivate(&secBin, nil)
	sec := base64.StdEncoding.EncodeToString(secBin.Bytes())
	bad := []struct {
		path, ct string
		body     []byte
		code     int
	}{
		{"/vks/v1/upload", "application/x-www-form-urlencoded", []byte("keytext=x"), 415},
		{"/vks/v1/upload", "application/json", []byte(`{"keytext": 5}`), 400},
		{"/vks/v1/upload", "application/json", []byte(`{"key": "x"}`), 400},
		{"/vks/v1/upload", "application/json", []byte(`not json`), 400},
		{"/vks/v1/upload", "application/json", vksKeytext(t, "!!! not base64 !!!"), 400},
		{"/vks/v1/upload", "application/json", vksKeytext(t, armored(t, append(append([]byte{}, bin...), two...))), 400},
		{"/vks/v1/upload", "application/json", vksKeytext(t, sec), 422},
		{"/vks/v1/request-verify", "application/json", []byte(`{"token": "bm9wZQ", "addresses": []}`), 400},
		{"/vks/v1/request-verify", "application/json", []byte(`{"token": "` + base64.RawURLEncoding.EncodeToString(make([]byte, 20)) + `"}`), 404},
	}
	for _, c := range bad {
		resp, body := ts.do(t, "POST", c.path, c.ct, c.body)
		var e map[string]string
		if resp.StatusCode != c.code || resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &e) != nil || len(e) != 1 || e["error"] == "" {
			t.Errorf("%s %s %.40q: %d %q %s, want %d with a JSON error", c.path, c.ct, c.body, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.code)
		}
	}
	resp, body = ts.do(t, "GET", "/vks/v1/upload", "", nil)
	if resp.StatusCode != 405 || !strings.Contains(string(body), `"error"`) {
		t.Errorf("GET upload: %d %s", resp.StatusCode, body)
	}
}
