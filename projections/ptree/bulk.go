package ptree

import (
	"bytes"
	"fmt"
	"slices"
)

// Elem is one element of a bulk build: a key hash and its position in the
// order in which an incremental build would have inserted it (the log
// index of the event that added it).
type Elem struct {
	Hash  [16]byte
	Order uint64
}

// Build writes, through emit and in ascending key order, exactly the keys
// and values that inserting elems one by one in Order into an empty tree
// and flushing would leave in the store: the meta key and every node. It is
// the bulk path for a store that starts empty (import, replay): one pass,
// no reads, nothing cached.
//
// elems must be sorted by Hash and distinct (ErrDuplicate otherwise); a
// hash that maps to a sample point gives ErrSamplePoint, as Insert does.
// Orders must be distinct.
//
// The structure of an insert-only tree depends on the order of inserts, not
// only on the set: SKS (split_at_depth) does not split the children a split
// creates, so a child that receives more than SplitThreshold elements stays
// an oversized leaf until the next insert into it. Build replays that rule:
// a node created when its parent split at order T, holding c0 elements of
// order <= T, is internal iff it holds more than SplitThreshold elements
// and at least one was inserted after T; it then split at the insert that
// made its count exceed both SplitThreshold and c0.
func Build(cfg Config, elems []Elem, emit func(key, value []byte) error) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if len(elems) == 0 {
		return nil // an empty tree is never flushed, so the store holds nothing
	}
	points := SamplePoints(cfg.NumSamples())
	for i := range elems {
		if i > 0 {
			switch c := bytes.Compare(elems[i-1].Hash[:], elems[i].Hash[:]); {
			case c == 0:
				return fmt.Errorf("build %s: %w", hashString(elems[i].Hash), ErrDuplicate)
			case c > 0:
				return fmt.Errorf("build: elements not sorted at %d", i)
			}
		}
		x := ElementFromKeyHash(elems[i].Hash)
		for _, k := range points {
			if k.Sub(x).IsZero() {
				return fmt.Errorf("build %s: %w", hashString(elems[i].Hash), ErrSamplePoint)
			}
		}
	}
	b := &builder{cfg: &cfg, points: points, emit: emit}
	if err := emit(metaKey(&cfg), appendMeta(nil, &cfg)); err != nil {
		return err
	}
	return b.node(Prefix{}, 0, elems, 0)
}

type builder struct {
	cfg    *Config
	points []Zp
	emit   func(key, value []byte) error
	orders []uint64 // scratch for order statistics
	key    []byte
	val    []byte
}

// plan is one node of the tree being built: its shape and svalues are
// found bottom-up (plan), then the nodes are emitted top-down in key order
// (emitPlan).
type plan struct {
	prefix Prefix
	elems  []Elem // the subtree's elements
	sv     []Zp
	leaf   bool
	kids   []*plan
}

// node emits the node at prefix p (depth d) holding elems, created holding
// c0 of them, then its subtree.
func (b *builder) node(p Prefix, d int, elems []Elem, c0 int) error {
	return b.emitPlan(b.plan(p, d, elems, c0))
}

// plan works out the subtree at prefix p (depth d) holding elems, created
// holding c0 of them. A leaf's svalues are the product over its elements;
// an internal node's the product of its children's: each element is
// multiplied in once, not once per level (it was 3–4 times for 100k keys,
// most of the build's CPU).
func (b *builder) plan(p Prefix, d int, elems []Elem, c0 int) *plan {
	cfg := b.cfg
	n := &plan{prefix: p, elems: elems, sv: make([]Zp, len(b.points))}
	for i := range n.sv {
		n.sv[i] = one
	}
	q := cfg.BitQuantum
	internal := len(elems) > cfg.SplitThreshold && len(elems) > c0 && p.Bits()+q <= MaxPrefixBits
	if !internal {
		n.leaf = true
		for i := range elems {
			x := ElementFromKeyHash(elems[i].Hash)
			for j, k := range b.points {
				n.sv[j] = n.sv[j].Mul(k.Sub(x))
			}
		}
		return n
	}
	// The split happened at the insert that brought the count to
	// max(SplitThreshold, c0)+1: the k-th element in insert order.
	k := max(cfg.SplitThreshold, c0) + 1
	b.orders = b.orders[:0]
	for i := range elems {
		b.orders = append(b.orders, elems[i].Order)
	}
	slices.Sort(b.orders)
	splitAt := b.orders[k-1]
	// elems are sorted by hash, so each child's elements are contiguous
	// and in ascending digit order, as are the children's keys.
	start := 0
	for i := 0; i < cfg.fanout(); i++ {
		end := start
		for end < len(elems) && hashDigit(&elems[end].Hash, d, q) == i {
			end++
		}
		child := elems[start:end]
		cc0 := 0
		for j := range child {
			if child[j].Order <= splitAt {
				cc0++
			}
		}
		kid := b.plan(p.Child(i, q), d+1, child, cc0)
		for j := range n.sv {
			n.sv[j] = n.sv[j].Mul(kid.sv[j])
		}
		n.kids = append(n.kids, kid)
		start = end
	}
	return n
}

// emitPlan emits n, then its subtree in key order.
func (b *builder) emitPlan(pl *plan) error {
	n := &node{prefix: pl.prefix, count: len(pl.elems), svalues: pl.sv, leaf: pl.leaf}
	if n.leaf {
		n.elems = make([][16]byte, len(pl.elems))
		for i := range pl.elems {
			n.elems[i] = pl.elems[i].Hash
		}
	}
	b.key = appendNodeKey(b.key[:0], b.cfg, pl.prefix)
	b.val = appendNodeValue(b.val[:0], n)
	if err := b.emit(b.key, b.val); err != nil {
		return err
	}
	for _, kid := range pl.kids {
		if err := b.emitPlan(kid); err != nil {
			return err
		}
	}
	return nil
}
