package hkp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// This file holds the SKS page template (hkp.md §7.1) and the small pages
// built on it: error pages (§7.1, §11), the HTML op=get wrapper (§5.2) and
// the /pks/add answers (§9.3). Every function here is pure: it formats into
// memory and writes the result with one Write.

// sksPageHead is SKS's page template up to the title. It is the template of
// SKS master (the 1.1.6+git2021 Debian package whose answers are in
// shared/fixtures/sks), which adds the .disclaimer style and <div> to the
// 1.1.6 one; hkp-stats.response.http has it byte for byte.
const sksPageHead = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n" +
	"<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\" >\r\n" +
	"<html xmlns=\"http://www.w3.org/1999/xhtml\">\r\n" +
	"<head>\r\n" +
	"<title>"

const sksPageStyle = "</title>\r\n" +
	"<meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\" />\r\n" +
	"<style type=\"text/css\">\r\n" +
	"/*<![CDATA[*/\r\n" +
	" .uid { color: green; text-decoration: underline; }\r\n" +
	" .warn { color: red; font-weight: bold; }\r\n" +
	" .disclaimer { font-family: sans; font-size: 0.8em; background-color: #f6f6f6; border-bottom: 1px solid #e0e0e0; padding: 0.8em; }\r\n" +
	"/*]]>*/\r\n" +
	"</style></head><body>" +
	"<div class=\"disclaimer\">Information displayed on this website, including public keyblocks and anything associated with them, <em>is not cryptographically verified</em>. Always inspect public keyblocks using OpenPGP software on a secured device that you control to see verified information.</div>" +
	"<h1>"

const sksPageTail = "</body></html>"

// sksTitleBreak matches what SKS replaces in <title> (Str.regexp_case_fold
// "<br />" in htmlTemplates.ml).
var sksTitleBreak = regexp.MustCompile(`(?i)<br />`)

// WritePage writes a complete HTML page in SKS's template (hkp.md §7.1):
// titleHTML goes into <title>, with every "<br />" replaced by
// "&nbsp;|&nbsp;", and unchanged into <h1>; bodyHTML follows the <h1>.
//
// Both arguments are HTML, written as given: callers escape whatever came
// from a request or a key (the page functions of this package do). NB: SKS
// puts the search words into titles unescaped; we never do.
func WritePage(w io.Writer, titleHTML, bodyHTML string) error {
	_, err := io.WriteString(w, sksPage(titleHTML, bodyHTML))
	return err
}

func sksPage(titleHTML, bodyHTML string) string {
	var b strings.Builder
	b.Grow(len(sksPageHead) + len(sksPageStyle) + 2*len(titleHTML) + len(bodyHTML) + 64)
	b.WriteString(sksPageHead)
	b.WriteString(sksTitleBreak.ReplaceAllLiteralString(titleHTML, "&nbsp;|&nbsp;"))
	b.WriteString(sksPageStyle)
	b.WriteString(titleHTML)
	b.WriteString("</h1>")
	b.WriteString(bodyHTML)
	b.WriteString(sksPageTail)
	return b.String()
}

// ErrorPageHTML returns SKS's error page (wserver.ml): title, and the body
// "<title>: <message>", e.g. ErrorPageHTML("No results found", "No keys
// found") gives the body "No results found: No keys found" that OpenKeychain
// looks for (hkp.md §11). Both strings are plain text and are escaped.
func ErrorPageHTML(title, message string) string {
	t := sksQuote(title)
	return sksPage(t, t+": "+sksQuote(message))
}

// WriteGetHTML writes the human-readable op=get answer (hkp.md §5.2): SKS's
// page titled `Public Key Server -- Get "<search> "` around the armored
// keys in a <pre>. armored is the ASCII armor as served with options=mr;
// one trailing line break is dropped, as SKS's armor has none there.
//
// The search text is escaped (SKS does not). The armor is escaped only for
// '&', '<' and '>', none of which armor contains, so scrapers that cut the
// block out of the page get exactly the armor.
//
// After the block comes a download link (id "download") to the same search
// with options=mr, which the server answers as an attachment: a person gets
// the key as a file with one click. Scrapers cutting out the <pre> block are
// unaffected.
func WriteGetHTML(w io.Writer, search string, armored []byte) error {
	a := string(armored)
	a = strings.TrimSuffix(a, "\n")
	a = strings.TrimSuffix(a, "\r")
	title := `Public Key Server -- Get "` + sksQuote(search) + ` "`
	link := "/pks/lookup?op=get&options=mr&search=" + url.QueryEscape(search)
	body := "\r\n<pre>\r\n" + preText(a) + "\r\n</pre>\r\n" +
		`<p><a id="download" href="` + html.EscapeString(link) + `" download>Download this key</a></p>` + "\r\n"
	return WritePage(w, title, body)
}

// SKS's /pks/add messages (dbserver.ml), kept verbatim: people and scripts
// have read them for twenty years.
const (
	addPrefix    = "<html><body>"
	addSuffix    = "</body></html>" // SKS master; 1.1.6 wrote "</html></body>"
	addFailed    = "Add failed: "
	addUnchanged = "Add failed: identical key already exists in database<br>"
	addSuccess   = "Key block added to key server database.\n  New public keys added: <br>%d key(s) added successfully.<br>"
)

// WriteAddResultHTML writes SKS's /pks/add answer (hkp.md §9.3): one
// "Add failed: <reason><br>" per failure, SKS's "identical key already
// exists" line per unchanged key, then, if any key was added or updated,
// "Key block added … N key(s) added successfully.<br>", where N counts added
// and updated keys as SKS does. The fragment is not a template page, as in
// SKS. For one added key it is byte for byte SKS's hkp-gpg-send-keys answer.
//
// NB: SKS writes the lines in upload order; AddResult has no order across its
// lists, so failures come first, then unchanged keys, then the summary. SKS
// ends its stand-alone-revocation message without "<br>"; we always add it.
func WriteAddResultHTML(w io.Writer, r AddResult) error {
	var b strings.Builder
	b.WriteString(addPrefix)
	for _, reason := range r.Failed {
		b.WriteString(addFailed)
		b.WriteString(sksQuote(reason))
		b.WriteString("<br>")
	}
	for range r.Unchanged {
		b.WriteString(addUnchanged)
	}
	if n := len(r.Added) + len(r.Updated); n > 0 {
		fmt.Fprintf(&b, addSuccess, n)
	}
	b.WriteString(addSuffix)
	_, err := io.WriteString(w, b.String())
	return err
}

// addCert is one entry of the JSON /pks/add answer: Hockeypuck master's
// CertSummary (hkp/handler.go), {"version":4,"fingerprint":"…","comment":"…"}.
type addCert struct {
	Version     int    `json:"version,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Comment     string `json:"comment,omitempty"`
}

// addJSON is Hockeypuck master's SubmissionResponse (hkp.md §9.3).
type addJSON struct {
	Inserted []addCert `json:"inserted,omitempty"`
	Updated  []addCert `json:"updated,omitempty"`
	Ignored  []addCert `json:"ignored,omitempty"`
	Invalid  []addCert `json:"invalid,omitempty"`
}

// WriteAddResultJSON writes the /pks/add answer in Hockeypuck master's JSON
// shape (hkp.md §9.3): {"inserted":[…],"updated":[…],"ignored":[…],
// "invalid":[…]}, empty lists left out as Hockeypuck does, followed by a line
// break. Each key is {"version":N,"fingerprint":"…"}; each failure is
// {"comment":"<reason>"}, since AddResult does not say which key failed.
//
// NB: the version is inferred from the fingerprint's length: 32 hex digits
// are v3, 40 are v4, 64 are reported as v6 (a v5 key cannot be told apart).
// Fingerprints are written as given (uppercase); Hockeypuck writes lowercase.
func WriteAddResultJSON(w io.Writer, r AddResult) error {
	certs := func(fprs []string) []addCert {
		var out []addCert
		for _, f := range fprs {
			out = append(out, addCert{Version: fprVersion(f), Fingerprint: f})
		}
		return out
	}
	doc := addJSON{
		Inserted: certs(r.Added),
		Updated:  certs(r.Updated),
		Ignored:  certs(r.Unchanged),
	}
	for _, reason := range r.Failed {
		doc.Invalid = append(doc.Invalid, addCert{Comment: reason})
	}
	return writeJSONDoc(w, doc)
}

func fprVersion(hex string) int {
	switch len(hex) {
	case 32:
		return 3
	case 40:
		return 4
	case 64:
		return 6
	}
	return 0
}

// writeJSONDoc encodes v without HTML escaping ('<' stays '<': the content type
// is application/json) and with a final line break, like json.Encoder.
func writeJSONDoc(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// sksQuote escapes text for HTML as SKS's HtmlTemplates.html_quote does
// (< > & " ' / become entities), so that what SKS showed, scrapers still
// find. On top of SKS, it makes the page valid whatever the bytes: invalid
// UTF-8 and control characters (C0 including tab, CR and LF, DEL, C1) become
// U+FFFD. SKS passes them through, which lets a user ID break the <pre>
// layout or the XHTML.
func sksQuote(s string) string { return escapeHTMLText(s, true) }

// htmlText escapes text where SKS escapes nothing (stats page values): the
// same as sksQuote but '/' is left alone, so host names and URLs read as
// they are written in the page source.
func htmlText(s string) string { return escapeHTMLText(s, false) }

func escapeHTMLText(s string, slash bool) string {
	clean := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '&' || c == '"' || c == '\'' || (slash && c == '/') {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == utf8.RuneError && n == 1, r < 0x20, r >= 0x7f && r <= 0x9f:
			b.WriteRune(utf8.RuneError)
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '&':
			b.WriteString("&amp;")
		case r == '"':
			b.WriteString("&quot;")
		case r == '\'':
			b.WriteString("&#x27;")
		case r == '/' && slash:
			b.WriteString("&#x2F;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// preText escapes preformatted text that must stay byte for byte as it is
// (armor): only '&', '<' and '>'.
func preText(s string) string {
	if !strings.ContainsAny(s, "&<>") {
		return s
	}
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	return r.Replace(s)
}
