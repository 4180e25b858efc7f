package ptree_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/grapevine-keyserver/grapevine/projections/ptree"
)

// testConfig returns the SKS configuration under a key prefix, so tests
// also check that the tree stays inside it.
func testConfig(tb testing.TB) ptree.Config {
	tb.Helper()
	cfg := ptree.DefaultConfig()
	cfg.KeyPrefix = []byte("pt/")
	return cfg
}

func mustOpenDB(tb testing.TB) *pebble.DB {
	tb.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func mustOpenTree(tb testing.TB, db *pebble.DB, cfg ptree.Config) *ptree.Tree {
	tb.Helper()
	tr, err := ptree.Open(db, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return tr
}

// appliedKey stands for the projection's applied index, which shares the
// batch with the tree.
var appliedKey = []byte("applied")

// mustCommit flushes tr into a batch with an applied index and commits it,
// as the projection runner does.
func mustCommit(tb testing.TB, db *pebble.DB, tr *ptree.Tree, applied uint64) {
	tb.Helper()
	b := db.NewBatch()
	if err := tr.Flush(b); err != nil {
		tb.Fatal(err)
	}
	if err := b.Set(appliedKey, fmt.Appendf(nil, "%d", applied), nil); err != nil {
		tb.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		tb.Fatal(err)
	}
}

func randomHash(rng *rand.Rand) [16]byte {
	var h [16]byte
	for i := range h {
		h[i] = byte(rng.Uint32())
	}
	return h
}

// set is a model of the tree's contents.
type set map[[16]byte]struct{}

func (s set) elements() []ptree.Zp {
	out := make([]ptree.Zp, 0, len(s))
	for h := range s {
		out = append(out, ptree.ElementFromKeyHash(h))
	}
	return out
}

func (s set) under(p ptree.Prefix) []ptree.Zp {
	var out []ptree.Zp
	for h := range s {
		if z := ptree.ElementFromKeyHash(h); p.Matches(z) {
			out = append(out, z)
		}
	}
	return out
}

func sortedZ(zs []ptree.Zp) []ptree.Zp {
	zs = slices.Clone(zs)
	slices.SortFunc(zs, ptree.Zp.Cmp)
	return zs
}

// checkStore walks every node stored in r and checks spec recon.md §5.2:
// each node's count and svalues are those of the elements of want under
// its prefix, a leaf holds exactly those elements, and the shape
// invariants of §5.4–§5.5 hold. It returns the nodes by prefix.
func checkStore(tb testing.TB, r pebble.Reader, cfg ptree.Config, want set) map[ptree.Prefix]*ptree.Node {
	tb.Helper()
	points := ptree.SamplePoints(cfg.NumSamples())
	nodes := make(map[ptree.Prefix]*ptree.Node)
	queue := []ptree.Prefix{{}}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		n, err := ptree.ReadNode(r, cfg, p)
		if err != nil {
			tb.Fatalf("ReadNode(%q): %v", p, err)
		}
		nodes[p] = n
		under := want.under(p)
		if n.Prefix != p {
			tb.Fatalf("node %q reports prefix %q", p, n.Prefix)
		}
		if got, w := n.NumElements, len(under); got != w {
			tb.Fatalf("node %q: NumElements %d, want %d", p, got, w)
		}
		wantSV := ptree.SValues(under, points)
		if !slices.Equal(n.SValues, wantSV) {
			tb.Fatalf("node %q: svalues %v, want %v", p, n.SValues, wantSV)
		}
		if n.IsLeaf {
			if len(n.Children) != 0 {
				tb.Fatalf("leaf %q has children", p)
			}
			if got, w := sortedZ(n.Elements), sortedZ(under); !slices.Equal(got, w) {
				tb.Fatalf("leaf %q: elements %v, want %v", p, got, w)
			}
			if n.NumElements > cfg.SplitThreshold+1 {
				tb.Fatalf("leaf %q holds %d elements", p, n.NumElements)
			}
		} else {
			if n.NumElements <= cfg.JoinThreshold {
				tb.Fatalf("internal node %q holds only %d elements", p, n.NumElements)
			}
			if len(n.Children) != 1<<cfg.BitQuantum || len(n.Elements) != 0 {
				tb.Fatalf("internal node %q: %d children, %d elements", p, len(n.Children), len(n.Elements))
			}
			for i, c := range n.Children {
				if c != p.Child(i, cfg.BitQuantum) {
					tb.Fatalf("node %q child %d is %q", p, i, c)
				}
			}
			queue = append(queue, n.Children...)
		}
		// Elements is shape-independent and agrees with the model.
		els, err := ptree.Elements(r, cfg, p)
		if err != nil {
			tb.Fatalf("Elements(%q): %v", p, err)
		}
		if got, w := sortedZ(els), sortedZ(under); !slices.Equal(got, w) {
			tb.Fatalf("Elements(%q) = %d elements, want %d", p, len(got), len(w))
		}
	}
	// Nothing stored under the prefix besides the nodes reachable from the root.
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: cfg.KeyPrefix, UpperBound: append(slices.Clone(cfg.KeyPrefix[:len(cfg.KeyPrefix)-1]), cfg.KeyPrefix[len(cfg.KeyPrefix)-1]+1)})
	if err != nil {
		tb.Fatal(err)
	}
	defer it.Close()
	count := 0
	for it.First(); it.Valid(); it.Next() {
		count++
	}
	if count > 0 && count != len(nodes)+1 { // +1: the meta key
		tb.Fatalf("store holds %d keys for %d nodes", count, len(nodes))
	}
	return nodes
}

func TestEmptyTree(t *testing.T) {
	db := mustOpenDB(t)
	cfg := testConfig(t)
	tr := mustOpenTree(t, db, cfg)
	if got := tr.NumElements(); got != 0 {
		t.Errorf("NumElements() = %d, want 0", got)
	}
	root, err := ptree.ReadRoot(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !root.IsLeaf || root.NumElements != 0 || len(root.SValues) != 6 {
		t.Fatalf("empty root = %+v", root)
	}
	for i, s := range root.SValues {
		if s != ptree.One() {
			t.Errorf("svalue %d = %v, want 1", i, s)
		}
	}
	if _, err := ptree.ReadNode(db, cfg, mustPrefix(t, "00")); !errors.Is(err, ptree.ErrNodeNotFound) {
		t.Errorf("ReadNode(00) on empty store: err = %v, want ErrNodeNotFound", err)
	}
	if els, err := ptree.Elements(db, cfg, mustPrefix(t, "01")); err != nil || len(els) != 0 {
		t.Errorf("Elements(01) on empty store = %v, %v", els, err)
	}
	// Flushing an unchanged tree writes nothing.
	b := db.NewBatch()
	if err := tr.Flush(b); err != nil || b.Count() != 0 {
		t.Errorf("Flush of untouched tree: %d ops, %v", b.Count(), err)
	}
}

// TestSplitAndJoin follows spec recon.md §5.4–§5.5 step by step.
func TestSplitAndJoin(t *testing.T) {
	db := mustOpenDB(t)
	cfg := testConfig(t)
	tr := mustOpenTree(t, db, cfg)
	rng := rand.New(rand.NewPCG(7, 8))
	want := set{}
	var order [][16]byte
	for len(want) < 50 {
		h := randomHash(rng)
		if err := tr.Insert(h); err != nil {
			t.Fatal(err)
		}
		want[h] = struct{}{}
		order = append(order, h)
	}
	mustCommit(t, db, tr, 1)
	if root := checkStore(t, db, cfg, want)[ptree.Prefix{}]; !root.IsLeaf {
		t.Fatalf("root with 50 elements is internal")
	}
	// The 51st element splits the root.
	h := randomHash(rng)
	if err := tr.Insert(h); err != nil {
		t.Fatal(err)
	}
	want[h] = struct{}{}
	order = append(order, h)
	mustCommit(t, db, tr, 2)
	nodes := checkStore(t, db, cfg, want)
	if root := nodes[ptree.Prefix{}]; root.IsLeaf || len(nodes) != 5 {
		t.Fatalf("after 51 inserts: root leaf=%v, %d nodes; want internal root and 4 leaves", root.IsLeaf, len(nodes))
	}
	// Deleting down to 26 keeps it internal; reaching 25 joins.
	for i := 0; len(want) > 26; i++ {
		if err := tr.Delete(order[i]); err != nil {
			t.Fatal(err)
		}
		delete(want, order[i])
	}
	mustCommit(t, db, tr, 3)
	if nodes := checkStore(t, db, cfg, want); nodes[ptree.Prefix{}].IsLeaf {
		t.Fatalf("root with 26 elements is a leaf")
	}
	if err := tr.Delete(order[25]); err != nil {
		t.Fatal(err)
	}
	delete(want, order[25])
	mustCommit(t, db, tr, 4)
	nodes = checkStore(t, db, cfg, want)
	if root := nodes[ptree.Prefix{}]; !root.IsLeaf || len(nodes) != 1 {
		t.Fatalf("after join: root leaf=%v, %d nodes; want one leaf", root.IsLeaf, len(nodes))
	}
	if got := tr.NumElements(); got != 25 {
		t.Errorf("NumElements() = %d, want 25", got)
	}
}

// TestSplitDoesNotRecurse checks that a split leaves an overfull child as
// a leaf until its next insert (SKS split_at_depth, spec recon.md §5.4).
func TestSplitDoesNotRecurse(t *testing.T) {
	db := mustOpenDB(t)
	cfg := testConfig(t)
	tr := mustOpenTree(t, db, cfg)
	rng := rand.New(rand.NewPCG(9, 10))
	want := set{}
	next := func() [16]byte {
		h := randomHash(rng)
		h[0] &= 0x3f // all in child 0 of the root
		return h
	}
	for len(want) < 51 {
		h := next()
		if err := tr.Insert(h); err != nil {
			t.Fatal(err)
		}
		want[h] = struct{}{}
	}
	mustCommit(t, db, tr, 1)
	nodes := checkStore(t, db, cfg, want)
	c0 := nodes[mustPrefix(t, "00")]
	if nodes[ptree.Prefix{}].IsLeaf || !c0.IsLeaf || c0.NumElements != 51 {
		t.Fatalf("child 00: leaf=%v n=%d; want a leaf of 51", c0.IsLeaf, c0.NumElements)
	}
	h := next()
	if err := tr.Insert(h); err != nil {
		t.Fatal(err)
	}
	want[h] = struct{}{}
	mustCommit(t, db, tr, 2)
	if c0 := checkStore(t, db, cfg, want)[mustPrefix(t, "00")]; c0.IsLeaf {
		t.Fatalf("child 00 with 52 elements is still a leaf")
	}
}

func TestInsertDuplicateDeleteMissing(t *testing.T) {
	db := mustOpenDB(t)
	cfg := testConfig(t)
	tr := mustOpenTree(t, db, cfg)
	rng := rand.New(rand.NewPCG(11, 12))
	want := set{}
	var hs [][16]byte
	for range 200 {
		h := randomHash(rng)
		if err := tr.Insert(h); err != nil {
			t.Fatal(err)
		}
		want[h] = struct{}{}
		hs = append(hs, h)
	}
	for _, h := range hs[:20] {
		if err := tr.Insert(h); !errors.Is(err, ptree.ErrDuplicate) {
			t.Fatalf("reinsert: err = %v, want ErrDuplicate", err)
		}
	}
	for range 20 {
		if err := tr.Delete(randomHash(rng)); !errors.Is(err, ptree.ErrMissing) {
			t.Fatalf("delete missing: err = %v, want ErrMissing", err)
		}
	}
	for _, h := range [][16]byte{{}, {1}, {2}} { // elements 0, 1, 2 are sample points
		if err := tr.Insert(h); !errors.Is(err, ptree.ErrSamplePoint) {
			t.Fatalf("insert %x: err = %v, want ErrSamplePoint", h, err)
		}
		if err := tr.Delete(h); !errors.Is(err, ptree.ErrMissing) {
			t.Fatalf("delete %x: err = %v, want ErrMissing", h, err)
		}
	}
	// The refused operations changed nothing.
	if got := tr.NumElements(); got != 200 {
		t.Fatalf("NumElements() = %d, want 200", got)
	}
	mustCommit(t, db, tr, 1)
	checkStore(t, db, cfg, want)
}

// TestRandomInterleavings inserts and deletes in random orders, with
// splits and joins, and checks the key property of spec recon.md §5.2: every
// node's count and svalues depend only on the set. It also compares with a
// tree built directly from the final set.
func TestRandomInterleavings(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			cfg := testConfig(t)
			if seed%2 == 0 {
				cfg.MaxCachedNodes = 8 // force eviction and reloads
			}
			if seed == 5 {
				cfg.BitQuantum = 3 // digits straddle bytes
			}
			db := mustOpenDB(t)
			tr := mustOpenTree(t, db, cfg)
			want := set{}
			var live [][16]byte
			ops := 3000
			for i := range ops {
				// Grow for the first half, shrink for the second, so joins happen.
				growP := 0.7
				if i > ops/2 {
					growP = 0.3
				}
				if len(live) == 0 || rng.Float64() < growP {
					h := randomHash(rng)
					if err := tr.Insert(h); err != nil {
						t.Fatal(err)
					}
					want[h] = struct{}{}
					live = append(live, h)
				} else {
					j := rng.IntN(len(live))
					h := live[j]
					live[j] = live[len(live)-1]
					live = live[:len(live)-1]
					if err := tr.Delete(h); err != nil {
						t.Fatal(err)
					}
					delete(want, h)
					// Sometimes delete and reinsert in the same batch.
					if rng.IntN(10) == 0 {
						if err := tr.Insert(h); err != nil {
							t.Fatal(err)
						}
						want[h] = struct{}{}
						live = append(live, h)
					}
				}
				if got := tr.NumElements(); got != len(want) {
					t.Fatalf("op %d: NumElements() = %d, want %d", i, got, len(want))
				}
				if rng.IntN(100) == 0 {
					mustCommit(t, db, tr, uint64(i))
				}
				if i%500 == 499 {
					mustCommit(t, db, tr, uint64(i))
					checkStore(t, db, cfg, want)
				}
			}
			mustCommit(t, db, tr, uint64(ops))
			got := checkStore(t, db, cfg, want)

			// The same set inserted in a fresh tree in another order.
			db2 := mustOpenDB(t)
			tr2 := mustOpenTree(t, db2, cfg)
			for _, h := range live {
				if err := tr2.Insert(h); err != nil {
					t.Fatal(err)
				}
			}
			mustCommit(t, db2, tr2, 1)
			built := checkStore(t, db2, cfg, want)
			common := 0
			for p, n := range got {
				if m, ok := built[p]; ok {
					common++
					if n.NumElements != m.NumElements || !slices.Equal(n.SValues, m.SValues) {
						t.Fatalf("node %q differs between histories", p)
					}
				}
			}
			t.Logf("%d elements; %d nodes after history, %d built directly, %d in common", len(want), len(got), len(built), common)
		})
	}
}

// TestPersistence flushes into a batch, commits, resets and reopens.
func TestPersistence(t *testing.T) {
	db := mustOpenDB(t)
	cfg := testConfig(t)
	tr := mustOpenTree(t, db, cfg)
	rng := rand.New(rand.NewPCG(13, 14))
	want := set{}
	for range 1000 {
		h := randomHash(rng)
		if err := tr.Insert(h); err != nil {
			t.Fatal(err)
		}
		want[h] = struct{}{}
	}
	// Before the commit, readers see nothing.
	if root, err := ptree.ReadRoot(db, cfg); err != nil || root.NumElements != 0 {
		t.Fatalf("uncommitted root: %v, %v", root, err)
	}
	mustCommit(t, db, tr, 1000)
	before := checkStore(t, db, cfg, want)

	// Reset reloads from the store.
	tr.Reset()
	if got := tr.NumElements(); got != 1000 {
		t.Fatalf("after Reset: NumElements() = %d, want 1000", got)
	}
	// A new Tree on the same store carries on where the first stopped.
	tr2 := mustOpenTree(t, db, cfg)
	if got := tr2.NumElements(); got != 1000 {
		t.Fatalf("reopened: NumElements() = %d, want 1000", got)
	}
	for h := range want {
		if err := tr2.Insert(h); !errors.Is(err, ptree.ErrDuplicate) {
			t.Fatalf("reopened tree accepts existing %x: %v", h, err)
		}
		break
	}
	after := checkStore(t, db, cfg, want)
	if len(before) != len(after) {
		t.Fatalf("%d nodes before, %d after", len(before), len(after))
	}
	if v, closer, err := db.Get(appliedKey); err != nil || string(v) != "1000" {
		t.Fatalf("applied index = %q, %v", v, err)
	} else {
		closer.Close()
	}

	// Nothing outside the key prefix except the applied index.
	it, _ := db.NewIter(nil)
	for it.First(); it.Valid(); it.Next() {
		if !bytes.HasPrefix(it.Key(), cfg.KeyPrefix) && !bytes.Equal(it.Key(), appliedKey) {
			t.Errorf("stray key %q", it.Key())
		}
	}
	it.Close()
}

// TestResetDiscardsUncommitted simulates a failed commit: the batch is
// dropped and Reset must bring back the committed tree.
func TestResetDiscardsUncommitted(t *testing.T) {
	db := mustOpenDB(t)
	cfg := testConfig(t)
	cfg.MaxCachedNodes = 16
	tr := mustOpenTree(t, db, cfg)
	rng := rand.New(rand.NewPCG(15, 16))
	want := set{}
	var hs [][16]byte
	for range 600 {
		h := randomHash(rng)
		if err := tr.Insert(h); err != nil {
			t.Fatal(err)
		}
		want[h] = struct{}{}
		hs = append(hs, h)
	}
	mustCommit(t, db, tr, 1)

	for _, h := range hs[:580] { // deep enough to join most of the tree
		if err := tr.Delete(h); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		if err := tr.Insert(randomHash(rng)); err != nil {
			t.Fatal(err)
		}
	}
	b := db.NewBatch()
	if err := tr.Flush(b); err != nil {
		t.Fatal(err)
	}
	b.Close() // the commit "failed"
	tr.Reset()

	if got := tr.NumElements(); got != 600 {
		t.Fatalf("after Reset: NumElements() = %d, want 600", got)
	}
	checkStore(t, db, cfg, want)
	// The tree is usable again, and its changes land.
	for _, h := range hs[:300] {
		if err := tr.Delete(h); err != nil {
			t.Fatal(err)
		}
		delete(want, h)
	}
	mustCommit(t, db, tr, 2)
	checkStore(t, db, cfg, want)
}

func TestReadNodeNotFound(t *testing.T) {
	db := mustOpenDB(t)
	cfg := testConfig(t)
	tr := mustOpenTree(t, db, cfg)
	rng := rand.New(rand.NewPCG(17, 18))
	want := set{}
	for range 120 {
		h := randomHash(rng)
		if err := tr.Insert(h); err != nil {
			t.Fatal(err)
		}
		want[h] = struct{}{}
	}
	mustCommit(t, db, tr, 1)
	nodes := checkStore(t, db, cfg, want)

	var leaf *ptree.Node
	for _, n := range nodes {
		if n.IsLeaf && n.Prefix.Bits() > 0 && (leaf == nil || n.NumElements > leaf.NumElements) {
			leaf = n
		}
	}
	if leaf == nil {
		t.Fatal("no leaf below the root")
	}
	below := leaf.Prefix.Child(1, cfg.BitQuantum)
	if _, err := ptree.ReadNode(db, cfg, below); !errors.Is(err, ptree.ErrNodeNotFound) {
		t.Errorf("ReadNode(%q) below leaf %q: err = %v, want ErrNodeNotFound", below, leaf.Prefix, err)
	}
	if _, err := ptree.ReadNode(db, cfg, below.Child(2, cfg.BitQuantum)); !errors.Is(err, ptree.ErrNodeNotFound) {
		t.Errorf("two levels below a leaf: err = %v, want ErrNodeNotFound", err)
	}
	if _, err := ptree.ReadNode(db, cfg, mustPrefix(t, "0")); !errors.Is(err, ptree.ErrBadPrefix) {
		t.Errorf("odd-length prefix: err = %v, want ErrBadPrefix", err)
	}

	// Elements below a leaf is the leaf's elements filtered to the prefix,
	// for any prefix length.
	for _, p := range []ptree.Prefix{below, below.Child(0, cfg.BitQuantum), mustPrefix(t, leaf.Prefix.String()+"1"), mustPrefix(t, "1"), mustPrefix(t, "011")} {
		els, err := ptree.Elements(db, cfg, p)
		if err != nil {
			t.Fatalf("Elements(%q): %v", p, err)
		}
		if got, w := sortedZ(els), sortedZ(want.under(p)); !slices.Equal(got, w) {
			t.Errorf("Elements(%q) = %d elements, want %d", p, len(got), len(w))
		}
	}
	all, err := ptree.Elements(db, cfg, ptree.Prefix{})
	if err != nil || len(all) != 120 {
		t.Fatalf("Elements(root) = %d, %v", len(all), err)
	}
	if !slices.IsSortedFunc(all, func(a, b ptree.Zp) int { return bytes.Compare(a.Bytes(), b.Bytes()) }) {
		t.Errorf("Elements(root) not in prefix order")
	}
}

func TestConfigMismatch(t *testing.T) {
	db := mustOpenDB(t)
	cfg := testConfig(t)
	tr := mustOpenTree(t, db, cfg)
	if err := tr.Insert([16]byte{9}); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, db, tr, 1)
	for _, mod := range []func(*ptree.Config){
		func(c *ptree.Config) { c.MBar = 6 },
		func(c *ptree.Config) { c.BitQuantum = 1 },
		func(c *ptree.Config) { c.SplitThreshold = 60 },
	} {
		c := testConfig(t)
		mod(&c)
		if _, err := ptree.Open(db, c); !errors.Is(err, ptree.ErrConfigMismatch) {
			t.Errorf("Open with %+v: err = %v, want ErrConfigMismatch", c, err)
		}
	}
	// Another key prefix is another, empty, tree.
	other := testConfig(t)
	other.KeyPrefix = []byte("pu/")
	if tr := mustOpenTree(t, db, other); tr.NumElements() != 0 {
		t.Errorf("tree under another prefix has %d elements", tr.NumElements())
	}
}

func TestConfigValidate(t *testing.T) {
	if err := ptree.DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
	for _, tc := range []struct {
		field string
		mod   func(*ptree.Config)
	}{
		{"MaxCachedNodes", func(c *ptree.Config) { c.MaxCachedNodes = -1 }},
		{"BitQuantum", func(c *ptree.Config) { c.BitQuantum = 0 }},
		{"BitQuantum", func(c *ptree.Config) { c.BitQuantum = 9 }},
		{"MBar", func(c *ptree.Config) { c.MBar = 0 }},
		{"SplitThreshold", func(c *ptree.Config) { c.SplitThreshold = 0 }},
		{"JoinThreshold", func(c *ptree.Config) { c.JoinThreshold = 50 }},
		{"JoinThreshold", func(c *ptree.Config) { c.JoinThreshold = -1 }},
	} {
		c := ptree.DefaultConfig()
		tc.mod(&c)
		var verr *ptree.ConfigValidationError
		if err := c.Validate(); !errors.As(err, &verr) || verr.Field != tc.field {
			t.Errorf("%s: err = %v", tc.field, err)
		}
		if _, err := ptree.Open(mustOpenDB(t), c); err == nil {
			t.Errorf("%s: Open accepted invalid config", tc.field)
		}
	}
}

func TestCorruptNode(t *testing.T) {
	db := mustOpenDB(t)
	cfg := testConfig(t)
	tr := mustOpenTree(t, db, cfg)
	rng := rand.New(rand.NewPCG(19, 20))
	for range 10 {
		if err := tr.Insert(randomHash(rng)); err != nil {
			t.Fatal(err)
		}
	}
	mustCommit(t, db, tr, 1)
	rootKey := append(slices.Clone(cfg.KeyPrefix), 'n')
	v, closer, err := db.Get(rootKey)
	if err != nil {
		t.Fatal(err)
	}
	good := slices.Clone(v)
	closer.Close()
	for name, bad := range map[string][]byte{
		"empty":     {},
		"format":    append([]byte{9}, good[1:]...),
		"truncated": good[:len(good)-1],
		"trailing":  append(slices.Clone(good), 0),
		"kind":      append([]byte{good[0], 7}, good[2:]...),
	} {
		if err := db.Set(rootKey, bad, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if _, err := ptree.ReadRoot(db, cfg); !errors.Is(err, ptree.ErrCorrupt) {
			t.Errorf("%s: ReadRoot err = %v, want ErrCorrupt", name, err)
		}
		if _, err := ptree.Open(db, cfg); !errors.Is(err, ptree.ErrCorrupt) {
			t.Errorf("%s: Open err = %v, want ErrCorrupt", name, err)
		}
	}
}

// flakyReader fails every Get after the first ok ones.
type flakyReader struct {
	pebble.Reader
	ok int
}

var errFlaky = errors.New("injected read error")

func (r *flakyReader) Get(key []byte) ([]byte, io.Closer, error) {
	if r.ok <= 0 {
		return nil, nil, errFlaky
	}
	r.ok--
	return r.Reader.Get(key)
}

// TestReadErrorLeavesTreeUnchanged makes the store fail in the middle of a
// Delete that joins, and of Inserts, and checks nothing changed.
func TestReadErrorLeavesTreeUnchanged(t *testing.T) {
	db := mustOpenDB(t)
	cfg := testConfig(t)
	cfg.MaxCachedNodes = 1 // only the root stays cached after Flush
	fr := &flakyReader{Reader: db, ok: 1 << 30}
	tr, err := ptree.Open(fr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(27, 28))
	want := set{}
	var hs [][16]byte
	for range 51 {
		h := randomHash(rng)
		if err := tr.Insert(h); err != nil {
			t.Fatal(err)
		}
		want[h] = struct{}{}
		hs = append(hs, h)
	}
	for _, h := range hs[:25] { // 26 left: the next delete joins the root
		if err := tr.Delete(h); err != nil {
			t.Fatal(err)
		}
		delete(want, h)
	}
	mustCommit(t, db, tr, 1)

	fr.ok = 1 // the walk reads one child, the join's reads of the others fail
	if err := tr.Delete(hs[25]); !errors.Is(err, errFlaky) {
		t.Fatalf("Delete with failing store: err = %v", err)
	}
	fr.ok = 0
	if err := tr.Insert(randomHash(rng)); !errors.Is(err, errFlaky) {
		t.Fatalf("Insert with failing store: err = %v", err)
	}
	fr.ok = 1 << 30
	if got := tr.NumElements(); got != 26 {
		t.Fatalf("NumElements() = %d, want 26", got)
	}
	mustCommit(t, db, tr, 2)
	checkStore(t, db, cfg, want)

	// And the same Delete succeeds once the store works.
	if err := tr.Delete(hs[25]); err != nil {
		t.Fatal(err)
	}
	delete(want, hs[25])
	mustCommit(t, db, tr, 3)
	if root := checkStore(t, db, cfg, want)[ptree.Prefix{}]; !root.IsLeaf {
		t.Fatalf("root not joined")
	}
}
