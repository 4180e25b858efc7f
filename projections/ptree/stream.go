package ptree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// ElemReader reads the elements of a streamed build (BuildStream) one at a
// time, sorted by Hash.
type ElemReader interface {
	// Next returns the next element, or ok false at the end.
	Next() (e Elem, ok bool, err error)
	Close() error
}

// StreamConfig bounds the memory of BuildStream.
type StreamConfig struct {
	// MaxElems is the most elements BuildStream holds in memory at once:
	// a subtree of at most this many is read into memory and built as
	// Build does, a larger one is summarised while streaming. Values below
	// MinStreamElems(cfg) are raised to it (the streaming needs that many
	// to know every large node is internal).
	MaxElems int
}

// StreamStats describes a streamed build.
type StreamStats struct {
	Elems    int // elements read
	MaxElems int // the bound used: StreamConfig.MaxElems raised to MinStreamElems
	// BigNodes counts the nodes holding more than MaxElems elements,
	// summarised while streaming; Depth is one more than the deepest of
	// them (0: none, the whole tree was built in memory).
	BigNodes, Depth int
	// MaxHeld is the most elements held in memory at once. Invariant:
	// MaxHeld <= MaxElems.
	MaxHeld int
}

// MinStreamElems is the least StreamConfig.MaxElems for cfg. A node with
// more elements than it is internal whatever the order of inserts: the
// node at depth d was created holding at most SplitThreshold+d elements
// (see bigNode), and two distinct key hashes differ within 128 bits, so a
// node with two or more elements is at depth 127/BitQuantum or above.
func MinStreamElems(cfg Config) int {
	return cfg.SplitThreshold + (MaxPrefixBits-9)/cfg.BitQuantum + 2
}

// BuildStream is Build for a set too large to hold in memory: it writes
// through emit exactly what Build writes for the same elements, holding at
// most sc.MaxElems of them (raised to MinStreamElems) in memory at once.
// open returns a new reader of the elements from the start, each time the
// same elements sorted by Hash (ErrDuplicate, ErrSamplePoint and an
// unsorted source fail as in Build); BuildStream reads them three times,
// twice at once, and emits nothing before the first two readers have
// read every element and found no error.
//
// How: elements sorted by hash make every subtree a contiguous run. A node
// holding more than MaxElems elements (a big node) is summarised in the
// first pass: its count, svalues and the SplitThreshold+d+1 smallest
// orders in its subtree, from which the split that created its children
// is found without the elements (bigNode). A second reader MaxElems
// elements ahead finds the big nodes as the pass reaches their first
// element: a node is big iff it holds an element and the one MaxElems
// further on. The second pass emits the tree in key order: a big node from
// its summary, every other child of a big node by reading its at most
// MaxElems elements into memory and building it as Build does.
//
// Memory besides the readers: MaxElems elements with their plan, and the
// summaries, one per big node: at most Elems/MaxElems per depth, each
// about (SplitThreshold+d+1)·8 + NumSamples·24 bytes. Hashes sharing long
// prefixes (an adversary's) only make more depths hold big nodes, at most
// 127/BitQuantum+1 of them.
func BuildStream(cfg Config, sc StreamConfig, open func() (ElemReader, error), emit func(key, value []byte) error) (StreamStats, error) {
	st := StreamStats{MaxElems: max(sc.MaxElems, MinStreamElems(cfg))}
	if err := cfg.Validate(); err != nil {
		return st, err
	}
	sb := &streamBuilder{
		builder: builder{cfg: &cfg, points: SamplePoints(cfg.NumSamples()), emit: emit},
		max:     st.MaxElems,
		st:      &st,
	}
	if err := sb.summarise(open); err != nil {
		return st, err
	}
	if st.Elems == 0 {
		return st, nil // an empty tree is never flushed, as in Build
	}
	if err := emit(metaKey(&cfg), appendMeta(nil, &cfg)); err != nil {
		return st, err
	}
	return st, sb.emitAll(open)
}

// bigNode summarises a node holding more than MaxElems elements.
//
// Why SplitThreshold+d+1 orders are enough: Build's rule (see Build) makes
// a node created at its parent's split at order T, holding c0 elements of
// order <= T, split at the k-th smallest order in its subtree, k =
// max(SplitThreshold, c0)+1. Its children's c0 are then at most k. The
// root has c0 = 0, so by induction the node at depth d has c0 <=
// SplitThreshold+d and k <= SplitThreshold+d+1: the k-th smallest order
// and the count of orders <= T (c0) are both read off the
// SplitThreshold+d+1 smallest orders. A big node holds more than
// MinStreamElems elements, more than both, so it is internal.
type bigNode struct {
	prefix Prefix
	first  [16]byte // the hash of its first element, to test membership
	count  int
	sv     []Zp
	orders []uint64 // max-heap of the (SplitThreshold+depth+1) smallest orders
	keep   int      // that bound
}

// streamBuilder is one BuildStream.
type streamBuilder struct {
	builder
	max   int
	st    *StreamStats
	nodes []*bigNode // every big node, in pre-order (key order)
	next  int        // nodes[next] is the next big node to emit

	r       ElemReader
	peeked  bool
	peek    Elem
	atEnd   bool
	buf     []Elem // a small subtree's elements, read to be built in memory
	counted int    // elements read in the emit pass
}

// summarise is the first pass: it checks the elements as Build does and
// summarises every big node.
func (sb *streamBuilder) summarise(open func() (ElemReader, error)) (err error) {
	cfg := sb.cfg
	q := cfg.BitQuantum
	main, err := open()
	if err != nil {
		return fmt.Errorf("build: open elements: %w", err)
	}
	defer func() { err = errors.Join(err, main.Close()) }()
	ahead, err := open()
	if err != nil {
		return fmt.Errorf("build: open elements: %w", err)
	}
	defer func() { err = errors.Join(err, ahead.Close()) }()
	aheadOK := true
	for range sb.max {
		if _, aheadOK, err = ahead.Next(); err != nil || !aheadOK {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("build: read elements: %w", err)
	}
	var stack []*bigNode // the big nodes on the current element's path, root first
	var prev [16]byte
	for n := 0; ; n++ {
		e, ok, err := main.Next()
		if err != nil {
			return fmt.Errorf("build: read elements: %w", err)
		}
		if !ok {
			break
		}
		if n > 0 {
			switch c := bytes.Compare(prev[:], e.Hash[:]); {
			case c == 0:
				return fmt.Errorf("build %s: %w", hashString(e.Hash), ErrDuplicate)
			case c > 0:
				return fmt.Errorf("build: elements not sorted at %d", n)
			}
		}
		prev = e.Hash
		x := ElementFromKeyHash(e.Hash)
		for _, k := range sb.points {
			// Build's k.Sub(x).IsZero(): the Montgomery form is
			// canonical (m < p), and comparing is a third of the pass's
			// field arithmetic less.
			if k == x {
				return fmt.Errorf("build %s: %w", hashString(e.Hash), ErrSamplePoint)
			}
		}
		sb.st.Elems++
		// Leave the big nodes e is not in (the stream never comes back).
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			if commonBits(&top.first, &e.Hash) >= top.prefix.Bits() {
				break
			}
			stack = sb.closeNode(stack)
		}
		// Enter the big nodes that start at e: those holding e and the
		// element MaxElems further on.
		if aheadOK {
			var a Elem
			if a, aheadOK, err = ahead.Next(); err != nil {
				return fmt.Errorf("build: read elements: %w", err)
			}
			if aheadOK {
				common := commonBits(&e.Hash, &a.Hash)
				for d := len(stack); d*q <= common && d*q <= MaxPrefixBits; d++ {
					keep := cfg.SplitThreshold + d + 1
					bn := &bigNode{
						prefix: prefixOfHash(&e.Hash, d*q),
						first:  e.Hash,
						sv:     make([]Zp, len(sb.points)),
						orders: make([]uint64, 0, keep),
						keep:   keep,
					}
					for i := range bn.sv {
						bn.sv[i] = one
					}
					stack = append(stack, bn)
					sb.nodes = append(sb.nodes, bn)
					sb.st.Depth = max(sb.st.Depth, d+1)
				}
			}
		}
		// Each element is counted and multiplied into its deepest big
		// node only; closeNode folds a node into its parent.
		if len(stack) > 0 {
			top := stack[len(stack)-1]
			top.count++
			for j, k := range sb.points {
				top.sv[j] = top.sv[j].Mul(k.Sub(x))
			}
			top.push(e.Order)
		}
	}
	for len(stack) > 0 {
		stack = sb.closeNode(stack)
	}
	sb.st.BigNodes = len(sb.nodes)
	return nil
}

// closeNode pops the deepest big node and folds its count, svalues and
// smallest orders into its parent's.
func (sb *streamBuilder) closeNode(stack []*bigNode) []*bigNode {
	n := stack[len(stack)-1]
	stack = stack[:len(stack)-1]
	if len(stack) > 0 {
		p := stack[len(stack)-1]
		p.count += n.count
		for j := range p.sv {
			p.sv[j] = p.sv[j].Mul(n.sv[j])
		}
		for _, o := range n.orders {
			p.push(o)
		}
	}
	return stack
}

// push offers order o to the node's smallest orders.
func (n *bigNode) push(o uint64) {
	h := n.orders
	if len(h) < n.keep {
		h = append(h, o)
		for i := len(h) - 1; i > 0; { // sift up
			parent := (i - 1) / 2
			if h[parent] >= h[i] {
				break
			}
			h[parent], h[i] = h[i], h[parent]
			i = parent
		}
		n.orders = h
		return
	}
	if o >= h[0] {
		return
	}
	h[0] = o
	for i := 0; ; { // sift down
		l, m := 2*i+1, i
		if l < len(h) && h[l] > h[m] {
			m = l
		}
		if r := l + 1; r < len(h) && h[r] > h[m] {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// commonBits returns how many leading bits of the wire forms of two key
// hashes agree: MaxPrefixBits when they are equal (the 17th byte is zero
// in both).
func commonBits(a, b *[16]byte) int {
	if x := binary.BigEndian.Uint64(a[:8]) ^ binary.BigEndian.Uint64(b[:8]); x != 0 {
		return bits.LeadingZeros64(x)
	}
	if x := binary.BigEndian.Uint64(a[8:]) ^ binary.BigEndian.Uint64(b[8:]); x != 0 {
		return 64 + bits.LeadingZeros64(x)
	}
	return MaxPrefixBits
}

// emitAll is the second pass: every node in key order.
func (sb *streamBuilder) emitAll(open func() (ElemReader, error)) (err error) {
	if sb.r, err = open(); err != nil {
		return fmt.Errorf("build: open elements: %w", err)
	}
	defer func() { err = errors.Join(err, sb.r.Close()) }()
	if len(sb.nodes) == 0 {
		// At most MaxElems elements in all: Build's own path.
		if err := sb.readUnder(Prefix{}); err != nil {
			return err
		}
		if err := sb.node(Prefix{}, 0, sb.buf, 0); err != nil {
			return err
		}
	} else {
		sb.next = 1
		if err := sb.emitBig(sb.nodes[0], 0, 0); err != nil {
			return err
		}
	}
	if err := sb.fill(); err != nil {
		return err
	}
	if !sb.atEnd || sb.counted != sb.st.Elems {
		return fmt.Errorf("build: the elements changed between passes (%d read, then %d)", sb.st.Elems, sb.counted)
	}
	return nil
}

// emitBig emits big node n at depth d, created holding c0 elements, then
// its subtree: big children from their summaries, the others built in
// memory.
func (sb *streamBuilder) emitBig(n *bigNode, d, c0 int) error {
	cfg := sb.cfg
	q := cfg.BitQuantum
	k := max(cfg.SplitThreshold, c0) + 1
	if n.count <= cfg.SplitThreshold || n.count <= c0 || n.prefix.Bits()+q > MaxPrefixBits || k > len(n.orders) {
		// MinStreamElems rules this out.
		return fmt.Errorf("build: node %q of %d elements (created with %d) is not internal", n.prefix.String(), n.count, c0)
	}
	orders := slices.Clone(n.orders)
	slices.Sort(orders)
	splitAt := orders[k-1]
	nd := &node{prefix: n.prefix, count: n.count, svalues: n.sv}
	sb.key = appendNodeKey(sb.key[:0], cfg, n.prefix)
	sb.val = appendNodeValue(sb.val[:0], nd)
	if err := sb.emit(sb.key, sb.val); err != nil {
		return err
	}
	start := sb.counted
	for i := 0; i < cfg.fanout(); i++ {
		cp := n.prefix.Child(i, q)
		if sb.next < len(sb.nodes) && sb.nodes[sb.next].prefix == cp {
			child := sb.nodes[sb.next]
			sb.next++
			cc0 := 0
			for _, o := range child.orders {
				if o <= splitAt {
					cc0++
				}
			}
			if err := sb.emitBig(child, d+1, cc0); err != nil {
				return err
			}
			continue
		}
		if err := sb.readUnder(cp); err != nil {
			return err
		}
		cc0 := 0
		for j := range sb.buf {
			if sb.buf[j].Order <= splitAt {
				cc0++
			}
		}
		if err := sb.node(cp, d+1, sb.buf, cc0); err != nil {
			return err
		}
	}
	if got := sb.counted - start; got != n.count {
		return fmt.Errorf("build: node %q: %d elements, then %d (the elements changed between passes)", n.prefix.String(), n.count, got)
	}
	return nil
}

// readUnder reads into sb.buf the next elements that lie under p: the
// elements of a subtree that is not big, so at most MaxElems.
func (sb *streamBuilder) readUnder(p Prefix) error {
	sb.buf = sb.buf[:0]
	for {
		if err := sb.fill(); err != nil {
			return err
		}
		if sb.atEnd || prefixOfHash(&sb.peek.Hash, p.Bits()) != p {
			return nil
		}
		if len(sb.buf) == sb.max {
			return fmt.Errorf("build: node %q holds more than %d elements (the elements changed between passes)", p.String(), sb.max)
		}
		sb.buf = append(sb.buf, sb.peek)
		sb.peeked = false
		sb.counted++
		sb.st.MaxHeld = max(sb.st.MaxHeld, len(sb.buf))
	}
}

// fill peeks at the next element of the emit pass.
func (sb *streamBuilder) fill() error {
	if sb.peeked || sb.atEnd {
		return nil
	}
	e, ok, err := sb.r.Next()
	if err != nil {
		return fmt.Errorf("build: read elements: %w", err)
	}
	if !ok {
		sb.atEnd = true
		return nil
	}
	sb.peek, sb.peeked = e, true
	return nil
}
