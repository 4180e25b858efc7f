package hkp_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/hkp"
)

func TestFormatPageTemplate(t *testing.T) {
	var b bytes.Buffer
	if err := hkp.WritePage(&b, "One<br />Two<BR />Three", "<p>body</p>"); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{
		"<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<!DOCTYPE html PUBLIC",
		"<title>One&nbsp;|&nbsp;Two&nbsp;|&nbsp;Three</title>\r\n",
		"<h1>One<br />Two<BR />Three</h1><p>body</p></body></html>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
	// The template is SKS's: the stats page of the fixture starts with it.
	sks := fxSksBody(t, "hkp-stats.response.http")
	head := page[:strings.Index(page, "<title>")]
	if !bytes.HasPrefix(sks, []byte(head)) {
		t.Errorf("template head differs from SKS's")
	}
	tail := page[strings.Index(page, "</title>"):strings.Index(page, "<h1>")]
	if !bytes.Contains(sks, []byte(tail)) {
		t.Errorf("template head (after the title) differs from SKS's")
	}
}

func TestFormatErrorPage(t *testing.T) {
	page := hkp.ErrorPageHTML("No results found", "No keys found")
	fxCheckGolden(t, "error-no-results.html", []byte(page))
	if !strings.Contains(page, "<title>No results found</title>") ||
		!strings.HasSuffix(page, "<h1>No results found</h1>No results found: No keys found</body></html>") {
		t.Errorf("page:\n%s", page)
	}
	// OpenKeychain lower-cases the body and looks for these (hkp.md §11).
	if !strings.Contains(strings.ToLower(page), "no keys found") {
		t.Error("no 'no keys found'")
	}
	page = hkp.ErrorPageHTML("Bad request", `bad search "<script>" & /x`+"\x00")
	if got, want := page[strings.Index(page, "<h1>"):], "<h1>Bad request</h1>Bad request: bad search &quot;&lt;script&gt;&quot; &amp; &#x2F;x\uFFFD</body></html>"; got != want {
		t.Errorf("escaped page ends %q, want %q", got, want)
	}
}

func TestFormatGetHTML(t *testing.T) {
	armor := fxSksBody(t, "hkp-gpg-recv-keys.response.http")
	var b bytes.Buffer
	// The caller's armor ends in a line break, which the page drops.
	if err := hkp.WriteGetHTML(&b, "0x2d7a2724a58c72489f0aee7fe0cf3ac7ac2db901", append(bytes.Clone(armor), '\n')); err != nil {
		t.Fatal(err)
	}
	fxCheckGolden(t, "get.html", b.Bytes())
	page := b.String()
	// SKS's page, then our download link before the end.
	want := "<h1>Public Key Server -- Get \"0x2d7a2724a58c72489f0aee7fe0cf3ac7ac2db901 \"</h1>\r\n<pre>\r\n" + string(armor) + "\r\n</pre>\r\n" +
		`<p><a id="download" href="/pks/lookup?op=get&amp;options=mr&amp;search=0x2d7a2724a58c72489f0aee7fe0cf3ac7ac2db901" download>Download this key</a></p>` + "\r\n</body></html>"
	if !strings.HasSuffix(page, want) {
		t.Errorf("page ends\n%q\nwant\n%q", page[max(0, len(page)-len(want)):], want)
	}
	b.Reset()
	if err := hkp.WriteGetHTML(&b, `</title><script>`, armor); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "<script>") {
		t.Error("search text not escaped")
	}
}

// TestFormatAddResultHTMLMatchesSKS: one added key gives SKS's answer to
// gpg --send-keys byte for byte.
func TestFormatAddResultHTMLMatchesSKS(t *testing.T) {
	var b bytes.Buffer
	if err := hkp.WriteAddResultHTML(&b, hkp.AddResult{Added: []string{"85345560F526C04E9EEB069F8CE580836C7E88B5"}}); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), string(fxSksBody(t, "hkp-gpg-send-keys.response.http")); got != want {
		t.Errorf("got %q, want %q (SKS)", got, want)
	}
}

func TestFormatAddResult(t *testing.T) {
	r := hkp.AddResult{
		Added:     []string{"85345560F526C04E9EEB069F8CE580836C7E88B5"},
		Updated:   []string{"3B03A965A519A6CAE8B09425CED1786732CA2E5C"},
		Unchanged: []string{"D6F462E9D07147D46696EE0EC1533A187C3C67DC"},
		Failed:    []string{"key at byte 812: key has no user ID", "packet 2: <bad> & worse"},
	}
	var h, j bytes.Buffer
	if err := hkp.WriteAddResultHTML(&h, r); err != nil {
		t.Fatal(err)
	}
	if err := hkp.WriteAddResultJSON(&j, r); err != nil {
		t.Fatal(err)
	}
	fxCheckGolden(t, "add-result.html", h.Bytes())
	fxCheckGolden(t, "add-result.json", j.Bytes())
	want := "<html><body>" +
		"Add failed: key at byte 812: key has no user ID<br>" +
		"Add failed: packet 2: &lt;bad&gt; &amp; worse<br>" +
		"Add failed: identical key already exists in database<br>" +
		"Key block added to key server database.\n  New public keys added: <br>2 key(s) added successfully.<br>" +
		"</body></html>"
	if got := h.String(); got != want {
		t.Errorf("HTML %q, want %q", got, want)
	}
	var doc struct {
		Inserted, Updated, Ignored, Invalid []struct {
			Version     int    `json:"version"`
			Fingerprint string `json:"fingerprint"`
			Comment     string `json:"comment"`
		}
	}
	if err := json.Unmarshal(j.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Inserted) != 1 || doc.Inserted[0].Version != 4 || doc.Inserted[0].Fingerprint != r.Added[0] ||
		len(doc.Updated) != 1 || len(doc.Ignored) != 1 || len(doc.Invalid) != 2 ||
		doc.Invalid[1].Comment != "packet 2: <bad> & worse" {
		t.Errorf("JSON %s", j.Bytes())
	}
	if !bytes.HasSuffix(j.Bytes(), []byte("}\n")) {
		t.Error("JSON does not end in a line break")
	}

	// Nothing at all: SKS's bare frame, and an empty JSON object.
	h.Reset()
	j.Reset()
	if err := hkp.WriteAddResultHTML(&h, hkp.AddResult{}); err != nil {
		t.Fatal(err)
	}
	if err := hkp.WriteAddResultJSON(&j, hkp.AddResult{}); err != nil {
		t.Fatal(err)
	}
	if got, want := h.String(), "<html><body></body></html>"; got != want {
		t.Errorf("empty HTML %q, want %q", got, want)
	}
	if got, want := j.String(), "{}\n"; got != want {
		t.Errorf("empty JSON %q, want %q", got, want)
	}
}
