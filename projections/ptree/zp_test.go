package ptree_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/ptree"
)

var bigP = ptree.Modulus()

func mustBig(tb testing.TB, s string) *big.Int {
	tb.Helper()
	v, ok := new(big.Int).SetString(s, 0)
	if !ok {
		tb.Fatalf("bad big %q", s)
	}
	return v
}

// edgeBigs are values at limb and modulus boundaries.
func edgeBigs(tb testing.TB) []*big.Int {
	tb.Helper()
	var out []*big.Int
	for _, s := range []string{
		"0", "1", "2", "3", "0xffffffffffffffff", "0x10000000000000000", "0x1ffffffffffffffff",
		"0xffffffffffffffffffffffffffffffff", "0x100000000000000000000000000000000",
		"0x18f1d10e4878b1fdfc91f85d930a54319", "0x18f1d10e4878b1fdfc91f85d930a5431a", // p−2, p−1
		"0xc78e887243c58fefe48fc2ec98852a0d", // (p−1)/2
		"0xc78e887243c58fefe48fc2ec98852a0e",
		"0x8f1d10e4878b1fdfc91f85d930a5431b",
		"0x18f1d10e4878b1fdf0000000000000000",
		"226051583404420102668236156164039877647",
	} {
		out = append(out, mustBig(tb, s))
	}
	return out
}

func randomBig(rng *rand.Rand) *big.Int {
	var b [17]byte
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	switch rng.IntN(4) { // bias towards short values and limb boundaries
	case 0:
		clear(b[:9])
	case 1:
		clear(b[:1])
	}
	return new(big.Int).Mod(new(big.Int).SetBytes(b[:]), bigP)
}

func TestZpMatchesBig(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	vals := edgeBigs(t)
	for range 300 {
		vals = append(vals, randomBig(rng))
	}
	mod := func(x *big.Int) *big.Int { return x.Mod(x, bigP) }
	for _, x := range vals {
		zx := ptree.ZpFromBig(x)
		if got := zx.Big(); got.Cmp(x) != 0 {
			t.Fatalf("ZpFromBig(%v).Big() = %v", x, got)
		}
		if got, want := zx.Neg().Big(), mod(new(big.Int).Neg(x)); got.Cmp(want) != 0 {
			t.Fatalf("-%v: got %v, want %v", x, got, want)
		}
		if got, want := zx.Square().Big(), mod(new(big.Int).Mul(x, x)); got.Cmp(want) != 0 {
			t.Fatalf("%v²: got %v, want %v", x, got, want)
		}
		if x.Sign() != 0 {
			want := new(big.Int).ModInverse(x, bigP)
			if got := zx.Inv().Big(); got.Cmp(want) != 0 {
				t.Fatalf("1/%v: got %v, want %v", x, got, want)
			}
		}
		for _, y := range vals[:40] {
			zy := ptree.ZpFromBig(y)
			if got, want := zx.Add(zy).Big(), mod(new(big.Int).Add(x, y)); got.Cmp(want) != 0 {
				t.Fatalf("%v+%v: got %v, want %v", x, y, got, want)
			}
			if got, want := zx.Sub(zy).Big(), mod(new(big.Int).Sub(x, y)); got.Cmp(want) != 0 {
				t.Fatalf("%v-%v: got %v, want %v", x, y, got, want)
			}
			if got, want := zx.Mul(zy).Big(), mod(new(big.Int).Mul(x, y)); got.Cmp(want) != 0 {
				t.Fatalf("%v*%v: got %v, want %v", x, y, got, want)
			}
			if got, want := zx.Cmp(zy), x.Cmp(y); got != want {
				t.Fatalf("Cmp(%v, %v) = %d, want %d", x, y, got, want)
			}
			if got, want := zx == zy, x.Cmp(y) == 0; got != want {
				t.Fatalf("%v == %v: %v", x, y, got)
			}
		}
	}
	if got := (ptree.Zp{}).Inv(); !got.IsZero() {
		t.Errorf("0.Inv() = %v, want 0", got)
	}
}

func TestZpFromBigReduces(t *testing.T) {
	for _, in := range []string{
		"-1",
		"530512889551602322505127520352579437339",
		"530512889551602322505127520352579437340",
		"0x1000000000000000000000000000000000000000000000000",
		"-0x1000000000000000000000000000000000000000000000001",
	} {
		x := mustBig(t, in)
		want := new(big.Int).Mod(x, bigP)
		if got := ptree.ZpFromBig(x).Big(); got.Cmp(want) != 0 {
			t.Errorf("ZpFromBig(%s) = %v, want %v", in, got, want)
		}
	}
	for _, tc := range []struct {
		in   int64
		want *big.Int
	}{
		{0, big.NewInt(0)}, {5, big.NewInt(5)}, {-1, new(big.Int).Sub(bigP, big.NewInt(1))},
		{-9223372036854775808, new(big.Int).Add(bigP, big.NewInt(-9223372036854775808))},
	} {
		if got := ptree.ZpFromInt64(tc.in).Big(); got.Cmp(tc.want) != 0 {
			t.Errorf("ZpFromInt64(%d) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestZpBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	vals := edgeBigs(t)
	for range 200 {
		vals = append(vals, randomBig(rng))
	}
	for _, x := range vals {
		z := ptree.ZpFromBig(x)
		b := z.Bytes()
		if len(b) != ptree.ZpSize {
			t.Fatalf("len(Bytes()) = %d", len(b))
		}
		// Little-endian: reverse of big-endian FillBytes.
		var be [17]byte
		x.FillBytes(be[:])
		for i := range be {
			if b[i] != be[16-i] {
				t.Fatalf("Bytes(%v) = %x, want reverse of %x", x, b, be)
			}
		}
		back, err := ptree.ZpFromBytes(b)
		if err != nil || back != z {
			t.Fatalf("ZpFromBytes(%x) = %v, %v; want %v", b, back, err, z)
		}
		if got := z.AppendBytes([]byte{9}); !bytes.Equal(got[1:], b) || got[0] != 9 {
			t.Fatalf("AppendBytes = %x", got)
		}
	}

	for _, tc := range []struct {
		name string
		hex  string
	}{
		{"p", "1b43a530d9851fc9df1f8b87e4101d8f01"},
		{"p+1", "1c43a530d9851fc9df1f8b87e4101d8f01"},
		{"2^129", "0000000000000000000000000000000002"},
		{"all ones", "ffffffffffffffffffffffffffffffffff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := hex.DecodeString(tc.hex)
			if _, err := ptree.ZpFromBytes(b); !errors.Is(err, ptree.ErrNotCanonical) {
				t.Errorf("ZpFromBytes(%s) err = %v, want ErrNotCanonical", tc.hex, err)
			}
		})
	}
	pm1, _ := hex.DecodeString("1a43a530d9851fc9df1f8b87e4101d8f01")
	if z, err := ptree.ZpFromBytes(pm1); err != nil || z != ptree.ZpFromInt64(-1) {
		t.Errorf("ZpFromBytes(p−1) = %v, %v", z, err)
	}
	for _, n := range []int{0, 16, 18} {
		if _, err := ptree.ZpFromBytes(make([]byte, n)); err == nil {
			t.Errorf("ZpFromBytes of %d bytes: no error", n)
		}
	}
}

func TestSamplePoints(t *testing.T) {
	want := []int64{0, -1, 1, -2, 2, -3, 3, -4}
	got := ptree.SamplePoints(len(want))
	for i, w := range want {
		if got[i] != ptree.ZpFromInt64(w) {
			t.Errorf("point %d = %v, want %d mod p", i, got[i], w)
		}
	}
}

// TestVectors141 checks spec recon.md §14.1 and §3.2.
func TestVectors141(t *testing.T) {
	var h [16]byte
	hex.Decode(h[:], []byte("0fa4cd2df7ede287ac0b7a608bf30faa"))
	z := ptree.ElementFromKeyHash(h)
	if got, want := z.String(), "226051583404420102668236156164039877647"; got != want {
		t.Errorf("element = %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString(z.Bytes()), "0fa4cd2df7ede287ac0b7a608bf30faa00"; got != want {
		t.Errorf("wire = %s, want %s", got, want)
	}
	if back, ok := z.KeyHash(); !ok || back != h {
		t.Errorf("KeyHash() = %x, %v; want %x, true", back, ok, h)
	}
	if _, ok := ptree.ZpFromInt64(-1).KeyHash(); ok {
		t.Errorf("KeyHash(p−1) ok, want false")
	}

	want := []struct{ dec, wire string }{
		{"304461306147182219836891364188539559692", "0c9fd702e2973c4133141127591d0de500"},
		{"304461306147182219836891364188539559691", "0b9fd702e2973c4133141127591d0de500"},
		{"304461306147182219836891364188539559693", "0d9fd702e2973c4133141127591d0de500"},
		{"304461306147182219836891364188539559690", "0a9fd702e2973c4133141127591d0de500"},
		{"304461306147182219836891364188539559694", "0e9fd702e2973c4133141127591d0de500"},
		{"304461306147182219836891364188539559689", "099fd702e2973c4133141127591d0de500"},
	}
	sv := ptree.SValues([]ptree.Zp{z}, ptree.SamplePoints(6))
	for i, w := range want {
		if got := sv[i].String(); got != w.dec {
			t.Errorf("svalue %d = %s, want %s", i, got, w.dec)
		}
		if got := hex.EncodeToString(sv[i].Bytes()); got != w.wire {
			t.Errorf("svalue %d wire = %s, want %s", i, got, w.wire)
		}
	}
	empty := ptree.SValues(nil, ptree.SamplePoints(6))
	for i, s := range empty {
		if got, want := hex.EncodeToString(s.Bytes()), "0100000000000000000000000000000000"; got != want {
			t.Errorf("empty svalue %d = %s, want %s", i, got, want)
		}
	}
	if got, want := hex.EncodeToString(ptree.Modulus().Bytes()), "018f1d10e4878b1fdfc91f85d930a5431b"; got != want {
		t.Errorf("p = %s, want %s", got, want)
	}
}

func FuzzZpFromBytes(f *testing.F) {
	for _, s := range []string{
		"0fa4cd2df7ede287ac0b7a608bf30faa00",
		"1b43a530d9851fc9df1f8b87e4101d8f01", // p
		"1a43a530d9851fc9df1f8b87e4101d8f01", // p−1
		"0100000000000000000000000000000000",
		"ffffffffffffffffffffffffffffffffff",
		"",
	} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		z, err := ptree.ZpFromBytes(b)
		if len(b) != ptree.ZpSize {
			if err == nil {
				t.Fatalf("accepted %d bytes", len(b))
			}
			return
		}
		le := make([]byte, len(b))
		for i := range b {
			le[len(b)-1-i] = b[i]
		}
		x := new(big.Int).SetBytes(le)
		if x.Cmp(bigP) >= 0 {
			if !errors.Is(err, ptree.ErrNotCanonical) {
				t.Fatalf("value %v >= p: err = %v", x, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("value %v < p: err = %v", x, err)
		}
		if z.Big().Cmp(x) != 0 || !bytes.Equal(z.Bytes(), b) {
			t.Fatalf("round trip of %x: %v, %x", b, z, z.Bytes())
		}
		// Exercise the arithmetic on the decoded value against math/big.
		y := ptree.ZpFromUint64(0x9e3779b97f4a7c15)
		want := new(big.Int).Mul(x, y.Big())
		want.Mod(want, bigP)
		if got := z.Mul(y).Big(); got.Cmp(want) != 0 {
			t.Fatalf("%v·%v = %v, want %v", x, y, got, want)
		}
		if !z.IsZero() && z.Mul(z.Inv()) != ptree.One() {
			t.Fatalf("%v·%v⁻¹ != 1", x, x)
		}
	})
}
