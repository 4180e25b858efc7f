package hkp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// This file formats op=vindex, SKS's verbose index (hkp.md §7.3): every
// signature of every key, one line each.

// IssuerLookup returns the primary user ID of the key with the given key ID,
// for naming signers on vindex pages; ok is false if no such key is known.
// WriteHTMLVIndex calls it at most MaxIssuerLookups times per page, never
// twice for the same key ID.
type IssuerLookup func(id pgpkey.KeyID) (primaryUID string, ok bool)

// MaxIssuerLookups bounds the IssuerLookup calls of one vindex page: SKS's
// max_uid_fetches default (settings.ml). Signers past it show as "[]".
const MaxIssuerLookups = 1000

// Layout constants of SKS's vindex page (index.ml).
const (
	vindexHeader = "Type bits/keyID     cr. time   exp time   key expir"
	blankDate    = "__________"
	noDate       = "          "
)

// WriteHTMLVIndex writes the HTML op=vindex page (hkp.md §7.3) for keys, in
// the order given, in SKS's layout: per key the pub line, the signatures
// directly on the primary key, the hash and fingerprint lines opt asks for,
// each user ID (a flagged primary first) and each subkey with its signatures sorted by
// creation time. Signers are named by the signature's Signer's User ID
// subpacket, "[selfsig]", or lookup (which may be nil); now decides which
// certifications show as expired.
//
// Signatures are parsed with go-crypto. What go-crypto refuses but SKS shows
// (v3 signatures, MD5 and RIPEMD-160 hashes, Elgamal signatures, unknown
// critical subpackets) is read by a small fallback reader of the packet
// layout; a signature neither can read is left out. Nothing here verifies a
// signature, as on SKS: the page says so in its disclaimer.
//
// Compared with SKS, deliberately: only hashed subpackets are shown (issuer
// IDs excepted), because anyone can change the unhashed area; subpacket 33
// (issuer fingerprint) counts as well as 16; a signature by the primary key
// on a subkey shows "[selfsig]" (SKS shows "[]"); every human-readable
// notation is listed (SKS keeps the last); a policy URL is a link only if it
// is http(s), so a "javascript:" URL cannot run; and the escaping of
// WriteHTMLIndex applies.
func WriteHTMLVIndex(w io.Writer, search string, keys []*pgpkey.Key, opt IndexOptions, lookup IssuerLookup, now time.Time) error {
	v := &vindexWriter{
		opt:    opt,
		lookup: lookup,
		names:  make(map[pgpkey.KeyID]string),
		today:  endOfDay(now),
	}
	lines := []string{vindexHeader}
	for _, k := range keys {
		lines = v.appendKey(lines, k)
	}
	return WritePage(w, searchTitle(search), preformatLines(lines))
}

type vindexWriter struct {
	opt     IndexOptions
	lookup  IssuerLookup
	lookups int                     // calls made; at most MaxIssuerLookups
	names   map[pgpkey.KeyID]string // lookup results, "" for unknown
	today   time.Time               // SKS: signatures expired before this show "exp"
}

// endOfDay is SKS's Stats.round_up_to_day (which works in local time; we use
// UTC, like every other date on the page).
func endOfDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
}

func (v *vindexWriter) appendKey(lines []string, k *pgpkey.Key) []string {
	id := k.KeyID()
	fpr := k.Fingerprint()
	if id == 0 || fpr.IsZero() {
		return lines
	}
	s := k.Summary()

	expCol := noDate // SKS: v4 keys have no expiry in the key packet
	if s.Version < 4 {
		expCol = blankDate
		if !s.Expires.IsZero() {
			expCol = sksDate(s.Expires)
		}
	}
	pub := fmt.Sprintf(`<strong>pub</strong>  %4d%s/<a href="%s">%s</a> %s %s `,
		s.Bits, algoLetter(s.Algorithm), lookupLink("get", IndexOptions{}, id), shortKeyID(id),
		sksDate(s.Created), expCol)
	lines = append(lines, indexKeySeparator+pub)

	self := selfIDs{id}
	// Direct signatures keep their canonical order, as on SKS.
	for _, p := range k.DirectSigs {
		lines = v.appendSig(lines, p, self, s.Created)
	}
	lines = appendExtraLines(lines, k, v.opt)

	for _, i := range uidOrder(k, s, true) {
		g := k.UIDs[i]
		var head string
		if g.Packet.Tag == pgpkey.TagUserAttribute {
			head = "<strong>uat</strong> [contents omitted]"
		} else {
			head = "<strong>uid</strong> " + uidSpan(string(g.Packet.Body))
		}
		lines = append(lines, "", head)
		lines = v.appendSigs(lines, g.Sigs, self, s.Created)
	}

	for i, g := range k.Subkeys {
		sub := s.Subkeys[i]
		subCol := noDate
		if len(g.Packet.Body) > 0 && g.Packet.Body[0] < 4 {
			subCol = blankDate
		}
		short := "????????"
		if sub.KeyID != 0 {
			short = shortKeyID(sub.KeyID)
		}
		line := fmt.Sprintf(`<strong>sub</strong>  %4d%s/%s %s %s `,
			sub.Bits, algoLetter(sub.Algorithm), short, sksDate(sub.Created), subCol)
		lines = append(lines, "", line)
		lines = v.appendSigs(lines, g.Sigs, selfIDs{id, sub.KeyID}, sub.Created)
	}
	return lines
}

// uidSpan is SKS's uid line content: the escaped user ID in a "uid" span,
// or "[N-byte uid]" unstyled for an overlong one.
func uidSpan(uid string) string {
	if len(uid) > maxDisplayUIDBytes {
		return displayUID(uid)
	}
	return `<span class="uid">` + sksQuote(uid) + `</span>`
}

// selfIDs are the key IDs whose signatures show as "[selfsig]": the primary
// key, and on a subkey the subkey itself.
type selfIDs []pgpkey.KeyID

func (s selfIDs) has(id pgpkey.KeyID) bool {
	for _, x := range s {
		if x == id && x != 0 {
			return true
		}
	}
	return false
}

// appendSigs writes a group's signatures sorted by creation time, oldest
// first, signatures without a creation time before all others (SKS's
// sort_siginfo_list, a stable sort on an option).
func (v *vindexWriter) appendSigs(lines []string, sigs []pgpkey.Packet, self selfIDs, keyCreated time.Time) []string {
	infos := make([]sigInfo, 0, len(sigs))
	for _, p := range sigs {
		if si, ok := parseSigInfo(p); ok {
			infos = append(infos, si)
		}
	}
	sort.SliceStable(infos, func(i, j int) bool {
		a, b := infos[i].created, infos[j].created
		if a.IsZero() || b.IsZero() {
			return a.IsZero() && !b.IsZero()
		}
		return a.Before(b)
	})
	for _, si := range infos {
		lines = v.appendSigInfo(lines, si, self, keyCreated)
	}
	return lines
}

func (v *vindexWriter) appendSig(lines []string, p pgpkey.Packet, self selfIDs, keyCreated time.Time) []string {
	si, ok := parseSigInfo(p)
	if !ok {
		return lines
	}
	return v.appendSigInfo(lines, si, self, keyCreated)
}

// appendSigInfo is SKS's Index.siginfo_to_lines: the sig line, then policy
// URL, notation and revocation key lines.
func (v *vindexWriter) appendSigInfo(lines []string, si sigInfo, self selfIDs, keyCreated time.Time) []string {
	created, sigExp, keyExp := blankDate, blankDate, blankDate
	expiredSig := false
	if !si.created.IsZero() {
		created = sksDate(si.created)
		if si.sigLifetime != 0 {
			end := si.created.Add(time.Duration(si.sigLifetime) * time.Second)
			sigExp = sksDate(end)
			expiredSig = end.Before(v.today)
		}
	}
	if si.keyLifetime != 0 && !keyCreated.IsZero() {
		keyExp = sksDate(keyCreated.Add(time.Duration(si.keyLifetime) * time.Second))
	}

	var kind string
	switch t := si.sigType; t {
	case 0x10, 0x11, 0x12, 0x13:
		suffix := ""
		if t > 0x10 {
			suffix = string(rune('0' + t - 0x10))
		}
		if expiredSig {
			kind = fmt.Sprintf(`<span class="warn"> exp%-2s</span>`, suffix)
		} else {
			kind = fmt.Sprintf(" sig%-2s", suffix)
		}
	case 0x20, 0x28, 0x30:
		kind = `<span class="warn">revok </span>`
	case 0x1f:
		kind = "dirct "
	case 0x18:
		kind = "sbind "
	default:
		kind = fmt.Sprintf(" 0x%02x", t)
	}

	keyID := "no keyid"
	var name string
	switch {
	case si.signerUID != nil:
		name = *si.signerUID
	case si.hasIssuer && self.has(si.issuer):
		name = "[selfsig]"
	case si.hasIssuer:
		name = v.issuerName(si.issuer)
	default:
		name = "[]"
	}
	name = displayUID(name)
	if si.hasIssuer {
		keyID = `<a href="` + lookupLink("get", v.opt, si.issuer) + `">` + shortKeyID(si.issuer) + `</a>`
		if name != "" {
			name = `<a href="` + lookupLink("vindex", v.opt, si.issuer) + `">` + name + `</a>`
		}
	}
	lines = append(lines, fmt.Sprintf("sig %-6s %s %s %s %s %s", kind, keyID, created, sigExp, keyExp, name))

	if si.hasPolicy {
		u := sksQuote(si.policyURL)
		if isWebURL(si.policyURL) {
			lines = append(lines, `    Policy URL: <a href="`+u+`">`+u+`</a>`)
		} else {
			lines = append(lines, `    Policy URL: `+u)
		}
	}
	for _, n := range si.notations {
		lines = append(lines, `    Notation data: <span class="text-decoration: underline;">`+
			sksQuote(n.name)+`</span> `+sksQuote(n.value))
	}
	for _, fp := range si.revKeys {
		lines = append(lines, `    Revocation key fingerprint: <a href="`+
			lookupLinkHex("vindex", v.opt, fp.String())+`">`+fingerprintGroups(fp)+`</a>`)
	}
	return lines
}

// issuerName asks lookup for a signer's primary user ID, at most
// MaxIssuerLookups times per page and once per key ID; "[]" when unknown.
func (v *vindexWriter) issuerName(id pgpkey.KeyID) string {
	name, seen := v.names[id]
	if !seen {
		if v.lookup != nil && v.lookups < MaxIssuerLookups {
			v.lookups++
			if uid, ok := v.lookup(id); ok {
				name = uid
			}
		}
		v.names[id] = name
	}
	if name == "" {
		return "[]"
	}
	return name
}

func isWebURL(u string) bool {
	l := strings.ToLower(u)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

// sigInfo is what a vindex line shows of a signature (SKS's Index.siginfo).
// Zero values mean "absent".
type sigInfo struct {
	sigType     byte
	created     time.Time
	sigLifetime uint32 // seconds after created; 0: never expires
	keyLifetime uint32 // seconds after the key's creation; 0: never
	issuer      pgpkey.KeyID
	hasIssuer   bool
	signerUID   *string
	primaryUID  bool // Primary User ID subpacket set
	policyURL   string
	hasPolicy   bool
	notations   []sigNotation // human-readable ones only
	revKeys     []pgpkey.Fingerprint
}

type sigNotation struct{ name, value string }

// Signature subpacket types read here (RFC 9580 §5.2.3.7).
const (
	subCreated    = 2
	subSigExpiry  = 3
	subKeyExpiry  = 9
	subRevKey     = 12
	subIssuer     = 16
	subNotation   = 20
	subPrimaryUID = 25
	subPolicyURL  = 26
	subSignerUID  = 28
	subIssuerFpr  = 33
	notationHuman = 0x80 // first flag octet of a human-readable notation
)

// parseSigInfo reads a signature packet for display. It never panics and
// reports false for a packet it cannot make sense of.
func parseSigInfo(p pgpkey.Packet) (si sigInfo, ok bool) {
	if p.Tag != pgpkey.TagSignature || len(p.Body) < 2 {
		return si, false
	}
	switch p.Body[0] {
	case 2, 3:
		return parseV3Sig(p.Body)
	}
	if sig := goCryptoSig(p.Body); sig != nil {
		si = sigInfo{sigType: byte(sig.SigType), created: sig.CreationTime.UTC()}
		if sig.SigLifetimeSecs != nil {
			si.sigLifetime = *sig.SigLifetimeSecs
		}
		if sig.KeyLifetimeSecs != nil {
			si.keyLifetime = *sig.KeyLifetimeSecs
		}
		switch {
		case sig.IssuerKeyId != nil:
			si.issuer, si.hasIssuer = pgpkey.KeyID(*sig.IssuerKeyId), true
		case sig.IssuerFingerprint != nil:
			si.issuer, si.hasIssuer = issuerFromFingerprint(sig.IssuerFingerprint)
		}
		si.signerUID = sig.SignerUserId
		si.primaryUID = sig.IsPrimaryId != nil && *sig.IsPrimaryId
		si.policyURL, si.hasPolicy = sig.PolicyURI, sig.PolicyURI != ""
		for _, n := range sig.Notations {
			if n.IsHumanReadable {
				si.notations = append(si.notations, sigNotation{n.Name, string(n.Value)})
			}
		}
		// go-crypto does not keep the revocation key subpacket.
		if hashed, _, ok := sigSubpacketAreas(p.Body); ok {
			forEachSubpacket(hashed, func(typ byte, data []byte) {
				if typ == subRevKey {
					si.addRevKey(data)
				}
			})
		}
		return si, true
	}
	return parseSigFallback(p.Body)
}

// goCryptoSig parses a signature body with go-crypto, or returns nil. A
// panic inside go-crypto on hostile input counts as "does not parse".
func goCryptoSig(body []byte) (sig *packet.Signature) {
	defer func() {
		if recover() != nil {
			sig = nil
		}
	}()
	// New-format header with a five-octet length (RFC 9580 §4.2.1).
	framed := make([]byte, 0, 6+len(body))
	framed = append(framed, 0xc0|pgpkey.TagSignature, 0xff)
	framed = binary.BigEndian.AppendUint32(framed, uint32(len(body)))
	framed = append(framed, body...)
	pk, err := packet.Read(bytes.NewReader(framed))
	if err != nil {
		return nil
	}
	sig, _ = pk.(*packet.Signature)
	return sig
}

// parseV3Sig reads a v2/v3 signature (RFC 9580 §5.2.2), which go-crypto
// does not parse: version, 5, type, creation time, issuer key ID.
func parseV3Sig(b []byte) (sigInfo, bool) {
	if len(b) < 15 || b[1] != 5 {
		return sigInfo{}, false
	}
	return sigInfo{
		sigType:   b[2],
		created:   time.Unix(int64(binary.BigEndian.Uint32(b[3:7])), 0).UTC(),
		issuer:    pgpkey.KeyID(binary.BigEndian.Uint64(b[7:15])),
		hasIssuer: true,
	}, true
}

// parseSigFallback reads a v4/v5/v6 signature go-crypto refused, with the
// same policy: display fields from the hashed area, the issuer from either.
// Subpackets are read as SKS does, the last occurrence winning.
func parseSigFallback(b []byte) (sigInfo, bool) {
	hashed, unhashed, ok := sigSubpacketAreas(b)
	if !ok {
		return sigInfo{}, false
	}
	si := sigInfo{sigType: b[1]}
	issuer := func(typ byte, data []byte) {
		switch {
		case typ == subIssuer && len(data) == 8:
			si.issuer, si.hasIssuer = pgpkey.KeyID(binary.BigEndian.Uint64(data)), true
		case typ == subIssuerFpr && len(data) > 1 && !si.hasIssuer:
			si.issuer, si.hasIssuer = issuerFromFingerprint(data[1:])
		}
	}
	forEachSubpacket(hashed, func(typ byte, data []byte) {
		switch typ {
		case subCreated:
			if len(data) == 4 {
				si.created = time.Unix(int64(binary.BigEndian.Uint32(data)), 0).UTC()
			}
		case subSigExpiry:
			if len(data) == 4 {
				si.sigLifetime = binary.BigEndian.Uint32(data)
			}
		case subKeyExpiry:
			if len(data) == 4 {
				si.keyLifetime = binary.BigEndian.Uint32(data)
			}
		case subRevKey:
			si.addRevKey(data)
		case subNotation:
			if len(data) >= 8 && data[0]&notationHuman != 0 {
				nl := int(binary.BigEndian.Uint16(data[4:6]))
				vl := int(binary.BigEndian.Uint16(data[6:8]))
				if 8+nl+vl <= len(data) {
					si.notations = append(si.notations, sigNotation{
						string(data[8 : 8+nl]), string(data[8+nl : 8+nl+vl])})
				}
			}
		case subPrimaryUID:
			si.primaryUID = len(data) == 1 && data[0] != 0
		case subPolicyURL:
			si.policyURL, si.hasPolicy = string(data), true
		case subSignerUID:
			s := string(data)
			si.signerUID = &s
		}
		issuer(typ, data)
	})
	forEachSubpacket(unhashed, issuer)
	return si, true
}

// addRevKey records a Revocation Key subpacket (class, algorithm,
// fingerprint of 20 or 32 octets).
func (si *sigInfo) addRevKey(data []byte) {
	if len(data) < 2 {
		return
	}
	if fp, err := pgpkey.FingerprintFromBytes(data[2:]); err == nil && fp.Len() != 16 {
		si.revKeys = append(si.revKeys, fp)
	}
}

// issuerFromFingerprint derives a key ID from an issuer fingerprint: the
// low 64 bits of a v4 one, the high 64 bits of a v5/v6 one.
func issuerFromFingerprint(fp []byte) (pgpkey.KeyID, bool) {
	f, err := pgpkey.FingerprintFromBytes(fp)
	if err != nil || f.KeyID() == 0 {
		return 0, false
	}
	return f.KeyID(), true
}

// sigSubpacketAreas returns the hashed and unhashed subpacket areas of a
// v4, v5 or v6 signature body (RFC 9580 §5.2.3): two-octet area lengths
// before v6, four-octet ones in v6.
func sigSubpacketAreas(b []byte) (hashed, unhashed []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	lenSize := 2
	switch b[0] {
	case 4, 5:
	case 6:
		lenSize = 4
	default:
		return nil, nil, false
	}
	rest := b[4:] // version, type, public-key and hash algorithms
	area := func() ([]byte, bool) {
		if len(rest) < lenSize {
			return nil, false
		}
		var n uint64
		if lenSize == 2 {
			n = uint64(binary.BigEndian.Uint16(rest))
		} else {
			n = uint64(binary.BigEndian.Uint32(rest))
		}
		rest = rest[lenSize:]
		if n > uint64(len(rest)) {
			return nil, false
		}
		a := rest[:n]
		rest = rest[n:]
		return a, true
	}
	if hashed, ok = area(); !ok {
		return nil, nil, false
	}
	if unhashed, ok = area(); !ok {
		return nil, nil, false
	}
	return hashed, unhashed, true
}

// forEachSubpacket calls f for each subpacket of an area with its type
// (critical bit cleared) and data, stopping at the first malformed one.
func forEachSubpacket(area []byte, f func(typ byte, data []byte)) {
	for len(area) > 0 {
		var n, hdr int
		switch c := area[0]; {
		case c < 192:
			n, hdr = int(c), 1
		case c < 255:
			if len(area) < 2 {
				return
			}
			n, hdr = (int(c)-192)<<8+int(area[1])+192, 2
		default:
			if len(area) < 5 {
				return
			}
			l := binary.BigEndian.Uint32(area[1:5])
			if uint64(l) > uint64(len(area)) {
				return
			}
			n, hdr = int(l), 5
		}
		if n == 0 || hdr+n > len(area) {
			return
		}
		body := area[hdr : hdr+n]
		area = area[hdr+n:]
		f(body[0]&0x7f, body[1:])
	}
}
