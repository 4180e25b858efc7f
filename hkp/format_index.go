package hkp

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// This file formats op=index: the machine-readable index (hkp.md §6) and
// SKS's HTML index (§7.2). The verbose index is in format_vindex.go.

// WriteMRIndex writes the machine-readable index of keys (hkp.md §6.1), in
// the order given: "info:1:N", then per key its pub line, its uid lines
// (the primary user ID first if it is flagged as such, then the others in
// canonical order, see uidOrder) and its uat lines. now decides the "e"
// (expired) flags.
//
// Compared with SKS 1.1.6 (mRindex.ml), deliberately:
//   - user IDs are escaped as hkp.md §6.1 recommends: '%' as %25 (SKS writes
//     "%%", which GnuPG decodes to garbage), ':' as %3A, and every byte below
//     0x20, 0x7F and above as %XY. SKS leaves control characters raw, so a
//     user ID holding a line break splits the record.
//   - uid lines come before uat lines, a flagged primary user ID first; SKS
//     writes them in packet order, and OpenKeychain skips a key whose pub
//     line is not followed directly by a uid line.
//   - a uid creation date is always written, falling back to the key's
//     creation date; SKS leaves it empty when no self-signature is found,
//     which makes OpenKeychain skip the key.
//   - dates, expiry and the r flag come from pgpkey.Summary, which verifies
//     self-signatures and reads subpacket 33 as well as 16; SKS trusts any
//     revocation-typed signature and ignores subpacket 33. For a key whose
//     signatures cannot be verified (v3, v5, unknown algorithms) "r" falls
//     back to SKS's rule, restricted to key revocations by the key itself.
//   - flags "e" (key or user ID expired) and "r" on uid lines (revoked user
//     ID) are written; SKS writes neither.
//   - v5/v6 keys are written with their 64-hex fingerprint (SKS cannot
//     parse them); callers that hide them from legacy clients filter first.
//   - a key whose primary key packet is too malformed to identify is left
//     out, and the count says so; SKS answers 500 for the whole request.
//
// The count N is the number of pub lines written. Callers answer 404 instead
// of calling this with no keys (hkp.md §6.1).
func WriteMRIndex(w io.Writer, keys []*pgpkey.Key, now time.Time) error {
	entries := make([]*mrEntry, len(keys))
	for i, k := range keys {
		entries[i] = newMREntry(k)
	}
	return writeMREntries(w, entries, now)
}

// mrEntry is what the machine-readable index shows of one key, derived
// from the key once: index lookups keep it in the summary cache by key hash
// and answer from it without parsing the key again. Only the "e" flags
// depend on the time, and they are decided when writing.
type mrEntry struct {
	id      string         // mrKeyField; empty: the key is left out
	sum     pgpkey.Summary // PrimarySummary: no Subkeys
	revoked bool           // keyRevoked
	order   []int          // uidOrder without attributes
	// text is the entry's lines as last written, kept for as long as no
	// expiry date is crossed (the only thing that depends on the time).
	text atomic.Pointer[mrText]
}

// mrText is an entry's rendered lines and the times between which they
// stay the same: from (inclusive) is the latest expiry date at or before
// the time they were rendered, until (exclusive; zero: none) the earliest
// after it.
type mrText struct {
	b           []byte
	from, until time.Time
}

// appendText appends the entry's lines at now to dst, rendering them only
// when now is outside the range the last rendering holds for.
func (e *mrEntry) appendText(dst []byte, now time.Time) []byte {
	return append(dst, e.textAt(now)...)
}

// textAt returns the entry's lines at now, which the caller must not
// modify, rendering them only when the cached text is not valid at now.
func (e *mrEntry) textAt(now time.Time) []byte {
	if t := e.text.Load(); t != nil && !now.Before(t.from) && (t.until.IsZero() || now.Before(t.until)) {
		return t.b
	}
	var b strings.Builder
	appendMREntry(&b, e, now)
	t := &mrText{b: []byte(b.String())}
	// isExpiredAt(exp, now) is exp <= now: the "e" flags stay as they are
	// for every time in [latest exp <= now, earliest exp > now).
	exps := []time.Time{e.sum.Expires}
	for _, u := range e.sum.UIDs {
		exps = append(exps, u.Expires)
	}
	for _, exp := range exps {
		switch {
		case exp.IsZero():
		case !exp.After(now):
			if exp.After(t.from) {
				t.from = exp
			}
		case t.until.IsZero() || exp.Before(t.until):
			t.until = exp
		}
	}
	e.text.Store(t)
	return t.b
}

func newMREntry(k *pgpkey.Key) *mrEntry {
	e := &mrEntry{id: mrKeyField(k)}
	if e.id == "" {
		return e
	}
	e.sum = k.PrimarySummary() // subkeys are not shown: not verified
	e.revoked = keyRevoked(k, e.sum)
	e.order = uidOrder(k, e.sum, false)
	return e
}

// writeMREntries writes "info:1:N" and the entries; N counts the entries
// written (not those without an id).
func writeMREntries(w io.Writer, entries []*mrEntry, now time.Time) error {
	_, err := w.Write(bytes.Join(mrEntryTexts(entries, now), nil))
	return err
}

// mrEntryTexts returns what writeMREntries writes, in pieces: the info
// line, then each entry's cached text (not to be modified).
func mrEntryTexts(entries []*mrEntry, now time.Time) [][]byte {
	parts := make([][]byte, 1, len(entries)+1)
	n := 0
	for _, e := range entries {
		if e.id != "" {
			parts = append(parts, e.textAt(now))
			n++
		}
	}
	info := make([]byte, 0, 16)
	info = append(info, "info:1:"...)
	info = strconv.AppendInt(info, int64(n), 10)
	parts[0] = append(info, '\n')
	return parts
}

func appendMREntry(b *strings.Builder, e *mrEntry, now time.Time) {
	s := &e.sum
	b.WriteString("pub:")
	b.WriteString(e.id)
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(s.Algorithm))
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(s.Bits))
	b.WriteByte(':')
	b.WriteString(mrUnix(s.Created))
	b.WriteByte(':')
	if !s.Expires.IsZero() {
		b.WriteString(mrUnix(s.Expires))
	}
	b.WriteByte(':')
	if e.revoked {
		b.WriteByte('r')
	}
	if isExpiredAt(s.Expires, now) {
		b.WriteByte('e')
	}
	b.WriteByte('\n')

	for _, i := range e.order {
		u := s.UIDs[i]
		created := u.Created
		if created.IsZero() {
			created = s.Created
		}
		b.WriteString("uid:")
		b.WriteString(mrEscape(u.Text))
		b.WriteByte(':')
		b.WriteString(mrUnix(created))
		b.WriteByte(':')
		if !u.Expires.IsZero() {
			b.WriteString(mrUnix(u.Expires))
		}
		b.WriteByte(':')
		if u.Revoked {
			b.WriteByte('r')
		}
		if isExpiredAt(u.Expires, now) {
			b.WriteByte('e')
		}
		b.WriteByte('\n')
	}
	for _, u := range s.UIDs {
		if u.IsAttribute {
			b.WriteString("uat::::\n") // as SKS: GnuPG ignores the record
		}
	}
}

// mrKeyField is the pub line's first field (hkp.md §6.1): the fingerprint,
// except for v2/v3 keys, whose 16-hex key ID is given because a v3
// fingerprint does not yield it (as SKS and Hockeypuck do). Empty if the key
// cannot be identified.
func mrKeyField(k *pgpkey.Key) string {
	fpr := k.Fingerprint()
	switch fpr.Len() {
	case 20, 32:
		return fpr.String()
	case 16:
		if id := k.KeyID(); id != 0 {
			return id.String()
		}
	}
	return ""
}

// mrEscape escapes a user ID for the MR index (hkp.md §6.1 recommendation):
// '%', ':', bytes below 0x20, 0x7F and bytes from 0x80 as %XY, uppercase.
// Percent-escaped UTF-8 is what GnuPG, OpenKeychain and Thunderbird all
// decode correctly.
func mrEscape(s string) string {
	const hexdigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '%' || c == ':' {
			b.WriteByte('%')
			b.WriteByte(hexdigits[c>>4])
			b.WriteByte(hexdigits[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func mrUnix(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.Unix(), 10)
}

// isExpiredAt reports whether an expiry time (zero: never) is not after now.
func isExpiredAt(exp, now time.Time) bool { return !exp.IsZero() && !exp.After(now) }

// uidOrder returns the indexes of s.UIDs in display order: the primary user
// ID first if its self-signature carries the Primary User ID flag, then the
// others in canonical order. With attributes, user attributes stay in their
// place among the others (SKS's HTML pages); without, they are left out (the
// MR index writes them last).
//
// As on SKS (Index.move_primary_to_front), only a flagged user ID moves: a
// key without the flag keeps canonical order, where SKS's answers have it
// (GnuPG would call the newest self-certified user ID primary). NB: SKS
// moves every user ID with a self-signature carrying the flag, unverified,
// and the MR index moves none; we move the one pgpkey.Summary names primary,
// from verified self-signatures, everywhere.
func uidOrder(k *pgpkey.Key, s pgpkey.Summary, attributes bool) []int {
	primary := -1
	for i, u := range s.UIDs {
		if u.Primary && !u.IsAttribute && i < len(k.UIDs) && flaggedPrimary(k, k.UIDs[i]) {
			primary = i
		}
	}
	order := make([]int, 0, len(s.UIDs))
	if primary >= 0 {
		order = append(order, primary)
	}
	for i, u := range s.UIDs {
		if i == primary || u.IsAttribute && !attributes {
			continue
		}
		order = append(order, i)
	}
	return order
}

// flaggedPrimary reports whether a user ID has a signature by the key itself
// with the Primary User ID flag set.
func flaggedPrimary(k *pgpkey.Key, g pgpkey.Group) bool {
	self := k.KeyID()
	for _, p := range g.Sigs {
		si, ok := parseSigInfo(p)
		if ok && si.primaryUID && si.hasIssuer && si.issuer == self {
			return true
		}
	}
	return false
}

// keyRevoked reports whether index pages mark the key revoked. Summary's
// answer (a key revocation verified against the key) is used whenever
// Summary could verify anything. For keys it cannot check (v2/v3, v5, unknown
// algorithms), SKS's rule applies (Index.is_revoked: a revocation-typed
// signature directly on the primary key), restricted to key revocations
// (0x20) whose issuer is the key itself or not given, so that a third party
// cannot mark someone's key revoked.
func keyRevoked(k *pgpkey.Key, s pgpkey.Summary) bool {
	if s.Verified {
		return s.Revoked
	}
	self := k.KeyID()
	for _, p := range k.DirectSigs {
		si, ok := parseSigInfo(p)
		if ok && si.sigType == 0x20 && (!si.hasIssuer || si.issuer == self) {
			return true
		}
	}
	return false
}

// IndexOptions are the request flags that change the HTML index pages:
// fingerprint=on adds each key's fingerprint, hash=on its SKS key hash, and
// both are carried in the links to other keys, as SKS does.
type IndexOptions struct {
	Fingerprint, Hash bool
}

// Layout constants of SKS's index pages (htmlTemplates.ml, index.ml).
const (
	indexHeader        = "Type bits/keyID     Date       User ID"
	indexKeySeparator  = "</pre><hr /><pre>"
	indexUIDIndent     = "\r\n                               " // 31 spaces
	indexRevokedMarker = " *** KEY REVOKED *** [not verified]\r\n                              "
	maxDisplayUIDBytes = 1024 // SKS master Index.max_displayable_uid_length
)

// WriteHTMLIndex writes the HTML op=index page (hkp.md §7.2) for keys, in
// the order given, in SKS's layout: a <pre> block with one entry per key
// (pub line with a link to op=get, the creation date, the user IDs with the
// first one linking to op=vindex) and, as opt asks, its key hash and
// fingerprint. search is the search text shown in the title.
//
// Compared with SKS, deliberately: the title is escaped; user IDs longer
// than 1024 bytes are shown as "[N-byte uid]" (SKS master does so on vindex
// only); control characters and invalid UTF-8 become U+FFFD; the revoked
// marker follows keyRevoked rather than any revocation-typed signature;
// newer algorithms get letters (see algoLetter); a key that cannot be
// identified is left out (SKS leaves out keys whose rendering fails).
func WriteHTMLIndex(w io.Writer, search string, keys []*pgpkey.Key, opt IndexOptions) error {
	lines := []string{indexHeader}
	for _, k := range keys {
		lines = appendIndexKey(lines, k, opt)
	}
	return WritePage(w, searchTitle(search), preformatLines(lines))
}

func appendIndexKey(lines []string, k *pgpkey.Key, opt IndexOptions) []string {
	id := k.KeyID()
	fpr := k.Fingerprint()
	if id == 0 || fpr.IsZero() {
		return lines
	}
	s := k.Summary()
	var uids []string
	for _, i := range uidOrder(k, s, true) {
		u := s.UIDs[i]
		if u.IsAttribute {
			uids = append(uids, "[user attribute packet]")
		} else {
			uids = append(uids, displayUID(u.Text))
		}
	}
	if len(uids) > 0 {
		uids[0] = `<a href="` + lookupLink("vindex", opt, id) + `">` + uids[0] + `</a>`
	}
	revoked := ""
	if keyRevoked(k, s) {
		revoked = indexRevokedMarker
	}
	pub := fmt.Sprintf(`pub  %4d%s/<a href="%s">%s</a> %s%s `,
		s.Bits, algoLetter(s.Algorithm), lookupLink("get", IndexOptions{}, id), shortKeyID(id),
		sksDate(s.Created), revoked) + strings.Join(uids, indexUIDIndent)
	lines = append(lines, indexKeySeparator, pub)
	return appendExtraLines(lines, k, opt)
}

// appendExtraLines adds the hash=on and fingerprint=on lines, in SKS's order.
func appendExtraLines(lines []string, k *pgpkey.Key, opt IndexOptions) []string {
	if opt.Hash {
		h := k.Hash().String()
		lines = append(lines, "\t Hash=<a href=/pks/lookup?op=hget&amp;search="+h+">"+h+"</a>")
	}
	if opt.Fingerprint {
		lines = append(lines, "\t Fingerprint="+fingerprintGroups(k.Fingerprint()))
	}
	return lines
}

// searchTitle is SKS's index title, "Search results for '<search>'".
func searchTitle(search string) string { return "Search results for '" + sksQuote(search) + "'" }

// preformatLines is SKS's HtmlTemplates.preformat_list.
func preformatLines(lines []string) string {
	return "<pre>" + strings.Join(lines, "\r\n") + "\r\n</pre>"
}

// lookupLink is SKS's HtmlTemplates.link, already HTML-escaped for an
// attribute: /pks/lookup?op=OP[&amp;hash=on][&amp;fingerprint=on]&amp;search=0xLONGID.
func lookupLink(op string, opt IndexOptions, id pgpkey.KeyID) string {
	return lookupLinkHex(op, opt, id.String())
}

func lookupLinkHex(op string, opt IndexOptions, hex string) string {
	l := "/pks/lookup?op=" + op
	if opt.Hash {
		l += "&amp;hash=on"
	}
	if opt.Fingerprint {
		l += "&amp;fingerprint=on"
	}
	return l + "&amp;search=0x" + hex
}

// shortKeyID is the 8-hex short key ID SKS shows.
func shortKeyID(id pgpkey.KeyID) string { return id.String()[8:] }

// displayUID is SKS master's Index.html_quoted_uid: the escaped user ID, or
// "[N-byte uid]" for one longer than 1024 bytes.
func displayUID(uid string) string {
	if len(uid) > maxDisplayUIDBytes {
		return fmt.Sprintf("[%d-byte uid]", len(uid))
	}
	return sksQuote(uid)
}

// sksDate formats a time as SKS does on index pages: YYYY-MM-DD in UTC.
func sksDate(t time.Time) string { return t.UTC().Format("2006-01-02") }

// algoLetter is SKS's Packet.pk_alg_to_ident, extended for the RFC 9580
// algorithms SKS predates (it shows "?" for them): X25519/X448 as ECDH
// ("e"), Ed25519/Ed448 as the other signing ECC ("E").
func algoLetter(algo int) string {
	switch algo {
	case 1:
		return "R"
	case 2:
		return "r"
	case 3:
		return "s"
	case 16:
		return "g"
	case 17:
		return "D"
	case 18, 25, 26:
		return "e"
	case 19, 22, 27, 28:
		return "E"
	case 20:
		return "G"
	}
	return "?"
}

// fingerprintGroups is SKS's Fingerprint.fp_to_string: v4 fingerprints in
// groups of 4 hex digits with a double space after the fifth group, v3 in
// groups of 2 with the double space after the eighth, each group followed by
// a space (so there is a trailing one). v5/v6 fingerprints, which SKS cannot
// show, get groups of 4 with the double space after the eighth (the middle).
func fingerprintGroups(fpr pgpkey.Fingerprint) string {
	hex := fpr.String()
	size, extra := 4, 4
	switch fpr.Len() {
	case 16:
		size, extra = 2, 7
	case 32:
		size, extra = 4, 7
	}
	var b strings.Builder
	for i := 0; i*size+size <= len(hex); i++ {
		b.WriteString(hex[i*size : i*size+size])
		b.WriteByte(' ')
		if i == extra {
			b.WriteByte(' ')
		}
	}
	return b.String()
}
