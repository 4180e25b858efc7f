package pgpkey

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeyHash is the SKS key hash: the MD5 of the canonical key (keyhash.md §5).
// It names one stored version of a key; it is the recon set element and the
// hashquery / op=hget lookup key. It is not a fingerprint.
type KeyHash [16]byte

// String returns the hash as 32 uppercase hex digits, as SKS prints it
// (Utils.hexstring). Hockeypuck prints lowercase; compare hashes as values.
func (h KeyHash) String() string {
	var b [32]byte
	hexUpper(b[:], h[:])
	return string(b[:])
}

// ParseKeyHash parses 32 hex digits in either case, with an optional 0x.
func ParseKeyHash(s string) (KeyHash, error) {
	var h KeyHash
	t := trimHexPrefix(s)
	if len(t) != 32 {
		return h, fmt.Errorf("pgpkey: key hash %q: want 32 hex digits", s)
	}
	if _, err := hex.Decode(h[:], []byte(t)); err != nil {
		return KeyHash{}, fmt.Errorf("pgpkey: key hash %q: not hex", s)
	}
	return h, nil
}

// KeyID is a 64-bit OpenPGP key ID: the low 64 bits of the fingerprint for
// v4, the high 64 bits for v5 and v6, the low 64 bits of the RSA modulus for
// v2/v3 (keyhash.md §6 step 3).
type KeyID uint64

// String returns the key ID as 16 uppercase hex digits.
func (id KeyID) String() string { return fmt.Sprintf("%016X", uint64(id)) }

// Short returns the 32-bit short key ID (the low 32 bits), which SKS uses to
// find merge candidates (keyhash.md §6 step 3).
func (id KeyID) Short() uint32 { return uint32(id) }

// ParseKeyID parses 16 hex digits in either case, with an optional 0x.
func ParseKeyID(s string) (KeyID, error) {
	t := trimHexPrefix(s)
	var b [8]byte
	if len(t) != 16 {
		return 0, fmt.Errorf("pgpkey: key ID %q: want 16 hex digits", s)
	}
	if _, err := hex.Decode(b[:], []byte(t)); err != nil {
		return 0, fmt.Errorf("pgpkey: key ID %q: not hex", s)
	}
	return KeyID(binary.BigEndian.Uint64(b[:])), nil
}

// Fingerprint is an OpenPGP fingerprint: 16 bytes (v3, MD5), 20 (v4, SHA-1)
// or 32 (v5/v6, SHA-256). It is a comparable value, usable as a map key; two
// fingerprints of different lengths are never equal. The zero value is "no
// fingerprint".
type Fingerprint struct {
	n uint8
	b [32]byte
}

// FingerprintFromBytes returns the fingerprint held in b, which must be 16,
// 20 or 32 bytes long.
func FingerprintFromBytes(b []byte) (Fingerprint, error) {
	var f Fingerprint
	switch len(b) {
	case 16, 20, 32:
	default:
		return f, fmt.Errorf("pgpkey: fingerprint of %d bytes: want 16, 20 or 32", len(b))
	}
	f.n = uint8(len(b))
	copy(f.b[:], b)
	return f, nil
}

// ParseFingerprint parses 32, 40 or 64 hex digits in either case, with an
// optional 0x.
func ParseFingerprint(s string) (Fingerprint, error) {
	t := trimHexPrefix(s)
	switch len(t) {
	case 32, 40, 64:
	default:
		return Fingerprint{}, fmt.Errorf("pgpkey: fingerprint %q: want 32, 40 or 64 hex digits", s)
	}
	var f Fingerprint
	if _, err := hex.Decode(f.b[:len(t)/2], []byte(t)); err != nil {
		return Fingerprint{}, fmt.Errorf("pgpkey: fingerprint %q: not hex", s)
	}
	f.n = uint8(len(t) / 2)
	return f, nil
}

// Bytes returns a copy of the fingerprint's bytes (nil for the zero value).
func (f Fingerprint) Bytes() []byte {
	if f.n == 0 {
		return nil
	}
	return append([]byte(nil), f.b[:f.n]...)
}

// AppendTo appends the fingerprint's bytes to dst: Bytes without a copy of
// its own.
func (f Fingerprint) AppendTo(dst []byte) []byte { return append(dst, f.b[:f.n]...) }

// Len returns the fingerprint's length in bytes: 0, 16, 20 or 32.
func (f Fingerprint) Len() int { return int(f.n) }

// IsZero reports whether f is the zero value.
func (f Fingerprint) IsZero() bool { return f.n == 0 }

// String returns the fingerprint in uppercase hex ("" for the zero value).
func (f Fingerprint) String() string {
	b := make([]byte, 2*int(f.n))
	hexUpper(b, f.b[:f.n])
	return string(b)
}

// KeyID returns the key ID a fingerprint of this length implies: the low 64
// bits for v4 (20 bytes), the high 64 bits for v5/v6 (32 bytes). A v3
// fingerprint (16 bytes) does not determine the key ID, so it returns 0.
func (f Fingerprint) KeyID() KeyID {
	switch f.n {
	case 20:
		return KeyID(binary.BigEndian.Uint64(f.b[12:20]))
	case 32:
		return KeyID(binary.BigEndian.Uint64(f.b[:8]))
	}
	return 0
}

// ErrBadKeyPacket reports a public-key packet body that is too short or
// malformed to compute a fingerprint from.
var ErrBadKeyPacket = errors.New("pgpkey: malformed public key packet")

// keyIdentity computes the fingerprint and key ID of a public-key or
// public-subkey packet body (RFC 4880 §12.2, RFC 9580 §5.5.4,
// draft-koch-librepgp for v5).
func keyIdentity(body []byte) (Fingerprint, KeyID, error) {
	if len(body) == 0 {
		return Fingerprint{}, 0, ErrBadKeyPacket
	}
	var f Fingerprint
	switch body[0] {
	case 2, 3:
		// version, created[4], validity days[2], algorithm, MPI n, MPI e.
		// The fingerprint is MD5 over the MPI values without their length
		// octets; the key ID is the low 64 bits of n (SKS fingerprint.ml).
		n, rest, ok := readMPI(body, 8)
		if !ok {
			return Fingerprint{}, 0, ErrBadKeyPacket
		}
		e, _, ok := readMPI(body, rest)
		if !ok {
			return Fingerprint{}, 0, ErrBadKeyPacket
		}
		h := md5.New()
		h.Write(n)
		h.Write(e)
		f.n = 16
		h.Sum(f.b[:0])
		var id [8]byte
		if len(n) >= 8 {
			copy(id[:], n[len(n)-8:])
		} else {
			copy(id[8-len(n):], n)
		}
		return f, KeyID(binary.BigEndian.Uint64(id[:])), nil
	case 4:
		h := sha1.New()
		h.Write([]byte{0x99, byte(len(body) >> 8), byte(len(body))})
		h.Write(body)
		f.n = 20
		h.Sum(f.b[:0])
		return f, f.KeyID(), nil
	case 5, 6:
		h := sha256.New()
		prefix := byte(0x9a)
		if body[0] == 6 {
			prefix = 0x9b
		}
		var hdr [5]byte
		hdr[0] = prefix
		binary.BigEndian.PutUint32(hdr[1:], uint32(len(body)))
		h.Write(hdr[:])
		h.Write(body)
		f.n = 32
		h.Sum(f.b[:0])
		return f, f.KeyID(), nil
	}
	return Fingerprint{}, 0, ErrBadKeyPacket
}

// readMPI reads the multiprecision integer at b[off:], returning its value
// bytes (aliasing b) and the offset after it.
func readMPI(b []byte, off int) (val []byte, next int, ok bool) {
	if off+2 > len(b) {
		return nil, 0, false
	}
	bits := int(binary.BigEndian.Uint16(b[off:]))
	n := (bits + 7) / 8
	off += 2
	if off+n > len(b) {
		return nil, 0, false
	}
	return b[off : off+n], off + n, true
}

func trimHexPrefix(s string) string {
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		return s[2:]
	}
	return s
}

func hexUpper(dst, src []byte) {
	const digits = "0123456789ABCDEF"
	for i, c := range src {
		dst[2*i] = digits[c>>4]
		dst[2*i+1] = digits[c&0x0f]
	}
}
