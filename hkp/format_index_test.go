package hkp_test

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/ed25519"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// updateGolden rewrites hkp/testdata/golden/ from the current output:
//
//	go test ./hkp/ -run 'Format|Index|Stats|Page' -update
//
// Review the diff like code.
var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// formatNow is the "now" of every golden page: after the fixture keys were
// made (November 2026), before any of them expires.
var formatNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// fxCheckGolden compares got with testdata/golden/name, or rewrites it with
// -update.
func fxCheckGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update and review the diff):\n%s", name, fxFirstDiff(got, want))
	}
}

// fxFirstDiff describes the first line where got and want differ.
func fxFirstDiff(got, want []byte) string {
	g := strings.Split(string(got), "\n")
	w := strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl || i >= len(g) || i >= len(w) {
			return fmt.Sprintf("line %d:\n got: %q\nwant: %q", i+1, gl, wl)
		}
	}
	return "(no line differs)"
}

// fxReadTestKeys parses the keys of a fixture file under
// shared/fixtures/sks/test-keys.
func fxReadTestKeys(t testing.TB, file string) []*pgpkey.Key {
	t.Helper()
	data, err := os.ReadFile(testenv.SharedFile(t, "fixtures/sks/test-keys/"+file))
	if err != nil {
		t.Fatal(err)
	}
	return fxParseKeyBytes(t, data)
}

func fxParseKeyBytes(t testing.TB, data []byte) []*pgpkey.Key {
	t.Helper()
	var keys []*pgpkey.Key
	r := pgpkey.NewReader(bytes.NewReader(data))
	for {
		raw, err := r.Next()
		if err == io.EOF {
			return keys
		}
		if err != nil {
			t.Fatalf("read key: %v", err)
		}
		k, err := pgpkey.ParseKey(raw)
		if err != nil {
			t.Fatalf("parse key: %v", err)
		}
		keys = append(keys, k)
	}
}

// fxAllTestKeys are the seven fixture keys in file order.
func fxAllTestKeys(t testing.TB) []*pgpkey.Key {
	var keys []*pgpkey.Key
	for _, f := range []string{"keys-a.pgp", "keys-b.pgp", "grace.pgp"} {
		keys = append(keys, fxReadTestKeys(t, f)...)
	}
	return keys
}

func fxKeyByFingerprint(t testing.TB, keys []*pgpkey.Key, hex string) *pgpkey.Key {
	t.Helper()
	for _, k := range keys {
		if k.Fingerprint().String() == hex {
			return k
		}
	}
	t.Fatalf("no fixture key %s", hex)
	return nil
}

// skSBody returns the body of an SKS answer captured in
// shared/fixtures/sks: what follows the header block, without the "\r\n"
// SKS's transport appends to every body (hkp.md §1.3).
func fxSksBody(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(testenv.SharedFile(t, "fixtures/sks/"+name))
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := bytes.Cut(data, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("%s: no header end", name)
	}
	body, ok = bytes.CutSuffix(body, []byte("\r\n"))
	if !ok {
		t.Fatalf("%s: body does not end in SKS's \\r\\n", name)
	}
	return body
}

const aliceFpr = "3B03A965A519A6CAE8B09425CED1786732CA2E5C"

func fxMrIndex(t *testing.T, keys []*pgpkey.Key, now time.Time) string {
	t.Helper()
	var b bytes.Buffer
	if err := hkp.WriteMRIndex(&b, keys, now); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestFormatMRIndexMatchesSKS compares our MR index for the search that
// gpg --search-keys alice@example.org made against real SKS with SKS's
// answer, line by line.
//
// The deliberate differences from SKS (hkp.md §6.1, WriteMRIndex), none of
// which this key triggers, so the lines are identical:
//   - ':' is escaped %3A by both, but '%' is %25 here and "%%" in SKS;
//     control characters (< 0x20, 0x7F) are %XY here and raw in SKS.
//   - uid creation dates: SKS leaves the field empty when it finds no
//     self-certification; we fall back to the key's creation date. Alice's
//     two user IDs both have self-certifications, and the dates we take
//     from verified self-signatures are SKS's (1795374320, 1795374326).
//   - flags: we add "e" for expired keys and user IDs and "r" for revoked
//     user IDs; SKS only writes "r" on pub lines, for any revocation-typed
//     signature, verified or not. Alice is neither revoked nor expired.
//   - order: we write a primary user ID flagged as such first, then the
//     others, then uat lines; SKS writes packet order. Alice has no flagged
//     user ID (GnuPG would call the newer "Alice Second" primary), so both
//     keep canonical order.
func TestFormatMRIndexMatchesSKS(t *testing.T) {
	alice := fxKeyByFingerprint(t, fxReadTestKeys(t, "keys-a.pgp"), aliceFpr)
	got := strings.Split(fxMrIndex(t, []*pgpkey.Key{alice}, formatNow), "\n")
	want := strings.Split(string(fxSksBody(t, "hkp-gpg-search-keys.response.http")), "\n")
	if len(got) != len(want) {
		t.Errorf("got %d lines, want %d (SKS)", len(got), len(want))
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		if got[i] != want[i] {
			t.Errorf("line %d: got %q, want %q (SKS)", i+1, got[i], want[i])
		}
	}
}

// TestFormatMRIndexMatchesSKSWordSearch compares our MR index of the six
// keys of server A with SKS's answer to gpg --search-keys example.org, which
// is in hkp-gpg.pcap (in one TCP segment), in SKS's order (newest first).
// None of the deliberate differences listed above applies to these keys.
func TestFormatMRIndexMatchesSKSWordSearch(t *testing.T) {
	data, err := os.ReadFile(testenv.SharedFile(t, "fixtures/sks/hkp-gpg.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("info:1:6\n"))
	if i < 0 {
		t.Fatal("no info:1:6 answer in hkp-gpg.pcap")
	}
	end := bytes.Index(data[i:], []byte("\n\r\n"))
	if end < 0 {
		t.Fatal("answer not in one segment")
	}
	want := string(data[i : i+end+1])
	keys := fxAllTestKeys(t)
	var order []*pgpkey.Key
	for _, l := range strings.Split(want, "\n") {
		if f := strings.Split(l, ":"); f[0] == "pub" {
			order = append(order, fxKeyByFingerprint(t, keys, f[1]))
		}
	}
	if got := fxMrIndex(t, order, formatNow); got != want {
		t.Errorf("MR index differs from SKS's:\n%s", fxFirstDiff([]byte(got), []byte(want)))
	}
}

func TestFormatMRIndexGolden(t *testing.T) {
	keys := fxAllTestKeys(t)
	fxCheckGolden(t, "index-mr-test-keys.txt", []byte(fxMrIndex(t, keys, formatNow)))
	fxCheckGolden(t, "index-mr-escaping.txt", []byte(fxMrIndex(t, []*pgpkey.Key{fxEscapingKey(t)}, formatNow)))
}

func TestFormatMRIndexEscaping(t *testing.T) {
	out := fxMrIndex(t, []*pgpkey.Key{fxEscapingKey(t)}, formatNow)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if got, want := lines[0], "info:1:1"; got != want {
		t.Errorf("info line %q, want %q", got, want)
	}
	if !strings.HasPrefix(lines[1], "pub:"+fxTestKeyFpr(t, 1)+":27:256:") {
		t.Errorf("pub line %q", lines[1])
	}
	var uids []string
	for _, l := range lines[2:] {
		if !strings.HasPrefix(l, "uid:") && !strings.HasPrefix(l, "uat:") {
			t.Fatalf("record %q is neither uid nor uat: a user ID broke the line structure", l)
		}
		f := strings.Split(l, ":")
		if len(f) != 5 {
			t.Errorf("record %q has %d fields, want 5", l, len(f))
		}
		if f[0] == "uid" {
			uids = append(uids, f[1])
		}
	}
	created := fmt.Sprint(escapingCreated.Unix())
	for _, c := range []struct{ name, uid, wantLine string }{
		{"Primary", "Alice: 100% <alice@example.org>",
			"uid:Alice%3A 100%25 <alice@example.org>:" + fmt.Sprint(escapingCreated.Add(time.Hour).Unix()) + "::"},
		{"UTF8", "J\u00f6rg M\u00fcller <joerg@example.org>",
			"uid:J%C3%B6rg M%C3%BCller <joerg@example.org>:" + created + "::"},
		{"Controls", "evil\nuid:forged:1:2:\r\x01\x7f",
			"uid:evil%0Auid%3Aforged%3A1%3A2%3A%0D%01%7F:" + created + "::"},
		{"InvalidUTF8", "\xff\xfe bytes",
			"uid:%FF%FE bytes:" + created + "::"},
		// No self-signature: SKS writes an empty creation date, which makes
		// OpenKeychain skip the key; we write the key's creation date.
		{"Unsigned", "Unsigned <unsigned@example.org>",
			"uid:Unsigned <unsigned@example.org>:" + created + "::"},
		{"Revoked", "Revoked <revoked@example.org>",
			"uid:Revoked <revoked@example.org>:" + created + "::r"},
		{"Expired", "Expired <expired@example.org>",
			"uid:Expired <expired@example.org>:" + created + ":" + fmt.Sprint(escapingCreated.Add(24*time.Hour).Unix()) + ":e"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(out, "\n"+c.wantLine+"\n") {
				t.Errorf("no line %q in\n%s", c.wantLine, out)
			}
		})
	}
	if got, want := lines[2], "uid:Alice%3A 100%25 <alice@example.org>:"+fmt.Sprint(escapingCreated.Add(time.Hour).Unix())+"::"; got != want {
		t.Errorf("first uid line %q, want the primary user ID %q", got, want)
	}
	if got, want := lines[len(lines)-1], "uat::::"; got != want {
		t.Errorf("last line %q, want %q (uat lines after all uid lines)", got, want)
	}
}

func TestFormatMRIndexFlags(t *testing.T) {
	revoked := fxRevokedKey(t)
	out := fxMrIndex(t, []*pgpkey.Key{revoked}, formatNow)
	pub := strings.Split(out, "\n")[1]
	if !strings.HasSuffix(pub, ":r") {
		t.Errorf("revoked key: pub line %q, want flag r", pub)
	}
	exp := fxExpiringKey(t)
	before := strings.Split(fxMrIndex(t, []*pgpkey.Key{exp}, escapingCreated.Add(time.Hour)), "\n")[1]
	after := strings.Split(fxMrIndex(t, []*pgpkey.Key{exp}, escapingCreated.Add(48*time.Hour)), "\n")[1]
	wantPrefix := "pub:" + fxTestKeyFpr(t, 3) + ":27:256:" + fmt.Sprint(escapingCreated.Unix()) + ":" + fmt.Sprint(escapingCreated.Add(24*time.Hour).Unix()) + ":"
	if got, want := before, wantPrefix; got != want {
		t.Errorf("before expiry: %q, want %q", got, want)
	}
	if got, want := after, wantPrefix+"e"; got != want {
		t.Errorf("after expiry: %q, want %q", got, want)
	}
	// A forged key revocation (another issuer) does not make a key revoked.
	forged := fxWithDirectSigs(fxEscapingKey(t), fxRawV4Sig(0x20, escapingCreated.Add(time.Hour), 0x1122334455667788))
	if pub := strings.Split(fxMrIndex(t, []*pgpkey.Key{forged}, formatNow), "\n")[1]; strings.Contains(pub, ":r") {
		t.Errorf("third-party revocation marked the key revoked: %q", pub)
	}
}

func TestFormatMRIndexV3KeyAndUnidentifiable(t *testing.T) {
	v3 := fxV3Key(t)
	out := fxMrIndex(t, []*pgpkey.Key{v3}, formatNow)
	lines := strings.Split(out, "\n")
	// SKS gives the 16-hex key ID for v3 keys (their fingerprint does not
	// yield it), and creation + validity days as expiry.
	want := fmt.Sprintf("pub:%s:1:1024:%d:%d:e", v3.KeyID(), escapingCreated.Unix(), escapingCreated.Add(10*24*time.Hour).Unix())
	if got := lines[1]; got != want {
		t.Errorf("v3 pub line %q, want %q", got, want)
	}
	// A key whose primary packet cannot be identified is left out and the
	// count says so.
	broken := &pgpkey.Key{Primary: pgpkey.Packet{Tag: pgpkey.TagPublicKey, Body: []byte{3, 1, 2}}}
	out = fxMrIndex(t, []*pgpkey.Key{broken, v3}, formatNow)
	if !strings.HasPrefix(out, "info:1:1\npub:"+v3.KeyID().String()+":") {
		t.Errorf("unidentifiable key not left out:\n%s", out)
	}
}

func fxIndexHTML(t *testing.T, search string, keys []*pgpkey.Key, opt hkp.IndexOptions) string {
	t.Helper()
	var b bytes.Buffer
	if err := hkp.WriteHTMLIndex(&b, search, keys, opt); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestFormatHTMLIndexGolden(t *testing.T) {
	keys := fxAllTestKeys(t)
	fxCheckGolden(t, "index-test-keys.html", []byte(fxIndexHTML(t, "example.org", keys, hkp.IndexOptions{})))
	fxCheckGolden(t, "index-test-keys-fp-hash.html", []byte(fxIndexHTML(t, "example.org", keys, hkp.IndexOptions{Fingerprint: true, Hash: true})))
	fxCheckGolden(t, "index-escaping.html", []byte(fxIndexHTML(t, `<b>"alice"</b>`, []*pgpkey.Key{fxEscapingKey(t), fxRevokedKey(t), fxV3Key(t)}, hkp.IndexOptions{Fingerprint: true})))
}

// TestFormatHTMLIndexLayout pins SKS's layout (index.ml key_to_lines_normal,
// htmlTemplates.ml keyinfo_pks) for Alice, line by line.
func TestFormatHTMLIndexLayout(t *testing.T) {
	alice := fxKeyByFingerprint(t, fxReadTestKeys(t, "keys-a.pgp"), aliceFpr)
	page := fxIndexHTML(t, "alice@example.org", []*pgpkey.Key{alice}, hkp.IndexOptions{Fingerprint: true, Hash: true})
	body := "<h1>Search results for 'alice@example.org'</h1>" +
		"<pre>Type bits/keyID     Date       User ID\r\n" +
		"</pre><hr /><pre>\r\n" +
		`pub   256E/<a href="/pks/lookup?op=get&amp;search=0xCED1786732CA2E5C">32CA2E5C</a> 2026-11-22 ` +
		`<a href="/pks/lookup?op=vindex&amp;hash=on&amp;fingerprint=on&amp;search=0xCED1786732CA2E5C">Alice Ed &lt;alice@example.org&gt;</a>` +
		"\r\n                               Alice Second &lt;alice2@example.net&gt;\r\n" +
		"\t Hash=<a href=/pks/lookup?op=hget&amp;search=313310DC2038F6DFE36DE1B9A11D3179>313310DC2038F6DFE36DE1B9A11D3179</a>\r\n" +
		"\t Fingerprint=3B03 A965 A519 A6CA E8B0  9425 CED1 7867 32CA 2E5C \r\n" +
		"</pre></body></html>"
	if !strings.HasSuffix(page, body) {
		t.Errorf("page ends\n%q\nwant\n%q", page[max(0, len(page)-len(body)):], body)
	}
	if !strings.Contains(page, "<title>Search results for 'alice@example.org'</title>") {
		t.Errorf("title missing")
	}
}

func TestFormatHTMLIndexEscaping(t *testing.T) {
	page := fxIndexHTML(t, `<script>alert(1)</script>`, []*pgpkey.Key{fxEscapingKey(t)}, hkp.IndexOptions{})
	for _, bad := range []string{"<script>", "\x01", "\x7f", "\xff", "evil\n", "\r\x01"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	for _, want := range []string{
		"Search results for '&lt;script&gt;alert(1)&lt;&#x2F;script&gt;'",
		"&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2F;script&gt; &amp; &quot;q&quot; &#x2F; &lt;mallory@example.org&gt;",
		"J\u00f6rg M\u00fcller &lt;joerg@example.org&gt;",
		"evil\uFFFDuid:forged:1:2:\uFFFD\uFFFD\uFFFD",
		"\uFFFD\uFFFD bytes",
		"[user attribute packet]",
		"[1100-byte uid]",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestFormatHTMLIndexRevokedAndV3(t *testing.T) {
	page := fxIndexHTML(t, "x", []*pgpkey.Key{fxRevokedKey(t), fxV3Key(t)}, hkp.IndexOptions{Fingerprint: true})
	if !strings.Contains(page, " *** KEY REVOKED *** [not verified]\r\n                               <a href=") {
		t.Errorf("no revocation marker:\n%s", page)
	}
	v3 := fxV3Key(t)
	if !strings.Contains(page, "pub  1024R/<a href=\"/pks/lookup?op=get&amp;search=0x"+v3.KeyID().String()+"\">") {
		t.Errorf("no v3 pub line:\n%s", page)
	}
	// v3 fingerprints: groups of two hex digits, double space after the 8th.
	fp := v3.Fingerprint().String()
	var groups []string
	for i := 0; i < len(fp); i += 2 {
		groups = append(groups, fp[i:i+2])
	}
	want := "\t Fingerprint=" + strings.Join(groups[:8], " ") + "  " + strings.Join(groups[8:], " ") + " \r\n"
	if !strings.Contains(page, want) {
		t.Errorf("no v3 fingerprint line %q:\n%s", want, page)
	}
}

// --- test keys -------------------------------------------------------------

// escapingCreated is the creation time of the generated test keys.
var escapingCreated = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// fxTestSigner is a deterministic Ed25519 (RFC 9580 algorithm 27) v4 key.
type fxTestSigner struct {
	priv *packet.PrivateKey
	cfg  *packet.Config
}

func fxNewTestSigner(t testing.TB, seed byte, created time.Time) *fxTestSigner {
	t.Helper()
	sk, err := ed25519.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	no := false
	return &fxTestSigner{
		priv: packet.NewEd25519PrivateKey(created, sk),
		cfg: &packet.Config{
			Rand:                                  mrand.NewChaCha8([32]byte{seed}),
			DefaultHash:                           crypto.SHA256,
			NonDeterministicSignaturesViaNotation: &no,
		},
	}
}

func fxTestKeyFpr(t testing.TB, seed byte) string {
	return strings.ToUpper(fmt.Sprintf("%x", fxNewTestSigner(t, seed, escapingCreated).priv.PublicKey.Fingerprint))
}

func (s *fxTestSigner) newSig(typ packet.SignatureType, created time.Time) *packet.Signature {
	id := s.priv.KeyId
	return &packet.Signature{
		SigType:      typ,
		PubKeyAlgo:   s.priv.PubKeyAlgo,
		Hash:         crypto.SHA256,
		CreationTime: created,
		IssuerKeyId:  &id,
	}
}

// fxKeyBytes collects the packets of a key being built.
type fxKeyBytes struct {
	t   testing.TB
	buf bytes.Buffer
}

func (kb *fxKeyBytes) raw(tag byte, body []byte) {
	kb.buf.WriteByte(0xc0 | tag)
	kb.buf.WriteByte(0xff)
	kb.buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(body))))
	kb.buf.Write(body)
}

func (kb *fxKeyBytes) sig(sig *packet.Signature) {
	if err := sig.Serialize(&kb.buf); err != nil {
		kb.t.Fatal(err)
	}
}

func (kb *fxKeyBytes) key() *pgpkey.Key {
	keys := fxParseKeyBytes(kb.t, kb.buf.Bytes())
	if len(keys) != 1 {
		kb.t.Fatalf("built %d keys, want 1", len(keys))
	}
	return keys[0]
}

func (s *fxTestSigner) start(t testing.TB) *fxKeyBytes {
	kb := &fxKeyBytes{t: t}
	if err := s.priv.PublicKey.Serialize(&kb.buf); err != nil {
		t.Fatal(err)
	}
	return kb
}

// certify adds a user ID with a positive self-certification made at created.
func (s *fxTestSigner) certify(kb *fxKeyBytes, uid string, created time.Time, edit func(*packet.Signature)) {
	kb.raw(pgpkey.TagUserID, []byte(uid))
	sig := s.newSig(packet.SigTypePositiveCert, created)
	if edit != nil {
		edit(sig)
	}
	if err := sig.SignUserId(uid, &s.priv.PublicKey, s.priv, s.cfg); err != nil {
		kb.t.Fatal(err)
	}
	kb.sig(sig)
}

// fxEscapingKey has user IDs with everything the index formats must escape,
// one without a self-signature, a revoked one, an expired one, an overlong
// one and a user attribute.
func fxEscapingKey(t testing.TB) *pgpkey.Key {
	t.Helper()
	s := fxNewTestSigner(t, 1, escapingCreated)
	kb := s.start(t)
	primary := true
	s.certify(kb, "Alice: 100% <alice@example.org>", escapingCreated.Add(time.Hour), func(sig *packet.Signature) {
		sig.IsPrimaryId = &primary
	})
	s.certify(kb, "J\u00f6rg M\u00fcller <joerg@example.org>", escapingCreated, nil)
	s.certify(kb, "evil\nuid:forged:1:2:\r\x01\x7f", escapingCreated, nil)
	s.certify(kb, "\xff\xfe bytes", escapingCreated, nil)
	s.certify(kb, `<script>alert('x')</script> & "q" / <mallory@example.org>`, escapingCreated, nil)
	s.certify(kb, strings.Repeat("L", 1100), escapingCreated, nil)
	kb.raw(pgpkey.TagUserID, []byte("Unsigned <unsigned@example.org>"))
	s.certify(kb, "Revoked <revoked@example.org>", escapingCreated, nil)
	rev := s.newSig(packet.SigTypeCertificationRevocation, escapingCreated.Add(2*time.Hour))
	if err := rev.SignUserId("Revoked <revoked@example.org>", &s.priv.PublicKey, s.priv, s.cfg); err != nil {
		t.Fatal(err)
	}
	kb.sig(rev)
	day := uint32(24 * 3600)
	s.certify(kb, "Expired <expired@example.org>", escapingCreated, func(sig *packet.Signature) {
		sig.SigLifetimeSecs = &day
	})
	// A user attribute (an empty image fxSubpacket), unsigned.
	kb.raw(pgpkey.TagUserAttribute, []byte{2, 1, 0})
	return kb.key()
}

// fxRevokedKey has a verified key revocation.
func fxRevokedKey(t testing.TB) *pgpkey.Key {
	t.Helper()
	s := fxNewTestSigner(t, 2, escapingCreated)
	kb := s.start(t)
	rev := s.newSig(packet.SigTypeKeyRevocation, escapingCreated.Add(time.Hour))
	if err := rev.RevokeKey(&s.priv.PublicKey, s.priv, s.cfg); err != nil {
		t.Fatal(err)
	}
	kb.sig(rev)
	s.certify(kb, "Revoked Key <gone@example.org>", escapingCreated, nil)
	return kb.key()
}

// fxExpiringKey's self-signature makes the key expire a day after creation.
func fxExpiringKey(t testing.TB) *pgpkey.Key {
	t.Helper()
	s := fxNewTestSigner(t, 3, escapingCreated)
	kb := s.start(t)
	day := uint32(24 * 3600)
	s.certify(kb, "Short Lived <short@example.org>", escapingCreated, func(sig *packet.Signature) {
		sig.KeyLifetimeSecs = &day
	})
	return kb.key()
}

// fxV3Key is a PGP 2 style v3 RSA key (with a made-up 1024-bit modulus and
// a 10-day validity period) with a v3 self-signature.
func fxV3Key(t testing.TB) *pgpkey.Key {
	t.Helper()
	body := []byte{3}
	body = binary.BigEndian.AppendUint32(body, uint32(escapingCreated.Unix()))
	body = binary.BigEndian.AppendUint16(body, 10) // validity days
	body = append(body, 1)                         // RSA
	n := bytes.Repeat([]byte{0xa5}, 128)
	n[0] = 0xc3
	body = append(body, fxMpiBytes(n)...)
	body = append(body, fxMpiBytes([]byte{1, 0, 1})...)
	kb := &fxKeyBytes{t: t}
	kb.raw(pgpkey.TagPublicKey, body)
	kb.raw(pgpkey.TagUserID, []byte("Old Timer <pgp2@example.org>"))
	id := binary.BigEndian.Uint64(n[len(n)-8:])
	kb.raw(pgpkey.TagSignature, fxRawV3Sig(0x10, escapingCreated, id))
	return kb.key()
}

func fxMpiBytes(x []byte) []byte {
	bits := len(x)*8 - (8 - fxBitLen(x[0]))
	return append(binary.BigEndian.AppendUint16(nil, uint16(bits)), x...)
}

func fxBitLen(b byte) int {
	n := 0
	for ; b != 0; b >>= 1 {
		n++
	}
	return n
}

// fxRawV3Sig is a v3 signature packet body (RFC 9580 §5.2.2) with a junk
// RSA value: go-crypto does not parse v3 signatures at all.
func fxRawV3Sig(typ byte, created time.Time, issuer uint64) []byte {
	b := []byte{3, 5, typ}
	b = binary.BigEndian.AppendUint32(b, uint32(created.Unix()))
	b = binary.BigEndian.AppendUint64(b, issuer)
	b = append(b, 1, 2, 0xab, 0xcd) // RSA, SHA-1, hash prefix
	return append(b, fxMpiBytes([]byte{0x55})...)
}

// fxSubpacket encodes one signature fxSubpacket with a one-octet length.
func fxSubpacket(typ byte, data []byte) []byte {
	return append([]byte{byte(1 + len(data)), typ}, data...)
}

// fxRawV4Sig is a v4 signature packet body with a junk RSA value, made
// without go-crypto so that any fxSubpacket can go in it. hashed subpackets
// follow the creation time; issuer 0 means no issuer fxSubpacket.
func fxRawV4Sig(typ byte, created time.Time, issuer uint64, hashed ...[]byte) []byte {
	return fxRawV4SigHash(typ, 8, created, issuer, hashed...)
}

func fxRawV4SigHash(typ, hashAlgo byte, created time.Time, issuer uint64, hashed ...[]byte) []byte {
	h := fxSubpacket(2, binary.BigEndian.AppendUint32(nil, uint32(created.Unix())))
	for _, sp := range hashed {
		h = append(h, sp...)
	}
	var u []byte
	if issuer != 0 {
		u = fxSubpacket(16, binary.BigEndian.AppendUint64(nil, issuer))
	}
	b := []byte{4, typ, 1, hashAlgo}
	b = binary.BigEndian.AppendUint16(b, uint16(len(h)))
	b = append(b, h...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(u)))
	b = append(b, u...)
	b = append(b, 0xab, 0xcd)
	return append(b, fxMpiBytes([]byte{0x55})...)
}

// fxWithDirectSigs returns a copy of k with more signatures on the primary.
func fxWithDirectSigs(k *pgpkey.Key, sigs ...[]byte) *pgpkey.Key {
	c := *k
	c.DirectSigs = append([]pgpkey.Packet(nil), k.DirectSigs...)
	for _, s := range sigs {
		c.DirectSigs = append(c.DirectSigs, pgpkey.Packet{Tag: pgpkey.TagSignature, Body: s})
	}
	return &c
}
