package corpus

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"testing"
	"time"
)

func genPrime(bits int) *big.Int {
	b := make([]byte, bits/8)
	for {
		rand.Read(b)
		b[0] |= 0xC0
		b[len(b)-1] |= 1
		p := new(big.Int).SetBytes(b)
		if p.ProbablyPrime(0) {
			return p
		}
	}
}

func TestScratchPrime(t *testing.T) {
	for _, bits := range []int{1024, 1536, 2048} {
		st := time.Now()
		genPrime(bits)
		genPrime(bits)
		t.Logf("bits %d: %v", bits, time.Since(st))
	}
}

func BenchmarkScratchRSA(b *testing.B) {
	for _, bits := range []int{2048, 3072, 4096} {
		k, _ := rsa.GenerateKey(rand.Reader, bits)
		d := sha256.Sum256([]byte("x"))
		b.Run(string(rune('0'+bits/1024)), func(b *testing.B) {
			for b.Loop() {
				rsa.SignPKCS1v15(nil, k, crypto.SHA256, d[:])
			}
		})
		b.Run("big"+string(rune('0'+bits/1024)), func(b *testing.B) {
			p, q := k.Primes[0], k.Primes[1]
			m := new(big.Int).SetBytes(d[:])
			for b.Loop() {
				m1 := new(big.Int).Exp(m, k.Precomputed.Dp, p)
				m2 := new(big.Int).Exp(m, k.Precomputed.Dq, q)
				_ = m1
				_ = m2
			}
		})
	}
}
func BenchmarkScratchEC(b *testing.B) {
	d := sha256.Sum256([]byte("x"))
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		k, _ := ecdsa.GenerateKey(c, rand.Reader)
		b.Run(c.Params().Name, func(b *testing.B) {
			for b.Loop() {
				k.Sign(nil, d[:], crypto.SHA256)
			}
		})
	}
	_, sk, _ := ed25519.GenerateKey(rand.Reader)
	b.Run("ed", func(b *testing.B) {
		for b.Loop() {
			ed25519.Sign(sk, d[:])
		}
	})
}
