package corpus

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// OpenPGP packet tags the corpus writes (RFC 9580 §5).
const (
	tagSignature = 2
	tagPublicKey = 6
	tagUserID    = 13
	tagSubkey    = 14
)

// appendPacket appends an old-format packet (RFC 9580 §4.2.1) with the
// shortest length type that fits: what GnuPG's export writes for tags
// below 16 and what SKS writes back (spec dumps.md §1).
func appendPacket(dst []byte, tag byte, body []byte) []byte {
	ctb := 0x80 | tag<<2
	switch n := len(body); {
	case n < 1<<8:
		dst = append(dst, ctb, byte(n))
	case n < 1<<16:
		dst = append(dst, ctb|1, byte(n>>8), byte(n))
	default:
		dst = append(dst, ctb|2)
		dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	}
	return append(dst, body...)
}

// newFormatBody returns the body of the single new-format packet in b,
// which is how go-crypto serialises (RFC 9580 §4.2.2; go-crypto never
// writes partial lengths for signatures).
func newFormatBody(b []byte) ([]byte, error) {
	if len(b) < 2 || b[0]&0xc0 != 0xc0 {
		return nil, fmt.Errorf("corpus: not a new-format packet header")
	}
	var n, hdr int
	switch l := b[1]; {
	case l < 192:
		n, hdr = int(l), 2
	case l < 224:
		if len(b) < 3 {
			return nil, fmt.Errorf("corpus: short packet header")
		}
		n, hdr = (int(l)-192)<<8+int(b[2])+192, 3
	case l == 255:
		if len(b) < 6 {
			return nil, fmt.Errorf("corpus: short packet header")
		}
		n, hdr = int(binary.BigEndian.Uint32(b[2:6])), 6
	default:
		return nil, fmt.Errorf("corpus: partial body length")
	}
	if len(b) != hdr+n {
		return nil, fmt.Errorf("corpus: packet length %d, have %d bytes", n, len(b)-hdr)
	}
	return b[hdr:], nil
}

// appendSignature appends sig, already signed, as an old-format packet.
// tmp is scratch space.
func appendSignature(dst []byte, sig *packet.Signature, tmp *bytes.Buffer) ([]byte, error) {
	tmp.Reset()
	if err := sig.Serialize(tmp); err != nil {
		return dst, fmt.Errorf("serialize signature: %w", err)
	}
	body, err := newFormatBody(tmp.Bytes())
	if err != nil {
		return dst, err
	}
	return appendPacket(dst, tagSignature, body), nil
}

// Curve OIDs (RFC 9580 §9.2) and ECDH KDF parameters as GnuPG writes them:
// SHA-256 with AES-128 up to 256-bit curves, SHA-384 with AES-256 for
// P-384 (GnuPG pk_ecdh_default_params).
var (
	oidEd25519 = []byte{0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01}
	oidCv25519 = []byte{0x2b, 0x06, 0x01, 0x04, 0x01, 0x97, 0x55, 0x01, 0x05, 0x01}
	oidP256    = []byte{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	oidP384    = []byte{0x2b, 0x81, 0x04, 0x00, 0x22}

	kdfSHA256AES128 = []byte{0x03, 0x01, 0x08, 0x07}
	kdfSHA384AES256 = []byte{0x03, 0x01, 0x09, 0x09}
)

// OpenPGP public-key algorithm IDs.
const (
	pkaRSA   = 1
	pkaECDH  = 18
	pkaECDSA = 19
	pkaEdDSA = 22
)

// keyBody returns a v4 public key packet body (RFC 9580 §5.5.2.3).
func keyBody(created int64, pka byte, fields ...[]byte) []byte {
	b := []byte{4}
	b = binary.BigEndian.AppendUint32(b, uint32(created))
	b = append(b, pka)
	for _, f := range fields {
		b = append(b, f...)
	}
	return b
}

// mpi encodes a big-endian unsigned integer as an OpenPGP MPI.
func mpi(x []byte) []byte {
	for len(x) > 0 && x[0] == 0 {
		x = x[1:]
	}
	n := 0
	if len(x) > 0 {
		n = 8*(len(x)-1) + bits.Len8(x[0])
	}
	return append([]byte{byte(n >> 8), byte(n)}, x...)
}

// oid encodes a curve OID field: one length octet, then the OID.
func oid(o []byte) []byte { return append([]byte{byte(len(o))}, o...) }
