package corpus

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"testing"
)

func TestStreamDeterministic(t *testing.T) {
	a, b := newStream("x", 1, 2, 3), newStream("x", 1, 2, 3)
	for range 100 {
		if x, y := a.Uint64(), b.Uint64(); x != y {
			t.Fatalf("same stream gave %d and %d", x, y)
		}
	}
	if newStream("x", 1, 2, 3).Uint64() == newStream("x", 1, 2, 4).Uint64() {
		t.Fatal("different ids gave the same stream")
	}
	// Pinned: SHA-256 counter mode must not change across Go versions.
	if got, want := newStream("x", 1, 2, 3).Uint64(), uint64(0x9dfdb8405d897154); got != want {
		t.Fatalf("first output %#x, want %#x", got, want)
	}
}

func TestPermutation(t *testing.T) {
	s := newStream("perm-test", 1)
	for n := uint64(1); n <= 300; n++ {
		p := newPermutation(n, s)
		seen := make([]bool, n)
		for x := range n {
			y := p.at(x)
			if y >= n || seen[y] {
				t.Fatalf("n=%d: at(%d) = %d is out of range or repeated", n, x, y)
			}
			seen[y] = true
		}
	}
}

func TestPowerLaw(t *testing.T) {
	s := newStream("powerlaw-test", 1)
	const draws = 200000
	var ge [5]int // d >= 1, 2, 4, 9, 100
	for range draws {
		d := s.powerLaw(1000)
		if d < 1 || d > 1000 {
			t.Fatalf("powerLaw(1000) = %d", d)
		}
		for i, k := range []int{1, 2, 4, 9, 100} {
			if d >= k {
				ge[i]++
			}
		}
	}
	// P(d >= k) = k^-1.5
	for i, want := range []float64{1, 0.3536, 0.125, 0.0370, 0.001} {
		got := float64(ge[i]) / draws
		if got < want*0.9-0.0005 || got > want*1.1+0.0005 {
			t.Errorf("P(d >= %d) = %.4f, want %.4f", []int{1, 2, 4, 9, 100}[i], got, want)
		}
	}
}

func TestCubeZipf(t *testing.T) {
	s := newStream("zipf-test", 1)
	for _, n := range []uint64{1, 2, 7, 1000, 100_000_000} {
		z := newCubeZipf(n)
		top := 0
		for range 20000 {
			r := z.sample(s)
			if r >= n {
				t.Fatalf("n=%d: sample %d", n, r)
			}
			if r == 0 {
				top++
			}
		}
		if n == 1000 && (top < 20000/40 || top > 20000/15) {
			// P(0) = (2^(1/3) - 1) / ((n+1)^(1/3) - 1) ~ 2.9% for n=1000
			t.Errorf("n=1000: rank 0 drawn %d times of 20000", top)
		}
	}
}

func TestRSAKey(t *testing.T) {
	for _, bits := range []int{2048, 3072, 4096} {
		k, err := newRSAKey(newStream("rsa-test", 1, uint64(bits)), bits)
		if err != nil {
			t.Fatalf("%d: %v", bits, err)
		}
		if got := k.pub.N.BitLen(); got != bits {
			t.Errorf("%d-bit key has a %d-bit modulus", bits, got)
		}
		for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
			var d []byte
			switch h {
			case crypto.SHA256:
				x := sha256.Sum256([]byte("m"))
				d = x[:]
			case crypto.SHA384:
				x := sha512.Sum384([]byte("m"))
				d = x[:]
			default:
				x := sha512.Sum512([]byte("m"))
				d = x[:]
			}
			sig, err := k.Sign(nil, d, h)
			if err != nil {
				t.Fatal(err)
			}
			if err := rsa.VerifyPKCS1v15(&k.pub, h, d, sig); err != nil {
				t.Errorf("%d-bit key, %v: %v", bits, h, err)
			}
		}
	}
}

func TestLocaleWeights(t *testing.T) {
	var sum ppm
	for _, l := range locales {
		sum += l.weight
		for _, nm := range append(l.given, l.family...) {
			if nm.ascii == "" || !isASCII(nm.ascii) {
				t.Errorf("name %q has ASCII form %q", nm.display, nm.ascii)
			}
		}
	}
	if sum != million {
		t.Errorf("locale weights sum to %d, want %d", sum, million)
	}
	for _, w := range [][]ppm{uidCountWeights, certTypeWeights, revokeWeights, lifetimeWeights, uidFormatWeights, laterUIDFormatWeights, localWeights, domainWeights} {
		var s ppm
		for _, x := range w {
			s += x
		}
		if s != million {
			t.Errorf("weights %v sum to %d", w, s)
		}
	}
}
