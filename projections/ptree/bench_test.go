package ptree_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble"

	"github.com/grapevine-keyserver/grapevine/projections/ptree"
)

func BenchmarkMul(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	x, y := ptree.ZpFromBig(randomBig(rng)), ptree.ZpFromBig(randomBig(rng))
	b.ReportAllocs()
	for b.Loop() {
		x = x.Mul(y)
	}
	_ = x
}

func BenchmarkInv(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := ptree.ZpFromBig(randomBig(rng))
	b.ReportAllocs()
	for b.Loop() {
		x = x.Inv()
	}
	_ = x
}

// benchmarkInsert inserts into a tree that already holds size elements,
// flushing into a committed batch every flushEvery inserts (0: never), as
// the projection runner does.
func benchmarkInsert(b *testing.B, size, flushEvery, maxCached int) {
	db := mustOpenDB(b)
	cfg := testConfig(b)
	cfg.MaxCachedNodes = maxCached
	tr := mustOpenTree(b, db, cfg)
	rng := rand.New(rand.NewPCG(3, 3))
	for range size {
		if err := tr.Insert(randomHash(rng)); err != nil {
			b.Fatal(err)
		}
	}
	mustCommit(b, db, tr, 0)
	hs := make([][16]byte, b.N)
	for i := range hs {
		hs[i] = randomHash(rng)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i, h := range hs {
		if err := tr.Insert(h); err != nil {
			b.Fatal(err)
		}
		if flushEvery > 0 && i%flushEvery == flushEvery-1 {
			mustCommit(b, db, tr, uint64(i))
		}
	}
}

func BenchmarkInsert(b *testing.B) {
	for _, bc := range []struct {
		size, flush, cache int
	}{
		{100_000, 0, 0},
		{100_000, 1000, 0},
		{100_000, 1000, 1000},
	} {
		b.Run(fmt.Sprintf("size=%d/flush=%d/cache=%d", bc.size, bc.flush, bc.cache), func(b *testing.B) {
			benchmarkInsert(b, bc.size, bc.flush, bc.cache)
		})
	}
}

func BenchmarkDelete(b *testing.B) {
	db := mustOpenDB(b)
	cfg := testConfig(b)
	tr := mustOpenTree(b, db, cfg)
	rng := rand.New(rand.NewPCG(4, 4))
	hs := make([][16]byte, 100_000)
	for i := range hs {
		hs[i] = randomHash(rng)
		if err := tr.Insert(hs[i]); err != nil {
			b.Fatal(err)
		}
	}
	mustCommit(b, db, tr, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h := hs[i%len(hs)]
		if err := tr.Delete(h); err != nil {
			b.Fatal(err)
		}
		if err := tr.Insert(h); err != nil { // keep the size steady
			b.Fatal(err)
		}
	}
}

func BenchmarkReconcile(b *testing.B) {
	points := ptree.SamplePoints(6)
	for _, bc := range []struct{ local, remote int }{{0, 0}, {1, 1}, {2, 3}, {0, 5}, {3, 3}} {
		b.Run(fmt.Sprintf("local=%d/remote=%d", bc.local, bc.remote), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(5, 5))
			common := randomElements(rng, 100)
			L := append(common[:100:100], randomElements(rng, bc.local)...)
			R := append(common[:100:100], randomElements(rng, bc.remote)...)
			ls, rs := ptree.SValues(L, points), ptree.SValues(R, points)
			b.ReportAllocs()
			for b.Loop() {
				ptree.Reconcile(ls, rs, len(L), len(R), points)
			}
		})
	}
}

func BenchmarkReadNode(b *testing.B) {
	db := mustOpenDB(b)
	cfg := testConfig(b)
	tr := mustOpenTree(b, db, cfg)
	rng := rand.New(rand.NewPCG(6, 6))
	for range 10_000 {
		if err := tr.Insert(randomHash(rng)); err != nil {
			b.Fatal(err)
		}
	}
	mustCommit(b, db, tr, 0)
	snap := db.NewSnapshot()
	defer snap.Close()
	var _ pebble.Reader = snap
	p := ptree.Prefix{}.Child(1, 2).Child(2, 2)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ptree.ReadNode(snap, cfg, p); err != nil {
			b.Fatal(err)
		}
	}
}
