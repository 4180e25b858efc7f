package ptree

import (
	"strconv"
	"strings"
)

// Poly is a polynomial over F_p with its coefficients lowest degree first:
// Poly{c0, c1, c2} is c0 + c1·z + c2·z². The zero polynomial has no
// coefficients. Polys returned by this package are normalized: the last
// coefficient is not zero.
type Poly []Zp

// PolyFromRoots returns the monic polynomial Π (z − r) over roots: the
// characteristic polynomial χ_S of the set S = roots (spec recon.md §6.1).
func PolyFromRoots(roots []Zp) Poly {
	f := make(Poly, 1, len(roots)+1)
	f[0] = one
	for _, r := range roots {
		f = append(f, Zp{})
		for i := len(f) - 1; i >= 1; i-- {
			f[i] = f[i-1].Sub(r.Mul(f[i]))
		}
		f[0] = f[0].Mul(r).Neg()
	}
	return f
}

// Degree returns the degree of f; the zero polynomial has degree −1.
func (f Poly) Degree() int { return len(f.trim()) - 1 }

// Eval returns f(z).
func (f Poly) Eval(z Zp) Zp {
	var r Zp
	for i := len(f) - 1; i >= 0; i-- {
		r = r.Mul(z).Add(f[i])
	}
	return r
}

// Equal reports whether f and g are the same polynomial.
func (f Poly) Equal(g Poly) bool {
	f, g = f.trim(), g.trim()
	if len(f) != len(g) {
		return false
	}
	for i := range f {
		if f[i] != g[i] {
			return false
		}
	}
	return true
}

// String prints f highest degree first with decimal coefficients, such as
// "z^2 + 3*z + 5".
func (f Poly) String() string {
	f = f.trim()
	if len(f) == 0 {
		return "0"
	}
	var sb strings.Builder
	for i := len(f) - 1; i >= 0; i-- {
		c := f[i]
		if c.IsZero() {
			continue
		}
		if sb.Len() > 0 {
			sb.WriteString(" + ")
		}
		if c != one || i == 0 {
			sb.WriteString(c.String())
			if i > 0 {
				sb.WriteString("*")
			}
		}
		switch {
		case i == 1:
			sb.WriteString("z")
		case i > 1:
			sb.WriteString("z^")
			sb.WriteString(strconv.Itoa(i))
		}
	}
	return sb.String()
}

// trim drops high zero coefficients.
func (f Poly) trim() Poly {
	n := len(f)
	for n > 0 && f[n-1].IsZero() {
		n--
	}
	return f[:n]
}

// monic returns f divided by its leading coefficient, as a new slice.
func (f Poly) monic() Poly {
	f = f.trim()
	out := make(Poly, len(f))
	if len(f) == 0 {
		return out
	}
	inv := f[len(f)-1].Inv()
	for i := range f {
		out[i] = f[i].Mul(inv)
	}
	out[len(out)-1] = one
	return out
}

// polyDivMod returns q and r with a = q·b + r and deg r < deg b. b must not
// be zero.
func polyDivMod(a, b Poly) (q, r Poly) {
	a, b = a.trim(), b.trim()
	if len(b) == 0 {
		panic("ptree: polynomial division by zero")
	}
	r = append(Poly(nil), a...)
	if len(a) < len(b) {
		return nil, r
	}
	q = make(Poly, len(a)-len(b)+1)
	lead := b[len(b)-1].Inv()
	for i := len(r) - 1; i >= len(b)-1; i-- {
		c := r[i].Mul(lead)
		qi := i - (len(b) - 1)
		q[qi] = c
		if c.IsZero() {
			continue
		}
		for j := range b {
			r[qi+j] = r[qi+j].Sub(c.Mul(b[j]))
		}
	}
	return q.trim(), r.trim()
}

// polyGCD returns the monic greatest common divisor of a and b (zero if
// both are zero).
func polyGCD(a, b Poly) Poly {
	a, b = a.trim(), b.trim()
	for len(b) > 0 {
		_, r := polyDivMod(a, b)
		a, b = b, r
	}
	return a.monic()
}

// modRing does arithmetic modulo a fixed monic polynomial f of degree
// d ≥ 1. Residues are slices of exactly d coefficients.
type modRing struct {
	f    Poly // monic, degree d
	nf   []Zp // −f_0 … −f_{d−1}: z^d ≡ Σ nf_j·z^j
	d    int
	prod []wide // scratch for products, 2d−1 coefficients
}

func newModRing(f Poly) *modRing {
	d := len(f) - 1
	m := &modRing{f: f, d: d, nf: make([]Zp, d), prod: make([]wide, 2*d)}
	for j := range m.nf {
		m.nf[j] = f[j].Neg()
	}
	return m
}

// square sets r = r² mod f. It is most of the work of Factor (powLinear
// squares about 128 times per call), so products are summed unreduced
// (wide) and each coefficient is reduced once: 2d−1 Montgomery
// reductions instead of one per product.
func (m *modRing) square(r []Zp) {
	d := m.d
	prod := m.prod[:2*d-1]
	clear(prod)
	for i := 0; i < d; i++ {
		if r[i].IsZero() {
			continue
		}
		prod[2*i].addMul(r[i], r[i])
		t := r[i].Add(r[i])
		for j := i + 1; j < d; j++ {
			prod[i+j].addMul(t, r[j])
		}
	}
	// Reduce from the top using z^d = Σ nf_j·z^j; each coefficient is
	// reduced when it is final, then folded into lower ones.
	for i := 2*d - 2; i >= d; i-- {
		c := prod[i].reduce()
		if c.IsZero() {
			continue
		}
		for j := 0; j < d; j++ {
			prod[i-d+j].addMul(c, m.nf[j])
		}
	}
	for i := range r {
		r[i] = prod[i].reduce()
	}
}

// mulLinear sets r = r·(z + a) mod f.
func (m *modRing) mulLinear(r []Zp, a Zp) {
	d := m.d
	top := r[d-1]
	for i := d - 1; i >= 1; i-- {
		r[i] = r[i-1].Add(a.Mul(r[i]))
	}
	r[0] = a.Mul(r[0])
	if !top.IsZero() {
		for j := 0; j < d; j++ {
			r[j] = r[j].Sub(top.Mul(m.f[j]))
		}
	}
}

// powLinear returns (z + a)^e mod f as a residue.
func (m *modRing) powLinear(a Zp, e [3]uint64) []Zp {
	r := make([]Zp, m.d)
	r[0] = one
	started := false
	for i := 2; i >= 0; i-- {
		for b := 63; b >= 0; b-- {
			if started {
				m.square(r)
			}
			if e[i]>>uint(b)&1 != 0 {
				m.mulLinear(r, a)
				started = true
			}
		}
	}
	return r
}
