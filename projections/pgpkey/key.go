package pgpkey

import (
	"crypto/md5"
	"encoding/binary"
	"slices"
	"strconv"
	"sync"
)

// Group is a user ID, user attribute or subkey packet with the signatures
// that follow it.
type Group struct {
	Packet Packet
	Sigs   []Packet
}

// Key is one transferable public key in SKS canonical form (keyhash.md §4):
// the primary key, its direct signatures as a set in record order, then the
// user ID and user attribute groups, then the subkey groups, each list in
// record order with one group per distinct packet.
//
// A Key built by Canonicalize, Merge or ParseKey shares packet bodies (and
// sometimes signature slices) with its inputs and with keys merged from it.
// Treat it as immutable: build a new Key rather than editing one.
type Key struct {
	Primary    Packet
	DirectSigs []Packet
	UIDs       []Group // tag 13 and 17 groups, in SKS record order
	Subkeys    []Group

	// summary memoises Summary, which verifies signatures and is by far
	// the most expensive thing a reader does with a key. Keys are
	// immutable by convention, so it never goes stale; a Key is not safe
	// for concurrent use while it is being filled.
	summary *Summary
}

// SubkeyID identifies one subkey of a key.
type SubkeyID struct {
	Fingerprint Fingerprint
	KeyID       KeyID
}

// Canonicalize applies SKS's canonicalisation (keyhash.md §4, steps 1–4,
// Fixkey.canonicalize → KeyMerge.dedup_key) to the packets of one key and
// returns the result. It rejects, with a *ParseError whose Packet names the
// culprit (1-based) and whose Offset is -1, everything SKS rejects:
//
//   - an empty key, or a first packet that is not a public key (a leading
//     revocation signature is reported as a standalone revocation
//     certificate);
//   - a public key packet with an empty body or a version other than 2–6;
//   - any packet outside the grammar PUBKEY SIG* ((UID|UAT) SIG*)*
//     (SUBKEY SIG*)*, such as trust, marker or secret-key packets, a user ID
//     after a subkey, or a subkey in a v2/v3 key.
//
// NB: it also accepts v5 and v6 primaries with the v4 grammar, where SKS
// 1.1.6 fails ("Unexpected key packet version number"). Such keys report
// SKSCompatible() == false and must stay out of the recon set
// (keyhash.md §8, recon.md §11.5).
//
// Canonicalize does not modify pkts; the Key shares packet bodies with it.
func Canonicalize(pkts []Packet) (*Key, error) {
	if len(pkts) == 0 {
		return nil, &ParseError{Offset: -1, Reason: "empty key"}
	}
	first := pkts[0]
	if first.Tag == TagSignature {
		return nil, leadingSignatureError(first)
	}
	if first.Tag != TagPublicKey {
		return nil, &ParseError{Offset: -1, Packet: 1,
			Reason: "key does not start with a public key packet (found " + tagName(first.Tag) + ")"}
	}
	if len(first.Body) == 0 {
		return nil, &ParseError{Offset: -1, Packet: 1, Reason: "empty public key packet"}
	}
	subkeysAllowed := true
	switch v := first.Body[0]; v {
	case 2, 3:
		subkeysAllowed = false
	case 4, 5, 6:
	default:
		return nil, &ParseError{Offset: -1, Packet: 1,
			Reason: "unsupported public key version " + strconv.Itoa(int(v))}
	}

	// Count the groups first so that the key needs exactly three
	// allocations: the packet array, the group array and the Key.
	i := 1
	for i < len(pkts) && pkts[i].Tag == TagSignature {
		i++
	}
	nDirect := i - 1
	nUID, nSub := 0, 0
	for ; i < len(pkts); i++ {
		switch pkts[i].Tag {
		case TagSignature:
		case TagUserID, TagUserAttribute:
			if nSub > 0 {
				return nil, &ParseError{Offset: -1, Packet: i + 1,
					Reason: tagName(pkts[i].Tag) + " after a subkey"}
			}
			nUID++
		case TagPublicSubkey:
			if !subkeysAllowed {
				return nil, &ParseError{Offset: -1, Packet: i + 1,
					Reason: "subkey in a version " + strconv.Itoa(int(first.Body[0])) + " key"}
			}
			nSub++
		default:
			return nil, &ParseError{Offset: -1, Packet: i + 1,
				Reason: "unexpected " + tagName(pkts[i].Tag) + " packet in key"}
		}
	}

	own := slices.Clone(pkts[1:])
	groups := make([]Group, nUID+nSub)
	k := &Key{Primary: first}
	k.DirectSigs = dedupSorted(own[:nDirect:nDirect])
	g := 0
	for j := nDirect; j < len(own); {
		start := j
		j++
		for j < len(own) && own[j].Tag == TagSignature {
			j++
		}
		groups[g] = Group{Packet: own[start], Sigs: own[start+1 : j : j]}
		g++
	}
	k.UIDs = dedupGroups(groups[:nUID:nUID])
	k.Subkeys = dedupGroups(groups[nUID:])
	return k, nil
}

// leadingSignatureError implements keyhash.md §4.1: a key whose first packet
// is a signature is rejected, as a standalone revocation certificate when
// its type says so.
func leadingSignatureError(p Packet) *ParseError {
	e := &ParseError{Offset: -1, Packet: 1,
		Reason: "key does not start with a public key packet (found signature)"}
	var typ byte
	switch {
	case len(p.Body) >= 3 && (p.Body[0] == 2 || p.Body[0] == 3):
		typ = p.Body[2]
	case len(p.Body) >= 2 && p.Body[0] == 4:
		typ = p.Body[1]
	default:
		e.Reason = "key starts with an unparseable signature packet"
		return e
	}
	switch typ {
	case 0x20, 0x28, 0x30:
		e.Reason = "standalone revocation certificate"
	}
	return e
}

// dedupSorted sorts s in record order and removes duplicates, in place.
func dedupSorted(s []Packet) []Packet {
	if len(s) < 2 {
		return s
	}
	slices.SortFunc(s, recordCompare)
	out := slices.CompactFunc(s, Packet.Equal)
	return out[:len(out):len(out)]
}

// dedupGroups implements the group rule of keyhash.md §4.3 (SKS
// dedup_sigpairs), in place: sort the groups by packet in record order; a
// packet that occurs once keeps its signature list exactly as given,
// duplicates included; a packet that occurs more than once gets the sorted
// set union of all its lists.
func dedupGroups(gs []Group) []Group {
	if len(gs) < 2 {
		return gs
	}
	slices.SortFunc(gs, func(a, b Group) int { return recordCompare(a.Packet, b.Packet) })
	out := gs[:0]
	for i := 0; i < len(gs); {
		j := i + 1
		for j < len(gs) && gs[j].Packet.Equal(gs[i].Packet) {
			j++
		}
		if j-i == 1 {
			out = append(out, gs[i])
		} else {
			n := 0
			for _, g := range gs[i:j] {
				n += len(g.Sigs)
			}
			sigs := make([]Packet, 0, n)
			for _, g := range gs[i:j] {
				sigs = append(sigs, g.Sigs...)
			}
			out = append(out, Group{Packet: gs[i].Packet, Sigs: dedupSorted(sigs)})
		}
		i = j
	}
	return out[:len(out):len(out)]
}

// SamePrimary reports whether k and other have byte-identical primary key
// packets, the condition under which SKS merges them (keyhash.md §6 step 4).
func (k *Key) SamePrimary(other *Key) bool {
	return k.Primary.Equal(other.Primary)
}

// Merge returns SKS's merge(a, b) (keyhash.md §6, KeyMerge.merge): a's
// primary key; the sorted set union of the direct signatures; the user ID
// and subkey groups of both keys combined with the rule of §4.3, so a
// packet present in both gets the union of its signatures and a packet
// present in one keeps its list as is. The result is not canonicalised
// again, exactly like SKS.
//
// Merge does not modify a or b; the result shares packets with them.
// It panics if a and b have different primary key packets: callers must
// check SamePrimary, and SKS keeps short key ID collisions apart
// (keyhash.md §6 step 4).
//
// NB: merging a key with itself is not always the identity. A group that
// occurs once may hold a duplicate signature (§4.5), and merging collapses
// it. SKS never merges a key with a stored copy of itself (§6 steps 2–3);
// Contains follows that rule.
func Merge(a, b *Key) *Key {
	if !a.SamePrimary(b) {
		panic("pgpkey: Merge of keys with different primary key packets")
	}
	direct := make([]Packet, 0, len(a.DirectSigs)+len(b.DirectSigs))
	direct = append(append(direct, a.DirectSigs...), b.DirectSigs...)
	return &Key{
		Primary:    a.Primary,
		DirectSigs: dedupSorted(direct),
		UIDs:       mergeGroups(a.UIDs, b.UIDs),
		Subkeys:    mergeGroups(a.Subkeys, b.Subkeys),
	}
}

func mergeGroups(a, b []Group) []Group {
	gs := make([]Group, 0, len(a)+len(b))
	gs = append(append(gs, a...), b...)
	return dedupGroups(gs)
}

// Contains reports whether storing other next to k would change nothing: its
// hash equals k's (SKS does nothing for an already stored hash, keyhash.md
// §6 step 2), or it has the same primary key and merging it into k gives k's
// hash. The server answers a repeated submission with Contains instead of
// appending an event.
func (k *Key) Contains(other *Key) bool {
	if !k.SamePrimary(other) {
		return false
	}
	h := k.Hash()
	return other.Hash() == h || Merge(k, other).Hash() == h
}

// Len returns the number of packets in the key.
func (k *Key) Len() int {
	n := 1 + len(k.DirectSigs)
	for _, g := range k.UIDs {
		n += 1 + len(g.Sigs)
	}
	for _, g := range k.Subkeys {
		n += 1 + len(g.Sigs)
	}
	return n
}

// Packets returns the key's packets flattened in canonical order
// (keyhash.md §4.4): primary, direct sigs, each user ID or attribute with
// its sigs, each subkey with its sigs.
func (k *Key) Packets() []Packet {
	return k.appendPackets(make([]Packet, 0, k.Len()))
}

func (k *Key) appendPackets(out []Packet) []Packet {
	out = append(out, k.Primary)
	out = append(out, k.DirectSigs...)
	for _, g := range k.UIDs {
		out = append(append(out, g.Packet), g.Sigs...)
	}
	for _, g := range k.Subkeys {
		out = append(append(out, g.Packet), g.Sigs...)
	}
	return out
}

// hashScratch holds reusable packet slices for Hash, which runs once or
// twice for every imported key. Slices for keys above maxPooledPackets
// (flooded keys) are not kept, so the pool never pins megabytes.
var hashScratch = sync.Pool{New: func() any { return new([]Packet) }}

const maxPooledPackets = 4096

// Hash returns the SKS key hash (keyhash.md §5, keyHash.ml): MD5 over the
// packets sorted by (tag, body bytes), each as u32be(tag) ‖ u32be(len) ‖
// body. Duplicate packets each contribute. For a canonical key it is
// byte-identical to the hash SKS 1.1.6 stores.
func (k *Key) Hash() KeyHash {
	sp := hashScratch.Get().(*[]Packet)
	pkts := k.appendPackets((*sp)[:0])
	slices.SortFunc(pkts, hashCompare)
	h := hashPackets(pkts)
	if cap(pkts) <= maxPooledPackets {
		clear(pkts) // drop references to bodies before pooling
		*sp = pkts[:0]
		hashScratch.Put(sp)
	}
	return h
}

// hashPackets hashes packets already in hash order.
func hashPackets(pkts []Packet) KeyHash {
	d := md5.New()
	var hdr [8]byte
	for _, p := range pkts {
		binary.BigEndian.PutUint32(hdr[0:4], uint32(p.Tag))
		binary.BigEndian.PutUint32(hdr[4:8], uint32(len(p.Body)))
		d.Write(hdr[:])
		d.Write(p.Body)
	}
	var out KeyHash
	d.Sum(out[:0])
	return out
}

// RawHash returns the hash formula of keyhash.md §5 applied to pkts as given,
// without canonicalising them first. SKS never stores such a hash; it is for
// diagnostics and for comparing with tools that hash exported packets.
func RawHash(pkts []Packet) KeyHash {
	s := slices.Clone(pkts)
	slices.SortFunc(s, hashCompare)
	return hashPackets(s)
}

// Marshal returns the key's packets in canonical order with SKS write_packet
// framing (keyhash.md §7), the byte form SKS stores, dumps and serves by
// hashquery.
func (k *Key) Marshal() []byte {
	return k.AppendMarshal(make([]byte, 0, k.MarshalSize()))
}

// MarshalSize returns len(k.Marshal()).
func (k *Key) MarshalSize() int {
	n := 0
	add := func(p Packet) { n += packetHeaderSize(p.Tag, len(p.Body)) + len(p.Body) }
	add(k.Primary)
	for _, p := range k.DirectSigs {
		add(p)
	}
	for _, gs := range [2][]Group{k.UIDs, k.Subkeys} {
		for _, g := range gs {
			add(g.Packet)
			for _, p := range g.Sigs {
				add(p)
			}
		}
	}
	return n
}

// AppendMarshal appends k.Marshal() to dst and returns the extended slice.
func (k *Key) AppendMarshal(dst []byte) []byte {
	dst = AppendPacket(dst, k.Primary)
	for _, p := range k.DirectSigs {
		dst = AppendPacket(dst, p)
	}
	for _, gs := range [2][]Group{k.UIDs, k.Subkeys} {
		for _, g := range gs {
			dst = AppendPacket(dst, g.Packet)
			for _, p := range g.Sigs {
				dst = AppendPacket(dst, p)
			}
		}
	}
	return dst
}

// Version returns the primary key's version byte (2–6), or 0 if the primary
// packet is empty.
func (k *Key) Version() int {
	if len(k.Primary.Body) == 0 {
		return 0
	}
	return int(k.Primary.Body[0])
}

// SKSCompatible reports whether SKS 1.1.6 accepts the key's primary version
// (2, 3 or 4, keyhash.md §4.2). Only such keys may enter the recon set:
// SKS fails a whole hashquery batch on any other (keyhash.md §8).
func (k *Key) SKSCompatible() bool {
	switch k.Version() {
	case 2, 3, 4:
		return true
	}
	return false
}

// Fingerprint returns the primary key's fingerprint: MD5 of n ‖ e for v2/v3,
// SHA-1 for v4, SHA-256 for v5 and v6. It is the zero Fingerprint when the
// primary packet is too malformed to compute one (possible for v2/v3 only:
// the grammar does not parse key material).
func (k *Key) Fingerprint() Fingerprint {
	f, _, _ := keyIdentity(k.Primary.Body)
	return f
}

// KeyID returns the primary key's key ID (see KeyID), or 0 when the primary
// packet is too malformed to compute one.
func (k *Key) KeyID() KeyID {
	_, id, _ := keyIdentity(k.Primary.Body)
	return id
}

// Identity returns the primary key's fingerprint and key ID together:
// Fingerprint and KeyID each hash the primary packet.
func (k *Key) Identity() SubkeyID {
	f, id, _ := keyIdentity(k.Primary.Body)
	return SubkeyID{Fingerprint: f, KeyID: id}
}

// SubkeyIDs returns the fingerprint and key ID of each subkey, in canonical
// order. A subkey packet too malformed to compute them from is left out.
func (k *Key) SubkeyIDs() []SubkeyID {
	out := make([]SubkeyID, 0, len(k.Subkeys))
	for _, g := range k.Subkeys {
		f, id, err := keyIdentity(g.Packet.Body)
		if err != nil {
			continue
		}
		out = append(out, SubkeyID{Fingerprint: f, KeyID: id})
	}
	return out
}

// UserIDs returns the bodies of the user ID packets (tag 13) as strings, in
// canonical order. They are not validated as UTF-8.
func (k *Key) UserIDs() []string {
	var out []string
	for _, g := range k.UIDs {
		if g.Packet.Tag == TagUserID {
			out = append(out, string(g.Packet.Body))
		}
	}
	return out
}

// hasUserID reports whether k has at least one user ID packet (tag 13).
func (k *Key) hasUserID() bool {
	for _, g := range k.UIDs {
		if g.Packet.Tag == TagUserID {
			return true
		}
	}
	return false
}

// Equal reports whether k and other have the same packets in the same
// canonical order.
func (k *Key) Equal(other *Key) bool {
	a, b := k.Packets(), other.Packets()
	return slices.EqualFunc(a, b, Packet.Equal)
}
