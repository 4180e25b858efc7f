package hkp_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/hkp"
)

// TestGetCachedEqualsUncached answers op=get for every fixture key, by
// every fingerprint form and option, from a server with the armor cache
// (asked twice: the second answer comes from the cache) and from one
// without: the three answers are byte for byte the same.
func TestGetCachedEqualsUncached(t *testing.T) {
	cached := newTestServer(t, nil)
	plain := newTestServer(t, func(c *hkp.Config) { c.ArmorCacheBytes = 0 })
	files := []string{"keys-a.pgp", "keys-b.pgp", "grace.pgp"}
	cached.uploadFixtures(t, files...)
	plain.uploadFixtures(t, files...)
	n := 0
	for _, f := range files {
		for _, k := range fixtureKeys(t, f) {
			fpr := k.Fingerprint().String()
			for _, path := range []string{
				"/pks/lookup?op=get&options=mr&search=0x" + fpr,
				"/pks/lookup?op=get&search=0x" + fpr,
				"/pks/lookup?op=get&options=mr&search=" + fpr,
				"/pks/lookup?op=get&options=mr&limit=0&search=0x" + fpr,
			} {
				_, want := plain.get(t, path)
				_, first := cached.get(t, path)
				_, second := cached.get(t, path)
				if first != want || second != want {
					t.Fatalf("%s: cached answers differ from the uncached one:\nfirst  %q\nsecond %q\nwant   %q", path, first, second, want)
				}
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("no fixture keys")
	}
}

// TestGetCacheNeverStale fills the armor cache with a key, then changes
// the key three ways; each get answers the change at once: an update
// (revocation certificate), a new hostname (the Comment header), and an
// admin deletion.
func TestGetCacheNeverStale(t *testing.T) {
	ts := newTestServer(t, nil)
	cfg := &packet.Config{Time: func() time.Time { return time.Unix(1700000000, 0) }}
	e, err := openpgp.NewEntity("Cathy Cache", "", "cathy@example.org", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	if err := e.Serialize(&pub); err != nil {
		t.Fatal(err)
	}
	fpr := hex.EncodeToString(e.PrimaryKey.Fingerprint)
	path := "/pks/lookup?op=get&options=mr&search=0x" + fpr
	mustStatus(t, ts.upload(t, "keytext="+url.QueryEscape(armored(t, pub.Bytes())), "application/x-www-form-urlencoded"), 200)
	_, before := ts.get(t, path)
	if _, again := ts.get(t, path); again != before || !strings.Contains(before, "Comment: Hostname: keys.test\n") {
		t.Fatalf("get answers differ or lack the hostname:\n%s\n%s", before, again)
	}
	if revoked(t, before) {
		t.Fatal("key revoked before the revocation was uploaded")
	}

	if err := e.RevokeKey(packet.KeyCompromised, "test", cfg); err != nil {
		t.Fatal(err)
	}
	var rev bytes.Buffer
	if err := e.Revocations[0].Serialize(&rev); err != nil {
		t.Fatal(err)
	}
	mustStatus(t, ts.upload(t, "keytext="+url.QueryEscape(armored(t, rev.Bytes())), "application/x-www-form-urlencoded"), 200)
	if _, after := ts.get(t, path); !revoked(t, after) {
		t.Fatalf("after the revocation upload get still serves the key unrevoked:\n%s", after)
	}

	conf := hkp.DefaultConfig()
	conf.Hostname = "other.test"
	if err := ts.hkp.Reload(conf); err != nil {
		t.Fatal(err)
	}
	if _, after := ts.get(t, path); !strings.Contains(after, "Comment: Hostname: other.test\n") || strings.Contains(after, "keys.test") {
		t.Fatalf("after a reload the armor header is not the new hostname's:\n%s", after)
	}

	idx, err := ts.log.Append(context.Background(), &eventlog.Event{Kind: eventlog.KindKeyDeleted, Origin: eventlog.OriginAdmin, Time: time.Now(), Target: e.PrimaryKey.Fingerprint, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ts.store.WaitApplied(ctx, idx); err != nil {
		t.Fatal(err)
	}
	if resp, body := ts.get(t, path); resp.StatusCode != 404 {
		t.Fatalf("after deletion: status %d, want 404; body %q", resp.StatusCode, body)
	}
}

// revoked reports whether the armored key of a get answer carries a key
// revocation.
func revoked(t *testing.T, arm string) bool {
	t.Helper()
	el, err := openpgp.ReadArmoredKeyRing(strings.NewReader(arm))
	if err != nil || len(el) != 1 {
		t.Fatalf("get answer does not hold one key (%v):\n%s", err, arm)
	}
	return len(el[0].Revocations) > 0
}
