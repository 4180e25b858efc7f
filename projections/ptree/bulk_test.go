package ptree_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/ptree"
)

// TestBuildEqualsInserts checks that the bulk build writes byte for byte
// what inserting the same hashes in their order and flushing writes: the
// same nodes, the same svalues, the same oversized leaves.
func TestBuildEqualsInserts(t *testing.T) {
	cases := []struct {
		name    string
		split   int
		n       int
		cluster bool // hashes drawn from few prefixes, so splits cascade and oversized leaves happen
	}{
		{"empty", 50, 0, false},
		{"one leaf", 50, 30, false},
		{"sks thresholds", 50, 3000, false},
		{"small thresholds", 4, 500, false},
		{"clustered", 4, 400, true},
		{"clustered sks", 50, 2000, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for seed := int64(1); seed <= 5; seed++ {
				rng := rand.New(rand.NewPCG(uint64(seed), 0))
				cfg := testConfig(t)
				cfg.SplitThreshold = tc.split
				cfg.JoinThreshold = tc.split / 2
				var elems []ptree.Elem
				seen := map[[16]byte]bool{}
				for len(elems) < tc.n {
					h := randomHash(rng)
					if tc.cluster {
						h[0] = byte(rng.IntN(3)) << 6 // a few top-level digits only
						h[1] &= 0x0f
					}
					if seen[h] {
						continue
					}
					seen[h] = true
					elems = append(elems, ptree.Elem{Hash: h, Order: uint64(len(elems) + 1)})
				}
				// Incremental: insert in order, flushing now and then as
				// the runner does.
				db := mustOpenDB(t)
				tr := mustOpenTree(t, db, cfg)
				for i, e := range elems {
					if err := tr.Insert(e.Hash); err != nil {
						t.Fatal(err)
					}
					if i%97 == 0 {
						mustCommit(t, db, tr, uint64(i))
					}
				}
				mustCommit(t, db, tr, uint64(len(elems)))
				var want []string
				it, err := db.NewIter(nil)
				if err != nil {
					t.Fatal(err)
				}
				for it.First(); it.Valid(); it.Next() {
					if bytes.HasPrefix(it.Key(), cfg.KeyPrefix) {
						want = append(want, fmt.Sprintf("%x=%x", it.Key(), it.Value()))
					}
				}
				it.Close()

				sorted := slices.Clone(elems)
				rng.Shuffle(len(sorted), func(i, j int) { sorted[i], sorted[j] = sorted[j], sorted[i] })
				slices.SortFunc(sorted, func(a, b ptree.Elem) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
				var got []string
				var last []byte
				err = ptree.Build(cfg, sorted, func(k, v []byte) error {
					if last != nil && bytes.Compare(last, k) >= 0 {
						t.Fatalf("key %x emitted after %x", k, last)
					}
					last = bytes.Clone(k)
					got = append(got, fmt.Sprintf("%x=%x", k, v))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Fatalf("seed %d: build wrote %d keys, inserts %d", seed, len(got), len(want))
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("seed %d: key %d differs:\n got %s\nwant %s", seed, i, got[i], want[i])
					}
				}
			}
		})
	}
}

// TestBuildOversizedLeaf pins the order dependence Build replays: a split
// that sends every element to one child leaves it an oversized leaf until
// the next insert into it.
func TestBuildOversizedLeaf(t *testing.T) {
	cfg := testConfig(t)
	cfg.SplitThreshold = 4
	cfg.JoinThreshold = 2
	var elems []ptree.Elem
	for i := 0; i < 5; i++ { // all in child 0 (top two bits 00)
		var h [16]byte
		h[0], h[15] = 0x01, byte(i+1)
		elems = append(elems, ptree.Elem{Hash: h, Order: uint64(i + 1)})
	}
	var other [16]byte
	other[0] = 0xc0
	for _, lastIntoChild0 := range []bool{false, true} {
		es := slices.Clone(elems)
		if lastIntoChild0 {
			var h [16]byte
			h[0], h[15] = 0x01, 0x80
			es = append(es, ptree.Elem{Hash: h, Order: 6})
		} else {
			es = append(es, ptree.Elem{Hash: other, Order: 6})
		}
		slices.SortFunc(es, func(a, b ptree.Elem) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
		db := mustOpenDB(t)
		tr := mustOpenTree(t, db, cfg)
		byOrder := slices.Clone(es)
		slices.SortFunc(byOrder, func(a, b ptree.Elem) int { return int(a.Order) - int(b.Order) })
		for _, e := range byOrder {
			if err := tr.Insert(e.Hash); err != nil {
				t.Fatal(err)
			}
		}
		mustCommit(t, db, tr, 6)
		n := 0
		err := ptree.Build(cfg, es, func(k, v []byte) error {
			got, closer, err := db.Get(k)
			if err != nil {
				return fmt.Errorf("key %x: %w", k, err)
			}
			defer closer.Close()
			if !bytes.Equal(got, v) {
				return fmt.Errorf("key %x: build %x, inserts %x", k, v, got)
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// root, 4 children, and 4 grandchildren when child 0 split again.
		want := 1 + 1 + 4
		if lastIntoChild0 {
			want += 4
		}
		if n != want {
			t.Fatalf("lastIntoChild0=%v: %d keys, want %d", lastIntoChild0, n, want)
		}
	}
}

func TestBuildRefusesDuplicates(t *testing.T) {
	var h [16]byte
	h[0] = 7
	err := ptree.Build(testConfig(t), []ptree.Elem{{h, 1}, {h, 2}}, func(k, v []byte) error { return nil })
	if !errors.Is(err, ptree.ErrDuplicate) {
		t.Fatalf("got %v, want ErrDuplicate", err)
	}
}

// BenchmarkBuild builds the prefix tree of 100k random hashes (SKS
// thresholds), as a bulk import of the 100k corpus does.
func BenchmarkBuild(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 0))
	elems := make([]ptree.Elem, 100000)
	for i := range elems {
		for j := range elems[i].Hash {
			elems[i].Hash[j] = byte(rng.Uint32())
		}
		elems[i].Order = uint64(i + 1)
	}
	slices.SortFunc(elems, func(a, b ptree.Elem) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	cfg := ptree.DefaultConfig()
	b.ResetTimer()
	for range b.N {
		if err := ptree.Build(cfg, elems, func(k, v []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
