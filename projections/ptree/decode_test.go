package ptree_test

import (
	"crypto/md5"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/ptree"
)

func md5Element(s string) ptree.Zp {
	return ptree.ElementFromKeyHash(md5.Sum([]byte(s)))
}

func decimal(tb testing.TB, s string) ptree.Zp {
	tb.Helper()
	return ptree.ZpFromBig(mustBig(tb, s))
}

// TestDecodeExample143 is the worked example of spec recon.md §14.3.
func TestDecodeExample143(t *testing.T) {
	alice, bob, carol, dave := md5Element("alice"), md5Element("bob"), md5Element("carol"), md5Element("dave")
	points := ptree.SamplePoints(6)
	local := ptree.SValues([]ptree.Zp{alice, bob}, points)
	remote := ptree.SValues([]ptree.Zp{bob, carol, dave}, points)

	for i, s := range []string{
		"216353901170629985753788947982659564050", "53370955141038849465459687699289084154",
		"379336847200221122042118208266030043948", "420900898663050035682257947768498041599",
		"11806903678209935825319948196821086509", "257917952633458899393928687485127561707",
	} {
		if local[i] != decimal(t, s) {
			t.Errorf("local svalue %d = %v, want %s", i, local[i], s)
		}
	}
	for i, s := range []string{
		"10220964554853745784352641260506489758", "76439942223919541709116733068124241576",
		"22495740991614629544742712744990356777", "221152673998812017319034988167843612225",
		"113264271534202192990286947521575842639", "444359159879531172614107406559664601699",
	} {
		if remote[i] != decimal(t, s) {
			t.Errorf("remote svalue %d = %v, want %s", i, remote[i], s)
		}
	}

	values := make([]ptree.Zp, 5)
	for i := range values {
		values[i] = remote[i].Div(local[i])
	}
	num, den, err := ptree.Interpolate(values, points[:5], 1)
	if err != nil {
		t.Fatal(err)
	}
	wantA := ptree.Poly{decimal(t, "509215916582230543382873113019950328599"), decimal(t, "61316778407090933956800019013084680796"), ptree.One()}
	wantB := ptree.Poly{decimal(t, "450309292159569891655115957826694069944"), ptree.One()}
	if !num.Equal(wantA) || !den.Equal(wantB) {
		t.Errorf("Interpolate = (%v, %v), want (%v, %v)", num, den, wantA, wantB)
	}

	localOnly, remoteOnly, err := ptree.Reconcile(local, remote, 2, 3, points)
	if err != nil {
		t.Fatal(err)
	}
	if want := sortedZ([]ptree.Zp{alice}); !slices.Equal(localOnly, want) {
		t.Errorf("localOnly = %v, want %v", localOnly, want)
	}
	if want := sortedZ([]ptree.Zp{carol, dave}); !slices.Equal(remoteOnly, want) {
		t.Errorf("remoteOnly = %v, want %v", remoteOnly, want)
	}
}

func randomElements(rng *rand.Rand, n int) []ptree.Zp {
	out := make([]ptree.Zp, n)
	for i := range out {
		out[i] = ptree.ElementFromKeyHash(randomHash(rng))
	}
	return out
}

// TestReconcileRandom checks spec recon.md §6.5: every symmetric difference
// of at most mbar is recovered exactly, and larger ones fail with ErrLowMBar.
func TestReconcileRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	points := ptree.SamplePoints(6)
	for onlyL := 0; onlyL <= 9; onlyL++ {
		for onlyR := 0; onlyR <= 9-onlyL; onlyR++ {
			t.Run(fmt.Sprintf("local=%d,remote=%d", onlyL, onlyR), func(t *testing.T) {
				for trial := range 5 {
					common := randomElements(rng, rng.IntN(300))
					lo, ro := randomElements(rng, onlyL), randomElements(rng, onlyR)
					L := append(slices.Clone(common), lo...)
					R := append(slices.Clone(common), ro...)
					gotL, gotR, err := ptree.Reconcile(ptree.SValues(L, points), ptree.SValues(R, points), len(L), len(R), points)
					if onlyL+onlyR > 5 {
						if !errors.Is(err, ptree.ErrLowMBar) {
							t.Fatalf("trial %d: err = %v (%d, %d), want ErrLowMBar", trial, err, len(gotL), len(gotR))
						}
						continue
					}
					if err != nil {
						t.Fatalf("trial %d: %v", trial, err)
					}
					if !slices.Equal(gotL, sortedZ(lo)) || !slices.Equal(gotR, sortedZ(ro)) {
						t.Fatalf("trial %d: got (%v, %v), want (%v, %v)", trial, gotL, gotR, sortedZ(lo), sortedZ(ro))
					}
				}
			})
		}
	}
}

func TestReconcileErrors(t *testing.T) {
	points := ptree.SamplePoints(6)
	ones := ptree.SValues(nil, points)
	if _, _, err := ptree.Reconcile(ones[:5], ones, 0, 0, points); err == nil || errors.Is(err, ptree.ErrLowMBar) {
		t.Errorf("length mismatch: err = %v, want a plain error", err)
	}
	// Size difference beyond mbar.
	if _, _, err := ptree.Reconcile(ones, ones, 0, 6, points); !errors.Is(err, ptree.ErrLowMBar) || !errors.Is(err, ptree.ErrInterpolation) {
		t.Errorf("δ=6: err = %v, want ErrLowMBar wrapping ErrInterpolation", err)
	}
	// A zero svalue (never produced by a valid set) cannot be divided by.
	zero := slices.Clone(ones)
	zero[2] = ptree.Zp{}
	if _, _, err := ptree.Reconcile(zero, ones, 0, 0, points); !errors.Is(err, ptree.ErrLowMBar) {
		t.Errorf("zero svalue: err = %v", err)
	}
	// Garbage remote values fail the extra-point or factor check.
	rng := rand.New(rand.NewPCG(23, 24))
	for range 50 {
		junk := randomElements(rng, 6)
		if l, r, err := ptree.Reconcile(ones, junk, 0, rng.IntN(4), points); !errors.Is(err, ptree.ErrLowMBar) {
			t.Fatalf("junk: got %v, %v, %v", l, r, err)
		}
	}
	// Identical sets decode to no difference.
	els := randomElements(rng, 40)
	sv := ptree.SValues(els, points)
	if l, r, err := ptree.Reconcile(sv, sv, 40, 40, points); err != nil || len(l)+len(r) != 0 {
		t.Errorf("equal sets: %v, %v, %v", l, r, err)
	}
}

func TestInterpolateErrors(t *testing.T) {
	points := ptree.SamplePoints(5)
	values := ptree.SValues(nil, points)
	if _, _, err := ptree.Interpolate(values, points, 6); !errors.Is(err, ptree.ErrInterpolation) {
		t.Errorf("δ=6: err = %v", err)
	}
	if _, _, err := ptree.Interpolate(values, points, -6); !errors.Is(err, ptree.ErrInterpolation) {
		t.Errorf("δ=-6: err = %v", err)
	}
	if _, _, err := ptree.Interpolate(values, points[:4], 0); err == nil {
		t.Errorf("length mismatch accepted")
	}
	// Duplicate points with conflicting values make the system inconsistent.
	dup := []ptree.Zp{points[1], points[1], points[2], points[3], points[4]}
	vals := []ptree.Zp{ptree.ZpFromUint64(1), ptree.ZpFromUint64(2), ptree.ZpFromUint64(3), ptree.ZpFromUint64(4), ptree.ZpFromUint64(5)}
	if _, _, err := ptree.Interpolate(vals, dup, 5); !errors.Is(err, ptree.ErrInterpolation) {
		t.Errorf("inconsistent system: err = %v", err)
	}
	// All-equal values with δ=0 give 1/1.
	num, den, err := ptree.Interpolate(values, points, 0)
	if err != nil || num.Degree() != 0 || den.Degree() != 0 {
		t.Errorf("f ≡ 1: (%v, %v), %v", num, den, err)
	}
}

func TestFactor(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	for deg := 0; deg <= 12; deg++ {
		for range 4 {
			roots := randomElements(rng, deg)
			if deg >= 2 && rng.IntN(2) == 0 {
				roots[0] = ptree.ZpFromInt64(-1) // include edge values
				roots[1] = ptree.Zp{}
			}
			f := ptree.PolyFromRoots(roots)
			if f.Degree() != deg {
				t.Fatalf("PolyFromRoots: degree %d, want %d", f.Degree(), deg)
			}
			for _, r := range roots {
				if !f.Eval(r).IsZero() {
					t.Fatalf("f(%v) != 0", r)
				}
			}
			// A non-monic multiple has the same roots.
			scaled := make(ptree.Poly, len(f))
			c := ptree.ZpFromUint64(12345)
			for i := range f {
				scaled[i] = f[i].Mul(c)
			}
			got, err := ptree.Factor(scaled)
			if err != nil {
				t.Fatalf("degree %d: %v", deg, err)
			}
			if want := sortedZ(roots); !slices.Equal(got, want) {
				t.Fatalf("degree %d: roots %v, want %v", deg, got, want)
			}
		}
	}

	// Find a quadratic non-residue c: z² − c is irreducible.
	var c ptree.Zp
	for v := uint64(2); ; v++ {
		c = ptree.ZpFromUint64(v)
		if _, err := ptree.Factor(ptree.Poly{c.Neg(), ptree.Zp{}, ptree.One()}); err != nil {
			if !errors.Is(err, ptree.ErrLowMBar) {
				t.Fatalf("irreducible: err = %v", err)
			}
			break
		}
	}
	irreducible := ptree.Poly{c.Neg(), ptree.Zp{}, ptree.One()}
	r := randomElements(rng, 3)
	prod := mulPoly(irreducible, ptree.PolyFromRoots(r))
	if _, err := ptree.Factor(prod); !errors.Is(err, ptree.ErrLowMBar) {
		t.Errorf("product with an irreducible quadratic: err = %v", err)
	}
	repeated := ptree.PolyFromRoots([]ptree.Zp{r[0], r[0], r[1]})
	if _, err := ptree.Factor(repeated); !errors.Is(err, ptree.ErrLowMBar) {
		t.Errorf("repeated root: err = %v", err)
	}
	if _, err := ptree.Factor(nil); !errors.Is(err, ptree.ErrLowMBar) {
		t.Errorf("zero polynomial: err = %v", err)
	}
	if got, err := ptree.Factor(ptree.Poly{ptree.ZpFromUint64(7)}); err != nil || len(got) != 0 {
		t.Errorf("constant: %v, %v", got, err)
	}
}

func mulPoly(a, b ptree.Poly) ptree.Poly {
	out := make(ptree.Poly, len(a)+len(b)-1)
	for i := range a {
		for j := range b {
			out[i+j] = out[i+j].Add(a[i].Mul(b[j]))
		}
	}
	return out
}

func TestPolyString(t *testing.T) {
	f := ptree.Poly{ptree.ZpFromUint64(5), ptree.ZpFromUint64(3), ptree.One(), ptree.Zp{}}
	if got, want := f.String(), "z^2 + 3*z + 5"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (ptree.Poly{}).String(); got != "0" {
		t.Errorf("zero String() = %q", got)
	}
	if f.Degree() != 2 || (ptree.Poly{ptree.Zp{}}).Degree() != -1 {
		t.Errorf("Degree wrong")
	}
}
