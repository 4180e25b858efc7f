package ptree

import (
	"math/big"
	"math/rand/v2"
	"testing"
)

// TestWideSumOfProducts: wide.addMul then reduce gives Σ x·y, checked
// with big.Int, for sums of 1 to 64 products including the largest
// elements (p−1), where the carries are longest.
func TestWideSumOfProducts(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 21))
	pm1 := ZpFromInt64(-1)
	for n := 1; n <= 64; n++ {
		for trial := 0; trial < 20; trial++ {
			var w wide
			want := new(big.Int)
			for k := 0; k < n; k++ {
				x, y := randomZp(rng), randomZp(rng)
				if trial == 0 {
					x, y = pm1, pm1
				}
				w.addMul(x, y)
				want.Add(want, new(big.Int).Mul(x.Big(), y.Big()))
			}
			want.Mod(want, modulusBig)
			if got := w.reduce(); got.Big().Cmp(want) != 0 {
				t.Fatalf("%d products, trial %d: got %v, want %v", n, trial, got, want)
			}
		}
	}
}

// TestModRingSquare: square agrees with multiplying out and dividing by f,
// for monic f of degree 1 to 12 and random residues, zeros included.
func TestModRingSquare(t *testing.T) {
	rng := rand.New(rand.NewPCG(22, 22))
	for d := 1; d <= 12; d++ {
		for trial := 0; trial < 30; trial++ {
			f := make(Poly, d+1)
			for i := range d {
				f[i] = randomZp(rng)
			}
			f[d] = one
			r := make([]Zp, d)
			for i := range r {
				if rng.IntN(4) != 0 {
					r[i] = randomZp(rng)
				}
				if trial == 1 {
					r[i] = ZpFromInt64(-1)
				}
			}
			// r² by schoolbook, then mod f.
			sq := make(Poly, 2*d)
			for i := range r {
				for j := range r {
					sq[i+j] = sq[i+j].Add(r[i].Mul(r[j]))
				}
			}
			_, want := polyDivMod(sq, f)
			m := newModRing(f)
			got := append([]Zp(nil), r...)
			m.square(got)
			if !Poly(got).Equal(want) {
				t.Fatalf("degree %d, trial %d: (%v)² mod (%v) = %v, want %v", d, trial, Poly(r), f, Poly(got), want)
			}
		}
	}
}
