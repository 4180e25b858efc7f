package ptree

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"math/bits"
)

// ZpSize is the length in bytes of the wire form of a field element: the
// value reduced mod p, little-endian, zero-padded (spec recon.md §2.1, §3.1).
const ZpSize = 17

// ErrNotCanonical is returned by ZpFromBytes for a value that is not below p.
var ErrNotCanonical = errors.New("ptree: field element not below p")

// The modulus p = 530512889551602322505127520352579437339
// (0x1_8f1d10e4878b1fdf_c91f85d930a5431b), SKS rMisc.ml order_string
// (spec recon.md §3.1), as little-endian 64-bit limbs.
const (
	p0 = 0xc91f85d930a5431b
	p1 = 0x8f1d10e4878b1fdf
	p2 = 0x1

	// pInv is -p⁻¹ mod 2⁶⁴, the Montgomery reduction constant.
	pInv = 0x6320d927c830a0ed
)

// Montgomery constants for R = 2¹⁹², as limbs.
var (
	rModP  = [3]uint64{0xa5804f1870d6b547, 0x862c9a994c8dd0db, 0} // R mod p: the field's one
	r2ModP = [3]uint64{0x5e931f9f7f2a1e51, 0x8d2900fcfdf6ca30, 0} // R² mod p: converts into Montgomery form
)

// modulusBig is p as a big.Int. Not used on hot paths.
var modulusBig, _ = new(big.Int).SetString("530512889551602322505127520352579437339", 10)

// Modulus returns a new big.Int holding the field prime p.
func Modulus() *big.Int { return new(big.Int).Set(modulusBig) }

// Zp is an element of the prime field F_p used by SKS reconciliation
// (spec recon.md §3). The zero value is the field's zero. Zp is a small
// comparable value: == tells equal elements apart and it works as a map key.
//
// The limbs hold the Montgomery form x·2¹⁹² mod p, fully reduced, so
// multiplication needs no big-integer division. Callers never see that
// form: Bytes, Big, Cmp and String all give the plain value.
type Zp struct {
	m [3]uint64 // Montgomery form; invariant: m < p
}

// ZpFromUint64 returns v mod p.
func ZpFromUint64(v uint64) Zp {
	return toMont([3]uint64{v, 0, 0})
}

// ZpFromInt64 returns v mod p; negative values wrap, so ZpFromInt64(-1) is p−1.
func ZpFromInt64(v int64) Zp {
	if v >= 0 {
		return ZpFromUint64(uint64(v))
	}
	return ZpFromUint64(uint64(-(v + 1)) + 1).Neg()
}

// ZpFromBig returns x mod p. x may be negative or larger than p.
func ZpFromBig(x *big.Int) Zp {
	var b [ZpSize]byte
	new(big.Int).Mod(x, modulusBig).FillBytes(b[:])
	var v [3]uint64
	v[0] = binary.BigEndian.Uint64(b[9:17])
	v[1] = binary.BigEndian.Uint64(b[1:9])
	v[2] = uint64(b[0])
	return toMont(v)
}

// ZpFromBytes decodes the 17-byte little-endian wire form (spec recon.md
// §2.1). It returns ErrNotCanonical if the value is not below p: SKS always
// sends reduced values, and accepting others would give one element two
// encodings.
func ZpFromBytes(b []byte) (Zp, error) {
	if len(b) != ZpSize {
		return Zp{}, fmt.Errorf("ptree: field element is %d bytes, want %d", len(b), ZpSize)
	}
	v := [3]uint64{
		binary.LittleEndian.Uint64(b[0:8]),
		binary.LittleEndian.Uint64(b[8:16]),
		uint64(b[16]),
	}
	if !lessThanP(&v) {
		return Zp{}, ErrNotCanonical
	}
	return toMont(v), nil
}

// ElementFromKeyHash maps an SKS key hash (the 16-byte MD5 digest of
// keyhash.md §5) to its element: the digest read as a little-endian integer
// (spec recon.md §3.2). The result is below 2¹²⁸ < p, so no reduction occurs.
func ElementFromKeyHash(h [16]byte) Zp {
	return toMont([3]uint64{
		binary.LittleEndian.Uint64(h[0:8]),
		binary.LittleEndian.Uint64(h[8:16]),
		0,
	})
}

// KeyHash is the inverse of ElementFromKeyHash. It reports false if z is
// 2¹²⁸ or more, which no key hash maps to; recon must not fetch such a value.
func (z Zp) KeyHash() (h [16]byte, ok bool) {
	v := fromMont(z.m)
	binary.LittleEndian.PutUint64(h[0:8], v[0])
	binary.LittleEndian.PutUint64(h[8:16], v[1])
	return h, v[2] == 0
}

// Bytes returns the 17-byte little-endian wire form of z.
func (z Zp) Bytes() []byte {
	return z.AppendBytes(make([]byte, 0, ZpSize))
}

// AppendBytes appends the 17-byte wire form of z to b and returns the
// extended slice.
func (z Zp) AppendBytes(b []byte) []byte {
	v := fromMont(z.m)
	b = binary.LittleEndian.AppendUint64(b, v[0])
	b = binary.LittleEndian.AppendUint64(b, v[1])
	return append(b, byte(v[2]))
}

// Big returns the value of z as a new big.Int in [0, p).
func (z Zp) Big() *big.Int {
	v := fromMont(z.m)
	var b [ZpSize]byte
	for i := 0; i < 8; i++ {
		b[16-i] = byte(v[0] >> (8 * i))
		b[8-i] = byte(v[1] >> (8 * i))
	}
	b[0] = byte(v[2])
	return new(big.Int).SetBytes(b[:])
}

// String returns z in decimal, the way SKS prints field elements.
func (z Zp) String() string { return z.Big().String() }

// IsZero reports whether z is the field's zero.
func (z Zp) IsZero() bool { return z.m == [3]uint64{} }

// Cmp compares the plain values of z and y (not their Montgomery forms) and
// returns -1, 0 or +1. SKS sends sets in this ascending numeric order
// (spec recon.md §2.1), e.g. slices.SortFunc(zs, Zp.Cmp).
func (z Zp) Cmp(y Zp) int {
	a, b := fromMont(z.m), fromMont(y.m)
	for i := 2; i >= 0; i-- {
		switch {
		case a[i] < b[i]:
			return -1
		case a[i] > b[i]:
			return 1
		}
	}
	return 0
}

// Add returns z + y mod p.
func (z Zp) Add(y Zp) Zp {
	var c uint64
	var r Zp
	r.m[0], c = bits.Add64(z.m[0], y.m[0], 0)
	r.m[1], c = bits.Add64(z.m[1], y.m[1], c)
	r.m[2], _ = bits.Add64(z.m[2], y.m[2], c) // < 2p < 2¹³⁰: no overflow
	r.m = reduceOnce(r.m)
	return r
}

// Sub returns z − y mod p.
func (z Zp) Sub(y Zp) Zp {
	var b uint64
	var r Zp
	r.m[0], b = bits.Sub64(z.m[0], y.m[0], 0)
	r.m[1], b = bits.Sub64(z.m[1], y.m[1], b)
	r.m[2], b = bits.Sub64(z.m[2], y.m[2], b)
	if b != 0 {
		var c uint64
		r.m[0], c = bits.Add64(r.m[0], p0, 0)
		r.m[1], c = bits.Add64(r.m[1], p1, c)
		r.m[2], _ = bits.Add64(r.m[2], p2, c)
	}
	return r
}

// Neg returns −z mod p.
func (z Zp) Neg() Zp { return Zp{}.Sub(z) }

// Mul returns z·y mod p.
func (z Zp) Mul(y Zp) Zp {
	var r Zp
	montMul(&r.m, &z.m, &y.m)
	return r
}

// Square returns z² mod p.
func (z Zp) Square() Zp { return z.Mul(z) }

// Inv returns z⁻¹ mod p, computed as z^(p−2) (Fermat). The inverse of zero
// is returned as zero; callers that divide check IsZero first.
func (z Zp) Inv() Zp {
	return z.exp(pMinus2)
}

// Div returns z·y⁻¹ mod p (zero if y is zero).
func (z Zp) Div(y Zp) Zp { return z.Mul(y.Inv()) }

// Exponents as little-endian limbs.
var (
	pMinus2     = [3]uint64{p0 - 2, p1, p2}
	pMinus1Half = shr1([3]uint64{p0 - 1, p1, p2}) // (p−1)/2, the quadratic-character exponent
	pLimbs      = [3]uint64{p0, p1, p2}
)

func shr1(v [3]uint64) [3]uint64 {
	return [3]uint64{v[0]>>1 | v[1]<<63, v[1]>>1 | v[2]<<63, v[2] >> 1}
}

// exp returns z^e with a fixed 4-bit window.
func (z Zp) exp(e [3]uint64) Zp {
	var table [16]Zp
	table[0] = Zp{m: rModP}
	for i := 1; i < 16; i++ {
		table[i] = table[i-1].Mul(z)
	}
	r := Zp{m: rModP}
	started := false
	for i := 2; i >= 0; i-- {
		for shift := 60; shift >= 0; shift -= 4 {
			nib := (e[i] >> uint(shift)) & 0xf
			if started {
				r = r.Square().Square().Square().Square()
			}
			if nib != 0 {
				r = r.Mul(table[nib])
				started = true
			}
		}
	}
	return r
}

// invertBatch replaces every element of zs by its inverse using one field
// inversion (Montgomery's trick). scratch must have len(zs) entries. Zero
// elements make the whole result meaningless; callers rule them out first.
func invertBatch(zs, scratch []Zp) {
	if len(zs) == 0 {
		return
	}
	acc := Zp{m: rModP}
	for i, z := range zs {
		scratch[i] = acc
		acc = acc.Mul(z)
	}
	inv := acc.Inv()
	for i := len(zs) - 1; i >= 0; i-- {
		zs[i], inv = inv.Mul(scratch[i]), inv.Mul(zs[i])
	}
}

// one is the field's multiplicative identity.
var one = Zp{m: rModP}

// One returns the field element 1.
func One() Zp { return one }

// SamplePoints returns the first n sample points of SKS ZZp.points:
// 0, −1, 1, −2, 2, −3, … reduced mod p (spec recon.md §3.3). Point i is
// ceil(i/2) with a minus sign for odd i.
func SamplePoints(n int) []Zp {
	pts := make([]Zp, n)
	for i := range pts {
		v := int64((i + 1) / 2)
		if i%2 == 1 {
			v = -v
		}
		pts[i] = ZpFromInt64(v)
	}
	return pts
}

// SValues returns Π_{x∈elements} (points[i] − x) for each sample point: the
// characteristic polynomial of the set evaluated at the points, which is
// what a prefix-tree node stores (spec recon.md §5.2, §6.1). The empty set
// gives all ones.
func SValues(elements, points []Zp) []Zp {
	sv := make([]Zp, len(points))
	for i := range sv {
		sv[i] = one
	}
	for _, x := range elements {
		for i, k := range points {
			sv[i] = sv[i].Mul(k.Sub(x))
		}
	}
	return sv
}

// lessThanP reports whether v < p.
func lessThanP(v *[3]uint64) bool {
	_, b := bits.Sub64(v[0], p0, 0)
	_, b = bits.Sub64(v[1], p1, b)
	_, b = bits.Sub64(v[2], p2, b)
	return b != 0
}

// reduceOnce returns v − p if v ≥ p, else v. It needs v < 2p.
func reduceOnce(v [3]uint64) [3]uint64 {
	var r [3]uint64
	var b uint64
	r[0], b = bits.Sub64(v[0], p0, 0)
	r[1], b = bits.Sub64(v[1], p1, b)
	r[2], b = bits.Sub64(v[2], p2, b)
	if b != 0 {
		return v
	}
	return r
}

// toMont converts a plain value below p into Montgomery form.
func toMont(v [3]uint64) Zp {
	var r Zp
	montMul(&r.m, &v, &r2ModP)
	return r
}

// fromMont converts a Montgomery form back to the plain value.
func fromMont(m [3]uint64) [3]uint64 {
	var r [3]uint64
	montMul(&r, &m, &[3]uint64{1, 0, 0})
	return r
}

// montMul sets z = x·y·2⁻¹⁹² mod p (CIOS Montgomery multiplication). It
// needs x, y < p and gives z < p. Because p < 2¹²⁹ and R = 2¹⁹², the running
// value t stays below 2p < 2¹³⁰, so four limbs of t suffice and the top limb
// of p is 1, which saves a multiplication per round.
func montMul(z, x, y *[3]uint64) {
	var t0, t1, t2, t3 uint64
	for i := 0; i < 3; i++ {
		yi := y[i]
		var c, carry, hi, lo uint64

		// t += x·yi
		hi, lo = bits.Mul64(x[0], yi)
		t0, c = bits.Add64(t0, lo, 0)
		carry = hi + c
		hi, lo = bits.Mul64(x[1], yi)
		lo, c = bits.Add64(lo, carry, 0)
		hi += c
		t1, c = bits.Add64(t1, lo, 0)
		carry = hi + c
		hi, lo = bits.Mul64(x[2], yi)
		lo, c = bits.Add64(lo, carry, 0)
		hi += c
		t2, c = bits.Add64(t2, lo, 0)
		carry = hi + c
		var t4 uint64
		t3, t4 = bits.Add64(t3, carry, 0)

		// t = (t + m·p) / 2⁶⁴ with m chosen so the low limb cancels.
		m := t0 * pInv
		hi, lo = bits.Mul64(m, p0)
		_, c = bits.Add64(t0, lo, 0)
		carry = hi + c
		hi, lo = bits.Mul64(m, p1)
		lo, c = bits.Add64(lo, carry, 0)
		hi += c
		t0, c = bits.Add64(t1, lo, 0)
		carry = hi + c
		// p2 == 1, so m·p2 is m.
		lo, c = bits.Add64(m, carry, 0)
		hi = c
		t1, c = bits.Add64(t2, lo, 0)
		carry = hi + c
		t2, c = bits.Add64(t3, carry, 0)
		t3 = t4 + c
	}
	// t < 2p < 2¹³⁰, so t3 is zero here.
	*z = reduceOnce([3]uint64{t0, t1, t2})
}
