package corpus

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp/eddsa"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// ident is what the corpus needs to know about key i to build it or to
// certify with it: primary key, private part and lifetime. It is a pure
// function of the plan and i (plan.ident), so a worker building key X can
// recompute the certifier Y on the side instead of sharing state.
type ident struct {
	index   uint64
	cls     *class
	rank    uint64 // within cls
	created int64
	// lifetime is the key expiration time in seconds after created; 0 means
	// the key does not expire.
	lifetime uint32
	// revoked is the time of the key revocation signature; 0 means none.
	revoked int64

	body []byte // primary key packet body
	pub  *packet.PublicKey
	priv *packet.PrivateKey
}

// limit returns the end of the time in which the key signs and is
// certified: the corpus end, its expiry or its revocation, whichever is
// first. Signatures involving the key are made before it.
func (id *ident) limit() int64 {
	l := windowEnd
	if id.lifetime != 0 {
		l = min(l, id.created+int64(id.lifetime))
	}
	if id.revoked != 0 {
		l = min(l, id.revoked)
	}
	return l
}

const day = 86400

// lifetimes are the key expiration periods of expiring keys, with GnuPG's
// "1y", "2y" (its default since 2.2.x) etc. counted as 365-day years.
var (
	lifetimeYears   = []uint32{1, 2, 3, 5, 10}
	lifetimeWeights = []ppm{200_000, 450_000, 150_000, 150_000, 50_000}
)

// ident computes the identity of key i. It draws from the stream
// ("ident", seed, i) in a fixed order: creation time, expiry, revocation,
// key material.
func (p *plan) ident(i uint64) (*ident, error) {
	c, m := p.classOf(i)
	s := newStream("ident", p.opt.Seed, i)
	id := &ident{index: i, cls: c, rank: m}
	id.created = c.created(m, s)
	if s.chance(p.expiringKeys) {
		id.lifetime = lifetimeYears[s.pick(lifetimeWeights)] * 365 * day
	}
	if s.chance(p.revokedKeys) {
		if lo, hi := id.created+day, id.limit(); lo < hi {
			id.revoked = s.between(lo, hi)
		}
	}

	var signer any
	switch c.primary {
	case algEd25519:
		seed := make([]byte, ed25519.SeedSize)
		s.Read(seed)
		pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
		id.body = keyBody(id.created, pkaEdDSA, oid(oidEd25519), mpi(append([]byte{0x40}, pub...)))
		signer = seed // completed below, once the public key is parsed
	case algP256, algP384:
		curve, o := elliptic.P256(), oidP256
		if c.primary == algP384 {
			curve, o = elliptic.P384(), oidP384
		}
		k, err := ecdsaScalar(s, curve)
		if err != nil {
			return nil, err
		}
		point, err := k.PublicKey.Bytes()
		if err != nil {
			return nil, err
		}
		id.body = keyBody(id.created, pkaECDSA, oid(o), mpi(point))
		signer = deterministicECDSA{k}
	case algRSA:
		k, err := c.primaryPool.get(int(m % uint64(p.opt.RSAPoolSize)))
		if err != nil {
			return nil, err
		}
		id.body = rsaBody(id.created, k)
		signer = k
	default:
		panic("corpus: bad primary algorithm")
	}
	pub, err := parseKey(tagPublicKey, id.body)
	if err != nil {
		return nil, fmt.Errorf("key %d: %w", i, err)
	}
	id.pub = pub
	if seed, ok := signer.([]byte); ok {
		// go-crypto signs EdDSA only with its own private key type.
		signer = &eddsa.PrivateKey{PublicKey: *pub.PublicKey.(*eddsa.PublicKey), D: seed}
	}
	id.priv = &packet.PrivateKey{PublicKey: *pub, PrivateKey: signer}
	return id, nil
}

// subkeyBody derives an encryption subkey of kind a created at t. For RSA
// it takes the modulus from the class's subkey pool (slot is the key's rank
// in its class, so two subkeys from one slot have distinct creation times).
func (p *plan) subkeyBody(c *class, a algo, slot uint64, t int64, s *stream) ([]byte, error) {
	switch a {
	case algCv25519:
		b := make([]byte, 32)
		s.Read(b)
		k, err := ecdh.X25519().NewPrivateKey(b)
		if err != nil {
			return nil, err
		}
		return keyBody(t, pkaECDH, oid(oidCv25519), mpi(append([]byte{0x40}, k.PublicKey().Bytes()...)), kdfSHA256AES128), nil
	case algECDH256, algECDH384:
		curve, o, kdf := ecdh.P256(), oidP256, kdfSHA256AES128
		if a == algECDH384 {
			curve, o, kdf = ecdh.P384(), oidP384, kdfSHA384AES256
		}
		b := make([]byte, 48)
		for {
			s.Read(b[:curveBytes(curve)])
			k, err := curve.NewPrivateKey(b[:curveBytes(curve)])
			if err != nil {
				continue // zero or not below the group order: draw again
			}
			return keyBody(t, pkaECDH, oid(o), mpi(k.PublicKey().Bytes()), kdf), nil
		}
	case algRSA:
		k, err := c.subPool.get(int(slot % uint64(p.opt.RSAPoolSize)))
		if err != nil {
			return nil, err
		}
		return rsaBody(t, k), nil
	}
	panic("corpus: bad subkey algorithm")
}

func curveBytes(c ecdh.Curve) int {
	if c == ecdh.P384() {
		return 48
	}
	return 32
}

func rsaBody(created int64, k *rsaKey) []byte {
	return keyBody(created, pkaRSA, mpi(k.pub.N.Bytes()), mpi([]byte{1, 0, 1}))
}

// parseKey parses a key packet body with go-crypto, which computes the
// fingerprint and builds the key object signatures need.
func parseKey(tag byte, body []byte) (*packet.PublicKey, error) {
	p, err := packet.Read(bytes.NewReader(appendPacket(nil, tag, body)))
	if err != nil {
		return nil, fmt.Errorf("parse key packet: %w", err)
	}
	pk, ok := p.(*packet.PublicKey)
	if !ok {
		return nil, fmt.Errorf("parse key packet: got %T", p)
	}
	return pk, nil
}

// ecdsaScalar draws a private scalar by rejection sampling.
func ecdsaScalar(s *stream, curve elliptic.Curve) (*ecdsa.PrivateKey, error) {
	b := make([]byte, (curve.Params().BitSize+7)/8)
	for tries := 0; tries < 64; tries++ {
		s.Read(b)
		if k, err := ecdsa.ParseRawPrivateKey(curve, b); err == nil {
			return k, nil
		}
	}
	return nil, fmt.Errorf("corpus: no valid %s scalar in 64 draws", curve.Params().Name)
}

// deterministicECDSA signs with RFC 6979 nonces. go-crypto passes its
// config's Rand to crypto/ecdsa, which since Go 1.26 ignores any caller's
// reader and always signs with system randomness; crypto/ecdsa's Sign with
// a nil reader is the deterministic path. go-crypto calls any
// crypto.Signer it finds in PrivateKey.PrivateKey and unwraps the ASN.1.
type deterministicECDSA struct{ k *ecdsa.PrivateKey }

func (d deterministicECDSA) Public() crypto.PublicKey { return &d.k.PublicKey }

func (d deterministicECDSA) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return d.k.Sign(nil, digest, opts)
}
