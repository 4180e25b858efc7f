package pgpkey

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash"
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

	var newestDirect *packet.Signature
	for _, p := range k.DirectSigs {
		sig := v.parseSig(p)
		if sig == nil {
			continue
		}
		switch sig.SigType {
		case sigKeyRevoke:
			if v.verify(sig) {
				s.Revoked = true
			}
		case sigDirectKey:
			if (newestDirect == nil || sig.CreationTime.After(newestDirect.CreationTime)) && v.verify(sig) {
				newestDirect = sig
			}
		}
	}

	var primaryCert *packet.Signature // newest cert of the primary UID
	primaryIdx := -1
	var flagged bool
	for _, g := range k.UIDs {
		u := UIDSummary{IsAttribute: g.Packet.Tag == TagUserAttribute}
		if !u.IsAttribute {
			u.Text = string(g.Packet.Body)
		}
		var cert, rev *packet.Signature
		for _, p := range g.Sigs {
			sig := v.parseSig(p)
			if sig == nil {
				continue
			}
			switch {
			case sig.SigType >= sigGenericCert && sig.SigType <= sigPositiveCert:
				if (cert == nil || sig.CreationTime.After(cert.CreationTime)) && v.verify(sig, g.Packet) {
					cert = sig
				}
			case sig.SigType == sigCertRevoke:
				if (rev == nil || sig.CreationTime.After(rev.CreationTime)) && v.verify(sig, g.Packet) {
					rev = sig
				}
			}
		}
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
		var bind *packet.Signature
		for _, p := range g.Sigs {
			sig := v.parseSig(p)
			if sig == nil {
				continue
			}
			switch sig.SigType {
			case sigSubkeyBind:
				if (bind == nil || sig.CreationTime.After(bind.CreationTime)) && v.verifySubkey(sig, g.Packet) {
					bind = sig
				}
			case sigSubkeyRevoke:
				if v.verifySubkey(sig, g.Packet) {
					sub.Revoked = true
				}
			}
		}
		if bind != nil {
			sub.Expires = keyExpiry(sub.Created, bind)
		}
		s.Subkeys = append(s.Subkeys, sub)
	}
	return s
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
	if v == nil || p.Tag != TagSignature {
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
