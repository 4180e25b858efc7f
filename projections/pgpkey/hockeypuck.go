package pgpkey

import (
	"bytes"
	"crypto/dsa" //nolint:staticcheck // go-crypto parses DSA keys into it
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Hockeypuck 2.3 normalisation (keyhash.md §9, recon.md §4.3).
//
// Hockeypuck >= 2.2 advertises filters that describe what it keeps of a key
// ("drop:invalidSelfSig", "drop:UAT", "drop:unbound", ...), and its key
// hashes are the §5 formula over what is left. To reconcile with it a
// server must hold the same dataset, so this file reproduces, from
// Hockeypuck 2.3.3's source (src/hockeypuck/openpgp: io.go OpaqueKeyReader
// and OpaqueCert.Parse, resolve.go ValidSelfSigned, Merge and dedup,
// verify.go, trust.go; hkp/handler.go Add and hkp/sks/recon.go upsertKeys;
// hkp/storage UpsertKey), what happens to a submission:
//
//  1. ReadHockeypuck: the packet stream is read with Hockeypuck's default
//     limits (packets over 8192 body octets are skipped, a key over 1 MiB
//     is dropped), split at public-key packets, and each key parsed:
//     unparseable primary keys (v5, unknown algorithms) lose the whole key;
//     unparseable user IDs, subkeys and signatures are dropped, and so are
//     signatures that follow something dropped or unsupported ("out of
//     context"), user attributes and their signatures, marker packets and
//     unknown packets. A key that starts with a signature, or a trust
//     packet before any key, refuses the whole submission, as Hockeypuck's
//     KeyReader does.
//  2. Each key is then validated (ValidSelfSigned): self-signatures are
//     verified cryptographically and invalid ones dropped; third-party
//     signatures are kept only if their hash tag is plausible and their
//     type fits where they are; user IDs and subkeys without a valid
//     self-signature are dropped; a hard self-revocation of the primary key
//     (no reason, "no reason" or "key compromised") drops every user ID and
//     every third-party signature. A key left with nothing evaporates.
//  3. Merge into the stored key (UpsertKey): the stored bytes are read again,
//     the new key's components appended, duplicates removed (Hockeypuck's
//     dedup, which keeps a duplicated signature under a user ID or subkey
//     that occurs once, as SKS does) and the result validated again. The
//     first version of a key is stored without dedup.
//
// Signatures are parsed and verified with go-crypto, as Hockeypuck does
// (its fork is go-crypto 1.3.0 plus v3 support, see hockeypuck_v3.go).
// NB, known differences that need keys no real keyring has: go-crypto 1.5
// refuses an ECDH subkey whose KDF hash is shorter than its wrap key, and a
// primary-key binding signature embedding another signature; 1.3.0 took both.

// Hockeypuck's default key reader limits (server/settings.go).
const (
	HockeypuckMaxPacketBytes = 8192
	HockeypuckMaxKeyBytes    = 1 << 20
)

// HockeypuckFilters is the filters string Hockeypuck 2.2 to 2.3.x sends in
// its recon Config (hkp/sks/recon.go sksDefaultFilters, sorted and joined
// as conflux does; recon.md §4.3). It describes the dataset this file
// computes.
const HockeypuckFilters = "drop:UAT,drop:hardRevokedCruft,drop:implausible,drop:invalidSelfSig,drop:structuralMartian,drop:unbound,drop:unparseable,schema:application/pgp-keys,versions:34,yminsky.dedup,yminsky.merge"

// ErrEvaporated is returned when no valid self-signature is left on a key
// (Hockeypuck's ErrKeyEvaporated).
var ErrEvaporated = errors.New("pgpkey: hockeypuck: no valid self-signatures")

// errHP marks a submission Hockeypuck's key reader refuses as a whole.
var errHP = errors.New("pgpkey: hockeypuck")

// HockeypuckKey is one key as Hockeypuck holds it. It is mutable while it
// is merged; Hash and Marshal describe its current state.
type HockeypuckKey struct {
	pkt     Packet
	fpr     string // lowercase hex, Hockeypuck's Fingerprint and UUID
	keyID   string // lowercase hex
	version int
	v4      *packet.PublicKey
	v3      *v3Key
	trusts  []*hpTrust
	sigs    []*hpSig
	uids    []*hpUID
	subkeys []*hpSubkey
}

type hpSig struct {
	pkt       Packet
	uuid      string
	sigType   packet.SignatureType
	issuerID  string
	issuerFpr string
	hardRevoc bool // no reason, "no reason" or "key compromised"
	v4        *packet.Signature
	v3        *v3Sig
	trusts    []*hpTrust
}

type hpUID struct {
	pkt    Packet
	uuid   string
	trusts []*hpTrust
	sigs   []*hpSig
}

type hpSubkey struct {
	pkt    Packet
	uuid   string // the subkey's fingerprint
	v4     *packet.PublicKey
	v3     *v3Key
	trusts []*hpTrust
	sigs   []*hpSig
}

type hpTrust struct {
	pkt  Packet
	uuid string
}

// Fingerprint returns the primary key's fingerprint (16, 20 or 32 bytes).
func (k *HockeypuckKey) Fingerprint() Fingerprint {
	if k.v3 != nil {
		f, _ := FingerprintFromBytes(k.v3.fpr[:])
		return f
	}
	f, _ := FingerprintFromBytes(k.v4.Fingerprint)
	return f
}

// Version returns the primary key's version.
func (k *HockeypuckKey) Version() int { return k.version }

// packets returns the key's packets in Hockeypuck's contents() order:
// primary, its trusts, its signatures (each followed by its trusts), then
// each user ID and each subkey with their trusts and signatures.
func (k *HockeypuckKey) packets() []Packet {
	var out []Packet
	sigs := func(ss []*hpSig) {
		for _, s := range ss {
			out = append(out, s.pkt)
			for _, t := range s.trusts {
				out = append(out, t.pkt)
			}
		}
	}
	trusts := func(ts []*hpTrust) {
		for _, t := range ts {
			out = append(out, t.pkt)
		}
	}
	out = append(out, k.pkt)
	trusts(k.trusts)
	sigs(k.sigs)
	for _, u := range k.uids {
		out = append(out, u.pkt)
		trusts(u.trusts)
		sigs(u.sigs)
	}
	for _, s := range k.subkeys {
		out = append(out, s.pkt)
		trusts(s.trusts)
		sigs(s.sigs)
	}
	return out
}

// Hash returns Hockeypuck's key hash (openpgp.SksDigest): the §5 formula
// over the key's packets, duplicates included, where a trust packet counts
// only in its "noisy SKS" form, cut after its first subpacket.
func (k *HockeypuckKey) Hash() KeyHash {
	var pkts []Packet
	for _, p := range k.packets() {
		if p.Tag == TagTrust {
			var ok bool
			if p, ok = trustSKSView(p); !ok {
				continue
			}
		}
		pkts = append(pkts, p)
	}
	slices.SortFunc(pkts, hashCompare)
	return hashPackets(pkts)
}

// Marshal returns the key's packets in the order Hockeypuck keeps them,
// with SKS framing (AppendPacket). Reading them back with
// ReadHockeypuckStored gives the same key.
func (k *HockeypuckKey) Marshal() []byte {
	var out []byte
	for _, p := range k.packets() {
		out = AppendPacket(out, p)
	}
	return out
}

// trustSKSView is trust.go trustPacketSKSView: a noisy SKS trust packet
// ("SKS" application context) counts up to the end of its first subpacket;
// every other trust packet is left out of the hash.
func trustSKSView(p Packet) (Packet, bool) {
	c := p.Body
	if len(c) < 7 || string(c[2:5]) != "SKS" {
		return p, false
	}
	var n, ll int
	switch {
	case c[6] < 192:
		n, ll = int(c[6]), 1
	case c[6] < 255:
		if len(c) < 8 {
			return p, false
		}
		n, ll = int(c[6]-192)<<8+int(c[7])+192, 2
	default:
		if len(c) < 11 {
			return p, false
		}
		n, ll = int(uint32(c[7])<<24|uint32(c[8])<<16|uint32(c[9])<<8|uint32(c[10])), 5
	}
	end := 6 + ll + n
	if n < 0 || end > len(c) {
		// Hockeypuck would slice past the end and panic; such a packet
		// cannot come from it.
		return p, false
	}
	return Packet{Tag: p.Tag, Body: c[:end]}, true
}

// ReadHockeypuck reads a submission as Hockeypuck's hkp Add handler and
// recon upsert do: with the default limits, then ValidSelfSigned on every
// key. Keys that evaporate are left out. An error means Hockeypuck refuses
// the whole submission.
func ReadHockeypuck(b []byte) ([]*HockeypuckKey, error) {
	keys, err := readHockeypuck(b, HockeypuckMaxPacketBytes, HockeypuckMaxKeyBytes)
	if err != nil {
		return nil, err
	}
	out := keys[:0]
	for _, k := range keys {
		if k.validSelfSigned(false) == nil {
			out = append(out, k)
		}
	}
	return out, nil
}

// ReadHockeypuckStored reads a key stored by Marshal the way Hockeypuck
// reads its database records (no limits, no validation: types.ReadOneKey).
func ReadHockeypuckStored(b []byte) (*HockeypuckKey, error) {
	keys, err := readHockeypuck(b, 0, 0)
	if err != nil {
		return nil, err
	}
	if len(keys) != 1 {
		return nil, fmt.Errorf("%w: stored record holds %d keys", errHP, len(keys))
	}
	return keys[0], nil
}

// MergeHockeypuck merges k into the key stored as stored (policy.Merge:
// append, dedup, ValidSelfSigned). It returns the merged key, or an error
// when Hockeypuck's upsert would fail (the merged key evaporates, or dedup
// meets a subkey equal to the primary key) and nothing changes.
func MergeHockeypuck(stored []byte, k *HockeypuckKey) (*HockeypuckKey, error) {
	dst, err := ReadHockeypuckStored(stored)
	if err != nil {
		return nil, err
	}
	if dst.fpr != k.fpr {
		return nil, fmt.Errorf("%w: merge of %s into %s", errHP, k.fpr, dst.fpr)
	}
	dst.uids = append(dst.uids, k.uids...)
	dst.subkeys = append(dst.subkeys, k.subkeys...)
	dst.sigs = append(dst.sigs, k.sigs...)
	dst.trusts = append(dst.trusts, k.trusts...)
	if err := dst.dedup(); err != nil {
		return nil, err
	}
	if err := dst.validSelfSigned(false); err != nil {
		return nil, err
	}
	return dst, nil
}

// readHockeypuck is OpaqueKeyReader.Read followed by OpaqueCert.Parse of
// every cert (KeyReader.Read). maxPacket and maxKey of 0 mean no limit.
func readHockeypuck(b []byte, maxPacket, maxKey int) ([]*HockeypuckKey, error) {
	or := packet.NewOpaqueReader(bytes.NewReader(b))
	var certs [][]*packet.OpaquePacket
	var cur []*packet.OpaquePacket
	curLen := 0
	initial := true // a leading signature starts a (bare revocation) cert
	var err error
	for {
		var op *packet.OpaquePacket
		op, err = or.Next()
		if err != nil {
			break
		}
		n := len(op.Contents)
		if maxPacket > 0 && n > maxPacket {
			continue
		}
		switch op.Tag {
		case TagPublicKey:
			if cur != nil {
				certs = append(certs, cur)
			}
			cur, curLen, initial = nil, 0, false
			if _, err := parseHPPublicKey(op, false); err != nil {
				continue
			}
			cur = []*packet.OpaquePacket{op}
		case TagSignature:
			if cur != nil {
				cur = append(cur, op)
			} else if initial {
				cur, curLen = []*packet.OpaquePacket{op}, 0
			}
		default:
			if cur != nil {
				cur = append(cur, op)
			}
		}
		initial = false
		if cur != nil {
			curLen += n
			if maxKey > 0 && curLen > maxKey {
				cur, curLen = nil, 0
			}
		}
	}
	if cur != nil {
		certs = append(certs, cur)
	}
	if err != io.EOF {
		return nil, fmt.Errorf("%w: read packets: %w", errHP, err)
	}
	out := make([]*HockeypuckKey, 0, len(certs))
	for _, c := range certs {
		k, err := parseHPCert(c)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// hpPublicKey is a parsed v4/v6 or v3 key packet.
type hpPublicKey struct {
	v4    *packet.PublicKey
	v3    *v3Key
	fpr   string
	keyID string
}

// parseHPPublicKey parses a primary (tag 6) or subkey (tag 14) packet as
// Hockeypuck's PublicKey.parse does.
func parseHPPublicKey(op *packet.OpaquePacket, subkey bool) (*hpPublicKey, error) {
	c := op.Contents
	if len(c) > 0 && c[0] < 4 {
		// The fork parses every version below 4 as PublicKeyV3.
		k, err := parseV3Key(c)
		if err != nil {
			return nil, err
		}
		return &hpPublicKey{v3: k, fpr: fmt.Sprintf("%x", k.fpr[:]), keyID: fmt.Sprintf("%016x", k.keyID)}, nil
	}
	if len(c) > 5 && c[5] >= 30 && c[5] <= 36 {
		// Post-quantum algorithms: unknown to go-crypto 1.3.0.
		return nil, fmt.Errorf("%w: public key type %d", errHP, c[5])
	}
	p, err := op.Parse()
	if err != nil {
		return nil, err
	}
	pk, ok := p.(*packet.PublicKey)
	if !ok || pk.IsSubkey != subkey {
		return nil, fmt.Errorf("%w: invalid packet type", errHP)
	}
	fpr := fmt.Sprintf("%x", pk.Fingerprint)
	if len(fpr) < 40 {
		return nil, fmt.Errorf("%w: invalid fingerprint %q", errHP, fpr)
	}
	kid := fpr[:16]
	if pk.Version == 4 {
		kid = fpr[24:]
	}
	return &hpPublicKey{v4: pk, fpr: fpr, keyID: kid}, nil
}

// parseHPCert is OpaqueCert.Parse.
func parseHPCert(ops []*packet.OpaquePacket) (*HockeypuckKey, error) {
	var k *HockeypuckKey
	// signable is where the next signature goes (nil: out of context);
	// trustable where the next trust packet goes.
	var signable func(*hpSig)
	var signableUUID string
	var trustable *[]*hpTrust
	var trustableUUID string
	for _, op := range ops {
		if op.Tag == TagPublicKey {
			if k != nil {
				return nil, fmt.Errorf("%w: multiple primary keys in cert", errHP)
			}
			pk, err := parseHPPublicKey(op, false)
			if err != nil {
				return nil, fmt.Errorf("%w: invalid public key packet: %w", errHP, err)
			}
			k = &HockeypuckKey{pkt: Packet{Tag: op.Tag, Body: op.Contents}, fpr: pk.fpr, keyID: pk.keyID, v4: pk.v4, v3: pk.v3}
			k.version = 3
			if pk.v4 != nil {
				k.version = pk.v4.Version
			}
			signable = func(s *hpSig) { k.sigs = append(k.sigs, s) }
			signableUUID = k.fpr
			trustable, trustableUUID = &k.trusts, k.fpr
			continue
		}
		if k == nil {
			switch op.Tag {
			case TagTrust:
				return nil, fmt.Errorf("%w: bare trust packets are not supported", errHP)
			case TagSignature:
				return nil, fmt.Errorf("%w: bare revocation signature instead of key", errHP)
			}
			continue
		}
		pkt := Packet{Tag: op.Tag, Body: op.Contents}
		switch op.Tag {
		case TagPublicSubkey:
			signable = nil
			pk, err := parseHPPublicKey(op, true)
			if err != nil {
				continue
			}
			sk := &hpSubkey{pkt: pkt, uuid: pk.fpr, v4: pk.v4, v3: pk.v3}
			k.subkeys = append(k.subkeys, sk)
			signable = func(s *hpSig) { sk.sigs = append(sk.sigs, s) }
			signableUUID = sk.uuid
			trustable, trustableUUID = &sk.trusts, sk.uuid
		case TagUserID:
			signable = nil
			if strings.ContainsRune(string(op.Contents), 0) {
				// CleanUtf8 refuses NUL: the user ID is unreadable.
				continue
			}
			u := &hpUID{pkt: pkt, uuid: scoped([]string{k.fpr}, "{uid}", pkt)}
			k.uids = append(k.uids, u)
			signable = func(s *hpSig) { u.sigs = append(u.sigs, s) }
			signableUUID = u.uuid
			trustable, trustableUUID = &u.trusts, u.uuid
		case TagSignature:
			if signable == nil {
				continue
			}
			s, err := parseHPSig(pkt, scoped([]string{k.fpr, signableUUID}, "{sig}", pkt))
			if err != nil {
				continue
			}
			signable(s)
			trustable, trustableUUID = &s.trusts, s.uuid
		case TagTrust:
			if trustable == nil {
				// Hockeypuck dereferences a nil parent here and panics.
				return nil, fmt.Errorf("%w: trust packet after an unsupported packet", errHP)
			}
			if !validTrust(op.Contents) {
				continue
			}
			*trustable = append(*trustable, &hpTrust{pkt: pkt, uuid: scoped([]string{k.fpr, trustableUUID}, "{trust}", pkt)})
		case TagMarker:
		default:
			signable, trustable = nil, nil
		}
	}
	if k == nil {
		return nil, fmt.Errorf("%w: primary public key not found", errHP)
	}
	return k, nil
}

// scoped stands for Hockeypuck's scopedDigest: the identity of a packet
// under its parents. Hockeypuck hashes it; an unambiguous string does the
// same job here.
func scoped(parents []string, tag string, p Packet) string {
	var b strings.Builder
	for _, s := range parents {
		b.WriteString(s)
		b.WriteString(tag)
	}
	fmt.Fprintf(&b, "%d:%x", p.Tag, p.Body)
	return b.String()
}

// parseHPSig is ParseSignature.
func parseHPSig(p Packet, uuid string) (*hpSig, error) {
	s := &hpSig{pkt: p, uuid: uuid}
	if len(p.Body) > 0 && p.Body[0] < 4 {
		v3, err := parseV3Sig(p.Body)
		if err != nil {
			return nil, err
		}
		s.v3, s.sigType = v3, v3.sigType
		s.issuerID = fmt.Sprintf("%016x", v3.issuer)
		s.hardRevoc = true // v3 signatures carry no reason
		return s, nil
	}
	if len(p.Body) > 2 && p.Body[2] >= 30 && p.Body[2] <= 36 {
		return nil, fmt.Errorf("%w: signature algorithm %d", errHP, p.Body[2])
	}
	op := &packet.OpaquePacket{Tag: p.Tag, Contents: p.Body}
	pp, err := op.Parse()
	if err != nil {
		return nil, err
	}
	sig, ok := pp.(*packet.Signature)
	if !ok {
		return nil, fmt.Errorf("%w: invalid packet type", errHP)
	}
	if sig.IssuerKeyId == nil {
		return nil, fmt.Errorf("%w: missing issuer key ID", errHP)
	}
	s.v4, s.sigType = sig, sig.SigType
	s.issuerID = fmt.Sprintf("%016x", *sig.IssuerKeyId)
	s.issuerFpr = fmt.Sprintf("%x", sig.IssuerFingerprint)
	r := sig.RevocationReason
	s.hardRevoc = r == nil || *r == packet.KeyCompromised || *r == packet.NoReason
	return s, nil
}

// validTrust is the part of ParseTrust that decides whether a trust packet
// is kept at all: at least 6 octets, a known application context, well
// formed subpackets with at least one notation (two for "SKS").
func validTrust(c []byte) bool {
	if len(c) < 6 {
		return false
	}
	ctx := string(c[2:5])
	if ctx != "SKS" && ctx != "sks" && ctx != "hkp" {
		return false
	}
	sps, err := packet.OpaqueSubpackets(c[6:])
	if err != nil {
		return false
	}
	notations := 0
	for _, sp := range sps {
		if len(sp.Contents) == 0 {
			return false
		}
		switch sp.SubType & 0x7f {
		case 20:
			nc := sp.Contents
			if len(nc) < 8 || len(nc) != 8+int(nc[4])<<8+int(nc[5])+int(nc[6])<<8+int(nc[7]) {
				return false
			}
			notations++
		case 32:
			if _, err := parseHPSig(Packet{Tag: TagSignature, Body: sp.Contents}, ""); err != nil {
				return false
			}
		default:
			if sp.SubType&0x80 != 0 {
				return false
			}
		}
	}
	if notations == 0 || (ctx == "SKS" && notations <= 1) {
		return false
	}
	return true
}

// isSelf is SigInfo's test for a self-signature.
func (k *HockeypuckKey) isSelf(s *hpSig) bool {
	return k.keyID == s.issuerID || k.fpr == s.issuerFpr
}

var errInvalidType = fmt.Errorf("%w: invalid packet type", errHP)

// maxVerifyBits bounds the keys signatures are verified with: an 8 KiB
// packet holds a DSA key whose 20,000-bit q makes one verification take
// seconds, and a key may carry thousands of signatures. Signatures by (or,
// for cross-signatures, of) larger keys count as invalid. NB: Hockeypuck
// would try; no real key is that large.
const maxVerifyBits = 16384

func tooCostly(v3 *v3Key, v4 *packet.PublicKey) bool {
	if v3 != nil {
		return v3.pub.N.BitLen() > maxVerifyBits
	}
	if v4 == nil {
		return false
	}
	switch pub := v4.PublicKey.(type) {
	case *rsa.PublicKey:
		return pub.N.BitLen() > maxVerifyBits
	case *dsa.PublicKey:
		return pub.P.BitLen() > maxVerifyBits || pub.Q.BitLen() > 512
	}
	return false
}

// checkPrimarySig is verifyPrimaryKeySelfSig (plausible=false) or
// plausifyPrimaryKeySig (plausible=true).
func (k *HockeypuckKey) checkPrimarySig(s *hpSig, plausible bool) error {
	if k.v4 != nil {
		if s.v4 != nil {
			switch s.v4.SigType {
			case packet.SigTypeKeyRevocation, packet.SigTypeDirectSignature:
				if plausible {
					return k.v4.VerifyRevocationHashTag(s.v4)
				}
				return k.v4.VerifyRevocationSignature(s.v4)
			}
			return errInvalidType
		}
		if k.v4.Version == 4 && s.v3.sigType == packet.SigTypeKeyRevocation {
			h, err := s.v3.newHash()
			if err != nil {
				return err
			}
			if err := k.v4.SerializeForHash(h); err != nil {
				return err
			}
			if plausible {
				_, err = s.v3.finish(h)
				return err
			}
			return s.v3.verifyByV4(k.v4, h)
		}
		return errInvalidType
	}
	if s.v3 == nil {
		return errInvalidType
	}
	if s.v3.sigType != packet.SigTypeKeyRevocation {
		return errInvalidType
	}
	h, err := s.v3.newHash()
	if err != nil {
		return err
	}
	k.v3.serializeForHash(h)
	if plausible {
		_, err = s.v3.finish(h)
		return err
	}
	return s.v3.verifyByV3(k.v3, h)
}

// checkSubkeySig is verifySubKeySelfSig or plausifySubKeySig.
func (k *HockeypuckKey) checkSubkeySig(sk *hpSubkey, s *hpSig, plausible bool) error {
	if k.v4 != nil {
		if sk.v4 == nil {
			return errInvalidType // a v3 subkey under a v4 key
		}
		if s.v4 != nil {
			if plausible {
				return k.v4.VerifyKeyHashTag(sk.v4, s.v4)
			}
			if tooCostly(nil, sk.v4) { // it verifies the cross-signature
				return fmt.Errorf("%w: subkey too large to verify", errHP)
			}
			return k.v4.VerifyKeySignature(sk.v4, s.v4)
		}
		if sk.v4.Version != 4 {
			return errInvalidType
		}
		if !plausible && sk.v4.CanSign() {
			return fmt.Errorf("%w: signing subkey may not have a v3 binding signature", errHP)
		}
		h, err := s.v3.newHash()
		if err != nil {
			return err
		}
		if err := k.v4.SerializeForHash(h); err != nil {
			return err
		}
		if err := sk.v4.SerializeForHash(h); err != nil {
			return err
		}
		if plausible {
			_, err = s.v3.finish(h)
			return err
		}
		return s.v3.verifyByV4(k.v4, h)
	}
	if s.v3 == nil || sk.v3 == nil {
		return errInvalidType
	}
	h, err := s.v3.newHash()
	if err != nil {
		return err
	}
	k.v3.serializeForHash(h)
	sk.v3.serializeForHash(h)
	if plausible {
		_, err = s.v3.finish(h)
		return err
	}
	return s.v3.verifyByV3(k.v3, h)
}

// checkUIDSig is verifyUserIDSelfSig or plausifyUserIDSig.
func (k *HockeypuckKey) checkUIDSig(u *hpUID, s *hpSig, plausible bool) error {
	id := string(u.pkt.Body)
	if k.v4 != nil {
		if s.v4 != nil {
			if plausible {
				return k.v4.VerifyUserIdHashTag(id, s.v4)
			}
			return k.v4.VerifyUserIdSignature(id, k.v4, s.v4)
		}
		h, err := s.v3.newHash()
		if err != nil {
			return err
		}
		if err := k.v4.SerializeForHash(h); err != nil {
			return err
		}
		h.Write(u.pkt.Body)
		if plausible {
			_, err = s.v3.finish(h)
			return err
		}
		return s.v3.verifyByV4(k.v4, h)
	}
	if s.v3 == nil {
		return errInvalidType
	}
	h, err := s.v3.newHash()
	if err != nil {
		return err
	}
	k.v3.serializeForHash(h)
	h.Write(u.pkt.Body)
	if plausible {
		_, err = s.v3.finish(h)
		return err
	}
	return s.v3.verifyByV3(k.v3, h)
}

// sigInfo splits sigs the way the SigInfo methods do: valid self
// revocations and certifications (of the types listed), and plausible
// third-party signatures of the types listed for others.
func (k *HockeypuckKey) sigInfo(sigs []*hpSig, check func(*hpSig, bool) error, revocation packet.SignatureType, certs, others []packet.SignatureType) (revs, certsOut, othersOut []*hpSig) {
	for _, s := range sigs {
		if !k.isSelf(s) {
			if check(s, true) == nil && slices.Contains(others, s.sigType) {
				othersOut = append(othersOut, s)
			}
			continue
		}
		if tooCostly(k.v3, k.v4) || check(s, false) != nil {
			continue
		}
		switch {
		case s.sigType == revocation:
			revs = append(revs, s)
		case slices.Contains(certs, s.sigType):
			certsOut = append(certsOut, s)
		}
	}
	return revs, certsOut, othersOut
}

var uidCertTypes = []packet.SignatureType{packet.SigTypeGenericCert, packet.SigTypePersonaCert, packet.SigTypeCasualCert, packet.SigTypePositiveCert}

// validSelfSigned is Policy.ValidSelfSigned with Hockeypuck's default
// policy (no enumerable domains, so no redacted user IDs are kept).
//
// NB: Hockeypuck orders revocations by creation time ascending and
// certifications descending, and sorts again when storing, partly by
// validity at the current time. Order never changes the hash; keeping the
// order of arrival keeps a replay of the log byte-identical.
func (k *HockeypuckKey) validSelfSigned(selfSignedOnly bool) error {
	revs, certs, others := k.sigInfo(k.sigs, k.checkPrimarySig, packet.SigTypeKeyRevocation,
		[]packet.SignatureType{packet.SigTypeDirectSignature},
		[]packet.SignatureType{packet.SigTypeKeyRevocation, packet.SigTypeDirectSignature})
	keepUIDs := true
	for _, r := range revs {
		if r.hardRevoc {
			keepUIDs, selfSignedOnly = false, true
		}
	}
	direct := append(revs, certs...)
	k.sigs = direct
	if !selfSignedOnly {
		k.sigs = append(slices.Clone(direct), others...)
	}
	var uids []*hpUID
	if keepUIDs {
		for _, u := range k.uids {
			if k.validUID(u, selfSignedOnly) {
				uids = append(uids, u)
			}
		}
	}
	var subkeys []*hpSubkey
	for _, sk := range k.subkeys {
		if k.validSubkey(sk, selfSignedOnly) {
			subkeys = append(subkeys, sk)
		}
	}
	k.uids, k.subkeys = uids, subkeys
	if len(subkeys) == 0 && len(uids) == 0 && len(direct) == 0 {
		return ErrEvaporated
	}
	// The primary's trust packets are kept only as redacted user IDs of
	// enumerable domains, which the default policy has none of.
	k.trusts = nil
	return nil
}

func (k *HockeypuckKey) validUID(u *hpUID, selfSignedOnly bool) bool {
	u.trusts = nil
	revs, certs, others := k.sigInfo(u.sigs, func(s *hpSig, p bool) error { return k.checkUIDSig(u, s, p) },
		packet.SigTypeCertificationRevocation, uidCertTypes,
		append([]packet.SignatureType{packet.SigTypeCertificationRevocation}, uidCertTypes...))
	valid := append(revs, certs...)
	if len(valid) == 0 {
		return false
	}
	u.sigs = valid
	if !selfSignedOnly {
		u.sigs = append(slices.Clone(valid), others...)
	}
	return true
}

func (k *HockeypuckKey) validSubkey(sk *hpSubkey, selfSignedOnly bool) bool {
	sk.trusts = nil
	revs, certs, others := k.sigInfo(sk.sigs, func(s *hpSig, p bool) error { return k.checkSubkeySig(sk, s, p) },
		packet.SigTypeSubkeyRevocation, []packet.SignatureType{packet.SigTypeSubkeyBinding},
		[]packet.SignatureType{packet.SigTypeSubkeyRevocation})
	valid := append(revs, certs...)
	if len(valid) == 0 {
		return false
	}
	sk.sigs = valid
	if !selfSignedOnly {
		sk.sigs = append(slices.Clone(valid), others...)
	}
	return true
}

// hpNode is one entry of Hockeypuck's contents() walk, for dedup.
type hpNode struct {
	uuid   string
	prim   bool
	sig    *hpSig
	uid    *hpUID
	sub    *hpSubkey
	trust  *hpTrust
	holder any // for sig and trust: what contents() was called on
}

func sigNodes(out []hpNode, sigs []*hpSig) []hpNode {
	for _, s := range sigs {
		out = append(out, hpNode{uuid: s.uuid, sig: s})
		for _, t := range s.trusts {
			out = append(out, hpNode{uuid: t.uuid, trust: t})
		}
	}
	return out
}

func trustNodes(out []hpNode, ts []*hpTrust) []hpNode {
	for _, t := range ts {
		out = append(out, hpNode{uuid: t.uuid, trust: t})
	}
	return out
}

// dedup is resolve.go dedup(root, nil) on the primary key. NB: like
// Hockeypuck it removes a duplicate signature or trust packet only from the
// list of the node dedup was called on, so a signature repeated under one
// user ID that occurs once stays twice.
func (k *HockeypuckKey) dedup() error {
	nodes := []hpNode{{uuid: k.fpr, prim: true}}
	nodes = trustNodes(nodes, k.trusts)
	nodes = sigNodes(nodes, k.sigs)
	for _, u := range k.uids {
		nodes = append(nodes, hpNode{uuid: u.uuid, uid: u})
		nodes = trustNodes(nodes, u.trusts)
		nodes = sigNodes(nodes, u.sigs)
	}
	for _, sk := range k.subkeys {
		nodes = append(nodes, hpNode{uuid: sk.uuid, sub: sk})
		nodes = trustNodes(nodes, sk.trusts)
		nodes = sigNodes(nodes, sk.sigs)
	}
	seen := make(map[string]hpNode, len(nodes))
	for _, n := range nodes {
		first, ok := seen[n.uuid]
		if !ok {
			seen[n.uuid] = n
			continue
		}
		switch {
		case first.prim:
			return fmt.Errorf("%w: cannot remove a duplicate primary pubkey", errHP)
		case first.uid != nil:
			if n.uid == nil {
				return fmt.Errorf("%w: invalid uid duplicate", errHP)
			}
			first.uid.sigs = append(first.uid.sigs, n.uid.sigs...)
			k.uids = slices.DeleteFunc(k.uids, func(u *hpUID) bool { return u == n.uid })
			first.uid.sigs, first.uid.trusts = dedupChildren(first.uid.sigs, first.uid.trusts)
		case first.sub != nil:
			if n.sub == nil {
				return fmt.Errorf("%w: invalid subkey duplicate", errHP)
			}
			first.sub.sigs = append(first.sub.sigs, n.sub.sigs...)
			k.subkeys = slices.DeleteFunc(k.subkeys, func(s *hpSubkey) bool { return s == n.sub })
			first.sub.sigs, first.sub.trusts = dedupChildren(first.sub.sigs, first.sub.trusts)
		case first.sig != nil:
			if n.sig == nil {
				return fmt.Errorf("%w: invalid packet duplicate", errHP)
			}
			// Removed from the primary's direct signatures only.
			k.sigs = slices.DeleteFunc(k.sigs, func(s *hpSig) bool { return s == n.sig })
			first.sig.trusts = dedupTrusts(first.sig.trusts)
		case first.trust != nil:
			if n.trust == nil {
				return fmt.Errorf("%w: invalid packet duplicate", errHP)
			}
			k.trusts = slices.DeleteFunc(k.trusts, func(t *hpTrust) bool { return t == n.trust })
		}
	}
	return nil
}

// dedupChildren is dedup called on a user ID or subkey: duplicate
// signatures and trust packets leave its own lists; a signature's own trust
// packets are deduplicated within that signature.
func dedupChildren(sigs []*hpSig, trusts []*hpTrust) ([]*hpSig, []*hpTrust) {
	seen := make(map[string]bool)
	var outT []*hpTrust
	for _, t := range trusts {
		if !seen[t.uuid] {
			seen[t.uuid] = true
			outT = append(outT, t)
		}
	}
	first := make(map[string]*hpSig)
	var outS []*hpSig
	for _, s := range sigs {
		if f, ok := first[s.uuid]; ok {
			f.trusts = dedupTrusts(f.trusts)
			continue
		}
		first[s.uuid] = s
		outS = append(outS, s)
		for _, t := range s.trusts {
			// A trust packet under a signature that repeats one seen
			// under this parent is the node dedup meets; it is removed
			// from nowhere (the parent's list holds no such packet).
			seen[t.uuid] = true
		}
	}
	return outS, outT
}

func dedupTrusts(ts []*hpTrust) []*hpTrust {
	seen := make(map[string]bool)
	var out []*hpTrust
	for _, t := range ts {
		if !seen[t.uuid] {
			seen[t.uuid] = true
			out = append(out, t)
		}
	}
	return out
}
