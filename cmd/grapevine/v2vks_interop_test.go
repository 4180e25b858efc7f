package main

// Real clients against the HKP v2 (/pks/v2) and VKS (/vks/v1) endpoints,
// through the daemon and through nginx as docs/operations.md configures it.
//
// What Debian 12's clients do (checked here):
//   - gpg 2.2 (dirmngr) speaks HKP v1 for --recv-keys/--search-keys/
//     --send-keys; it reaches VKS and v2 only through --fetch-keys <URL>,
//     and imports both the armored VKS answer and the binary v2 bundle.
//   - sq 0.27 `sq keyserver` speaks HKP v1 (/pks/lookup, /pks/add) against
//     any hkp:// or https:// server it is given; it has no VKS client. Its
//     `sq inspect` parses our v2 and VKS answers.
//   - Neither parses v6 keys: gpg 2.2 says "packet(6) with unknown version
//     6" and imports nothing, sq 0.27 "Unsupported Cert". So v6 keys are
//     checked with Go HTTP clients and curl, and v1 keeps them out.

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

type chachaReader struct{ r *rand.ChaCha8 }

func (c chachaReader) Read(p []byte) (int, error) { return c.r.Read(p) }

// v6Key returns a v6 Ed25519 key (binary) with one user ID.
func v6Key(t *testing.T, seed byte, uid string) (*pgpkey.Key, []byte) {
	t.Helper()
	var s [32]byte
	s[0] = seed
	name, email, _ := strings.Cut(uid, " <")
	cfg := &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519, Rand: chachaReader{rand.NewChaCha8(s)},
		Time: func() time.Time { return time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC) }}
	e, err := openpgp.NewEntity(name, "", strings.TrimSuffix(email, ">"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	raws, err := pgpkey.Decode(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	k, err := pgpkey.ParseKey(raws[0])
	if err != nil {
		t.Fatal(err)
	}
	return k, b.Bytes()
}

func httpDo(t *testing.T, method, url, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

func keysIn(t *testing.T, b []byte) []*pgpkey.Key {
	t.Helper()
	raws, err := pgpkey.Decode(b)
	if err != nil {
		t.Fatalf("decode %.80q: %v", b, err)
	}
	var out []*pgpkey.Key
	for _, r := range raws {
		k, err := pgpkey.ParseKey(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k)
	}
	return out
}

// TestV2AndVKSWithRealClients uploads through POST /pks/v2/certs and
// /vks/v1/upload (curl), fetches with gpg (--fetch-keys of VKS and v2 URLs,
// --recv-keys over HKP v1) and sq (keyserver get over HKP v1, inspect of
// v2 and VKS answers), all through nginx, and checks v6 keys over v2, VKS
// and v1 with Go's HTTP client.
func TestV2AndVKSWithRealClients(t *testing.T) {
	curl := testenv.RequireProgram(t, "curl")
	sq := testenv.RequireProgram(t, "sq")
	direct, _ := startDaemon(t)
	front := "http://" + startNginx(t, strings.TrimPrefix(direct, "http://"))
	tmp := t.TempDir()

	alice := fixtureKeyList(t, "keys-a.pgp")[0]
	grace := fixtureKeyList(t, "grace.pgp")[0]
	six, sixBin := v6Key(t, 61, "Alice Six <alice@example.org>")

	// Uploads with curl: the v2 binary bundle and a VKS JSON upload.
	curlOut := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(curl, append([]string{"-sS", "--fail-with-body", "--max-time", "60"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := curlOut("-H", "Content-Type: application/pgp", "--data-binary", "@"+fixture(t, "keys-a.pgp"), front+"/pks/v2/certs")
	if !strings.Contains(out, strings.ToLower(alice.Fingerprint().String())) {
		t.Fatalf("POST /pks/v2/certs: %s", out)
	}
	sixFile := filepath.Join(tmp, "six.pgp")
	os.WriteFile(sixFile, sixBin, 0o644)
	out = curlOut("-H", "Content-Type: application/pgp-keys;armor=no", "--data-binary", "@"+sixFile, front+"/pks/v2/certs")
	if !strings.Contains(out, `"version":6`) {
		t.Fatalf("POST /pks/v2/certs (v6): %s", out)
	}
	graceBin, _ := os.ReadFile(fixture(t, "grace.pgp"))
	upload, _ := json.Marshal(map[string]string{"keytext": string(pgpkey.AppendArmor(nil, nil, graceBin))})
	uploadFile := filepath.Join(tmp, "upload.json")
	os.WriteFile(uploadFile, upload, 0o644)
	out = curlOut("-H", "Content-Type: application/json", "--data-binary", "@"+uploadFile, front+"/vks/v1/upload")
	var up struct {
		KeyFpr string            `json:"key_fpr"`
		Status map[string]string `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &up); err != nil || up.KeyFpr != grace.Fingerprint().String() || up.Status["grace@example.org"] != "published" {
		t.Fatalf("VKS upload answer %s (%v)", out, err)
	}

	// gpg: --fetch-keys of the VKS and v2 URLs (through nginx), and HKP v1
	// for a key that came in through VKS.
	gpgVersion, _ := exec.Command(testenv.RequireProgram(t, "gpg"), "--version").Output()
	for _, u := range []string{
		front + "/vks/v1/by-fingerprint/" + alice.Fingerprint().String(),
		front + "/vks/v1/by-email/alice%40example.org",
		front + "/pks/v2/certs/by-vfingerprint/04" + alice.Fingerprint().String(),
		front + "/pks/v2/certs/by-identity/alice@example.org", // holds the v6 key too: gpg 2.2 chokes, see below
	} {
		g := newGnuPG(t, "hkp://"+strings.TrimPrefix(front, "http://"))
		out, err := g.run("--fetch-keys", u)
		if strings.HasSuffix(u, "by-identity/alice@example.org") {
			if bytes.HasPrefix(bytes.TrimPrefix(gpgVersion, []byte("gpg (GnuPG) ")), []byte("2.2.")) &&
				(err == nil || !strings.Contains(out, "unknown version 6")) {
				t.Errorf("gpg 2.2 imported a v2 bundle holding a v6 key (%v):\n%s", err, out)
			}
			continue
		}
		if err != nil || !strings.Contains(out, "imported: 1") {
			t.Errorf("gpg --fetch-keys %s: %v\n%s", u, err, out)
		}
		if list := g.mustRun("--with-colons", "--list-keys"); !strings.Contains(list, alice.Fingerprint().String()) {
			t.Errorf("gpg --fetch-keys %s: key not in the keyring:\n%s", u, list)
		}
	}
	g := newGnuPG(t, "hkp://"+strings.TrimPrefix(front, "http://"))
	out = g.mustRun("--recv-keys", grace.Fingerprint().String())
	if !strings.Contains(out, "imported: 1") {
		t.Errorf("gpg --recv-keys of the key uploaded by VKS: %s", out)
	}
	// Alice's address also names the v6 key: HKP v1 leaves it out, so gpg's
	// search and fetch by address work.
	out = g.mustRun("--with-colons", "--search-keys", "alice@example.org")
	if strings.Contains(out, six.Fingerprint().String()) || !strings.Contains(out, alice.Fingerprint().String()) {
		t.Errorf("gpg --search-keys alice@example.org:\n%s", out)
	}
	out = g.mustRun("--auto-key-locate", "clear,keyserver", "--locate-keys", "alice@example.org")
	if !strings.Contains(out, alice.Fingerprint().String()) {
		t.Errorf("gpg --locate-keys over HKP with a v6 key on the address:\n%s", out)
	}
	// gpg 2.2 cannot take the v6 key even when asked for it.
	if bytes.Contains(gpgVersion, []byte("GnuPG) 2.2.")) {
		out, err := g.run("--fetch-keys", front+"/vks/v1/by-fingerprint/"+six.Fingerprint().String())
		if err == nil || !strings.Contains(out, "unknown version 6") {
			t.Errorf("gpg 2.2 imported a v6 key? %v\n%s", err, out)
		}
	}

	// sq: keyserver get (HKP v1) of the VKS-uploaded key, and inspect of the
	// v2 binary bundle and the VKS armor.
	sqRun := func(args ...string) (string, error) {
		cmd := exec.Command(sq, args...)
		cmd.Env = append(os.Environ(), "HOME="+tmp)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := sqRun("keyserver", "-p", "insecure", "-s", "hkp://"+strings.TrimPrefix(front, "http://"), "get", "-B", "grace@example.org")
	if err != nil || len(keysIn(t, []byte(out))) != 1 || keysIn(t, []byte(out))[0].Fingerprint() != grace.Fingerprint() {
		t.Errorf("sq keyserver get grace@example.org: %v\n%.200s", err, out)
	}
	out, err = sqRun("keyserver", "-p", "insecure", "-s", "hkp://"+strings.TrimPrefix(front, "http://"), "get", "-B", "alice@example.org")
	if err != nil || len(keysIn(t, []byte(out))) != 1 || keysIn(t, []byte(out))[0].Fingerprint() != alice.Fingerprint() {
		t.Errorf("sq keyserver get alice@example.org (v6 key on the same address): %v\n%.200s", err, out)
	}
	for _, u := range []string{
		"/pks/v2/certs/by-vfingerprint/04" + alice.Fingerprint().String(),
		"/pks/v2/certs/by-keyid/" + alice.KeyID().String(),
		"/vks/v1/by-keyid/" + alice.KeyID().String(),
	} {
		f := filepath.Join(tmp, "answer")
		curlOut("-o", f, front+u)
		out, err := sqRun("inspect", f)
		if err != nil || !strings.Contains(out, alice.Fingerprint().String()) {
			t.Errorf("sq inspect %s: %v\n%s", u, err, out)
		}
	}
	f := filepath.Join(tmp, "six")
	curlOut("-o", f, front+"/vks/v1/by-fingerprint/"+six.Fingerprint().String())
	if ver, _ := sqRun("--version"); strings.HasPrefix(ver, "sq 0.27") {
		if out, err := sqRun("inspect", f); err == nil || !strings.Contains(out, "Unsupported") {
			t.Errorf("sq 0.27 parsed a v6 key? %v\n%s", err, out)
		}
	}

	// v6 with Go's HTTP client: served by v2 and VKS, kept out of v1.
	for _, c := range []struct{ url, ct string }{
		{front + "/pks/v2/certs/by-vfingerprint/06" + six.Fingerprint().String(), "application/pgp-keys;armor=no"},
		{front + "/pks/v2/certs/by-vfingerprint/6/" + strings.ToLower(six.Fingerprint().String()), "application/pgp-keys;armor=no"},
		{front + "/vks/v1/by-fingerprint/" + six.Fingerprint().String(), "application/pgp-keys"},
		{front + "/pks/lookup?op=get&options=mr&search=0x" + six.Fingerprint().String(), "application/pgp-keys; charset=UTF-8"},
	} {
		resp, body := httpDo(t, "GET", c.url, "", nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.ct {
			t.Fatalf("%s: %d %q %.100q", c.url, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if ks := keysIn(t, body); len(ks) != 1 || ks[0].Version() != 6 || ks[0].Hash() != six.Hash() {
			t.Errorf("%s: not the v6 key", c.url)
		}
	}
	resp, body := httpDo(t, "GET", front+"/pks/v2/index/alice@example.org", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"version":6`) || !strings.Contains(string(body), strings.ToLower(six.Fingerprint().String())) {
		t.Errorf("v2 index through nginx: %d %s", resp.StatusCode, body)
	}
	resp, body = httpDo(t, "GET", front+"/pks/lookup?op=get&options=mr&search=alice@example.org", "", nil)
	if ks := keysIn(t, body); resp.StatusCode != 200 || len(ks) != 1 || ks[0].Version() != 4 {
		t.Errorf("v1 get by address: %d, %d keys", resp.StatusCode, len(ks))
	}
	// The prefix log lists today's uploads (through nginx).
	resp, body = httpDo(t, "GET", front+"/pks/v2/prefixlog/"+time.Now().UTC().Format(time.DateOnly), "", nil)
	for _, k := range []*pgpkey.Key{alice, grace, six} {
		if p := strings.ToLower(k.Fingerprint().String()[:8]); resp.StatusCode != 200 || !strings.Contains(string(body), p+"\r\n") {
			t.Errorf("prefix log: %d %q lacks %s", resp.StatusCode, body, p)
		}
	}
}
