package hkp_test

import (
	"os"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// TestWebPageInChromium uses the pages as a person would, in a real
// headless Chromium: search from the form, open the key from the result
// list, download it, and upload a key through the form.
func TestWebPageInChromium(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.uploadFixtures(t, "keys-a.pgp")
	b := testenv.StartBrowser(t)

	b.Open(ts.URL + "/")
	b.WaitFor("Search for a key")
	b.Type("#search-text", "alice@example.org")
	b.Click("#search-button")
	src := b.WaitFor("Search results for")
	alice := fixtureKeys(t, "keys-a.pgp")[0]
	if !strings.Contains(src, "Alice Ed &lt;alice@example.org&gt;") {
		t.Fatalf("result page lacks Alice:\n%s", src)
	}
	// Open the key: the key ID link of the pub line.
	b.Click(`a[href*="op=get"]`)
	src = b.WaitFor("BEGIN PGP PUBLIC KEY BLOCK")
	// Download it.
	b.Click("#download")
	path := b.WaitDownload()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raws, err := pgpkey.Decode(data)
	if err != nil || len(raws) != 1 {
		t.Fatalf("downloaded file %s: %d keys, %v", path, len(raws), err)
	}
	k, _ := pgpkey.ParseKey(raws[0])
	if k.Fingerprint() != alice.Fingerprint() {
		t.Fatalf("downloaded %s, want Alice %s", k.Fingerprint(), alice.Fingerprint())
	}

	// Upload through the form.
	b.Open(ts.URL + "/")
	b.Type("#keytext", armored(t, fixtureBytes(t, "grace.pgp")))
	b.Click("#upload-button")
	b.WaitFor("added successfully")
	resp, _ := ts.get(t, "/pks/lookup?op=get&options=mr&search=grace%40example.org")
	mustStatus(t, resp, 200)
}
