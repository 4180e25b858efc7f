package corpus

import (
	"crypto/sha256"
	"encoding/binary"
	"math/bits"
)

// stream is the deterministic random bit generator behind every choice the
// generator makes: SHA-256 in counter mode, block i = SHA-256(key || i).
//
// SHA-256 rather than math/rand/v2 because its output is fixed by FIPS 180-4
// and cannot drift between Go releases; the generator draws only a few
// hundred bytes per key, so its speed does not matter. All samplers below use
// integer arithmetic only: the Go spec lets a compiler fuse x*y+z into one
// FMA on some architectures, so float results may differ between amd64 and
// arm64, and byte-identical output on every machine rules floats out.
type stream struct {
	key [40]byte // 32-byte domain key, then the big-endian block counter
	buf [sha256.Size]byte
	off int // bytes of buf already used; len(buf) means empty
}

// newStream returns the stream for one purpose (domain), one corpus (seed)
// and one item (ids), e.g. newStream("ident", seed, index).
func newStream(domain string, seed int64, ids ...uint64) *stream {
	h := sha256.New()
	h.Write([]byte("grapevine/testdata/corpus v1\x00"))
	h.Write([]byte(domain))
	h.Write([]byte{0})
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	for _, id := range ids {
		binary.BigEndian.PutUint64(b[:], id)
		h.Write(b[:])
	}
	s := &stream{off: sha256.Size}
	h.Sum(s.key[:0])
	return s
}

func (s *stream) refill() {
	s.buf = sha256.Sum256(s.key[:])
	ctr := binary.BigEndian.Uint64(s.key[32:])
	binary.BigEndian.PutUint64(s.key[32:], ctr+1)
	s.off = 0
}

// Read fills p with the next len(p) bytes. It never fails.
func (s *stream) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if s.off == len(s.buf) {
			s.refill()
		}
		c := copy(p[n:], s.buf[s.off:])
		s.off += c
		n += c
	}
	return n, nil
}

// Uint64 returns the next 8 bytes as a big-endian integer.
func (s *stream) Uint64() uint64 {
	var b [8]byte
	s.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// below returns a uniform integer in [0, n); n must be > 0. It uses
// Lemire's multiply-and-reject method.
func (s *stream) below(n uint64) uint64 {
	if n == 0 {
		panic("corpus: below(0)")
	}
	hi, lo := bits.Mul64(s.Uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(s.Uint64(), n)
		}
	}
	return hi
}

// intn returns a uniform int in [0, n); n must be > 0.
func (s *stream) intn(n int) int { return int(s.below(uint64(n))) }

// between returns a uniform int64 in [lo, hi); hi must be > lo.
func (s *stream) between(lo, hi int64) int64 { return lo + int64(s.below(uint64(hi-lo))) }

// chance reports true with probability p, given in parts per million.
func (s *stream) chance(p ppm) bool { return s.below(million) < uint64(p) }

// pick returns an index into weights (parts per million that sum to
// million) chosen with those probabilities.
func (s *stream) pick(weights []ppm) int {
	u := s.below(million)
	for i, w := range weights {
		if u < uint64(w) {
			return i
		}
		u -= uint64(w)
	}
	return len(weights) - 1
}

// ppm is a probability in parts per million, so that every random choice
// is made with integer arithmetic.
type ppm uint32

const million = 1_000_000

// toPPM converts a probability to parts per million, clamped to [0, 1].
// The explicit float64 conversion stops the compiler from fusing the
// multiply and the add (see stream).
func toPPM(p float64) ppm {
	if !(p > 0) {
		return 0
	}
	if p >= 1 {
		return million
	}
	x := float64(p * million)
	return ppm(x + 0.5)
}

// powerLaw draws d >= 1 with P(d >= k) = k^-1.5, capped at max. Exact
// integer version of d = floor(u^(-2/3)): with U uniform in [1, 2^32],
// k^-1.5 >= U/2^32 holds iff U^2 * k^3 <= 2^64.
func (s *stream) powerLaw(max int) int {
	if max <= 1 {
		return 1
	}
	u := s.below(1<<32) + 1
	if u == 1<<32 {
		return 1 // U^2 = 2^64: only k = 1 qualifies
	}
	u2 := u * u // < 2^64
	ok := func(k uint64) bool {
		hi, _ := bits.Mul64(u2, k*k*k)
		return hi == 0
	}
	lo, hi := uint64(1), uint64(max) // ok(lo) always holds
	if ok(hi) {
		return max
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if ok(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return int(lo)
}

// cubeZipf samples ranks r in [0, n) with density proportional to
// (r+1)^(-2/3): a heavy-tailed choice in which rank 0 is picked about
// n^(1/3)/3 times as often as the average rank. It draws y uniformly from
// [1, (n+1)^(1/3)) and returns floor(y^3) - 1, all in fixed point with 20
// fractional bits.
type cubeZipf struct {
	n    uint64
	ymax uint64 // floor((n+1)^(1/3) * 2^20)
}

const zipfFrac = 20

func newCubeZipf(n uint64) cubeZipf {
	// Largest y with y^3 <= (n+1) * 2^60.
	cube := func(y uint64) (hi, lo uint64) { return bits.Mul64(y*y, y) }
	targetHi, targetLo := bits.Mul64(n+1, 1<<60)
	le := func(y uint64) bool {
		hi, lo := cube(y)
		return hi < targetHi || (hi == targetHi && lo <= targetLo)
	}
	lo, hi := uint64(1)<<zipfFrac, uint64(1)<<(zipfFrac+11) // (2^11)^3 = 2^33 > any n we allow
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if le(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return cubeZipf{n: n, ymax: lo}
}

func (z cubeZipf) sample(s *stream) uint64 {
	if z.n <= 1 {
		return 0
	}
	for {
		y := uint64(1)<<zipfFrac + s.below(z.ymax-uint64(1)<<zipfFrac+1)
		hi, lo := bits.Mul64(y*y, y)
		r := (hi<<(64-3*zipfFrac) | lo>>(3*zipfFrac)) - 1
		if r < z.n {
			return r
		}
	}
}

// permutation is a seeded bijection on [0, n): a four-round Feistel
// network over the smallest even-bit power of two >= n, with cycle walking
// to stay inside [0, n). It needs no memory, so the generator can map a
// key's position in the output to its class, and a certifier rank to a key,
// for any n.
type permutation struct {
	n    uint64
	half uint // bits per Feistel half
	keys [4]uint64
}

func newPermutation(n uint64, s *stream) permutation {
	p := permutation{n: n, half: 1}
	for uint64(1)<<(2*p.half) < n {
		p.half++
	}
	for i := range p.keys {
		p.keys[i] = s.Uint64()
	}
	return p
}

func (p permutation) at(x uint64) uint64 {
	if x >= p.n {
		panic("corpus: permutation input out of range")
	}
	mask := uint64(1)<<p.half - 1
	for {
		l, r := x>>p.half, x&mask
		for _, k := range p.keys {
			l, r = r, l^(mix64(r^k)&mask)
		}
		x = l<<p.half | r
		if x < p.n {
			return x
		}
	}
}

// mix64 is the SplitMix64 finaliser.
func mix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
