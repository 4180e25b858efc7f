package pgpkey

import (
	"crypto"
	"crypto/dsa" //nolint:staticcheck // Hockeypuck verifies DSA v3 signatures over v4 DSA keys
	"crypto/md5"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/big"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Version 2/3 keys and signatures, read and verified the way Hockeypuck 2.3
// does. go-crypto dropped them; Hockeypuck builds against a fork
// (pgpkeys-eu/go-crypto, branch "trust", packet/public_key_v3.go and
// signature_v3.go) that keeps x/crypto's old code. What follows reproduces
// that fork's behaviour, quirks included:
//
//   - a v3 key hashes for signatures as 0x99, a two-octet length of
//     6 + the encoded MPIs (not 8, although the 8-octet header is then
//     hashed), and always the version byte 3, even for a v2 key;
//   - a signature by a v3 key is checked without padding the RSA value to
//     the modulus size; one by a v4 key is padded (go-crypto's padToKeySize);
//   - v3 signatures may use MD5 and SHA-1 besides go-crypto's hashes.

var errV3 = errors.New("pgpkey: hockeypuck: v3 packet")

// mpi is an OpenPGP MPI as go-crypto's encoding.MPI reads it: the bit length
// as given and the bytes it announces, nothing stripped.
type mpi struct {
	bitLen uint16
	bytes  []byte
}

func readMPIAt(b []byte, off int) (mpi, int, error) {
	if off+2 > len(b) {
		return mpi{}, off, io.ErrUnexpectedEOF
	}
	bl := binary.BigEndian.Uint16(b[off:])
	n := (int(bl) + 7) / 8
	if off+2+n > len(b) {
		return mpi{}, off, io.ErrUnexpectedEOF
	}
	return mpi{bitLen: bl, bytes: b[off+2 : off+2+n]}, off + 2 + n, nil
}

func (m mpi) encodedLen() int { return 2 + len(m.bytes) }

func (m mpi) appendEncoded(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, m.bitLen)
	return append(dst, m.bytes...)
}

// v3Key is a version 2 or 3 RSA public key (the fork's PublicKeyV3).
type v3Key struct {
	created uint32
	days    uint16
	algo    packet.PublicKeyAlgorithm
	n, e    mpi
	pub     *rsa.PublicKey
	fpr     [16]byte
	keyID   uint64
}

func parseV3Key(body []byte) (*v3Key, error) {
	if len(body) < 8 {
		return nil, io.ErrUnexpectedEOF
	}
	if body[0] < 2 || body[0] > 3 {
		return nil, fmt.Errorf("%w: public key version %d", errV3, body[0])
	}
	k := &v3Key{
		created: binary.BigEndian.Uint32(body[1:5]),
		days:    binary.BigEndian.Uint16(body[5:7]),
		algo:    packet.PublicKeyAlgorithm(body[7]),
	}
	switch k.algo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly, packet.PubKeyAlgoRSASignOnly:
	default:
		return nil, fmt.Errorf("%w: public key type %d", errV3, k.algo)
	}
	var err error
	off := 8
	if k.n, off, err = readMPIAt(body, off); err != nil {
		return nil, err
	}
	if k.e, _, err = readMPIAt(body, off); err != nil {
		return nil, err
	}
	if len(k.n.bytes) < 8 {
		return nil, fmt.Errorf("%w: modulus too short", errV3)
	}
	if len(k.e.bytes) > 3 {
		return nil, fmt.Errorf("%w: large public exponent", errV3)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(k.n.bytes)}
	for _, c := range k.e.bytes {
		pub.E = pub.E<<8 | int(c)
	}
	k.pub = pub
	d := md5.New()
	d.Write(k.n.bytes)
	d.Write(k.e.bytes)
	d.Sum(k.fpr[:0])
	k.keyID = binary.BigEndian.Uint64(k.n.bytes[len(k.n.bytes)-8:])
	return k, nil
}

// serializeForHash writes the fork's signature prefix and key body.
func (k *v3Key) serializeForHash(h hash.Hash) {
	l := 6 + k.n.encodedLen() + k.e.encodedLen()
	b := []byte{0x99, byte(l >> 8), byte(l), 3}
	b = binary.BigEndian.AppendUint32(b, k.created)
	b = binary.BigEndian.AppendUint16(b, k.days)
	b = append(b, byte(k.algo))
	b = k.n.appendEncoded(b)
	b = k.e.appendEncoded(b)
	h.Write(b)
}

func (k *v3Key) canSign() bool { return k.algo != packet.PubKeyAlgoRSAEncryptOnly }

// v3Sig is a version 2 or 3 signature (the fork's SignatureV3).
type v3Sig struct {
	sigType packet.SignatureType
	created uint32
	issuer  uint64
	algo    packet.PublicKeyAlgorithm
	hash    crypto.Hash
	tag     [2]byte
	rsaSig  mpi
	r, s    mpi
}

// v3Hashes maps OpenPGP hash IDs to hashes the fork accepts for v3
// signatures: go-crypto's list plus SHA-1 and MD5 (HashIdToHashWithSha1Md5).
var v3Hashes = map[byte]crypto.Hash{
	1: crypto.MD5, 2: crypto.SHA1, 8: crypto.SHA256, 9: crypto.SHA384,
	10: crypto.SHA512, 11: crypto.SHA224, 12: crypto.SHA3_256, 14: crypto.SHA3_512,
}

func parseV3Sig(body []byte) (*v3Sig, error) {
	if len(body) < 1 {
		return nil, io.ErrUnexpectedEOF
	}
	if body[0] < 2 || body[0] > 3 {
		return nil, fmt.Errorf("%w: signature version %d", errV3, body[0])
	}
	if len(body) < 2 {
		return nil, io.ErrUnexpectedEOF
	}
	if body[1] != 5 {
		return nil, fmt.Errorf("%w: hashed material length %d", errV3, body[1])
	}
	if len(body) < 19 {
		return nil, io.ErrUnexpectedEOF
	}
	s := &v3Sig{
		sigType: packet.SignatureType(body[2]),
		created: binary.BigEndian.Uint32(body[3:7]),
		issuer:  binary.BigEndian.Uint64(body[7:15]),
		algo:    packet.PublicKeyAlgorithm(body[15]),
	}
	switch s.algo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSASignOnly, packet.PubKeyAlgoDSA:
	default:
		return nil, fmt.Errorf("%w: signature algorithm %d", errV3, s.algo)
	}
	var ok bool
	if s.hash, ok = v3Hashes[body[16]]; !ok {
		return nil, fmt.Errorf("%w: hash function %d", errV3, body[16])
	}
	copy(s.tag[:], body[17:19])
	var err error
	off := 19
	if s.algo == packet.PubKeyAlgoDSA {
		if s.r, off, err = readMPIAt(body, off); err != nil {
			return nil, err
		}
		if s.s, _, err = readMPIAt(body, off); err != nil {
			return nil, err
		}
		return s, nil
	}
	if s.rsaSig, _, err = readMPIAt(body, off); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *v3Sig) newHash() (hash.Hash, error) {
	if !s.hash.Available() {
		return nil, fmt.Errorf("%w: hash function unavailable", errV3)
	}
	return s.hash.New(), nil
}

// finish appends the v3 trailer and checks the hash tag.
func (s *v3Sig) finish(h hash.Hash) ([]byte, error) {
	var suffix [5]byte
	suffix[0] = byte(s.sigType)
	binary.BigEndian.PutUint32(suffix[1:], s.created)
	h.Write(suffix[:])
	sum := h.Sum(nil)
	if sum[0] != s.tag[0] || sum[1] != s.tag[1] {
		return nil, fmt.Errorf("%w: hash tag doesn't match", errV3)
	}
	return sum, nil
}

// verifyByV4 is the fork's (*PublicKey).VerifySignatureV3.
func (s *v3Sig) verifyByV4(pk *packet.PublicKey, h hash.Hash) error {
	if !pk.CanSign() {
		return fmt.Errorf("%w: public key cannot generate signatures", errV3)
	}
	sum, err := s.finish(h)
	if err != nil {
		return err
	}
	if pk.PubKeyAlgo != s.algo {
		return fmt.Errorf("%w: public key and signature use different algorithms", errV3)
	}
	switch pub := pk.PublicKey.(type) {
	case *rsa.PublicKey:
		sig := s.rsaSig.bytes
		if k := (pub.N.BitLen() + 7) / 8; len(sig) < k {
			sig = append(make([]byte, k-len(sig)), sig...)
		}
		if rsa.VerifyPKCS1v15(pub, s.hash, sum, sig) != nil {
			return fmt.Errorf("%w: RSA verification failure", errV3)
		}
		return nil
	case *dsa.PublicKey:
		if n := (pub.Q.BitLen() + 7) / 8; len(sum) > n {
			sum = sum[:n]
		}
		if !dsa.Verify(pub, sum, new(big.Int).SetBytes(s.r.bytes), new(big.Int).SetBytes(s.s.bytes)) {
			return fmt.Errorf("%w: DSA verification failure", errV3)
		}
		return nil
	}
	return fmt.Errorf("%w: unexpected key type", errV3)
}

// verifyByV3 is the fork's (*PublicKeyV3).VerifySignatureV3.
func (s *v3Sig) verifyByV3(pk *v3Key, h hash.Hash) error {
	if !pk.canSign() {
		return fmt.Errorf("%w: public key cannot generate signatures", errV3)
	}
	sum, err := s.finish(h)
	if err != nil {
		return err
	}
	if pk.algo != s.algo {
		return fmt.Errorf("%w: public key and signature use different algorithms", errV3)
	}
	if rsa.VerifyPKCS1v15(pk.pub, s.hash, sum, s.rsaSig.bytes) != nil {
		return fmt.Errorf("%w: RSA verification failure", errV3)
	}
	return nil
}
