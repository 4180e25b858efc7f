package corpus

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"
)

// rsaPrimeBits is the size of every prime in a corpus RSA key.
//
// NB: corpus RSA keys are multi-prime (RFC 8017 §3): a 4096-bit modulus is
// the product of sixteen 256-bit primes. Nobody can tell from the public
// key (n, e) or from a PKCS #1 v1.5 signature, so the keys look like any
// other RSA key to GnuPG, Sequoia, SKS and go-crypto. It is a speed choice:
// a signature costs one 256-bit exponentiation per prime, which is 11 times
// cheaper than crypto/rsa's two 2048-bit primes for 4096 bits (4 times for
// 2048 bits), and that is what keeps 100,000 keys within two minutes on two
// cores; key generation gets cheap too. The private keys are worthless anyway: they
// are derived from the seed, so anyone can recompute them.
const rsaPrimeBits = 256

// rsaExponent is the public exponent of every corpus RSA key, as GnuPG uses.
const rsaExponent = 65537

// rsaKey is a multi-prime RSA private key that signs with PKCS #1 v1.5.
// It implements crypto.Signer, which is the interface go-crypto's packet
// layer calls for RSA signatures. It is immutable and safe for concurrent
// use.
type rsaKey struct {
	pub    rsa.PublicKey
	primes []*big.Int
	exps   []*big.Int // d mod (p_i - 1)
	basis  []*big.Int // CRT basis: (n/p_i) * ((n/p_i)^-1 mod p_i), so s = sum s_i*basis_i mod n
}

// Public returns the *rsa.PublicKey.
func (k *rsaKey) Public() crypto.PublicKey { return &k.pub }

// digestInfoPrefix holds the DER DigestInfo prefixes of RFC 8017 §9.2.
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// Sign returns the PKCS #1 v1.5 signature of digest. It ignores rand: the
// signature is deterministic.
func (k *rsaKey) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := opts.HashFunc()
	prefix, ok := digestInfoPrefix[h]
	if !ok || len(digest) != h.Size() {
		return nil, fmt.Errorf("corpus: rsa sign: unsupported hash %v or digest length %d", h, len(digest))
	}
	size := (k.pub.N.BitLen() + 7) / 8
	tLen := len(prefix) + len(digest)
	if size < tLen+11 {
		return nil, errors.New("corpus: rsa sign: modulus too short")
	}
	// EM = 0x00 || 0x01 || PS (0xff...) || 0x00 || T
	em := make([]byte, size)
	em[1] = 1
	for i := 2; i < size-tLen-1; i++ {
		em[i] = 0xff
	}
	copy(em[size-tLen:], prefix)
	copy(em[size-len(digest):], digest)

	m := new(big.Int).SetBytes(em)
	s := new(big.Int)
	t := new(big.Int)
	for i, p := range k.primes {
		t.Mod(m, p)
		t.Exp(t, k.exps[i], p)
		t.Mul(t, k.basis[i])
		s.Add(s, t)
	}
	s.Mod(s, k.pub.N)
	return s.FillBytes(em), nil
}

// newRSAKey derives a bits-long multi-prime RSA key from s. bits must be a
// multiple of rsaPrimeBits and at least 2*rsaPrimeBits.
func newRSAKey(s *stream, bits int) (*rsaKey, error) {
	nprimes := bits / rsaPrimeBits
	if nprimes < 2 || bits%rsaPrimeBits != 0 {
		return nil, fmt.Errorf("corpus: unsupported RSA size %d", bits)
	}
	one := big.NewInt(1)
	var primes []*big.Int
	prod := big.NewInt(1)
	distinct := func(p *big.Int) bool {
		for _, q := range primes {
			if q.Cmp(p) == 0 {
				return false
			}
		}
		return true
	}
	for len(primes) < nprimes-1 {
		p := randomPrime(s, rsaPrimeBits)
		if distinct(p) {
			primes = append(primes, p)
			prod.Mul(prod, p)
		}
	}
	// The last prime lies in [ceil(2^(bits-1)/prod), floor((2^bits-1)/prod)]
	// so that the modulus has exactly bits bits.
	top := new(big.Int).Lsh(one, uint(bits))
	lo := new(big.Int).Lsh(one, uint(bits-1))
	lo.Add(lo, prod).Sub(lo, one).Quo(lo, prod)
	hi := new(big.Int).Sub(top, one)
	hi.Quo(hi, prod)
	last := primeBetween(s, lo, hi, distinct)
	primes = append(primes, last)
	n := new(big.Int).Mul(prod, last)
	if n.BitLen() != bits {
		return nil, fmt.Errorf("corpus: RSA modulus has %d bits, want %d", n.BitLen(), bits)
	}

	e := big.NewInt(rsaExponent)
	lambda := big.NewInt(1)
	for _, p := range primes {
		pm1 := new(big.Int).Sub(p, one)
		g := new(big.Int).GCD(nil, nil, lambda, pm1)
		lambda.Mul(lambda, pm1).Quo(lambda, g)
	}
	d := new(big.Int).ModInverse(e, lambda)
	if d == nil {
		return nil, errors.New("corpus: RSA exponent not invertible")
	}
	k := &rsaKey{pub: rsa.PublicKey{N: n, E: rsaExponent}, primes: primes}
	for _, p := range primes {
		pm1 := new(big.Int).Sub(p, one)
		k.exps = append(k.exps, new(big.Int).Mod(d, pm1))
		mi := new(big.Int).Quo(n, p)
		inv := new(big.Int).ModInverse(new(big.Int).Mod(mi, p), p)
		k.basis = append(k.basis, mi.Mul(mi, inv))
	}

	// Self-test with the standard library's verifier, so that a mistake
	// here can never produce a corpus of bad signatures.
	digest := sha256.Sum256([]byte("grapevine corpus rsa self-test"))
	sig, err := k.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	if err := rsa.VerifyPKCS1v15(&k.pub, crypto.SHA256, digest[:], sig); err != nil {
		return nil, fmt.Errorf("corpus: RSA self-test: %w", err)
	}
	return k, nil
}

// usablePrime reports whether p is (almost certainly) prime and p-1 is
// coprime to the public exponent. ProbablyPrime(0) runs Baillie-PSW, which
// is deterministic and has no known counterexample; a Fermat test to base 2
// first rejects composites without the cost of ProbablyPrime's setup.
func usablePrime(p *big.Int) bool {
	var r big.Int
	pm1 := new(big.Int).Sub(p, big.NewInt(1))
	if r.Mod(pm1, big.NewInt(rsaExponent)).Sign() == 0 {
		return false
	}
	if r.Exp(big.NewInt(2), pm1, p).Cmp(big.NewInt(1)) != 0 {
		return false
	}
	return p.ProbablyPrime(0)
}

// randomPrime returns a prime of exactly bits bits: a random odd start
// with the top bit set, then the first usable prime at or above it.
func randomPrime(s *stream, bits int) *big.Int {
	lo := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	hi := new(big.Int).Lsh(big.NewInt(1), uint(bits))
	hi.Sub(hi, big.NewInt(1))
	return primeBetween(s, lo, hi, func(*big.Int) bool { return true })
}

// primeBetween returns a usable prime in [lo, hi] accepted by ok, found by
// scanning the odd numbers upwards from a random start. A sieve of the
// small primes skips most composites before the costly test.
func primeBetween(s *stream, lo, hi *big.Int, ok func(*big.Int) bool) *big.Int {
	width := new(big.Int).Sub(hi, lo)
	width.Add(width, big.NewInt(1))
	b := make([]byte, (width.BitLen()+7)/8+8) // 64 extra bits make the modulo bias negligible
	var composite [sieveWindow]bool
	for {
		s.Read(b)
		start := new(big.Int).SetBytes(b)
		start.Mod(start, width).Add(start, lo)
		start.SetBit(start, 0, 1)
		for start.Cmp(hi) <= 0 {
			// composite[j] marks start+2j divisible by a small prime.
			clear(composite[:])
			var r big.Int
			for _, q := range smallPrimes {
				rem := r.Mod(start, big.NewInt(int64(q))).Uint64()
				// first j >= 0 with start + 2j = 0 (mod q)
				j := (q - rem) % q
				if j%2 == 1 {
					j += q
				}
				for j /= 2; j < sieveWindow; j += q {
					composite[j] = true
				}
			}
			for j := range sieveWindow {
				if composite[j] {
					continue
				}
				p := new(big.Int).Add(start, big.NewInt(int64(2*j)))
				if p.Cmp(hi) > 0 {
					break
				}
				if usablePrime(p) && ok(p) {
					return p
				}
			}
			start.Add(start, big.NewInt(2*sieveWindow))
		}
	}
}

const sieveWindow = 2048

// smallPrimes are the odd primes below 2^12, for the sieve.
var smallPrimes = func() []uint64 {
	var ps []uint64
	for q := uint64(3); q < 1<<12; q += 2 {
		prime := true
		for _, p := range ps {
			if p*p > q {
				break
			}
			if q%p == 0 {
				prime = false
				break
			}
		}
		if prime {
			ps = append(ps, q)
		}
	}
	return ps
}()

// rsaPool is a lazily filled, deterministic set of RSA keys of one size and
// one role, shared by all workers. Entry i depends only on (seed, role,
// bits, i), never on N or on the pool size, so different runs can share a
// pool. Keys are reused with distinct creation times (see plan.created),
// which makes every key packet distinct.
type rsaPool struct {
	seed int64
	role string
	bits int

	mu      sync.Mutex
	entries map[int]*rsaPoolEntry
}

type rsaPoolEntry struct {
	once sync.Once
	key  *rsaKey
	err  error
}

func (p *rsaPool) get(slot int) (*rsaKey, error) {
	p.mu.Lock()
	e := p.entries[slot]
	if e == nil {
		e = new(rsaPoolEntry)
		p.entries[slot] = e
	}
	p.mu.Unlock()
	e.once.Do(func() {
		e.key, e.err = newRSAKey(newStream("rsa/"+p.role, p.seed, uint64(p.bits), uint64(slot)), p.bits)
	})
	return e.key, e.err
}

// poolCache keeps the RSA pools of the last few seeds for the life of the
// process, so tests and benchmarks that generate several corpora from one
// seed pay for RSA key generation once.
var poolCache struct {
	sync.Mutex
	seeds []int64 // least recently used first
	pools map[poolID]*rsaPool
}

type poolID struct {
	seed int64
	role string
	bits int
}

const poolCacheSeeds = 4

func sharedPool(seed int64, role string, bits int) *rsaPool {
	c := &poolCache
	c.Lock()
	defer c.Unlock()
	if c.pools == nil {
		c.pools = make(map[poolID]*rsaPool)
	}
	for i, s := range c.seeds {
		if s == seed {
			c.seeds = append(c.seeds[:i], c.seeds[i+1:]...)
			break
		}
	}
	c.seeds = append(c.seeds, seed)
	if len(c.seeds) > poolCacheSeeds {
		old := c.seeds[0]
		c.seeds = c.seeds[1:]
		for id := range c.pools {
			if id.seed == old {
				delete(c.pools, id)
			}
		}
	}
	id := poolID{seed, role, bits}
	p := c.pools[id]
	if p == nil {
		p = &rsaPool{seed: seed, role: role, bits: bits, entries: make(map[int]*rsaPoolEntry)}
		c.pools[id] = p
	}
	return p
}
