package ptree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble"
)

var (
	// ErrNodeNotFound is returned by ReadNode when the walk from the root
	// reaches a leaf above the requested depth (SKS get_node_key raises
	// Not_found; spec recon.md §5.6, §8.3).
	ErrNodeNotFound = errors.New("ptree: node not found")

	// ErrCorrupt is returned when stored tree data breaks the format or the
	// tree's invariants.
	ErrCorrupt = errors.New("ptree: corrupt tree data")

	// ErrConfigMismatch is returned by Open when the store holds a tree
	// built with different parameters.
	ErrConfigMismatch = errors.New("ptree: stored tree has different parameters")
)

// Key and value layout; doc.go describes it. Append only: values are on disk.
const (
	tagMeta = 'm' // KeyPrefix ‖ 'm': tree parameters
	tagNode = 'n' // KeyPrefix ‖ 'n' ‖ one byte per level: a node

	formatV1 = 1 // leading byte of every meta and node value

	kindInternal = 0
	kindLeaf     = 1
)

// Node is a prefix-tree node as recon reads it (spec recon.md §5.2). It is
// a copy: changing it changes nothing stored.
type Node struct {
	Prefix      Prefix
	NumElements int
	SValues     []Zp // Config.NumSamples() values: Π (point_i − x) over the subtree
	IsLeaf      bool
	Elements    []Zp     // leaves only: NumElements elements in prefix (byte) order
	Children    []Prefix // internal nodes only: all 2^BitQuantum children, ascending index
}

// node is the writer's in-memory form of a node.
type node struct {
	prefix  Prefix
	count   int  // elements in the subtree; invariant for leaves: count == len(elems)
	svalues []Zp // len NumSamples
	leaf    bool
	elems   [][16]byte // leaves only: key hashes, sorted bytewise, distinct

	dirty   bool // changed since the last Flush; dirty nodes are pinned in the cache
	removed bool // discarded by a join; skipped when Flush walks the dirty list

	prev, next *node // clean-node LRU list links; nil when not on the list
}

func newEmptyLeaf(p Prefix, ns int) *node {
	sv := make([]Zp, ns)
	for i := range sv {
		sv[i] = one
	}
	return &node{prefix: p, svalues: sv, leaf: true}
}

// appendNodeKey appends the Pebble key of the node named p. p must have a
// length that is a multiple of cfg.BitQuantum.
func appendNodeKey(dst []byte, cfg *Config, p Prefix) []byte {
	dst = append(dst, cfg.KeyPrefix...)
	dst = append(dst, tagNode)
	q := cfg.BitQuantum
	for d := 0; d < p.Bits()/q; d++ {
		dst = append(dst, byte(p.digit(d, q)))
	}
	return dst
}

func metaKey(cfg *Config) []byte {
	return append(slices.Clip(cfg.KeyPrefix), tagMeta)
}

// appendMeta appends the meta value: format, bitquantum, number of
// svalues, then the split and join thresholds as uvarints.
func appendMeta(dst []byte, cfg *Config) []byte {
	dst = append(dst, formatV1, byte(cfg.BitQuantum), byte(cfg.NumSamples()))
	dst = binary.AppendUvarint(dst, uint64(cfg.SplitThreshold))
	return binary.AppendUvarint(dst, uint64(cfg.JoinThreshold))
}

// checkMeta compares a stored meta value with cfg.
func checkMeta(cfg *Config, v []byte) error {
	want := appendMeta(nil, cfg)
	if bytes.Equal(v, want) {
		return nil
	}
	if len(v) < 3 || v[0] != formatV1 {
		return fmt.Errorf("%w: meta value %x", ErrCorrupt, v)
	}
	return fmt.Errorf("%w: stored %x, configured %x (format, bitquantum, samples, split, join)", ErrConfigMismatch, v, want)
}

// appendNodeValue appends the value encoding of n (doc.go, "Node value").
func appendNodeValue(dst []byte, n *node) []byte {
	kind := byte(kindInternal)
	if n.leaf {
		kind = kindLeaf
	}
	dst = append(dst, formatV1, kind)
	dst = binary.AppendUvarint(dst, uint64(n.count))
	dst = append(dst, byte(len(n.svalues)))
	for _, s := range n.svalues {
		dst = s.AppendBytes(dst)
	}
	if n.leaf {
		for i := range n.elems {
			dst = append(dst, n.elems[i][:]...)
		}
	}
	return dst
}

func corruptf(p Prefix, format string, args ...any) error {
	return fmt.Errorf("%w: node %q: %s", ErrCorrupt, p.String(), fmt.Sprintf(format, args...))
}

// decodeNode parses a node value stored for prefix p and checks it.
func decodeNode(cfg *Config, p Prefix, v []byte) (*node, error) {
	if len(v) < 2 || v[0] != formatV1 {
		return nil, corruptf(p, "unknown format (value %d bytes)", len(v))
	}
	kind := v[1]
	if kind != kindLeaf && kind != kindInternal {
		return nil, corruptf(p, "unknown kind %d", kind)
	}
	v = v[2:]
	cnt, k := binary.Uvarint(v)
	if k <= 0 || cnt > 1<<48 || k != uvarintLen(cnt) { // minimal encoding only
		return nil, corruptf(p, "bad element count")
	}
	v = v[k:]
	ns := cfg.NumSamples()
	if len(v) < 1 || int(v[0]) != ns {
		return nil, corruptf(p, "svalue count does not match MBar %d", cfg.MBar)
	}
	v = v[1:]
	if len(v) < ns*ZpSize {
		return nil, corruptf(p, "truncated svalues")
	}
	n := &node{prefix: p, count: int(cnt), leaf: kind == kindLeaf, svalues: make([]Zp, ns)}
	for i := range n.svalues {
		z, err := ZpFromBytes(v[:ZpSize])
		if err != nil {
			return nil, corruptf(p, "svalue %d: %v", i, err)
		}
		n.svalues[i] = z
		v = v[ZpSize:]
	}
	if !n.leaf {
		if len(v) != 0 {
			return nil, corruptf(p, "%d trailing bytes after internal node", len(v))
		}
		return n, nil
	}
	if uint64(len(v)) != cnt*16 {
		return nil, corruptf(p, "leaf of %d elements has %d element bytes", cnt, len(v))
	}
	n.elems = make([][16]byte, cnt, max(int(cnt), cfg.SplitThreshold)+1) // room to grow until the split
	for i := range n.elems {
		copy(n.elems[i][:], v[16*i:])
		if i > 0 && bytes.Compare(n.elems[i-1][:], n.elems[i][:]) >= 0 {
			return nil, corruptf(p, "leaf elements out of order at %d", i)
		}
		if prefixOfHash(&n.elems[i], p.Bits()) != p {
			return nil, corruptf(p, "leaf element %x outside the prefix", n.elems[i])
		}
	}
	return n, nil
}

// uvarintLen returns the length of the minimal uvarint encoding of x.
func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// export copies n into the read-side form.
func (n *node) export(cfg *Config) *Node {
	out := &Node{
		Prefix:      n.prefix,
		NumElements: n.count,
		SValues:     slices.Clone(n.svalues),
		IsLeaf:      n.leaf,
	}
	if n.leaf {
		out.Elements = make([]Zp, len(n.elems))
		for i := range n.elems {
			out.Elements[i] = ElementFromKeyHash(n.elems[i])
		}
	} else {
		out.Children = make([]Prefix, cfg.fanout())
		for i := range out.Children {
			out.Children[i] = n.prefix.Child(i, cfg.BitQuantum)
		}
	}
	return out
}

// getValue reads key from r and returns a copy of its value, or nil and
// false if it is absent.
func getValue(r pebble.Reader, key []byte, dst []byte) ([]byte, bool, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	dst = append(dst[:0], v...)
	if err := closer.Close(); err != nil {
		return nil, false, err
	}
	return dst, true, nil
}

// ReadNode reads the node named p from r, which is normally a
// pebble.Snapshot taken after a committed Flush so that a whole recon
// session sees one consistent tree (spec recon.md §5.7). It does not see
// the writer's unflushed changes.
//
// The length of p must be a multiple of cfg.BitQuantum, otherwise ReadNode
// returns an error wrapping ErrBadPrefix. If the tree has a leaf above p,
// it returns ErrNodeNotFound, as SKS get_node_key does (spec recon.md §5.6).
// An empty store holds an empty root leaf.
func ReadNode(r pebble.Reader, cfg Config, p Prefix) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if p.Bits()%cfg.BitQuantum != 0 {
		return nil, fmt.Errorf("%w: %d bits is not a multiple of bitquantum %d", ErrBadPrefix, p.Bits(), cfg.BitQuantum)
	}
	n, err := readNode(r, &cfg, p)
	if err != nil {
		return nil, err
	}
	return n.export(&cfg), nil
}

func readNode(r pebble.Reader, cfg *Config, p Prefix) (*node, error) {
	v, ok, err := getValue(r, appendNodeKey(nil, cfg, p), nil)
	if err != nil {
		return nil, fmt.Errorf("read node %q: %w", p.String(), err)
	}
	if !ok {
		if p.Bits() == 0 {
			return newEmptyLeaf(p, cfg.NumSamples()), nil
		}
		return nil, fmt.Errorf("%w: %q", ErrNodeNotFound, p.String())
	}
	return decodeNode(cfg, p, v)
}

// ReadRoot reads the root node; see ReadNode.
func ReadRoot(r pebble.Reader, cfg Config) (*Node, error) {
	return ReadNode(r, cfg, Prefix{})
}

// Elements returns every element whose wire form starts with p, in prefix
// (byte) order, reading r as ReadNode does. Unlike ReadNode it does not
// depend on the tree's shape: p may have any length, and if p lies below a
// leaf the answer is that leaf's elements filtered to p (the lenient reply
// of spec recon.md §8.3). Recon answers ReconRqst_Full and FullElements
// with it (spec recon.md §8.1.2, §8.2).
func Elements(r pebble.Reader, cfg Config, p Prefix) ([]Zp, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	q := cfg.BitQuantum
	anc := p.truncate(p.Bits() / q * q)
	key := appendNodeKey(nil, &cfg, anc)
	lower := appendNodeKey(nil, &cfg, Prefix{})
	upper := append(slices.Clone(lower[:len(lower)-1]), tagNode+1)

	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("elements %q: %w", p.String(), err)
	}
	out, err := collectElements(it, &cfg, p, key, len(lower))
	if cerr := it.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("elements %q: %w", p.String(), err)
	}
	return out, nil
}

// collectElements does the scan for Elements. Node keys sort in pre-order
// (a node, then its subtrees in ascending child order), so the subtree of
// key is the contiguous run of keys that start with key, and if key is
// absent the greatest smaller key is the leaf that covers it.
func collectElements(it *pebble.Iterator, cfg *Config, p Prefix, key []byte, rootLen int) ([]Zp, error) {
	var out []Zp
	take := func(k, v []byte) (*node, error) {
		np, err := prefixFromNodeKey(cfg, k[rootLen:])
		if err != nil {
			return nil, err
		}
		n, err := decodeNode(cfg, np, v)
		if err != nil {
			return nil, err
		}
		whole := np.Bits() >= p.Bits() && np.truncate(p.Bits()) == p
		for i := range n.elems {
			if whole || prefixOfHash(&n.elems[i], p.Bits()) == p {
				out = append(out, ElementFromKeyHash(n.elems[i]))
			}
		}
		return n, nil
	}
	if it.SeekGE(key) && bytes.Equal(it.Key(), key) {
		for ; it.Valid() && bytes.HasPrefix(it.Key(), key); it.Next() {
			if _, err := take(it.Key(), it.Value()); err != nil {
				return nil, err
			}
		}
		return out, it.Error()
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if !it.SeekLT(key) {
		// No node at or before key: an empty store, whose root is an empty leaf.
		return nil, it.Error()
	}
	if !bytes.HasPrefix(key, it.Key()) {
		return nil, fmt.Errorf("%w: no node covers %q", ErrCorrupt, p.String())
	}
	n, err := take(it.Key(), it.Value())
	if err != nil {
		return nil, err
	}
	if !n.leaf {
		return nil, corruptf(n.prefix, "internal node without child on the way to %q", p.String())
	}
	return out, nil
}

// prefixFromNodeKey turns the per-level bytes of a node key back into the
// prefix.
func prefixFromNodeKey(cfg *Config, digits []byte) (Prefix, error) {
	var p Prefix
	if len(digits)*cfg.BitQuantum > MaxPrefixBits {
		return p, fmt.Errorf("%w: node key of %d levels", ErrCorrupt, len(digits))
	}
	for _, d := range digits {
		if int(d) >= cfg.fanout() {
			return p, fmt.Errorf("%w: node key digit %d", ErrCorrupt, d)
		}
		p = p.Child(int(d), cfg.BitQuantum)
	}
	return p, nil
}
