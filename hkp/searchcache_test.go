package hkp_test

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// TestSearchAnswersFollowUploads: word and e-mail searches, asked twice so
// that their answers are cached (projections' searchCache), answer a key
// uploaded afterwards at once, in every form of index page.
func TestSearchAnswersFollowUploads(t *testing.T) {
	ts := newTestServer(t, nil)
	upload := func(name string, sec int64) {
		t.Helper()
		cfg := &packet.Config{Time: func() time.Time { return time.Unix(1700000000+sec, 0) }}
		e, err := openpgp.NewEntity(name, "", "shared.address@example.org", cfg)
		if err != nil {
			t.Fatal(err)
		}
		var pub bytes.Buffer
		if err := e.Serialize(&pub); err != nil {
			t.Fatal(err)
		}
		mustStatus(t, ts.upload(t, "keytext="+url.QueryEscape(armored(t, pub.Bytes())), "application/x-www-form-urlencoded"), 200)
	}
	paths := []string{
		"/pks/lookup?op=index&options=mr&search=shared.address%40example.org",
		"/pks/lookup?op=index&options=mr&search=shared",
		"/pks/lookup?op=index&search=shared.address%40example.org",
		"/pks/lookup?op=vindex&search=shared",
		"/pks/lookup?op=get&options=mr&search=shared.address%40example.org",
	}
	upload("Alice Shared", 0)
	for _, p := range paths {
		resp, first := ts.get(t, p)
		mustStatus(t, resp, 200)
		if _, second := ts.get(t, p); second != first {
			t.Fatalf("%s: the same search answered differently:\n%s\n%s", p, first, second)
		}
		if strings.Contains(first, "Bob Shared") {
			t.Fatalf("%s: Bob found before his upload:\n%s", p, first)
		}
	}
	upload("Bob Shared", 60)
	for _, p := range paths {
		resp, body := ts.get(t, p)
		mustStatus(t, resp, 200)
		if got := resp.Header.Get("X-HKP-Results-Count"); got != "2" {
			t.Errorf("%s after the second upload: %s keys, want 2:\n%s", p, got, body)
		}
	}
}
