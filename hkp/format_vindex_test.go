package hkp_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

func fxVindexHTML(t testing.TB, search string, keys []*pgpkey.Key, opt hkp.IndexOptions, lookup hkp.IssuerLookup, now time.Time) string {
	t.Helper()
	var b bytes.Buffer
	if err := hkp.WriteHTMLVIndex(&b, search, keys, opt, lookup, now); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// fxFixtureLookup names signers from a set of keys, as the server's lookup
// does from the store.
func fxFixtureLookup(keys []*pgpkey.Key) hkp.IssuerLookup {
	names := make(map[pgpkey.KeyID]string)
	for _, k := range keys {
		if uids := k.UserIDs(); len(uids) > 0 {
			names[k.KeyID()] = uids[0]
		}
	}
	return func(id pgpkey.KeyID) (string, bool) {
		n, ok := names[id]
		return n, ok
	}
}

// Signers of the third-party signatures on fxSigsKey.
const (
	fxKnownSigner   = 0x0123456789abcdef // named by fixture-style lookup
	fxUnknownSigner = 0x1111222233334444 // not known to the lookup
)

// fxSigsKey is fxEscapingKey with every kind of signature the vindex page must
// show or survive: third-party certifications with a policy URL (web and
// javascript:), notations (human-readable and not), a signer's user ID with
// HTML in it, a revocation key, an MD5 signature (go-crypto refuses it), a
// v3 signature, an expired certification, one without issuer, and garbage.
func fxSigsKey(t testing.TB) *pgpkey.Key {
	t.Helper()
	k := fxEscapingKey(t)
	c := *k
	c.UIDs = append([]pgpkey.Group(nil), k.UIDs...)
	at := func(d time.Duration) time.Time { return escapingCreated.Add(d) }
	notation := func(human bool, name, value string) []byte {
		flags := []byte{0, 0, 0, 0}
		if human {
			flags[0] = 0x80
		}
		d := append(flags, byte(len(name)>>8), byte(len(name)), byte(len(value)>>8), byte(len(value)))
		return fxSubpacket(20, append(append(d, name...), value...))
	}
	revKey := fxSubpacket(12, append([]byte{0x80, 1}, bytes.Repeat([]byte{0xab}, 20)...))
	year := binary.BigEndian.AppendUint32(nil, 365*24*3600)
	years := binary.BigEndian.AppendUint32(nil, 5*365*24*3600)
	hour := binary.BigEndian.AppendUint32(nil, 3600)
	third := [][]byte{
		fxRawV4Sig(0x10, at(48*time.Hour), fxKnownSigner,
			fxSubpacket(26, []byte("https://example.org/policy?a=1&b=2")),
			notation(true, "who@example.org", "<b>bold</b>"),
			notation(false, "bin@example.org", "\x00\x01")),
		fxRawV4Sig(0x12, at(24*time.Hour), fxUnknownSigner,
			fxSubpacket(26, []byte("javascript:alert(1)")),
			fxSubpacket(28, []byte("Mallory <script>x</script>"))),
		fxRawV4Sig(0x13, at(72*time.Hour), fxKnownSigner, fxSubpacket(3, hour)),
		fxRawV4Sig(0x11, at(96*time.Hour), fxKnownSigner, fxSubpacket(3, years), fxSubpacket(9, year)),
		fxRawV4SigHash(0x10, 1, at(30*time.Hour), fxUnknownSigner), // MD5
		fxRawV3Sig(0x10, at(36*time.Hour), fxKnownSigner),
		fxRawV4Sig(0x10, at(40*time.Hour), 0), // no issuer
		{4, 0x10, 1, 8, 0xff, 0xff, 1},        // truncated
		bytes.Repeat([]byte{0xee}, 40),        // garbage
	}
	// The primary user ID gets them all (a fresh Sigs slice: k is shared).
	for i, g := range c.UIDs {
		if string(g.Packet.Body) != "Alice: 100% <alice@example.org>" {
			continue
		}
		sigs := append([]pgpkey.Packet(nil), g.Sigs...)
		for _, b := range third {
			sigs = append(sigs, pgpkey.Packet{Tag: pgpkey.TagSignature, Body: b})
		}
		c.UIDs[i] = pgpkey.Group{Packet: g.Packet, Sigs: sigs}
	}
	return fxWithDirectSigs(&c,
		fxRawV4Sig(0x1f, at(time.Minute), 0, revKey),
		fxRawV4Sig(0x20, at(time.Hour), fxUnknownSigner),
		[]byte{0xde, 0xad})
}

var fxSigDate = regexp.MustCompile(`\d{4}-\d\d-\d\d`)

func fxSigsLookup(id pgpkey.KeyID) (string, bool) {
	if id == fxKnownSigner {
		return "Known Signer <known@example.org>", true
	}
	return "", false
}

func TestFormatHTMLVIndexGolden(t *testing.T) {
	keys := fxAllTestKeys(t)
	lookup := fxFixtureLookup(keys)
	fxCheckGolden(t, "vindex-test-keys.html", []byte(fxVindexHTML(t, "example.org", keys, hkp.IndexOptions{}, lookup, formatNow)))
	fxCheckGolden(t, "vindex-test-keys-fp-hash.html", []byte(fxVindexHTML(t, "example.org", keys, hkp.IndexOptions{Fingerprint: true, Hash: true}, lookup, formatNow)))
	odd := []*pgpkey.Key{fxSigsKey(t), fxRevokedKey(t), fxExpiringKey(t), fxV3Key(t)}
	fxCheckGolden(t, "vindex-signatures.html", []byte(fxVindexHTML(t, `"sigs" & <more>`, odd, hkp.IndexOptions{Fingerprint: true}, fxSigsLookup, formatNow)))
}

// TestFormatHTMLVIndexLayout pins SKS's vindex layout (index.ml
// key_to_lines_verbose) for Alice. One deliberate difference shows: SKS
// names the primary key's binding signature on a subkey "[]", we say
// "[selfsig]".
func TestFormatHTMLVIndexLayout(t *testing.T) {
	alice := fxKeyByFingerprint(t, fxReadTestKeys(t, "keys-a.pgp"), aliceFpr)
	page := fxVindexHTML(t, "alice", []*pgpkey.Key{alice}, hkp.IndexOptions{}, nil, formatNow)
	get := `<a href="/pks/lookup?op=get&amp;search=0xCED1786732CA2E5C">32CA2E5C</a>`
	self := `<a href="/pks/lookup?op=vindex&amp;search=0xCED1786732CA2E5C">[selfsig]</a>`
	want := "<pre>Type bits/keyID     cr. time   exp time   key expir\r\n" +
		"</pre><hr /><pre><strong>pub</strong>   256E/" + get + " 2026-11-22            \r\n" +
		"\r\n" +
		"<strong>uid</strong> <span class=\"uid\">Alice Ed &lt;alice@example.org&gt;</span>\r\n" +
		"sig  sig3  " + get + " 2026-11-22 __________ __________ " + self + "\r\n" +
		"\r\n" +
		"<strong>uid</strong> <span class=\"uid\">Alice Second &lt;alice2@example.net&gt;</span>\r\n" +
		"sig  sig3  " + get + " 2026-11-22 __________ __________ " + self + "\r\n" +
		"\r\n" +
		"<strong>sub</strong>   256e/023AA596 2026-11-22            \r\n" +
		"sig sbind  " + get + " 2026-11-22 __________ __________ " + self + "\r\n" +
		"</pre></body></html>"
	if !strings.HasSuffix(page, want) {
		t.Errorf("page ends\n%q\nwant\n%q", page[max(0, len(page)-len(want)):], want)
	}
}

func TestFormatHTMLVIndexSignatures(t *testing.T) {
	page := fxVindexHTML(t, "x", []*pgpkey.Key{fxSigsKey(t)}, hkp.IndexOptions{Hash: true}, fxSigsLookup, formatNow)
	known := `<a href="/pks/lookup?op=vindex&amp;hash=on&amp;search=0x0123456789ABCDEF">Known Signer &lt;known@example.org&gt;</a>`
	getKnown := `<a href="/pks/lookup?op=get&amp;hash=on&amp;search=0x0123456789ABCDEF">89ABCDEF</a>`
	getUnknown := `<a href="/pks/lookup?op=get&amp;hash=on&amp;search=0x1111222233334444">33334444</a>`
	for _, c := range []struct{ name, want string }{
		{"Cert", "sig  sig   " + getKnown + " 2025-03-06 __________ __________ " + known},
		{"PolicyWeb", `    Policy URL: <a href="https:&#x2F;&#x2F;example.org&#x2F;policy?a=1&amp;b=2">https:&#x2F;&#x2F;example.org&#x2F;policy?a=1&amp;b=2</a>`},
		{"PolicyScript", "    Policy URL: javascript:alert(1)\r\n"},
		{"Notation", `    Notation data: <span class="text-decoration: underline;">who@example.org</span> &lt;b&gt;bold&lt;&#x2F;b&gt;`},
		{"SignerUID", "sig  sig2  " + getUnknown + " 2025-03-05 __________ __________ " +
			`<a href="/pks/lookup?op=vindex&amp;hash=on&amp;search=0x1111222233334444">Mallory &lt;script&gt;x&lt;&#x2F;script&gt;</a>`},
		{"Expired", `sig <span class="warn"> exp3 </span> ` + getKnown + " 2025-03-07 2025-03-07 __________ " + known},
		{"KeyExpiry", "sig  sig1  " + getKnown + " 2025-03-08 2030-03-07 2026-03-04 " + known},
		{"MD5Fallback", "sig  sig   " + getUnknown + " 2025-03-05 __________ __________ " +
			`<a href="/pks/lookup?op=vindex&amp;hash=on&amp;search=0x1111222233334444">[]</a>`},
		{"V3", "sig  sig   " + getKnown + " 2025-03-05 __________ __________ " + known},
		{"NoIssuer", "sig  sig   no keyid 2025-03-05 __________ __________ []\r\n"},
		{"Direct", "sig dirct  no keyid 2025-03-04 __________ __________ []\r\n"},
		{"RevocationKey", `    Revocation key fingerprint: <a href="/pks/lookup?op=vindex&amp;hash=on&amp;search=0xABABABABABABABABABABABABABABABABABABABAB">ABAB ABAB ABAB ABAB ABAB  ABAB ABAB ABAB ABAB ABAB </a>`},
		{"ForgedRevocation", `sig <span class="warn">revok </span> ` + getUnknown + " 2025-03-04 __________ __________ "},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(page, c.want) {
				t.Errorf("page lacks %q", c.want)
			}
		})
	}
	if strings.Contains(page, "bin@example.org") {
		t.Error("binary notation shown")
	}
	if strings.Contains(page, `href="javascript`) {
		t.Error("javascript: policy URL linked")
	}
	// Signatures of a user ID are sorted by creation time, those without
	// first (SKS's sort_siginfo_list).
	var dates []string
	inPrimary := false
	for _, l := range strings.Split(page, "\r\n") {
		if strings.HasPrefix(l, "<strong>uid</strong>") {
			inPrimary = strings.Contains(l, "Alice: 100%")
			continue
		}
		if inPrimary && strings.HasPrefix(l, "sig ") {
			dates = append(dates, fxSigDate.FindString(l))
		}
	}
	for i := 1; i < len(dates); i++ {
		if dates[i] < dates[i-1] {
			t.Errorf("signature dates not ascending: %v", dates)
			break
		}
	}
	// The revoked key's pub line is followed by its revocation.
	rk := fxRevokedKey(t)
	page = fxVindexHTML(t, "x", []*pgpkey.Key{rk}, hkp.IndexOptions{}, nil, formatNow)
	self := `<a href="/pks/lookup?op=vindex&amp;search=0x` + rk.KeyID().String() + `">[selfsig]</a>`
	if !strings.Contains(page, "</a> 2025-03-04            \r\nsig <span class=\"warn\">revok </span> ") || !strings.Contains(page, self) {
		t.Errorf("no revocation line after the pub line:\n%s", page)
	}
}

// TestFormatHTMLVIndexLookupBudget checks that signers are looked up at
// most hkp.MaxIssuerLookups times per page (SKS max_uid_fetches), once per
// key ID, and shown as "[]" beyond.
func TestFormatHTMLVIndexLookupBudget(t *testing.T) {
	k := fxEscapingKey(t)
	var sigs [][]byte
	for i := range 1500 {
		issuer := uint64(0x7000000000000000 + i)
		sigs = append(sigs, fxRawV4Sig(0x10, escapingCreated.Add(time.Duration(i)*time.Second), issuer))
		if i%3 == 0 { // the same signer twice
			sigs = append(sigs, fxRawV4Sig(0x10, escapingCreated.Add(time.Duration(i)*time.Second), issuer))
		}
	}
	k = fxWithDirectSigs(k, sigs...)
	calls := map[pgpkey.KeyID]int{}
	lookup := func(id pgpkey.KeyID) (string, bool) {
		calls[id]++
		return fmt.Sprintf("Signer %d", id-0x7000000000000000), true
	}
	page := fxVindexHTML(t, "x", []*pgpkey.Key{k}, hkp.IndexOptions{}, lookup, formatNow)
	if got, want := len(calls), hkp.MaxIssuerLookups; got != want {
		t.Errorf("looked up %d signers, want %d", got, want)
	}
	for id, n := range calls {
		if n != 1 {
			t.Errorf("signer %v looked up %d times", id, n)
		}
	}
	if got, want := strings.Count(page, ">Signer "), 1000+334; got != want {
		t.Errorf("%d named signature lines, want %d", got, want)
	}
	if got, want := strings.Count(page, ">[]</a>"), 500+166; got != want {
		t.Errorf("%d [] signers, want %d", got, want)
	}
}

// fxMutateKey returns a copy of k with random damage: random packets added as
// signatures anywhere, random bytes in user IDs and subkeys, truncated or
// flipped primary key material.
func fxMutateKey(rng *mrand.Rand, k *pgpkey.Key) *pgpkey.Key {
	randBytes := func(max int) []byte {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	randSig := func() pgpkey.Packet {
		var b []byte
		switch rng.IntN(4) {
		case 0:
			b = randBytes(64)
		case 1: // plausible v3/v4/v5/v6 header with random areas
			b = append([]byte{byte(2 + rng.IntN(5)), byte(rng.Uint32()), byte(rng.IntN(30)), byte(rng.IntN(12))}, randBytes(80)...)
		case 2: // well-formed area lengths, random subpackets
			h := randBytes(40)
			b = append([]byte{4, byte(rng.Uint32()), 1, 8, 0, byte(len(h))}, h...)
			u := randBytes(20)
			b = append(append(b, 0, byte(len(u))), u...)
			b = append(b, randBytes(10)...)
		default: // a real signature, corrupted at one byte
			b = fxRawV4Sig(byte(rng.Uint32()), time.Unix(int64(rng.Uint32()), 0), rng.Uint64(),
				fxSubpacket(byte(rng.IntN(40)), randBytes(30)))
			if len(b) > 0 {
				b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
			}
		}
		tag := pgpkey.TagSignature
		if rng.IntN(10) == 0 {
			tag = byte(rng.IntN(64))
		}
		return pgpkey.Packet{Tag: tag, Body: b}
	}
	addSigs := func(sigs []pgpkey.Packet) []pgpkey.Packet {
		out := append([]pgpkey.Packet(nil), sigs...)
		for range rng.IntN(4) {
			out = append(out, randSig())
		}
		return out
	}
	c := &pgpkey.Key{Primary: k.Primary, DirectSigs: addSigs(k.DirectSigs)}
	if rng.IntN(4) == 0 && len(c.Primary.Body) > 0 {
		b := append([]byte(nil), c.Primary.Body...)
		if rng.IntN(2) == 0 {
			b = b[:rng.IntN(len(b))]
		} else {
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		}
		c.Primary.Body = b
	}
	for _, g := range k.UIDs {
		p := g.Packet
		if rng.IntN(4) == 0 {
			p = pgpkey.Packet{Tag: p.Tag, Body: randBytes(50)}
		}
		c.UIDs = append(c.UIDs, pgpkey.Group{Packet: p, Sigs: addSigs(g.Sigs)})
	}
	if rng.IntN(3) == 0 {
		c.UIDs = append(c.UIDs, pgpkey.Group{Packet: pgpkey.Packet{Tag: pgpkey.TagUserID, Body: randBytes(30)}, Sigs: addSigs(nil)})
	}
	for _, g := range k.Subkeys {
		p := g.Packet
		if rng.IntN(4) == 0 {
			p = pgpkey.Packet{Tag: p.Tag, Body: randBytes(60)}
		}
		c.Subkeys = append(c.Subkeys, pgpkey.Group{Packet: p, Sigs: addSigs(g.Sigs)})
	}
	if rng.IntN(3) == 0 {
		c.Subkeys = append(c.Subkeys, pgpkey.Group{Packet: pgpkey.Packet{Tag: pgpkey.TagPublicSubkey, Body: randBytes(60)}, Sigs: addSigs(nil)})
	}
	return c
}

// fxFormatAll runs every key writer over keys and checks the MR index's line
// structure; any panic fails the test.
func fxFormatAll(t testing.TB, keys []*pgpkey.Key) {
	t.Helper()
	mr := fxMrIndexTB(t, keys)
	lines := strings.Split(strings.TrimSuffix(mr, "\n"), "\n")
	pubs := 0
	for _, l := range lines[1:] {
		switch {
		case strings.HasPrefix(l, "pub:"):
			pubs++
			if n := strings.Count(l, ":"); n != 6 {
				t.Errorf("pub line %q has %d colons, want 6", l, n)
			}
		case strings.HasPrefix(l, "uid:"):
			if n := strings.Count(l, ":"); n != 4 {
				t.Errorf("uid line %q has %d colons, want 4", l, n)
			}
		case l == "uat::::":
		default:
			t.Errorf("MR index line %q", l)
		}
	}
	if got, want := lines[0], fmt.Sprintf("info:1:%d", pubs); got != want {
		t.Errorf("info line %q, want %q", got, want)
	}
	var b bytes.Buffer
	if err := hkp.WriteHTMLIndex(&b, "fuzz", keys, hkp.IndexOptions{Fingerprint: true, Hash: true}); err != nil {
		t.Fatal(err)
	}
	lookup := func(id pgpkey.KeyID) (string, bool) { return "signer \x00<&>", id%2 == 0 }
	if err := hkp.WriteHTMLVIndex(&b, "fuzz", keys, hkp.IndexOptions{Fingerprint: true, Hash: true}, lookup, formatNow); err != nil {
		t.Fatal(err)
	}
	if bytes.ContainsAny(b.Bytes(), "\x00\x01\x7f") {
		t.Error("control character in an HTML page")
	}
}

func fxMrIndexTB(t testing.TB, keys []*pgpkey.Key) string {
	var b bytes.Buffer
	if err := hkp.WriteMRIndex(&b, keys, formatNow); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestFormatWritersSurviveRandomPackets damages the fixture and generated
// keys at random (seeded) and formats them: no writer may panic, and a
// signature that does not parse must not take its page down.
func TestFormatWritersSurviveRandomPackets(t *testing.T) {
	base := append(fxAllTestKeys(t), fxSigsKey(t), fxRevokedKey(t), fxExpiringKey(t), fxV3Key(t))
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := range 500 {
		k := fxMutateKey(rng, base[i%len(base)])
		fxFormatAll(t, []*pgpkey.Key{k})
		if t.Failed() {
			t.Fatalf("iteration %d", i)
		}
	}
}

// TestFormatUnparseableSignaturesStillRender checks that a key whose
// signatures are all garbage still gets its pub and uid lines.
func TestFormatUnparseableSignaturesStillRender(t *testing.T) {
	alice := fxKeyByFingerprint(t, fxReadTestKeys(t, "keys-a.pgp"), aliceFpr)
	junk := pgpkey.Packet{Tag: pgpkey.TagSignature, Body: []byte{4, 0x13, 22, 8, 0xff, 0xff}}
	k := &pgpkey.Key{Primary: alice.Primary, DirectSigs: []pgpkey.Packet{junk}}
	for _, g := range alice.UIDs {
		k.UIDs = append(k.UIDs, pgpkey.Group{Packet: g.Packet, Sigs: []pgpkey.Packet{junk, junk}})
	}
	for _, g := range alice.Subkeys {
		k.Subkeys = append(k.Subkeys, pgpkey.Group{Packet: g.Packet, Sigs: []pgpkey.Packet{junk}})
	}
	mr := fxMrIndex(t, []*pgpkey.Key{k}, formatNow)
	want := "info:1:1\npub:" + aliceFpr + ":22:256:1795374320::\n" +
		"uid:Alice Ed <alice@example.org>:1795374320::\n" +
		"uid:Alice Second <alice2@example.net>:1795374320::\n"
	if mr != want {
		t.Errorf("MR index\n%s\nwant\n%s", mr, want)
	}
	page := fxVindexHTML(t, "x", []*pgpkey.Key{k}, hkp.IndexOptions{}, nil, formatNow)
	for _, s := range []string{"<strong>pub</strong>", "Alice Ed &lt;alice@example.org&gt;", "Alice Second", "<strong>sub</strong>"} {
		if !strings.Contains(page, s) {
			t.Errorf("vindex lacks %q", s)
		}
	}
	if strings.Contains(page, "\r\nsig ") {
		t.Errorf("vindex shows a signature line for garbage:\n%s", page)
	}
}

// FuzzFormatSignature puts one arbitrary signature packet on the primary
// key, a user ID and a subkey of Alice and formats the result. go test runs
// the seeds (every signature of the fixture and generated keys); make fuzz
// runs it longer.
func FuzzFormatSignature(f *testing.F) {
	keys := fxAllTestKeys(f)
	alice := fxKeyByFingerprint(f, keys, aliceFpr)
	for _, k := range append(keys, fxSigsKey(f), fxRevokedKey(f), fxV3Key(f)) {
		for _, p := range k.Packets() {
			if p.Tag == pgpkey.TagSignature {
				f.Add(p.Body)
			}
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sig := pgpkey.Packet{Tag: pgpkey.TagSignature, Body: body}
		k := &pgpkey.Key{Primary: alice.Primary, DirectSigs: []pgpkey.Packet{sig}}
		for _, g := range alice.UIDs {
			k.UIDs = append(k.UIDs, pgpkey.Group{Packet: g.Packet, Sigs: append([]pgpkey.Packet{sig}, g.Sigs...)})
		}
		for _, g := range alice.Subkeys {
			k.Subkeys = append(k.Subkeys, pgpkey.Group{Packet: g.Packet, Sigs: append([]pgpkey.Packet{sig}, g.Sigs...)})
		}
		fxFormatAll(t, []*pgpkey.Key{k})
	})
}
