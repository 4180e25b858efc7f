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
	r3ModP = [3]uint64{0xfb6e48f6e50f3ba8, 0xa06ea41ba2aa9d4b, 0} // R³ mod p: used by Inv
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
func (z Zp) Sub(y Zp) Zp { return Zp{m: subMod(z.m, y.m)} }

// Neg returns −z mod p.
func (z Zp) Neg() Zp { return Zp{}.Sub(z) }

// Mul returns z·y mod p.
func (z Zp) Mul(y Zp) Zp {
	return Zp{m: montMul(z.m, y.m)}
}

// Square returns z² mod p.
func (z Zp) Square() Zp { return z.Mul(z) }

// Inv returns z⁻¹ mod p. The inverse of zero is returned as zero; callers
// that divide check IsZero first.
func (z Zp) Inv() Zp {
	switch z {
	case Zp{}:
		return Zp{}
	case one: // common: leading coefficients of monic polynomials
		return one
	}
	// binaryInverse inverts the Montgomery form aR as a plain number,
	// giving a⁻¹R⁻¹; one Montgomery multiplication by R³ turns that into
	// a⁻¹R, the Montgomery form of a⁻¹.
	return Zp{m: montMul(binaryInverse(z.m), r3ModP)}
}

// binaryInverse returns a⁻¹ mod p for 0 < a < p with the binary extended
// Euclidean algorithm, several times faster here than exponentiation.
// Invariants: x1·a ≡ u and x2·a ≡ v (mod p).
func binaryInverse(a [3]uint64) [3]uint64 {
	u, v := a, pLimbs
	x1, x2 := [3]uint64{1, 0, 0}, [3]uint64{}
	for !isOne(u) && !isOne(v) {
		for u[0]&1 == 0 {
			u = shr1(u)
			x1 = halveMod(x1)
		}
		for v[0]&1 == 0 {
			v = shr1(v)
			x2 = halveMod(x2)
		}
		if d, b := sub3(u, v); b == 0 {
			u = d
			x1 = subMod(x1, x2)
		} else {
			v, _ = sub3(v, u)
			x2 = subMod(x2, x1)
		}
	}
	if isOne(u) {
		return x1
	}
	return x2
}

func isOne(v [3]uint64) bool { return v == [3]uint64{1, 0, 0} }

// sub3 returns a − b and the borrow out.
func sub3(a, b [3]uint64) ([3]uint64, uint64) {
	var r [3]uint64
	var c uint64
	r[0], c = bits.Sub64(a[0], b[0], 0)
	r[1], c = bits.Sub64(a[1], b[1], c)
	r[2], c = bits.Sub64(a[2], b[2], c)
	return r, c
}

// subMod returns a − b mod p for a, b < p.
func subMod(a, b [3]uint64) [3]uint64 {
	r, borrow := sub3(a, b)
	if borrow != 0 {
		var c uint64
		r[0], c = bits.Add64(r[0], p0, 0)
		r[1], c = bits.Add64(r[1], p1, c)
		r[2], _ = bits.Add64(r[2], p2, c)
	}
	return r
}

// halveMod returns x/2 mod p for x < p: x+p is even when x is odd, and
// below 2¹³⁰, so it fits.
func halveMod(x [3]uint64) [3]uint64 {
	if x[0]&1 != 0 {
		var c uint64
		x[0], c = bits.Add64(x[0], p0, 0)
		x[1], c = bits.Add64(x[1], p1, c)
		x[2], _ = bits.Add64(x[2], p2, c)
	}
	return shr1(x)
}

// Sqrt returns a square root of z and reports whether z is a square. As
// p ≡ 3 (mod 4), the root is z^((p+1)/4).
func (z Zp) Sqrt() (Zp, bool) {
	s := z.exp(pPlus1Quarter)
	return s, s.Square() == z
}

// Div returns z·y⁻¹ mod p (zero if y is zero).
func (z Zp) Div(y Zp) Zp { return z.Mul(y.Inv()) }

// Exponents as little-endian limbs.
var (
	pMinus2       = [3]uint64{p0 - 2, p1, p2}             // p−2: z^(p−2) is z⁻¹ (Fermat), a cross-check in tests
	pPlus1Quarter = shr1(shr1([3]uint64{p0 + 1, p1, p2})) // (p+1)/4, the square-root exponent
	pMinus1Half   = shr1([3]uint64{p0 - 1, p1, p2})       // (p−1)/2, the quadratic-character exponent
	pLimbs        = [3]uint64{p0, p1, p2}
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
	return Zp{m: montMul(v, r2ModP)}
}

// fromMont converts a Montgomery form back to the plain value.
func fromMont(m [3]uint64) [3]uint64 {
	return montMul(m, [3]uint64{1, 0, 0})
}

// montMul returns x·y·2⁻¹⁹² mod p (CIOS Montgomery multiplication,
// unrolled). It needs x, y < p and returns a value below p.
//
// Because p < 2¹²⁹, the top limbs x[2] and y[2] are 0 or 1, so products
// with them are masks, not multiplications, and the top limb of p is 1, so
// m·p₂ is m. After each round the running value t is below 2p < 2¹³⁰
// (the usual CIOS bound), so three limbs carry it between rounds.
func montMul(x, y [3]uint64) [3]uint64 {
	x0, x1, x2 := x[0], x[1], x[2]
	var t0, t1, t2, t3, c, cc, m uint64

	// Round 0: t = (x·y₀ + m·p) / 2⁶⁴.
	y0 := y[0]
	c, t0 = bits.Mul64(x0, y0)
	c, t1 = madd1(x1, y0, c)
	t2, t3 = bits.Add64(c, y0&-x2, 0)
	m = t0 * pInv
	c, _ = madd1(m, p0, t0)
	c, t0 = madd2(m, p1, t1, c)
	t1, cc = bits.Add64(t2, m, 0)
	t2 = t3 + cc
	t1, cc = bits.Add64(t1, c, 0)
	t2 += cc

	// Round 1: t = (t + x·y₁ + m·p) / 2⁶⁴.
	y1 := y[1]
	c, t0 = madd1(x0, y1, t0)
	c, t1 = madd2(x1, y1, t1, c)
	t2, cc = bits.Add64(t2, c, 0)
	t3 = cc
	t2, cc = bits.Add64(t2, y1&-x2, 0)
	t3 += cc
	m = t0 * pInv
	c, _ = madd1(m, p0, t0)
	c, t0 = madd2(m, p1, t1, c)
	t1, cc = bits.Add64(t2, m, 0)
	t2 = t3 + cc
	t1, cc = bits.Add64(t1, c, 0)
	t2 += cc

	// Round 2: y₂ is 0 or 1, so x·y₂ is x or 0.
	mask := -y[2]
	t0, cc = bits.Add64(t0, x0&mask, 0)
	t1, cc = bits.Add64(t1, x1&mask, cc)
	t2, t3 = bits.Add64(t2, x2&mask, cc)
	m = t0 * pInv
	c, _ = madd1(m, p0, t0)
	c, t0 = madd2(m, p1, t1, c)
	t1, cc = bits.Add64(t2, m, 0)
	t2 = t3 + cc
	t1, cc = bits.Add64(t1, c, 0)
	t2 += cc

	return reduceOnce([3]uint64{t0, t1, t2})
}

// wide is an unreduced sum of products of Montgomery forms, so that a sum
// of products costs one Montgomery reduction instead of one per product
// (modRing.square). Each product is below p² < 2²⁵⁸ and five limbs hold
// 2⁶² of them; reduce needs the sum below p·2¹⁹² > 2³²⁰, which five limbs
// guarantee.
type wide [5]uint64

// addMul adds x·y to w.
func (w *wide) addMul(x, y Zp) {
	// The full product of two values below 2¹²⁹: the top limbs are 0 or
	// 1, so their products are masks.
	h00, l00 := bits.Mul64(x.m[0], y.m[0])
	h01, l01 := bits.Mul64(x.m[0], y.m[1])
	h10, l10 := bits.Mul64(x.m[1], y.m[0])
	h11, l11 := bits.Mul64(x.m[1], y.m[1])
	mx, my := -x.m[2], -y.m[2]
	var c, r2, r3, r4 uint64
	r1, c := bits.Add64(h00, l01, 0)
	r2 = c
	r1, c = bits.Add64(r1, l10, 0)
	r2 += c
	r2, c = bits.Add64(r2, h01, 0)
	r3 = c
	r2, c = bits.Add64(r2, h10, 0)
	r3 += c
	r2, c = bits.Add64(r2, l11, 0)
	r3 += c
	r2, c = bits.Add64(r2, y.m[0]&mx, 0)
	r3 += c
	r2, c = bits.Add64(r2, x.m[0]&my, 0)
	r3 += c
	r3, c = bits.Add64(r3, h11, 0)
	r4 = c
	r3, c = bits.Add64(r3, y.m[1]&mx, 0)
	r4 += c
	r3, c = bits.Add64(r3, x.m[1]&my, 0)
	r4 += c
	r4 += x.m[2] & y.m[2]

	w[0], c = bits.Add64(w[0], l00, 0)
	w[1], c = bits.Add64(w[1], r1, c)
	w[2], c = bits.Add64(w[2], r2, c)
	w[3], c = bits.Add64(w[3], r3, c)
	w[4] += r4 + c
}

// reduce returns the element whose Montgomery form is w·2⁻¹⁹² mod p: for
// a sum of products of Montgomery forms aR·bR, the form of Σ a·b.
func (w *wide) reduce() Zp {
	t0, t1, t2, t3, t4 := w[0], w[1], w[2], w[3], w[4]
	var t5, c uint64
	for range 3 {
		// t += m·p with t + m·p ≡ 0 (mod 2⁶⁴); p = p0 + p1·2⁶⁴ + 2¹²⁸.
		m := t0 * pInv
		h0, l0 := bits.Mul64(m, p0)
		h1, l1 := bits.Mul64(m, p1)
		_, c = bits.Add64(t0, l0, 0)
		t1, c = bits.Add64(t1, h0, c)
		t2, c = bits.Add64(t2, h1, c)
		t3, c = bits.Add64(t3, 0, c)
		t4, c = bits.Add64(t4, 0, c)
		t5 += c
		t1, c = bits.Add64(t1, l1, 0)
		t2, c = bits.Add64(t2, m, c)
		t3, c = bits.Add64(t3, 0, c)
		t4, c = bits.Add64(t4, 0, c)
		t5 += c
		t0, t1, t2, t3, t4, t5 = t1, t2, t3, t4, t5, 0
	}
	// Now t < w/2¹⁹² + p < 2p < 2¹³⁰: three limbs.
	return Zp{m: reduceOnce([3]uint64{t0, t1, t2})}
}

// madd1 returns a·b + c as (hi, lo).
func madd1(a, b, c uint64) (hi, lo uint64) {
	hi, lo = bits.Mul64(a, b)
	var carry uint64
	lo, carry = bits.Add64(lo, c, 0)
	hi += carry
	return hi, lo
}

// madd2 returns a·b + c + d as (hi, lo); it cannot overflow 128 bits.
func madd2(a, b, c, d uint64) (hi, lo uint64) {
	hi, lo = bits.Mul64(a, b)
	var carry uint64
	lo, carry = bits.Add64(lo, c, 0)
	hi += carry
	lo, carry = bits.Add64(lo, d, 0)
	hi += carry
	return hi, lo
}
