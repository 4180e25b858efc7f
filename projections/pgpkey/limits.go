package pgpkey

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
)

// Limits bounds what one stored key may hold: the abuse limits every key
// passes before it is appended to the log, whatever path it came by (HKP
// upload, recon fetch, mail, import). The zero value of a field means its
// default (DefaultLimits); a negative value means no limit.
//
// # The flooded-key policy
//
// In 2019 attackers attached 55,000–150,000 fake third-party certifications
// to a few keys (CVE-2019-13050); SKS stored and served them, and GnuPG
// choked on the result. Signatures cannot be checked against keys the
// server may not have, and nothing stops anybody from certifying anybody,
// so Apply keeps what only the key holder can make and caps the rest:
//
//  1. The primary key packet must be within MaxPacketBytes, or the whole key
//     is refused (ErrTooLarge).
//  2. Everything already stored is kept: the log is append-only and the
//     projections merge by union, so a stored packet is never taken back.
//     Stored packets count against every budget below.
//  3. New packets are admitted in priority order while the budgets last
//     (MaxUIDs, MaxSubkeys, MaxSigs, MaxKeyBytes):
//     a. self-signatures on the primary key (direct-key signatures and key
//     revocations) that verify;
//     b. user IDs and user attributes that carry a self-signature that
//     verifies, with those self-signatures (certifications and
//     revocations); then subkeys with a binding or revocation that verifies;
//     c. user IDs, attributes and subkeys without one, in canonical order
//     (keys whose signatures cannot be verified here: v3 keys, unknown
//     algorithms);
//     d. all other signatures ("third-party": made by another key, or
//     claiming to be made by this key and not verifying), newest first by
//     their signature creation time, at most MaxCertsPerUID on each user ID,
//     attribute, subkey and on the primary key.
//  4. A signature over MaxSigBytes, and a user ID, attribute or subkey
//     packet over MaxPacketBytes (with its signatures) is dropped on its own.
//
// Self-signatures are verified (a forged "self" signature is third-party),
// but only up to the MaxSigs budget, so a flood of forged self-claims costs
// at most MaxSigs verifications. When a key's signatures cannot be verified
// here at all, a signature that names the key as its issuer counts as self.
//
// A key the policy changed has a different SKS hash from the copy its
// sender holds. Callers that fetch by hash (recon) must remember that hash,
// or they fetch it again every round (Trim.Changed).
//
// Matches no other server exactly. SKS 1.1.6 has no limits at all.
// Hockeypuck drops single packets over maxPacketLength (8 KiB, signatures:
// maxSigPacketLength, 64 KiB) and drops a whole key over maxKeyLength
// (1 MiB) — which lets an attacker freeze a key by flooding it up to the
// limit; it has no per-user-ID cap. Here a flood only ever fills the
// third-party budget of one user ID; self-signatures, new user IDs and
// revocations still get in.
//
// NB: the cap is first come, first kept across updates: once a user ID holds
// MaxCertsPerUID third-party certifications, newer ones are refused until an
// operator raises the limit. Keeping the newest instead would need stored
// certifications to be dropped, which an append-only log cannot do without
// rewriting history, and an attacker controls creation times anyway.
type Limits struct {
	// MaxKeyBytes bounds the stored key (every version merged), counted in
	// SKS framing (Key.MarshalSize). Default 16 MiB (the largest key of
	// the Debian keyring is 0.36 MiB; the 2019 flooded keys reached 180 MB).
	MaxKeyBytes int64
	// MaxPacketBytes bounds the body of every packet but signatures. Default
	// 256 KiB, GnuPG's limit for key packets (MAX_KEY_PACKET_LENGTH).
	MaxPacketBytes int
	// MaxSigBytes bounds a signature packet's body. Default 64 KiB,
	// Hockeypuck's maxSigPacketLength; the largest post-quantum signatures
	// (SLH-DSA-256s) are under 30 KiB.
	MaxSigBytes int
	// MaxUIDs bounds user IDs and user attributes per key. Default 256 (the
	// Debian keyring's maximum is 23).
	MaxUIDs int
	// MaxSubkeys bounds subkeys per key. Default 256 (Debian: 49).
	MaxSubkeys int
	// MaxSigs bounds signatures per key, self-signatures included. Default
	// 10,000 (Debian: 658).
	MaxSigs int
	// MaxCertsPerUID bounds third-party signatures on each user ID,
	// attribute, subkey, and directly on the primary key. Default 1,000
	// (Debian: 192 signatures on one user ID, self-signatures included; a
	// few well-connected keys of the old web of trust reach the hundreds;
	// the 2019 floods added 55,000–150,000).
	MaxCertsPerUID int
}

// Default abuse limits; see Limits for where each comes from.
const (
	DefaultLimitKeyBytes    = 16 << 20
	DefaultLimitPacketBytes = 256 << 10
	DefaultLimitSigBytes    = 64 << 10
	DefaultLimitUIDs        = 256
	DefaultLimitSubkeys     = 256
	DefaultLimitSigs        = 10000
	DefaultLimitCertsPerUID = 1000
)

// DefaultLimits returns the default abuse limits.
func DefaultLimits() Limits {
	return Limits{
		MaxKeyBytes:    DefaultLimitKeyBytes,
		MaxPacketBytes: DefaultLimitPacketBytes,
		MaxSigBytes:    DefaultLimitSigBytes,
		MaxUIDs:        DefaultLimitUIDs,
		MaxSubkeys:     DefaultLimitSubkeys,
		MaxSigs:        DefaultLimitSigs,
		MaxCertsPerUID: DefaultLimitCertsPerUID,
	}
}

// Resolved returns l with zero fields set to their defaults and negative
// ones to the largest value ("no limit").
func (l Limits) Resolved() Limits {
	d := DefaultLimits()
	pick := func(v, def int) int {
		switch {
		case v == 0:
			return def
		case v < 0:
			return int(^uint(0) >> 1)
		}
		return v
	}
	switch {
	case l.MaxKeyBytes == 0:
		l.MaxKeyBytes = d.MaxKeyBytes
	case l.MaxKeyBytes < 0:
		l.MaxKeyBytes = int64(^uint64(0) >> 1)
	}
	l.MaxPacketBytes = pick(l.MaxPacketBytes, d.MaxPacketBytes)
	l.MaxSigBytes = pick(l.MaxSigBytes, d.MaxSigBytes)
	l.MaxUIDs = pick(l.MaxUIDs, d.MaxUIDs)
	l.MaxSubkeys = pick(l.MaxSubkeys, d.MaxSubkeys)
	l.MaxSigs = pick(l.MaxSigs, d.MaxSigs)
	l.MaxCertsPerUID = pick(l.MaxCertsPerUID, d.MaxCertsPerUID)
	return l
}

// Trim says what Apply left out of a key.
type Trim struct {
	// Sigs counts signatures dropped (over a budget, or too large); it
	// includes the signatures of dropped groups.
	Sigs int
	// UIDs and Subkeys count dropped user ID/attribute and subkey groups.
	UIDs, Subkeys int
	// Oversized counts packets dropped for their size alone; they are
	// also counted in Sigs, UIDs or Subkeys.
	Oversized int
}

// Changed reports whether anything was dropped.
func (t Trim) Changed() bool { return t.Sigs+t.UIDs+t.Subkeys > 0 }

// String summarises t for logs, e.g. "dropped 5000 signatures, 1 user ID".
func (t Trim) String() string {
	if !t.Changed() {
		return "nothing dropped"
	}
	b := []byte("dropped ")
	add := func(n int, what string) {
		if n == 0 {
			return
		}
		if len(b) > len("dropped ") {
			b = append(b, ", "...)
		}
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, ' ')
		b = append(b, what...)
	}
	add(t.Sigs, "signatures")
	add(t.UIDs, "user IDs")
	add(t.Subkeys, "subkeys")
	if t.Oversized > 0 {
		b = append(b, " ("...)
		b = strconv.AppendInt(b, int64(t.Oversized), 10)
		b = append(b, " of them oversized)"...)
	}
	return string(b)
}

// Apply enforces the limits on k, a key about to be appended, given stored,
// the version of the same key already stored (nil if none). It returns the
// key to append: k without the packets the policy drops, or k itself when
// nothing is dropped. Merged with stored, the result stays within the
// limits (as long as stored was; concurrent appends of one key may each
// fill the same budget once).
//
// The only error is a primary key packet over MaxPacketBytes, or a new key
// none of whose user IDs fits; it wraps ErrTooLarge.
//
// Apply is cheap when the limits are far away: it only counts.
func (l Limits) Apply(stored, k *Key) (*Key, Trim, error) {
	l = l.Resolved()
	if n := len(k.Primary.Body); n > l.MaxPacketBytes {
		return nil, Trim{}, fmt.Errorf("primary key packet of %d bytes over the limit of %d: %w", n, l.MaxPacketBytes, ErrTooLarge)
	}
	if l.within(stored, k) {
		return k, Trim{}, nil
	}
	p := newPolicy(l, stored, k)
	out, tr := p.run()
	if !hasUserIDGroup(out) && (stored == nil || !hasUserIDGroup(stored)) {
		return nil, tr, fmt.Errorf("no user ID within the limits (%s): %w", tr, ErrTooLarge)
	}
	return out, tr, nil
}

func hasUserIDGroup(k *Key) bool {
	for _, g := range k.UIDs {
		if g.Packet.Tag == TagUserID {
			return true
		}
	}
	return false
}

// within reports whether stored and k together certainly fit: it adds up
// their counts as if nothing were shared, and checks every packet's size.
func (l Limits) within(stored, k *Key) bool {
	var c keyCounts
	groupSigs := 0 // bounds the signatures of any one group of the union
	if stored != nil {
		if !c.add(l, stored) {
			return false
		}
		groupSigs, c.maxGroupSigs = c.maxGroupSigs, 0
	}
	if !c.add(l, k) {
		return false
	}
	groupSigs += c.maxGroupSigs
	return c.uids <= l.MaxUIDs && c.subkeys <= l.MaxSubkeys && c.sigs <= l.MaxSigs &&
		groupSigs <= l.MaxCertsPerUID && c.bytes <= l.MaxKeyBytes
}

type keyCounts struct {
	uids, subkeys, sigs, maxGroupSigs int
	bytes                             int64
}

// add counts k into c; it reports false when a packet is over its size
// limit.
func (c *keyCounts) add(l Limits, k *Key) bool {
	c.bytes += int64(k.MarshalSize())
	c.uids += len(k.UIDs)
	c.subkeys += len(k.Subkeys)
	sigs := func(s []Packet) bool {
		c.sigs += len(s)
		c.maxGroupSigs = max(c.maxGroupSigs, len(s))
		for _, p := range s {
			if len(p.Body) > l.MaxSigBytes {
				return false
			}
		}
		return true
	}
	if !sigs(k.DirectSigs) {
		return false
	}
	for _, gs := range [][]Group{k.UIDs, k.Subkeys} {
		for _, g := range gs {
			if len(g.Packet.Body) > l.MaxPacketBytes || !sigs(g.Sigs) {
				return false
			}
		}
	}
	return true
}

// policy is one run of the flooded-key policy.
type policy struct {
	l      Limits
	k      *Key
	v      *verifier // nil: this key's signatures cannot be verified here
	fpr    []byte    // the primary key's fingerprint and key ID (nil, 0: unknown)
	keyID  uint64
	tr     Trim
	verify int // verifications left

	// Budgets used so far, stored packets included.
	uids, subkeys, sigs int
	bytes               int64

	stored map[string]*storedGroup // by groupKey; "" is the primary key
	keep   [][]bool                // keep[g][i]: signature i of group g (0: direct, then UIDs, then subkeys)
	gkeep  []bool                  // gkeep[g]: group g is kept (always for 0)
	certs  []int                   // third-party signatures per group, stored included
}

type storedGroup struct {
	sigs  map[string]bool
	certs int // signatures that do not claim to be self-signatures
}

func groupKey(p Packet) string { return string(rune(p.Tag)) + string(p.Body) }

func newPolicy(l Limits, stored, k *Key) *policy {
	p := &policy{l: l, k: k, v: newVerifier(k.Primary), verify: l.MaxSigs, stored: make(map[string]*storedGroup)}
	ng := 1 + len(k.UIDs) + len(k.Subkeys)
	p.keep = make([][]bool, ng)
	p.gkeep = make([]bool, ng)
	p.certs = make([]int, ng)
	p.gkeep[0] = true
	if fpr, id, err := keyIdentity(k.Primary.Body); err == nil {
		p.fpr, p.keyID = fpr.Bytes(), uint64(id)
	}
	p.bytes = int64(packetHeaderSize(k.Primary.Tag, len(k.Primary.Body)) + len(k.Primary.Body))
	if stored != nil {
		p.bytes = int64(stored.MarshalSize())
		p.uids, p.subkeys = len(stored.UIDs), len(stored.Subkeys)
		addStored := func(key string, sigs []Packet) {
			sg := &storedGroup{sigs: make(map[string]bool, len(sigs))}
			for _, s := range sigs {
				sg.sigs[string(s.Body)] = true
				if !p.claimsSelf(s.Body) {
					sg.certs++
				}
			}
			p.sigs += len(sigs)
			p.stored[key] = sg
		}
		addStored("", stored.DirectSigs)
		for _, g := range stored.UIDs {
			addStored(groupKey(g.Packet), g.Sigs)
		}
		for _, g := range stored.Subkeys {
			addStored(groupKey(g.Packet), g.Sigs)
		}
	}
	return p
}

// group returns the packet and signatures of group g (0: the primary).
func (p *policy) group(g int) (Packet, []Packet, bool) {
	switch {
	case g == 0:
		return p.k.Primary, p.k.DirectSigs, false
	case g <= len(p.k.UIDs):
		gr := p.k.UIDs[g-1]
		return gr.Packet, gr.Sigs, false
	}
	gr := p.k.Subkeys[g-1-len(p.k.UIDs)]
	return gr.Packet, gr.Sigs, true
}

func (p *policy) storedGroup(g int) *storedGroup {
	if g == 0 {
		return p.stored[""]
	}
	pkt, _, _ := p.group(g)
	return p.stored[groupKey(pkt)]
}

// candidate is a new signature waiting for a decision.
type candidate struct {
	g, i    int
	created uint32
}

func (p *policy) run() (*Key, Trim) {
	ng := len(p.keep)
	var third []candidate
	// Stored signatures are kept; the stored ones that do not claim to be
	// self-signatures fill the group's third-party budget (cheap: no
	// verification). New signatures are classified.
	self := make([][]int, ng)
	for g := range ng {
		pkt, sigs, sub := p.group(g)
		p.keep[g] = make([]bool, len(sigs))
		sg := p.storedGroup(g)
		if sg != nil {
			p.certs[g] = sg.certs
		}
		for i, s := range sigs {
			if sg != nil && sg.sigs[string(s.Body)] {
				p.keep[g][i] = true
				continue
			}
			if len(s.Body) > p.l.MaxSigBytes {
				p.tr.Oversized++
				continue
			}
			if p.isSelf(pkt, s, g == 0, sub) {
				self[g] = append(self[g], i)
			} else {
				third = append(third, candidate{g: g, i: i, created: sigCreated(s.Body)})
			}
		}
	}

	// a. self-signatures on the primary key.
	for _, i := range self[0] {
		p.admitSig(0, i, false)
	}
	// b, c. groups with a verified self-signature first, then the rest;
	// user IDs before subkeys.
	for pass := 0; pass < 2; pass++ {
		for g := 1; g < ng; g++ {
			if (len(self[g]) > 0) != (pass == 0) {
				continue
			}
			if p.admitGroup(g) {
				for _, i := range self[g] {
					p.admitSig(g, i, false)
				}
			}
		}
	}
	// d. third-party signatures, newest first.
	slices.SortStableFunc(third, func(a, b candidate) int {
		if a.created != b.created {
			if a.created > b.created {
				return -1
			}
			return 1
		}
		return 0
	})
	for _, c := range third {
		if p.gkeep[c.g] {
			p.admitSig(c.g, c.i, true)
		}
	}
	return p.build()
}

// admitGroup keeps group g if it is stored or fits the budgets.
func (p *policy) admitGroup(g int) bool {
	pkt, _, sub := p.group(g)
	if p.storedGroup(g) != nil {
		p.gkeep[g] = true
		return true
	}
	size := int64(packetHeaderSize(pkt.Tag, len(pkt.Body)) + len(pkt.Body))
	switch {
	case len(pkt.Body) > p.l.MaxPacketBytes:
		p.tr.Oversized++
		return false
	case p.bytes+size > p.l.MaxKeyBytes:
		return false
	case sub && p.subkeys >= p.l.MaxSubkeys:
		return false
	case !sub && p.uids >= p.l.MaxUIDs:
		return false
	}
	if sub {
		p.subkeys++
	} else {
		p.uids++
	}
	p.bytes += size
	p.gkeep[g] = true
	return true
}

// admitSig keeps signature i of group g if it fits the budgets.
func (p *policy) admitSig(g, i int, thirdParty bool) {
	_, sigs, _ := p.group(g)
	s := sigs[i]
	size := int64(packetHeaderSize(s.Tag, len(s.Body)) + len(s.Body))
	switch {
	case p.sigs >= p.l.MaxSigs, p.bytes+size > p.l.MaxKeyBytes:
		return
	case thirdParty && p.certs[g] >= p.l.MaxCertsPerUID:
		return
	}
	p.sigs++
	p.bytes += size
	if thirdParty {
		p.certs[g]++
	}
	p.keep[g][i] = true
}

// build returns k restricted to the kept packets, and counts the rest.
func (p *policy) build() (*Key, Trim) {
	filter := func(g int, sigs []Packet) []Packet {
		out := make([]Packet, 0, len(sigs))
		for i, s := range sigs {
			if p.keep[g][i] {
				out = append(out, s)
			} else {
				p.tr.Sigs++
			}
		}
		return out
	}
	changed := false
	for g := range p.keep {
		if !p.gkeep[g] || slices.Contains(p.keep[g], false) {
			changed = true
			break
		}
	}
	if !changed {
		return p.k, p.tr
	}
	out := &Key{Primary: p.k.Primary, DirectSigs: filter(0, p.k.DirectSigs)}
	for j, gr := range p.k.UIDs {
		g := 1 + j
		if !p.gkeep[g] {
			p.tr.UIDs++
			p.tr.Sigs += len(gr.Sigs)
			continue
		}
		out.UIDs = append(out.UIDs, Group{Packet: gr.Packet, Sigs: filter(g, gr.Sigs)})
	}
	for j, gr := range p.k.Subkeys {
		g := 1 + len(p.k.UIDs) + j
		if !p.gkeep[g] {
			p.tr.Subkeys++
			p.tr.Sigs += len(gr.Sigs)
			continue
		}
		out.Subkeys = append(out.Subkeys, Group{Packet: gr.Packet, Sigs: filter(g, gr.Sigs)})
	}
	return out, p.tr
}

// claimsSelf reports whether a signature names the primary key as its
// issuer, or names no issuer (v3 signatures carry the issuer in the body).
func (p *policy) claimsSelf(b []byte) bool {
	if p.fpr == nil {
		return false
	}
	issFpr, issID, ok := sigIssuer(b)
	switch {
	case !ok:
		return false
	case issFpr != nil:
		return bytes.Equal(issFpr, p.fpr)
	case issID != 0:
		return issID == p.keyID
	}
	return true
}

// isSelf reports whether s is a self-signature of the key that verifies, or
// when this key's signatures cannot be verified here, claims to be one.
func (p *policy) isSelf(pkt, s Packet, direct, sub bool) bool {
	if p.v == nil {
		return p.claimsSelf(s.Body)
	}
	if p.verify <= 0 {
		return false
	}
	sig := p.v.parseSig(s)
	if sig == nil {
		return false
	}
	p.verify--
	switch {
	case direct:
		return p.v.verify(sig)
	case sub:
		return p.v.verifySubkey(sig, pkt)
	}
	return p.v.verify(sig, pkt)
}

// sigIssuer reads the issuer of a signature packet body without a full
// parse: the issuer fingerprint (subpacket 33) or key ID (subpacket 16) of
// a v4/v5/v6 signature, or the key ID of a v3 one. ok is false when the
// body cannot be read.
func sigIssuer(b []byte) (fpr []byte, id uint64, ok bool) {
	if len(b) < 1 {
		return nil, 0, false
	}
	switch b[0] {
	case 2, 3:
		if len(b) < 15 {
			return nil, 0, false
		}
		return nil, binary.BigEndian.Uint64(b[7:15]), true
	}
	ok = walkSubpackets(b, func(typ byte, data []byte) {
		switch typ {
		case 16:
			if len(data) == 8 {
				id = binary.BigEndian.Uint64(data)
			}
		case 33:
			if len(data) > 1 {
				fpr = data[1:]
			}
		}
	})
	return fpr, id, ok
}

// sigCreated reads a signature's creation time (Unix seconds), 0 if none.
func sigCreated(b []byte) uint32 {
	if len(b) < 1 {
		return 0
	}
	switch b[0] {
	case 2, 3:
		if len(b) < 7 {
			return 0
		}
		return binary.BigEndian.Uint32(b[3:7])
	}
	var t uint32
	walkSubpackets(b, func(typ byte, data []byte) {
		if typ == 2 && len(data) == 4 && t == 0 {
			t = binary.BigEndian.Uint32(data)
		}
	})
	return t
}

// walkSubpackets calls fn for each subpacket of a v4, v5 or v6 signature
// body, hashed area first (RFC 9580 §5.2.3). It reports false when the body
// is not such a signature or does not frame cleanly.
func walkSubpackets(b []byte, fn func(typ byte, data []byte)) bool {
	if len(b) < 1 || b[0] < 4 || b[0] > 6 {
		return false
	}
	lenSize, off := 2, 4
	if b[0] == 6 {
		lenSize = 4
	}
	for area := 0; area < 2; area++ {
		if off+lenSize > len(b) {
			return false
		}
		var n int
		if lenSize == 2 {
			n = int(binary.BigEndian.Uint16(b[off:]))
		} else {
			n = int(binary.BigEndian.Uint32(b[off:]))
		}
		off += lenSize
		if n < 0 || off+n > len(b) || off+n < off {
			return false
		}
		sub := b[off : off+n]
		off += n
		for len(sub) > 0 {
			var l, h int
			switch c := sub[0]; {
			case c < 192:
				l, h = int(c), 1
			case c < 255:
				if len(sub) < 2 {
					return false
				}
				l, h = (int(c)-192)<<8+int(sub[1])+192, 2
			default:
				if len(sub) < 5 {
					return false
				}
				l, h = int(binary.BigEndian.Uint32(sub[1:5])), 5
			}
			if l < 1 || h+l > len(sub) || h+l < h {
				return false
			}
			fn(sub[h]&0x7f, sub[h+1:h+l])
			sub = sub[h+l:]
		}
	}
	return true
}
