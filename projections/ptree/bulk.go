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

// node emits the node at prefix p (depth d) holding elems, created holding
// c0 of them, then its subtree.
func (b *builder) node(p Prefix, d int, elems []Elem, c0 int) error {
	cfg := b.cfg
	n := &node{prefix: p, count: len(elems), svalues: make([]Zp, len(b.points))}
	for i := range n.svalues {
		n.svalues[i] = one
	}
	for i := range elems {
		x := ElementFromKeyHash(elems[i].Hash)
		for j, k := range b.points {
			n.svalues[j] = n.svalues[j].Mul(k.Sub(x))
		}
	}
	q := cfg.BitQuantum
	internal := n.count > cfg.SplitThreshold && n.count > c0 && p.Bits()+q <= MaxPrefixBits
	n.leaf = !internal
	if n.leaf {
		n.elems = make([][16]byte, len(elems))
		for i := range elems {
			n.elems[i] = elems[i].Hash
		}
	}
	b.key = appendNodeKey(b.key[:0], cfg, p)
	b.val = appendNodeValue(b.val[:0], n)
	if err := b.emit(b.key, b.val); err != nil {
		return err
	}
	if n.leaf {
		return nil
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
		if err := b.node(p.Child(i, q), d+1, child, cc0); err != nil {
			return err
		}
		start = end
	}
	return nil
}
