package ptree

import (
	"math/big"
	"math/rand/v2"
	"testing"
)

func limbsBig(v [3]uint64) *big.Int {
	x := new(big.Int).SetUint64(v[2])
	x.Lsh(x, 64).Or(x, new(big.Int).SetUint64(v[1]))
	return x.Lsh(x, 64).Or(x, new(big.Int).SetUint64(v[0]))
}

// TestConstants recomputes the hard-coded Montgomery constants.
func TestConstants(t *testing.T) {
	p := limbsBig(pLimbs)
	if p.Cmp(modulusBig) != 0 {
		t.Fatalf("limbs give %v, want %v", p, modulusBig)
	}
	r := new(big.Int).Lsh(big.NewInt(1), 192)
	if got, want := limbsBig(rModP), new(big.Int).Mod(r, p); got.Cmp(want) != 0 {
		t.Errorf("R mod p = %x, want %x", got, want)
	}
	r2 := new(big.Int).Mul(r, r)
	r2.Mod(r2, p)
	if got, want := limbsBig(r2ModP), r2; got.Cmp(want) != 0 {
		t.Errorf("R² mod p = %x, want %x", got, want)
	}
	two64 := new(big.Int).Lsh(big.NewInt(1), 64)
	inv := new(big.Int).ModInverse(p, two64)
	inv.Neg(inv).Mod(inv, two64)
	if inv.Uint64() != pInv {
		t.Errorf("pInv = %x, want %x", uint64(pInv), inv.Uint64())
	}
	half := new(big.Int).Rsh(new(big.Int).Sub(p, big.NewInt(1)), 1)
	if got := limbsBig(pMinus1Half); got.Cmp(half) != 0 {
		t.Errorf("(p−1)/2 = %v, want %v", got, half)
	}
	if got := limbsBig(pMinus2); got.Cmp(new(big.Int).Sub(p, big.NewInt(2))) != 0 {
		t.Errorf("p−2 = %v", got)
	}
	quarter := new(big.Int).Rsh(new(big.Int).Add(p, big.NewInt(1)), 2)
	if got := limbsBig(pPlus1Quarter); got.Cmp(quarter) != 0 {
		t.Errorf("(p+1)/4 = %v, want %v", got, quarter)
	}
	r3 := new(big.Int).Mul(r2, r)
	if got, want := limbsBig(r3ModP), r3.Mod(r3, p); got.Cmp(want) != 0 {
		t.Errorf("R³ mod p = %x, want %x", got, want)
	}
}

// TestInvFermat cross-checks the binary-GCD inverse against z^(p−2), and
// Sqrt against squaring.
func TestInvFermat(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 2000 {
		z := randomZp(rng)
		if i < 3 {
			z = ZpFromInt64(int64(i) - 1)
		}
		if got, want := z.Inv(), z.exp(pMinus2); got != want {
			t.Fatalf("Inv(%v) = %v, Fermat %v", z, got, want)
		}
		sq := z.Square()
		if s, ok := sq.Sqrt(); !ok || (s != z && s != z.Neg()) {
			t.Fatalf("Sqrt(%v²) = %v, %v", z, s, ok)
		}
		if _, ok := sq.Neg().Sqrt(); ok && !z.IsZero() { // −1 is a non-residue as p ≡ 3 (mod 4)
			t.Fatalf("Sqrt(−%v²) reports a square", z)
		}
	}
}

func TestInvertBatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for n := 0; n < 8; n++ {
		zs := make([]Zp, n)
		for i := range zs {
			zs[i] = randomZp(rng)
		}
		want := make([]Zp, n)
		for i := range zs {
			want[i] = zs[i].Inv()
		}
		invertBatch(zs, make([]Zp, n))
		for i := range zs {
			if zs[i] != want[i] {
				t.Fatalf("n=%d: element %d = %v, want %v", n, i, zs[i], want[i])
			}
		}
	}
}

// TestHashDigit checks spec recon.md §5.3: the digest 0fa4… has child
// indices 0,0,3,3,2,2,1,0 at depths 0..7, and agrees with SKS string_index
// for other bit quanta, including digits that straddle a byte.
func TestHashDigit(t *testing.T) {
	h := [16]byte{0x0f, 0xa4, 0xcd, 0x2d}
	want := []int{0, 0, 3, 3, 2, 2, 1, 0}
	for d, w := range want {
		if got := hashDigit(&h, d, 2); got != w {
			t.Errorf("depth %d: index %d, want %d", d, got, w)
		}
	}
	// q = 3 over 0x0f 0xa4 = 000 011 111 010 010 0..: 0, 3, 7, 2, 2.
	for d, w := range []int{0, 3, 7, 2, 2} {
		if got := hashDigit(&h, d, 3); got != w {
			t.Errorf("q=3 depth %d: index %d, want %d", d, got, w)
		}
	}
	// Past bit 128 the element's zero 17th byte is read.
	all := [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	if got := hashDigit(&all, 42, 3); got != 0b110 {
		t.Errorf("q=3 depth 42 (bits 126..128) = %b, want 110", got)
	}
}
