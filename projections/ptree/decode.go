package ptree

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
)

var (
	// ErrInterpolation is returned by Interpolate when no rational function
	// of the required degrees fits the values (SKS Interpolation_failure).
	ErrInterpolation = errors.New("ptree: interpolation failed")

	// ErrLowMBar means the difference between two nodes is too large to
	// decode at this node (SKS Low_mbar, spec recon.md §6.3): the responder
	// answers FullElements or SyncFail and the protocol recurses. Every
	// decoding failure of Reconcile and Factor wraps it.
	ErrLowMBar = errors.New("ptree: difference too large to decode (low mbar)")
)

// Interpolate finds the reduced rational function num/den with
// deg num − deg den = sizeDiff whose values at points are values (SKS
// decode.ml interpolate, spec recon.md §6.2). values[i] is
// χ_R(points[i]) / χ_L(points[i]) and sizeDiff is |R| − |L|; all len(values)
// points are used, so the caller holds one point back for Reconcile's check.
//
// num and den are monic and coprime. It returns ErrInterpolation if
// |sizeDiff| > len(values) or the linear system is inconsistent.
func Interpolate(values, points []Zp, sizeDiff int) (num, den Poly, err error) {
	mbar := len(values)
	if len(points) != mbar {
		return nil, nil, fmt.Errorf("ptree: interpolate: %d values but %d points", mbar, len(points))
	}
	if sizeDiff > mbar || sizeDiff < -mbar {
		return nil, nil, fmt.Errorf("%w: size difference %d exceeds %d", ErrInterpolation, sizeDiff, mbar)
	}
	m := mbar
	if (m+sizeDiff)%2 != 0 {
		m--
	}
	ma, mb := (m+sizeDiff)/2, (m-sizeDiff)/2

	// Row j: Σ_{i<ma} a_i k_j^i − f_j Σ_{i<mb} b_i k_j^i = f_j k_j^mb − k_j^ma.
	mat := make([][]Zp, m)
	for j := range mat {
		row := make([]Zp, m+1)
		k, f := points[j], values[j]
		acc := one
		for i := 0; i < ma; i++ {
			row[i] = acc
			acc = acc.Mul(k)
		}
		kma := acc
		acc = f.Neg()
		for i := ma; i < m; i++ {
			row[i] = acc
			acc = acc.Mul(k)
		}
		row[m] = acc.Neg().Sub(kma) // acc is −f_j·k_j^mb here
		mat[j] = row
	}
	x, ok := solve(mat, m)
	if !ok {
		return nil, nil, fmt.Errorf("%w: inconsistent system (m=%d, δ=%d)", ErrInterpolation, m, sizeDiff)
	}
	a := make(Poly, ma+1)
	copy(a, x[:ma])
	a[ma] = one
	b := make(Poly, mb+1)
	copy(b, x[ma:])
	b[mb] = one
	g := polyGCD(a, b)
	num, _ = polyDivMod(a, g)
	den, _ = polyDivMod(b, g)
	return num, den, nil
}

// solve reduces the augmented n×(n+1) matrix to reduced row echelon form
// and returns a solution with free variables set to 0, or false if a row
// reduces to 0 = c ≠ 0 (spec recon.md §6.2 step 6).
func solve(mat [][]Zp, n int) ([]Zp, bool) {
	pivotRow := make([]int, n) // column → row of its pivot, or −1
	rank := 0
	for c := 0; c < n; c++ {
		pivotRow[c] = -1
		r := rank
		for r < n && mat[r][c].IsZero() {
			r++
		}
		if r == n {
			continue
		}
		mat[rank], mat[r] = mat[r], mat[rank]
		inv := mat[rank][c].Inv()
		for k := c; k <= n; k++ {
			mat[rank][k] = mat[rank][k].Mul(inv)
		}
		for r2 := 0; r2 < n; r2++ {
			if r2 == rank || mat[r2][c].IsZero() {
				continue
			}
			f := mat[r2][c]
			for k := c; k <= n; k++ {
				mat[r2][k] = mat[r2][k].Sub(f.Mul(mat[rank][k]))
			}
		}
		pivotRow[c] = rank
		rank++
	}
	for r := rank; r < n; r++ {
		if !mat[r][n].IsZero() {
			return nil, false
		}
	}
	x := make([]Zp, n)
	for c, r := range pivotRow {
		if r >= 0 {
			x[c] = mat[r][n]
		}
	}
	return x, true
}

// maxSplitAttempts bounds the random splitting tries per polynomial. One
// try fails with probability about 2^(1−deg), so reaching the bound means
// the input was not what Factor checked it to be.
const maxSplitAttempts = 128

// Factor returns the roots of f in ascending numeric order, provided f
// splits into distinct linear factors over F_p (spec recon.md §6.3, §6.4).
// Otherwise, and for the zero polynomial, it returns an error wrapping
// ErrLowMBar.
//
// Like SKS decode.ml (factor_check, then factor), it first checks that
// z^p ≡ z (mod f), then splits f with gcd(f, (z+a)^((p−1)/2) − 1) for
// random a until only linear factors remain. The values of a come from a
// PRNG with a fixed seed, so the result and the work done are
// deterministic. Quadratics, including the pieces the splitting produces,
// are solved with the quadratic formula instead; the roots are the same.
func Factor(f Poly) ([]Zp, error) {
	f = f.trim()
	if len(f) == 0 {
		return nil, fmt.Errorf("%w: zero polynomial", ErrLowMBar)
	}
	f = f.monic()
	d := len(f) - 1
	if d == 0 {
		return nil, nil
	}
	if d > 2 && !splitsDistinct(f) { // quadraticRoots does its own check
		return nil, fmt.Errorf("%w: degree %d polynomial does not split into distinct linear factors", ErrLowMBar, d)
	}
	if d == 2 {
		r0, r1, ok := quadraticRoots(f)
		if !ok {
			return nil, fmt.Errorf("%w: degree 2 polynomial does not split into distinct linear factors", ErrLowMBar)
		}
		roots := []Zp{r0, r1}
		slices.SortFunc(roots, Zp.Cmp)
		return roots, nil
	}
	rng := rand.New(rand.NewPCG(0x67726170, 0x6576696e)) // "grap", "evin"
	roots, err := equalDegreeSplit(f, rng, make([]Zp, 0, d))
	if err != nil {
		return nil, err
	}
	slices.SortFunc(roots, Zp.Cmp)
	return roots, nil
}

// splitsDistinct reports whether the monic f divides z^p − z, that is
// whether it is a product of distinct linear factors (SKS factor_check).
// Degrees 0 and 1 always pass.
func splitsDistinct(f Poly) bool {
	if len(f) <= 2 {
		return true
	}
	m := newModRing(f)
	r := m.powLinear(Zp{}, pLimbs) // z^p mod f
	// Compare with z; deg f ≥ 2 so z is already reduced.
	for i, c := range r {
		want := Zp{}
		if i == 1 {
			want = one
		}
		if c != want {
			return false
		}
	}
	return true
}

// equalDegreeSplit appends the roots of the monic f, which must be a
// product of distinct linear factors.
func equalDegreeSplit(f Poly, rng *rand.Rand, out []Zp) ([]Zp, error) {
	switch len(f) - 1 {
	case 0:
		return out, nil
	case 1:
		return append(out, f[0].Neg()), nil
	case 2:
		r0, r1, ok := quadraticRoots(f)
		if !ok {
			return nil, fmt.Errorf("%w: quadratic factor does not split", ErrLowMBar)
		}
		return append(out, r0, r1), nil
	}
	m := newModRing(f)
	for try := 0; try < maxSplitAttempts; try++ {
		h := Poly(m.powLinear(randomZp(rng), pMinus1Half))
		h[0] = h[0].Sub(one)
		g := polyGCD(f, h)
		if dg := len(g) - 1; dg <= 0 || dg >= len(f)-1 {
			continue
		}
		rest, _ := polyDivMod(f, g)
		var err error
		if out, err = equalDegreeSplit(g, rng, out); err != nil {
			return nil, err
		}
		return equalDegreeSplit(rest.monic(), rng, out)
	}
	return nil, fmt.Errorf("%w: no split of degree %d polynomial after %d tries", ErrLowMBar, len(f)-1, maxSplitAttempts)
}

// inv2 is 1/2 mod p.
var inv2 = ZpFromUint64(2).Inv()

// quadraticRoots returns the roots of the monic z² + b·z + c, which are
// (−b ± √(b² − 4c))/2, and reports whether they are two distinct elements
// of F_p (the discriminant is a nonzero square).
func quadraticRoots(f Poly) (r0, r1 Zp, ok bool) {
	b, c := f[1], f[0]
	c2 := c.Add(c)
	disc := b.Square().Sub(c2.Add(c2))
	s, ok := disc.Sqrt()
	if !ok || s.IsZero() {
		return Zp{}, Zp{}, false
	}
	return s.Sub(b).Mul(inv2), s.Neg().Sub(b).Mul(inv2), true
}

// randomZp returns a uniformly random field element. Any value below p is
// a valid Montgomery form, so no conversion is needed.
func randomZp(rng *rand.Rand) Zp {
	for {
		v := [3]uint64{rng.Uint64(), rng.Uint64(), rng.Uint64() & 1}
		if lessThanP(&v) {
			return Zp{m: v}
		}
	}
}

// Reconcile decodes the difference between a local node and the remote
// node with the same prefix from their svalues and sizes (SKS decode.ml
// reconcile, spec recon.md §6). It interpolates through the first
// len(points)−1 points, checks the result at the last point, and factors
// numerator and denominator.
//
// remoteOnly are the elements the remote side has and the local side lacks
// (the roots of the numerator); localOnly the reverse. Both are in
// ascending numeric order. Any failure to decode returns an error wrapping
// ErrLowMBar, which means "recurse" (FullElements or SyncFail, spec
// recon.md §8.2). Differences with |localOnly| + |remoteOnly| ≤ mbar
// (len(points)−1) always decode; larger ones fail except with probability
// about mbar/p.
// Slices of unequal length, or fewer than two points, give a plain error.
func Reconcile(localSValues, remoteSValues []Zp, localSize, remoteSize int, points []Zp) (localOnly, remoteOnly []Zp, err error) {
	n := len(points)
	if n < 2 || len(localSValues) != n || len(remoteSValues) != n {
		return nil, nil, fmt.Errorf("ptree: reconcile: %d local svalues, %d remote svalues, %d points",
			len(localSValues), len(remoteSValues), n)
	}
	values := make([]Zp, n)
	for i := range values {
		if localSValues[i].IsZero() {
			return nil, nil, fmt.Errorf("%w: local svalue %d is zero", ErrLowMBar, i)
		}
		values[i] = localSValues[i]
	}
	invertBatch(values, make([]Zp, n))
	for i := range values {
		values[i] = values[i].Mul(remoteSValues[i])
	}
	num, den, err := Interpolate(values[:n-1], points[:n-1], remoteSize-localSize)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrLowMBar, err)
	}
	k := points[n-1]
	denK := den.Eval(k)
	if denK.IsZero() || num.Eval(k).Div(denK) != values[n-1] {
		return nil, nil, fmt.Errorf("%w: check at the last sample point failed", ErrLowMBar)
	}
	if remoteOnly, err = Factor(num); err != nil {
		return nil, nil, err
	}
	if localOnly, err = Factor(den); err != nil {
		return nil, nil, err
	}
	if len(localOnly) > localSize || len(remoteOnly) > remoteSize {
		return nil, nil, fmt.Errorf("%w: decoded %d local-only of %d, %d remote-only of %d",
			ErrLowMBar, len(localOnly), localSize, len(remoteOnly), remoteSize)
	}
	return localOnly, remoteOnly, nil
}
