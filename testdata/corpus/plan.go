package corpus

import (
	"fmt"
	"math/big"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// algo is a primary or subkey algorithm of the corpus.
type algo uint8

const (
	algNone    algo = iota
	algEd25519      // EdDSA (legacy, algorithm 22) on Ed25519
	algCv25519      // ECDH (18) on Curve25519 (legacy OID)
	algRSA          // RSA (1)
	algP256         // ECDSA (19) on NIST P-256
	algP384         // ECDSA (19) on NIST P-384
	algECDH256      // ECDH (18) on NIST P-256
	algECDH384      // ECDH (18) on NIST P-384
)

// class is one kind of key: primary algorithm, encryption subkey, and the
// window its creation times are spread over.
type class struct {
	name    string // Stats.ByAlgorithm key of the primary
	primary algo
	sub     algo // algNone for sign-only keys
	rsaBits int  // for algRSA primaries and subkeys

	from  int64 // creation times lie in [from, windowEnd), Unix seconds
	first uint64
	count uint64 // the class holds permuted positions [first, first+count)

	primaryPool, subPool *rsaPool // RSA key material; nil for ECC
}

// Creation-time windows. GnuPG could make Ed25519 keys from 2.1 (late
// 2014) and ECDSA keys after RFC 6637 (2012); RSA 3072 and 4096 became
// common later than 2048.
var (
	windowEnd   = unix(2026, 1, 1)
	from2048    = unix(1998, 1, 1)
	from4096    = unix(2002, 1, 1)
	from3072    = unix(2008, 1, 1)
	fromECDSA   = unix(2013, 1, 1)
	fromEd25519 = unix(2015, 1, 1)
)

func unix(y int, m time.Month, d int) int64 { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() }

// plan holds everything derived from Options once per Generate: the
// classes, the permutations and the samplers. It is immutable and shared by
// all workers.
type plan struct {
	opt Options
	n   uint64

	classes  []class
	order    permutation // output position -> class position
	signers  permutation // certifier rank -> key index
	zipf     cubeZipf    // certifier rank sampler
	maxCerts int

	revokedKeys, expiringKeys, revokedUIDs, rotatedSubkeys, certified ppm

	cfg *packet.Config
}

func newPlan(opt Options) (*plan, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	opt = opt.withDefaults()
	m := opt.Mix
	p := &plan{
		opt:            opt,
		n:              uint64(opt.N),
		revokedKeys:    toPPM(m.RevokedKeys),
		expiringKeys:   toPPM(m.ExpiringKeys),
		revokedUIDs:    toPPM(m.RevokedUserIDs),
		rotatedSubkeys: toPPM(m.RotatedSubkeys),
		certified:      toPPM(m.Certified),
		maxCerts:       min(m.MaxCertifications, (opt.N-1)/4),
		cfg:            signingConfig(),
	}
	s := newStream("plan", opt.Seed)
	p.order = newPermutation(p.n, s)
	p.signers = newPermutation(p.n, s)
	p.zipf = newCubeZipf(p.n)

	// Shares in parts per million of all keys. Sign-only keys are half
	// Ed25519, half RSA.
	kinds := m.Ed25519 + m.RSA + m.ECDSA + m.SignOnly
	rsaSizes := m.RSA2048 + m.RSA3072 + m.RSA4096
	share := func(x, total float64) float64 {
		if total == 0 {
			return 0
		}
		return x / total
	}
	rsaShare := func(bits int) float64 {
		switch bits {
		case 2048:
			return share(m.RSA2048, rsaSizes)
		case 3072:
			return share(m.RSA3072, rsaSizes)
		}
		return share(m.RSA4096, rsaSizes)
	}
	rsaFrom := map[int]int64{2048: from2048, 3072: from3072, 4096: from4096}
	type want struct {
		c     class
		share float64
	}
	var wants []want
	add := func(c class, sh float64) { wants = append(wants, want{c, sh}) }
	add(class{name: "ed25519", primary: algEd25519, sub: algCv25519, from: fromEd25519}, share(m.Ed25519, kinds))
	for _, bits := range []int{2048, 3072, 4096} {
		c := class{name: fmt.Sprintf("rsa%d", bits), primary: algRSA, sub: algRSA, rsaBits: bits, from: rsaFrom[bits]}
		c.primaryPool = sharedPool(opt.Seed, "primary", bits)
		c.subPool = sharedPool(opt.Seed, "subkey", bits)
		add(c, float64(share(m.RSA, kinds)*rsaShare(bits)))
	}
	add(class{name: "nistp256", primary: algP256, sub: algECDH256, from: fromECDSA}, float64(share(m.ECDSA, kinds)*(1-m.P384)))
	add(class{name: "nistp384", primary: algP384, sub: algECDH384, from: fromECDSA}, float64(share(m.ECDSA, kinds)*m.P384))
	add(class{name: "ed25519", primary: algEd25519, from: fromEd25519}, float64(share(m.SignOnly, kinds)/2))
	for _, bits := range []int{2048, 3072, 4096} {
		c := class{name: fmt.Sprintf("rsa%d", bits), primary: algRSA, rsaBits: bits, from: rsaFrom[bits]}
		c.primaryPool = sharedPool(opt.Seed, "signonly", bits)
		add(c, float64(share(m.SignOnly, kinds)/2*rsaShare(bits)))
	}

	// Exact counts: floor of each share, then the remainder one by one to
	// the classes in order of their largest fractional part (in ppm, so
	// that the choice is made in integers).
	var used uint64
	fracs := make([]uint64, len(wants))
	counts := make([]uint64, len(wants))
	for i, w := range wants {
		x := float64(w.share * float64(p.n))
		counts[i] = uint64(x)
		fracs[i] = uint64(toPPM(x - float64(counts[i])))
		used += counts[i]
	}
	for used < p.n {
		best := -1
		for i := range wants {
			if wants[i].share > 0 && (best < 0 || fracs[i] > fracs[best]) {
				best = i
			}
		}
		counts[best]++
		fracs[best] = 0
		used++
	}
	var first uint64
	for i, w := range wants {
		if counts[i] == 0 {
			continue
		}
		c := w.c
		c.first, c.count = first, counts[i]
		first += c.count
		if span := uint64(windowEnd - c.from); c.count > span/2 {
			return nil, &ValidationError{"N", opt.N, fmt.Errorf("%w: class %s would need %d creation times in %d seconds", errRange, c.name, c.count, span)}
		}
		p.classes = append(p.classes, c)
	}
	return p, nil
}

// signingConfig makes go-crypto sign deterministically and as GnuPG does:
// no salt notation, non-critical creation time and key flags. Rand fails
// loudly, so any use of randomness by the packet layer is a bug we see.
func signingConfig() *packet.Config {
	no := false
	return &packet.Config{
		Rand:                                  noRandom{},
		NonDeterministicSignaturesViaNotation: &no,
		InsecureGenerateNonCriticalKeyFlags:   true,
		InsecureGenerateNonCriticalSignatureCreationTime: true,
	}
}

type noRandom struct{}

func (noRandom) Read([]byte) (int, error) {
	return 0, fmt.Errorf("corpus: the packet layer asked for randomness; output would not be deterministic")
}

// classOf returns the class and the rank within it of output position i.
func (p *plan) classOf(i uint64) (*class, uint64) {
	pos := p.order.at(i)
	for k := range p.classes {
		c := &p.classes[k]
		if pos < c.first+c.count {
			return c, pos - c.first
		}
	}
	panic("corpus: position outside every class")
}

// created returns the creation time of the key of rank m in class c, using
// u to place it inside its cell.
//
// The density of creation times rises linearly over the class window, to
// twice as many new keys per year at the end as at the start: with x in
// [0, 1] the CDF is F(x) = (x + x^2/2)/1.5, so F^-1(q) = sqrt(1+3q) - 1. Rank m owns
// the cell [lo(m), lo(m+1)) with lo(m) = floor(S*F^-1(m/C)), computed in
// integers as isqrt(floor(S^2*(C+3m)/C)) - S. Cells are disjoint, so
// creation times are strictly increasing in m. That is what makes reused
// RSA moduli safe: two keys of one class and one pool slot differ in rank,
// hence in creation time, hence in key packet and fingerprint.
func (c *class) created(m uint64, s *stream) int64 {
	span := windowEnd - c.from
	lo := func(m uint64) int64 {
		s2 := new(big.Int).Mul(big.NewInt(span), big.NewInt(span))
		x := new(big.Int).Mul(s2, new(big.Int).SetUint64(c.count+3*m))
		x.Quo(x, new(big.Int).SetUint64(c.count))
		return x.Sqrt(x).Int64() - span
	}
	a, b := lo(m), lo(m+1)
	if b <= a {
		panic(fmt.Sprintf("corpus: class %s: empty creation-time cell for rank %d", c.name, m)) // prevented by newPlan
	}
	return c.from + s.between(a, b)
}
