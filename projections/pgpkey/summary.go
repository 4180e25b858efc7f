package pgpkey

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash"
	"slices"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Summary is what HKP index pages show about a key. Times are UTC; a zero
// time means "none" (for Expires: never).
type Summary struct {
	Version   int // primary key version
	Algorithm int // RFC 9580 public-key algorithm: 1 RSA, 17 DSA, 18 ECDH, 19 ECDSA, 22 EdDSA, 25 X25519, 27 Ed25519, …
	Bits      int // see keyBits: RSA/DSA/Elgamal MPI bits, curve size for ECC; 0 if unknown
	Created   time.Time
	Expires   time.Time // zero: never; from the key's binding self-signature
	Revoked   bool      // a key revocation (0x20) made and verified by the key itself
	// Verified reports whether self-signatures could be checked at all: the
	// primary key parsed with go-crypto (not v2/v3, not v5, a supported
	// algorithm). When false, Expires (except a v3 validity period),
	// Revoked and the per-UID and per-subkey dates are left zero.
	Verified bool
	UIDs     []UIDSummary
	Subkeys  []SubkeySummary
}

// UIDSummary describes one user ID or user attribute, in canonical order.
type UIDSummary struct {
	Text        string // the user ID; empty for an attribute
	IsAttribute bool   // a user attribute (tag 17), e.g. a photo ID
	Created     time.Time
	Expires     time.Time // when the newest self-certification expires (signature expiration)
	Revoked     bool      // the newest valid self-signature on it is a certification revocation
	// Primary reports the key's primary user ID: the newest valid
	// self-certification carrying the Primary User ID flag, or, if none
	// has it, the user ID with the newest self-certification.
	Primary bool
}

// SubkeySummary describes one subkey, in canonical order.
type SubkeySummary struct {
	Fingerprint Fingerprint
	KeyID       KeyID
	Algorithm   int
	Bits        int
	Created     time.Time
	Expires     time.Time // from the newest valid binding signature
	Revoked     bool      // a subkey revocation (0x28) verified against the primary key
}

// Signature types used by the summary (RFC 9580 §5.2.1).
const (
	sigGenericCert  = 0x10
	sigPositiveCert = 0x13
	sigSubkeyBind   = 0x18
	sigDirectKey    = 0x1f
	sigKeyRevoke    = 0x20
	sigSubkeyRevoke = 0x28
	sigCertRevoke   = 0x30
)

// Summary computes the index information of k. It never fails: a packet
// go-crypto cannot parse, or a signature that does not verify, is ignored.
//
// Revocation and expiry count only when made by the key itself and verified
// with go-crypto, so a third party's forged "revocation" does not mark a key
// revoked. (SKS shows any 0x20/0x28/0x30 signature on the primary as a
// revocation, unverified, hkp.md §6.1; we deliberately do not.) Designated
// revokers cannot be checked without their key and are ignored.
//
// Key expiry comes from the self-signature that carries the key's
// properties, as RFC 9580 assigns them: for v4 keys the newest valid
// self-certification of the primary user ID, or failing that the newest
// valid direct-key signature; for v6 keys the newest valid direct-key
// signature first. (SKS instead takes the newest user ID self-certification
// with a key expiry subpacket, hkp.md §6.1.) Subpackets 16 (issuer key ID)
// and 33 (issuer fingerprint) both identify self-signatures. The
// cross-certification (back signature) of signing subkeys is not checked.
//
// Summary verifies signatures, so it costs far more than parsing: about
// 0.1–0.5 ms per key. Compute it when building index data, not on the
// import hot path.
func (k *Key) Summary() Summary {
	if k.summary == nil {
		s := k.computeSummary(true)
		k.summary = &s
	}
	return *k.summary
}

// PrimarySummary is Summary without Subkeys (nil): everything a
// machine-readable index shows, for about two thirds of the cost, since
// subkey binding signatures are not verified. It returns the full summary
// when that is computed already, and does not record its own.
func (k *Key) PrimarySummary() Summary {
	if k.summary != nil {
		s := *k.summary
		s.Subkeys = nil
		return s
	}
	return k.computeSummary(false)
}

// SetSummary records a summary computed earlier for a key with the same
// content (same Hash), e.g. from a cache, so Summary need not verify
// signatures again.
func (k *Key) SetSummary(s Summary) { k.summary = &s }

// HasSummary reports whether Summary is already computed.
func (k *Key) HasSummary() bool { return k.summary != nil }

func (k *Key) computeSummary(subkeys bool) Summary {
	info := parseKeyInfo(k.Primary.Body)
	s := Summary{
		Version:   info.version,
		Algorithm: info.algo,
		Bits:      info.bits,
		Created:   info.created,
	}
	if info.v3days > 0 {
		s.Expires = info.created.Add(time.Duration(info.v3days) * 24 * time.Hour)
	}
	v := newVerifier(k.Primary)
	s.Verified = v != nil

	var revs, directs []*packet.Signature
	for _, p := range k.DirectSigs {
		if sig := v.parseSig(p); sig != nil {
			switch sig.SigType {
			case sigKeyRevoke:
				revs = append(revs, sig)
			case sigDirectKey:
				directs = append(directs, sig)
			}
		}
	}
	s.Revoked = newestValid(revs, func(sig *packet.Signature) bool { return v.verify(sig) }) != nil
	newestDirect := newestValid(directs, func(sig *packet.Signature) bool { return v.verify(sig) })

	var primaryCert *packet.Signature // newest cert of the primary UID
	primaryIdx := -1
	var flagged bool
	for _, g := range k.UIDs {
		u := UIDSummary{IsAttribute: g.Packet.Tag == TagUserAttribute}
		if !u.IsAttribute {
			u.Text = string(g.Packet.Body)
		}
		var certs, uidRevs []*packet.Signature
		for _, p := range g.Sigs {
			sig := v.parseSig(p)
			switch {
			case sig == nil:
			case sig.SigType >= sigGenericCert && sig.SigType <= sigPositiveCert:
				certs = append(certs, sig)
			case sig.SigType == sigCertRevoke:
				uidRevs = append(uidRevs, sig)
			}
		}
		verifyUID := func(sig *packet.Signature) bool { return v.verify(sig, g.Packet) }
		cert := newestValid(certs, verifyUID)
		rev := newestValid(uidRevs, verifyUID)
		if cert != nil {
			u.Created = cert.CreationTime.UTC()
			if cert.SigLifetimeSecs != nil && *cert.SigLifetimeSecs != 0 {
				u.Expires = u.Created.Add(time.Duration(*cert.SigLifetimeSecs) * time.Second)
			}
		}
		u.Revoked = rev != nil && (cert == nil || !cert.CreationTime.After(rev.CreationTime))
		if cert != nil && !u.Revoked && !u.IsAttribute {
			isFlagged := cert.IsPrimaryId != nil && *cert.IsPrimaryId
			better := primaryCert == nil ||
				(isFlagged && !flagged) ||
				(isFlagged == flagged && cert.CreationTime.After(primaryCert.CreationTime))
			if better {
				primaryCert, primaryIdx, flagged = cert, len(s.UIDs), isFlagged
			}
		}
		s.UIDs = append(s.UIDs, u)
	}
	if primaryIdx >= 0 {
		s.UIDs[primaryIdx].Primary = true
	}

	binding := primaryCert
	if binding == nil || (s.Version >= 6 && newestDirect != nil) {
		binding = newestDirect
	}
	if binding != nil {
		s.Expires = keyExpiry(s.Created, binding)
	}

	if !subkeys {
		return s
	}
	for _, g := range k.Subkeys {
		sinfo := parseKeyInfo(g.Packet.Body)
		fpr, id, _ := keyIdentity(g.Packet.Body)
		sub := SubkeySummary{
			Fingerprint: fpr,
			KeyID:       id,
			Algorithm:   sinfo.algo,
			Bits:        sinfo.bits,
			Created:     sinfo.created,
		}
		var binds, subRevs []*packet.Signature
		for _, p := range g.Sigs {
			if sig := v.parseSig(p); sig != nil {
				switch sig.SigType {
				case sigSubkeyBind:
					binds = append(binds, sig)
				case sigSubkeyRevoke:
					subRevs = append(subRevs, sig)
				}
			}
		}
		verifySub := func(sig *packet.Signature) bool { return v.verifySubkey(sig, g.Packet) }
		if bind := newestValid(binds, verifySub); bind != nil {
			sub.Expires = keyExpiry(sub.Created, bind)
		}
		sub.Revoked = newestValid(subRevs, verifySub) != nil
		s.Subkeys = append(s.Subkeys, sub)
	}
	return s
}

// newestValid returns the newest signature of sigs that verifies, or nil.
// It verifies newest first and stops at the first success, so a user ID
// with a long history of self-signatures costs one verification.
func newestValid(sigs []*packet.Signature, verify func(*packet.Signature) bool) *packet.Signature {
	slices.SortStableFunc(sigs, func(a, b *packet.Signature) int { return b.CreationTime.Compare(a.CreationTime) })
	for _, sig := range sigs {
		if verify(sig) {
			return sig
		}
	}
	return nil
}

func keyExpiry(created time.Time, sig *packet.Signature) time.Time {
	if sig.KeyLifetimeSecs == nil || *sig.KeyLifetimeSecs == 0 {
		return time.Time{}
	}
	return created.Add(time.Duration(*sig.KeyLifetimeSecs) * time.Second)
}

// verifier checks self-signatures of one primary key. A nil *verifier
// (the primary could not be parsed) parses nothing and verifies nothing.
type verifier struct {
	pk    *packet.PublicKey
	body  []byte // primary key packet body, hashed as is
	fpr   []byte
	keyID uint64
}

func newVerifier(primary Packet) *verifier {
	if len(primary.Body) == 0 || primary.Body[0] < 4 {
		return nil // go-crypto parses v4+ only; v2/v3 signatures neither
	}
	p, err := readPacket(primary)
	if err != nil {
		return nil
	}
	pk, ok := p.(*packet.PublicKey)
	if !ok || !pk.CanSign() {
		return nil
	}
	fpr, id, err := keyIdentity(primary.Body)
	if err != nil {
		return nil
	}
	return &verifier{pk: pk, body: primary.Body, fpr: fpr.Bytes(), keyID: uint64(id)}
}

// readPacket frames p and parses it with go-crypto. A panic in go-crypto on
// hostile input is turned into an error: one odd packet must never take
// the server down.
func readPacket(p Packet) (pp packet.Packet, err error) {
	defer func() {
		if recover() != nil {
			pp, err = nil, errGoCryptoPanic
		}
	}()
	framed := AppendPacket(make([]byte, 0, 6+len(p.Body)), p)
	return packet.Read(bytes.NewReader(framed))
}

var errGoCryptoPanic = errors.New("pgpkey: go-crypto panicked")

// verifySignature is pk.VerifySignature, with a panic counting as failure.
func (v *verifier) verifySignature(h hash.Hash, sig *packet.Signature) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return v.pk.VerifySignature(h, sig) == nil
}

// parseSig parses a signature packet that claims to be issued by the
// primary key. It returns nil for anything else.
func (v *verifier) parseSig(p Packet) *packet.Signature {
	if v == nil || p.Tag != TagSignature || !v.maybeSelfSig(p.Body) {
		return nil
	}
	pp, err := readPacket(p)
	if err != nil {
		return nil
	}
	sig, ok := pp.(*packet.Signature)
	if !ok {
		return nil
	}
	switch {
	case sig.IssuerFingerprint != nil:
		if !bytes.Equal(sig.IssuerFingerprint, v.fpr) {
			return nil
		}
	case sig.IssuerKeyId != nil:
		if *sig.IssuerKeyId != v.keyID {
			return nil
		}
	}
	// No issuer subpacket at all: let verification decide.
	return sig
}

// maybeSelfSig is a cheap filter run before go-crypto parses a signature:
// it reports false for signatures the summary certainly ignores, so that a
// key with thousands of third-party certifications costs little. It reads
// the version, the type and the issuer subpackets (16, 33) of v4 and v6
// signatures (RFC 9580 §5.2.3); anything it cannot read is left to
// go-crypto.
func (v *verifier) maybeSelfSig(b []byte) bool {
	if len(b) < 2 || (b[0] != 4 && b[0] != 6) {
		return false // go-crypto verifies v4 and v6 signatures only
	}
	switch b[1] {
	case 0x10, 0x11, 0x12, 0x13, sigSubkeyBind, sigDirectKey, sigKeyRevoke, sigSubkeyRevoke, sigCertRevoke:
	default:
		return false
	}
	lenSize, off := 2, 4
	if b[0] == 6 {
		lenSize = 4
	}
	var fprSeen, idSeen, selfFpr, selfID bool
	for area := 0; area < 2; area++ { // hashed, then unhashed subpackets
		if off+lenSize > len(b) {
			return true
		}
		var n int
		if lenSize == 2 {
			n = int(binary.BigEndian.Uint16(b[off:]))
		} else {
			n = int(binary.BigEndian.Uint32(b[off:]))
		}
		off += lenSize
		if n < 0 || off+n > len(b) {
			return true
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
					return true
				}
				l, h = (int(c)-192)<<8+int(sub[1])+192, 2
			default:
				if len(sub) < 5 {
					return true
				}
				l, h = int(binary.BigEndian.Uint32(sub[1:5])), 5
			}
			if l < 1 || h+l > len(sub) || l > len(sub) {
				return true
			}
			typ, data := sub[h]&0x7f, sub[h+1:h+l]
			switch typ {
			case 16: // issuer key ID
				idSeen = true
				selfID = selfID || (len(data) == 8 && binary.BigEndian.Uint64(data) == v.keyID)
			case 33: // issuer fingerprint: version octet, fingerprint
				fprSeen = true
				selfFpr = selfFpr || (len(data) > 1 && bytes.Equal(data[1:], v.fpr))
			}
			sub = sub[h+l:]
		}
	}
	switch {
	case fprSeen:
		return selfFpr
	case idSeen:
		return selfID
	}
	return true // no issuer: let verification decide
}

// writeKeyPrefix writes a key packet body as signatures hash it (RFC 9580
// §5.2.4): 0x99 and a two-octet length for v4, 0x9A/0x9B and a four-octet
// length for v5/v6. It hashes the body as received, not go-crypto's
// re-serialisation of it.
func writeKeyPrefix(h hash.Hash, body []byte) {
	if body[0] >= 5 {
		var hdr [5]byte
		hdr[0] = 0x95 + body[0]
		binary.BigEndian.PutUint32(hdr[1:], uint32(len(body)))
		h.Write(hdr[:])
	} else {
		h.Write([]byte{0x99, byte(len(body) >> 8), byte(len(body))})
	}
	h.Write(body)
}

// verify checks a signature over the primary key alone (direct-key or key
// revocation), or, with a user ID or attribute packet, a certification of it.
func (v *verifier) verify(sig *packet.Signature, uid ...Packet) bool {
	h, err := sig.PrepareVerify()
	if err != nil {
		return false
	}
	writeKeyPrefix(h, v.body)
	if len(uid) == 1 {
		var hdr [5]byte
		hdr[0] = 0xb4
		if uid[0].Tag == TagUserAttribute {
			hdr[0] = 0xd1
		}
		binary.BigEndian.PutUint32(hdr[1:], uint32(len(uid[0].Body)))
		h.Write(hdr[:])
		h.Write(uid[0].Body)
	}
	return v.verifySignature(h, sig)
}

// verifySubkey checks a subkey binding or revocation signature.
func (v *verifier) verifySubkey(sig *packet.Signature, sub Packet) bool {
	if len(sub.Body) == 0 {
		return false
	}
	h, err := sig.PrepareVerify()
	if err != nil {
		return false
	}
	writeKeyPrefix(h, v.body)
	writeKeyPrefix(h, sub.Body)
	return v.verifySignature(h, sig)
}

// keyInfo is what the summary reads directly from a key packet body.
type keyInfo struct {
	version int
	created time.Time
	v3days  int // v2/v3 validity period in days, 0 = none
	algo    int
	bits    int
}

// parseKeyInfo reads version, creation time, algorithm and size from a
// public-key packet body. It does not need go-crypto, so it works for every
// version and algorithm, and for curves go-crypto does not know.
func parseKeyInfo(b []byte) keyInfo {
	var info keyInfo
	if len(b) < 6 {
		if len(b) > 0 {
			info.version = int(b[0])
		}
		return info
	}
	info.version = int(b[0])
	info.created = time.Unix(int64(binary.BigEndian.Uint32(b[1:5])), 0).UTC()
	var material []byte
	switch info.version {
	case 2, 3:
		if len(b) < 8 {
			return info
		}
		info.v3days = int(binary.BigEndian.Uint16(b[5:7]))
		info.algo = int(b[7])
		material = b[8:]
	case 4:
		info.algo = int(b[5])
		material = b[6:]
	default: // 5, 6: a four-octet key material length follows
		info.algo = int(b[5])
		if len(b) < 10 {
			return info
		}
		material = b[10:]
	}
	info.bits = keyBits(info.algo, material)
	return info
}

// keyBits returns the key size index pages show. RSA, DSA and Elgamal: the
// bit count of the first MPI (modulus or p), as SKS and GnuPG show it. ECC
// with an OID (ECDH, ECDSA, EdDSA-legacy): the curve size, as SKS shows it
// (hkp.md §6.1), so Ed25519 and Curve25519 are 256 (GnuPG's colon listing
// says 255) and an unknown OID is 0 instead of SKS's failing response.
// RFC 9580 X25519/X448/Ed25519/Ed448: 255/448/256/456, the recommendation
// of hkp.md §6.1.
func keyBits(algo int, m []byte) int {
	switch algo {
	case 1, 2, 3, 16, 17, 20:
		if len(m) < 2 {
			return 0
		}
		return int(binary.BigEndian.Uint16(m))
	case 18, 19, 22:
		if len(m) < 1 || int(m[0]) == 0 || int(m[0]) == 0xff || 1+int(m[0]) > len(m) {
			return 0
		}
		return curveBits[string(m[1:1+int(m[0])])]
	case 25:
		return 255
	case 26:
		return 448
	case 27:
		return 256
	case 28:
		return 456
	}
	return 0
}

// curveBits maps curve OIDs (DER content octets, RFC 9580 §9.2) to the
// sizes SKS's index shows.
var curveBits = map[string]int{
	"\x2a\x86\x48\xce\x3d\x03\x01\x07":         256, // NIST P-256
	"\x2b\x81\x04\x00\x22":                     384, // NIST P-384
	"\x2b\x81\x04\x00\x23":                     521, // NIST P-521
	"\x2b\x81\x04\x00\x0a":                     256, // secp256k1
	"\x2b\x24\x03\x03\x02\x08\x01\x01\x07":     256, // brainpoolP256r1
	"\x2b\x24\x03\x03\x02\x08\x01\x01\x0b":     384, // brainpoolP384r1
	"\x2b\x24\x03\x03\x02\x08\x01\x01\x0d":     512, // brainpoolP512r1
	"\x2b\x06\x01\x04\x01\xda\x47\x0f\x01":     256, // Ed25519 (legacy EdDSA)
	"\x2b\x06\x01\x04\x01\x97\x55\x01\x05\x01": 256, // Curve25519 (legacy ECDH)
	"\x2b\x65\x71":                             456, // Ed448 (GnuPG's legacy EdDSA OID)
	"\x2b\x65\x6f":                             448, // X448 (GnuPG's legacy ECDH OID)
}
