package ptree_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/ptree"
)

// sliceSource is BuildStream's source over elements in memory; it counts
// the readers opened.
type sliceSource struct {
	elems []ptree.Elem
	opens int
	// change, when set, is applied to the elements the n-th reader (from
	// 1) reads.
	change func(n int, elems []ptree.Elem) []ptree.Elem
}

func (s *sliceSource) open() (ptree.ElemReader, error) {
	s.opens++
	elems := s.elems
	if s.change != nil {
		elems = s.change(s.opens, elems)
	}
	return &sliceReader{elems: elems}, nil
}

type sliceReader struct {
	elems []ptree.Elem
	i     int
}

func (r *sliceReader) Next() (ptree.Elem, bool, error) {
	if r.i >= len(r.elems) {
		return ptree.Elem{}, false, nil
	}
	r.i++
	return r.elems[r.i-1], true, nil
}

func (r *sliceReader) Close() error { return nil }

// kv is one emitted key and value.
type kv struct{ k, v []byte }

func collect(out *[]kv) func(k, v []byte) error {
	return func(k, v []byte) error {
		if n := len(*out); n > 0 && bytes.Compare((*out)[n-1].k, k) >= 0 {
			return fmt.Errorf("key %x emitted after %x", k, (*out)[n-1].k)
		}
		*out = append(*out, kv{bytes.Clone(k), bytes.Clone(v)})
		return nil
	}
}

func sortByHash(elems []ptree.Elem) {
	slices.SortFunc(elems, func(a, b ptree.Elem) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
}

// Generators of test inputs: n distinct hashes, each with a distinct order
// (1..n), returned sorted by hash, for a tree splitting above split.
type elemGen func(rng *rand.Rand, n, split int) []ptree.Elem

// genHashes draws n distinct hashes from draw and gives them orders by
// order (nil: a random permutation).
func genHashes(rng *rand.Rand, n int, draw func() [16]byte, order func(hashes [][16]byte) []uint64) []ptree.Elem {
	seen := make(map[[16]byte]bool, n)
	hashes := make([][16]byte, 0, n)
	for len(hashes) < n {
		h := draw()
		if h == ([16]byte{}) || seen[h] { // the zero hash is a sample point
			continue
		}
		seen[h] = true
		hashes = append(hashes, h)
	}
	var orders []uint64
	if order != nil {
		orders = order(hashes)
	} else {
		orders = make([]uint64, n)
		for i, p := range rng.Perm(n) {
			orders[i] = uint64(p + 1)
		}
	}
	elems := make([]ptree.Elem, n)
	for i := range elems {
		elems[i] = ptree.Elem{Hash: hashes[i], Order: orders[i]}
	}
	sortByHash(elems)
	return elems
}

// byHashRank orders hashes by their rank in key order (reverse: from the
// last): each split then sends all its first inserts to one child, whose
// c0 grows by one per level (the bound bigNode relies on) and which ends
// as an oversized leaf at the bottom.
func byHashRank(reverse bool) func(hashes [][16]byte) []uint64 {
	return func(hashes [][16]byte) []uint64 {
		idx := make([]int, len(hashes))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int { return bytes.Compare(hashes[a][:], hashes[b][:]) })
		orders := make([]uint64, len(hashes))
		for rank, i := range idx {
			if reverse {
				rank = len(hashes) - 1 - rank
			}
			orders[i] = uint64(rank + 1)
		}
		return orders
	}
}

var elemGens = []struct {
	name string
	gen  elemGen
}{
	{"uniform", func(rng *rand.Rand, n, split int) []ptree.Elem {
		return genHashes(rng, n, func() [16]byte { return randomHash(rng) }, nil)
	}},
	// Three clusters whose members share 16 to 100 leading bits: chains
	// of large nodes many levels deep.
	{"clustered", func(rng *rand.Rand, n, split int) []ptree.Elem {
		bases := [3][16]byte{randomHash(rng), randomHash(rng), randomHash(rng)}
		return genHashes(rng, n, func() [16]byte {
			h := randomHash(rng)
			keep := []int{16, 40, 70, 100}[rng.IntN(4)]
			return splice(bases[rng.IntN(3)], h, keep)
		}, nil)
	}},
	// The first inserts share 48 bits, the rest are spread: the chain's
	// nodes are created holding SplitThreshold+d elements.
	{"early cluster", func(rng *rand.Rand, n, split int) []ptree.Elem {
		base := randomHash(rng)
		m := n / 5
		i := 0
		hashes := func() [16]byte {
			i++
			if i <= m {
				return splice(base, randomHash(rng), 48)
			}
			return randomHash(rng)
		}
		return genHashes(rng, n, hashes, func(hs [][16]byte) []uint64 {
			orders := make([]uint64, len(hs))
			for j := range orders {
				orders[j] = uint64(j + 1) // drawn in insert order
			}
			return orders
		})
	}},
	// The first split+1 inserts are the only hashes under 0x01: the
	// root splits at the last of them and leaves their node an oversized
	// leaf (built in memory below a large root).
	{"oversized", func(rng *rand.Rand, n, split int) []ptree.Elem {
		i, a := 0, min(split+1, n)
		return genHashes(rng, n, func() [16]byte {
			i++
			h := randomHash(rng)
			if i <= a {
				h[0] = 0
			} else {
				h[0] |= 0x80
			}
			return h
		}, func(hs [][16]byte) []uint64 {
			orders := make([]uint64, len(hs))
			for j, p := range rng.Perm(len(hs) - a) {
				orders[a+j] = uint64(a + 1 + p)
			}
			for j := range a {
				orders[j] = uint64(j + 1)
			}
			return orders
		})
	}},
	{"hash order", func(rng *rand.Rand, n, split int) []ptree.Elem {
		return genHashes(rng, n, func() [16]byte { return randomHash(rng) }, byHashRank(false))
	}},
	{"reverse hash order", func(rng *rand.Rand, n, split int) []ptree.Elem {
		return genHashes(rng, n, func() [16]byte { return randomHash(rng) }, byHashRank(true))
	}},
}

// splice returns the first keep bits of base followed by the rest of h.
func splice(base, h [16]byte, keep int) [16]byte {
	for i := range 16 {
		switch {
		case (i+1)*8 <= keep:
			h[i] = base[i]
		case i*8 < keep:
			mask := byte(0xff << (8 - keep%8))
			h[i] = base[i]&mask | h[i]&^mask
		}
	}
	return h
}

// oversizedLeaves counts the leaves holding more than split elements.
func oversizedLeaves(out []kv, split int) int {
	n := 0
	for _, e := range out {
		v := e.v
		if len(v) < 3 || v[1] != 1 { // format, kind (1: leaf)
			continue
		}
		if c, _ := binary.Uvarint(v[2:]); c > uint64(split) {
			n++
		}
	}
	return n
}

// checkStreamEqualsBuild builds elems with Build and with BuildStream
// bounded to maxElems and compares every key and value.
func checkStreamEqualsBuild(t *testing.T, cfg ptree.Config, elems []ptree.Elem, maxElems int) (ptree.StreamStats, []kv) {
	t.Helper()
	var want, got []kv
	if err := ptree.Build(cfg, elems, collect(&want)); err != nil {
		t.Fatalf("Build: %v", err)
	}
	src := &sliceSource{elems: elems}
	st, err := ptree.BuildStream(cfg, ptree.StreamConfig{MaxElems: maxElems}, src.open, collect(&got))
	if err != nil {
		t.Fatalf("BuildStream: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("BuildStream wrote %d keys, Build %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].k, want[i].k) || !bytes.Equal(got[i].v, want[i].v) {
			t.Fatalf("key %d differs:\n got %x=%x\nwant %x=%x", i, got[i].k, got[i].v, want[i].k, want[i].v)
		}
	}
	if got, want := st.MaxElems, max(maxElems, ptree.MinStreamElems(cfg)); got != want {
		t.Fatalf("MaxElems %d, want %d", got, want)
	}
	if st.MaxHeld > st.MaxElems {
		t.Fatalf("held %d elements at once, bound %d", st.MaxHeld, st.MaxElems)
	}
	if st.Elems != len(elems) {
		t.Fatalf("read %d elements, want %d", st.Elems, len(elems))
	}
	if len(elems) > 0 && src.opens != 3 {
		t.Fatalf("opened %d readers, want 3", src.opens)
	}
	return st, want
}

// TestBuildStreamEqualsBuild checks that the streamed build writes byte
// for byte what Build writes (and so what inserting in order does:
// TestBuildEqualsInserts), with the memory bound as low as it goes so that
// large nodes are summarised at several depths.
func TestBuildStreamEqualsBuild(t *testing.T) {
	shapes := []struct {
		split, q, n int
		minDepth    int // the deepest summarised level, at least (uniform hashes)
	}{
		{4, 2, 3000, 3},
		{50, 2, 6000, 3}, // SKS thresholds
		{4, 1, 3000, 4},
		{6, 3, 3000, 2},
	}
	for _, sh := range shapes {
		for _, g := range elemGens {
			t.Run(fmt.Sprintf("split=%d,q=%d/%s", sh.split, sh.q, g.name), func(t *testing.T) {
				cfg := testConfig(t)
				cfg.SplitThreshold, cfg.JoinThreshold, cfg.BitQuantum = sh.split, sh.split/2, sh.q
				oversized := 0
				for seed := uint64(1); seed <= 3; seed++ {
					rng := rand.New(rand.NewPCG(seed, uint64(sh.split)))
					elems := g.gen(rng, sh.n, sh.split)
					least := ptree.MinStreamElems(cfg)
					st, want := checkStreamEqualsBuild(t, cfg, elems, least)
					if st.Depth < sh.minDepth {
						t.Fatalf("seed %d: large nodes down to depth %d only, want %d", seed, st.Depth-1, sh.minDepth-1)
					}
					oversized += oversizedLeaves(want, sh.split)
					// A looser bound: fewer levels summarised, larger
					// subtrees built in memory.
					checkStreamEqualsBuild(t, cfg, elems, 3*least)
					// No bound to speak of: Build's own path.
					if st, _ := checkStreamEqualsBuild(t, cfg, elems, len(elems)); st.BigNodes != 0 {
						t.Fatalf("%d large nodes with every element in memory", st.BigNodes)
					}
				}
				if g.name == "oversized" && oversized == 0 {
					t.Fatal("no oversized leaf: the case does not test what it is for")
				}
			})
		}
	}
}

// TestBuildStreamEqualsInserts compares the streamed build with inserting
// the elements one by one in order, for the case that pushes the creation
// counts to their bound.
func TestBuildStreamEqualsInserts(t *testing.T) {
	cfg := testConfig(t)
	cfg.SplitThreshold, cfg.JoinThreshold = 4, 2
	rng := rand.New(rand.NewPCG(7, 0))
	for _, g := range elemGens {
		t.Run(g.name, func(t *testing.T) {
			elems := g.gen(rng, 1500, cfg.SplitThreshold)
			db := mustOpenDB(t)
			tr := mustOpenTree(t, db, cfg)
			byOrder := slices.Clone(elems)
			slices.SortFunc(byOrder, func(a, b ptree.Elem) int { return int(a.Order) - int(b.Order) })
			for i, e := range byOrder {
				if err := tr.Insert(e.Hash); err != nil {
					t.Fatal(err)
				}
				if i%211 == 0 {
					mustCommit(t, db, tr, uint64(i))
				}
			}
			mustCommit(t, db, tr, uint64(len(elems)))
			var want []kv
			it, err := db.NewIter(nil)
			if err != nil {
				t.Fatal(err)
			}
			for it.First(); it.Valid(); it.Next() {
				if bytes.HasPrefix(it.Key(), cfg.KeyPrefix) {
					want = append(want, kv{bytes.Clone(it.Key()), bytes.Clone(it.Value())})
				}
			}
			if err := it.Close(); err != nil {
				t.Fatal(err)
			}
			var got []kv
			src := &sliceSource{elems: elems}
			st, err := ptree.BuildStream(cfg, ptree.StreamConfig{MaxElems: 1}, src.open, collect(&got))
			if err != nil {
				t.Fatal(err)
			}
			if st.Depth < 2 {
				t.Fatalf("large nodes down to depth %d only", st.Depth-1)
			}
			if len(got) != len(want) {
				t.Fatalf("BuildStream wrote %d keys, inserts %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i].k, want[i].k) || !bytes.Equal(got[i].v, want[i].v) {
					t.Fatalf("key %d differs:\n got %x=%x\nwant %x=%x", i, got[i].k, got[i].v, want[i].k, want[i].v)
				}
			}
		})
	}
}

// TestBuildStreamRefuses checks the errors Build gives, found before
// anything is emitted.
func TestBuildStreamRefuses(t *testing.T) {
	cfg := testConfig(t)
	cfg.SplitThreshold, cfg.JoinThreshold = 4, 2
	least := ptree.MinStreamElems(cfg)
	rng := rand.New(rand.NewPCG(3, 0))
	uniform := func() []ptree.Elem { return elemGens[0].gen(rng, 10*least, cfg.SplitThreshold) }
	cases := []struct {
		name  string
		elems func() []ptree.Elem
		want  error // nil: any error
	}{
		{"duplicate", func() []ptree.Elem {
			es := uniform()
			es = slices.Insert(es, 500, ptree.Elem{Hash: es[500].Hash, Order: uint64(len(es) + 1)})
			return es
		}, ptree.ErrDuplicate},
		// More equal hashes than the bound: the reader ahead sees an
		// element equal to the current one.
		{"many duplicates", func() []ptree.Elem {
			es := uniform()
			for i := range 2 * least {
				es = slices.Insert(es, 300, ptree.Elem{Hash: es[300].Hash, Order: uint64(len(es) + 1 + i)})
			}
			return es
		}, ptree.ErrDuplicate},
		{"sample point", func() []ptree.Elem {
			es := uniform()
			// The zero hash maps to 0, the first sample point.
			return slices.Insert(es, 0, ptree.Elem{Order: uint64(len(es) + 1)})
		}, ptree.ErrSamplePoint},
		{"unsorted", func() []ptree.Elem {
			es := uniform()
			es[400], es[401] = es[401], es[400]
			return es
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			es := tc.elems()
			if berr := ptree.Build(cfg, es, func(k, v []byte) error { return nil }); tc.want != nil && !errors.Is(berr, tc.want) {
				t.Fatalf("Build: got %v, want %v", berr, tc.want)
			}
			var out []kv
			src := &sliceSource{elems: es}
			_, err := ptree.BuildStream(cfg, ptree.StreamConfig{MaxElems: least}, src.open, collect(&out))
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if len(out) != 0 {
				t.Fatalf("%d keys emitted before the error", len(out))
			}
		})
	}
}

// TestBuildStreamSourceChanged checks that a source that does not read
// the same elements again is an error, not a wrong tree.
func TestBuildStreamSourceChanged(t *testing.T) {
	cfg := testConfig(t)
	least := ptree.MinStreamElems(cfg)
	rng := rand.New(rand.NewPCG(5, 0))
	elems := elemGens[0].gen(rng, 20*least, cfg.SplitThreshold)
	for _, drop := range []int{0, 5 * least, len(elems) - 1} {
		src := &sliceSource{elems: elems, change: func(n int, es []ptree.Elem) []ptree.Elem {
			if n < 3 { // the emit pass's reader
				return es
			}
			return slices.Delete(slices.Clone(es), drop, drop+1)
		}}
		_, err := ptree.BuildStream(cfg, ptree.StreamConfig{MaxElems: least}, src.open, func(k, v []byte) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "changed between passes") {
			t.Fatalf("element %d dropped in the last pass: got %v", drop, err)
		}
	}
}

// TestBuildStreamEmpty: an empty set writes nothing, as Build.
func TestBuildStreamEmpty(t *testing.T) {
	var out []kv
	src := &sliceSource{}
	if _, err := ptree.BuildStream(testConfig(t), ptree.StreamConfig{}, src.open, collect(&out)); err != nil || len(out) != 0 {
		t.Fatalf("got %d keys, %v", len(out), err)
	}
}

// FuzzBuildStream compares the streamed build with Build over the
// generators, thresholds and sizes the fuzzer picks.
func FuzzBuildStream(f *testing.F) {
	for g := range elemGens {
		f.Add(uint64(g+1), uint16(1200), uint8(g), uint8(3), uint8(1), uint16(0))
	}
	f.Add(uint64(9), uint16(3000), uint8(1), uint8(50), uint8(1), uint16(40))
	f.Fuzz(func(t *testing.T, seed uint64, n uint16, gen, split, q uint8, extra uint16) {
		cfg := testConfig(t)
		cfg.SplitThreshold = 1 + int(split)%60
		cfg.JoinThreshold = cfg.SplitThreshold / 2
		cfg.BitQuantum = 1 + int(q)%3
		rng := rand.New(rand.NewPCG(seed, 0))
		elems := elemGens[int(gen)%len(elemGens)].gen(rng, int(n)%4000, cfg.SplitThreshold)
		checkStreamEqualsBuild(t, cfg, elems, ptree.MinStreamElems(cfg)+int(extra)%500)
	})
}

// BenchmarkBuildStream is BenchmarkBuild streamed with at most 10,000
// elements in memory (the source is in memory: the build's own cost).
func BenchmarkBuildStream(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 0))
	elems := make([]ptree.Elem, 100000)
	for i := range elems {
		elems[i].Hash = randomHash(rng)
		elems[i].Order = uint64(i + 1)
	}
	sortByHash(elems)
	cfg := ptree.DefaultConfig()
	src := &sliceSource{elems: elems}
	b.ResetTimer()
	for range b.N {
		if _, err := ptree.BuildStream(cfg, ptree.StreamConfig{MaxElems: 10000}, src.open, func(k, v []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
