package ptree

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble"
)

var (
	// ErrDuplicate is returned by Insert for a key hash that is already in
	// the tree (SKS fails with "attempt to reinsert", spec recon.md §5.4).
	ErrDuplicate = errors.New("ptree: element already present")

	// ErrMissing is returned by Delete for a key hash that is not in the
	// tree (SKS fails with "attempt to delete non-existant element",
	// spec recon.md §5.5).
	ErrMissing = errors.New("ptree: element not present")

	// ErrSamplePoint is returned by Insert for an element equal to a sample
	// point (SKS "Sample point added to set", spec recon.md §3.3). Only the
	// key hashes that read as 0, 1 or 2 can cause it.
	ErrSamplePoint = errors.New("ptree: element equals a sample point")
)

// Tree is the writer's view of the prefix tree (spec recon.md §5): nodes
// read from a Pebble store on demand, cached, changed in memory by Insert
// and Delete, and written back by Flush into the caller's batch.
//
// A Tree is not safe for concurrent use; the projection runner owns it.
// Readers use ReadNode, ReadRoot and Elements on a pebble.Snapshot instead.
//
// The tree never changes the store itself. Between two Flush calls the
// store holds the tree as of the earlier Flush, and the cache holds every
// node changed since.
type Tree struct {
	r      pebble.Reader
	cfg    Config
	points []Zp

	// root is nil until the first use after Open or Reset loads it.
	root       *node
	metaStored bool // the store (or an unflushed batch from Flush) has the meta key

	nodes   map[Prefix]*node    // every cached node, dirty or clean
	lru     node                // sentinel of the clean-node list: lru.next is the most recent
	dirty   []*node             // nodes changed since the last Flush, in order of first change
	deleted map[Prefix]struct{} // nodes discarded by joins since the last Flush

	// Scratch space reused by every operation.
	marray  []Zp
	scratch []Zp
	path    []*node
	keyBuf  []byte
	valBuf  []byte
}

// Open returns the tree stored in r under cfg.KeyPrefix. r must be the
// store that the batches written by Flush are committed to (normally the
// *pebble.DB), since the tree reads nodes it has not cached from it. An
// empty store holds an empty tree.
//
// Open validates cfg, checks it against the parameters stored with the tree
// (ErrConfigMismatch) and reads the root.
func Open(r pebble.Reader, cfg Config) (*Tree, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.KeyPrefix = slices.Clone(cfg.KeyPrefix)
	t := &Tree{
		r:       r,
		cfg:     cfg,
		points:  SamplePoints(cfg.NumSamples()),
		nodes:   make(map[Prefix]*node),
		deleted: make(map[Prefix]struct{}),
		marray:  make([]Zp, cfg.NumSamples()),
		scratch: make([]Zp, cfg.NumSamples()),
	}
	t.lru.next, t.lru.prev = &t.lru, &t.lru
	if err := t.load(); err != nil {
		return nil, err
	}
	return t, nil
}

// Config returns the tree's configuration.
func (t *Tree) Config() Config {
	c := t.cfg
	c.KeyPrefix = slices.Clone(c.KeyPrefix)
	return c
}

// load checks the stored parameters and reads the root, if not done since
// Open or Reset.
func (t *Tree) load() error {
	if t.root != nil {
		return nil
	}
	v, ok, err := getValue(t.r, metaKey(&t.cfg), t.valBuf)
	if err != nil {
		return fmt.Errorf("read ptree meta: %w", err)
	}
	if ok {
		if err := checkMeta(&t.cfg, v); err != nil {
			return err
		}
	}
	root, err := readNode(t.r, &t.cfg, Prefix{})
	if err != nil {
		return err
	}
	t.metaStored = ok
	t.root = root
	t.nodes[Prefix{}] = root // the root is never on the LRU list, so never evicted
	return nil
}

// NumElements returns the number of elements in the tree, including
// changes not yet flushed. It returns -1 if the root cannot be read (only
// possible after Reset); the next Insert, Delete or Flush returns the error.
func (t *Tree) NumElements() int {
	if err := t.load(); err != nil {
		return -1
	}
	return t.root.count
}

// Insert adds the element of key hash h (spec recon.md §3.2, §5.4). It
// returns ErrDuplicate if h is already present and ErrSamplePoint for the
// three hashes that map to a sample point; the tree is unchanged then.
func (t *Tree) Insert(h [16]byte) error {
	if err := t.load(); err != nil {
		return err
	}
	x := ElementFromKeyHash(h)
	for i, k := range t.points {
		t.marray[i] = k.Sub(x)
		if t.marray[i].IsZero() {
			return fmt.Errorf("insert %s: %w", hashString(h), ErrSamplePoint)
		}
	}
	leaf, pos, found, err := t.walk(&h)
	if err != nil {
		return fmt.Errorf("insert %s: %w", hashString(h), err)
	}
	if found {
		return fmt.Errorf("insert %s: %w", hashString(h), ErrDuplicate)
	}
	split := leaf.count+1 > t.cfg.SplitThreshold && leaf.prefix.Bits()+t.cfg.BitQuantum <= MaxPrefixBits
	if split {
		for i := 0; i < t.cfg.fanout(); i++ {
			if p := leaf.prefix.Child(i, t.cfg.BitQuantum); t.nodes[p] != nil {
				return fmt.Errorf("insert %s: %w", hashString(h), corruptf(p, "child of a leaf is cached"))
			}
		}
	}
	// Nothing has changed yet, so every failure above leaves the tree as it
	// was (SKS changes the svalues before it notices a duplicate).
	for _, n := range t.path {
		mulInto(n.svalues, t.marray)
		n.count++
		t.markDirty(n)
	}
	leaf.elems = slices.Insert(leaf.elems, pos, h)
	if split {
		t.split(leaf, len(t.path)-1)
	}
	t.evict()
	return nil
}

// Delete removes the element of key hash h (spec recon.md §5.5). It
// returns ErrMissing if h is not present; the tree is unchanged then, and
// also after any other error.
func (t *Tree) Delete(h [16]byte) error {
	if err := t.load(); err != nil {
		return err
	}
	leaf, pos, found, err := t.walk(&h)
	if err != nil {
		return fmt.Errorf("delete %s: %w", hashString(h), err)
	}
	if !found {
		return fmt.Errorf("delete %s: %w", hashString(h), ErrMissing)
	}
	// The first internal node on the path that drops to JoinThreshold
	// becomes a leaf; read its subtree before changing anything, so that a
	// read error leaves the tree as it was.
	path := t.path
	var joined [][16]byte
	var below []*node
	for i, n := range path {
		if !n.leaf && n.count-1 <= t.cfg.JoinThreshold {
			if joined, below, err = t.subtree(n, &h); err != nil {
				return fmt.Errorf("delete %s: %w", hashString(h), err)
			}
			path = path[:i+1]
			break
		}
	}
	x := ElementFromKeyHash(h)
	for i, k := range t.points {
		t.marray[i] = k.Sub(x) // never zero: Insert refuses sample points
	}
	invertBatch(t.marray, t.scratch)
	for _, n := range path {
		mulInto(n.svalues, t.marray)
		n.count--
		t.markDirty(n)
	}
	if n := path[len(path)-1]; !n.leaf {
		// Join (SKS delete_at_depth): n keeps its svalues and count, which
		// already cover exactly the remaining elements.
		for _, c := range below {
			t.forget(c)
			t.deleted[c.prefix] = struct{}{}
		}
		n.leaf = true
		n.elems = joined
	} else {
		leaf.elems = slices.Delete(leaf.elems, pos, pos+1)
	}
	t.evict()
	return nil
}

// walk fills t.path with the nodes from the root to the leaf on h's path
// and reports where h is or would go in that leaf.
func (t *Tree) walk(h *[16]byte) (leaf *node, pos int, found bool, err error) {
	t.path = append(t.path[:0], t.root)
	n := t.root
	for d := 0; !n.leaf; d++ {
		if n, err = t.child(n, hashDigit(h, d, t.cfg.BitQuantum)); err != nil {
			return nil, 0, false, err
		}
		t.path = append(t.path, n)
	}
	if n.count != len(n.elems) {
		return nil, 0, false, corruptf(n.prefix, "leaf counts %d elements but holds %d", n.count, len(n.elems))
	}
	pos, found = slices.BinarySearchFunc(n.elems, *h, func(a, b [16]byte) int {
		return bytes.Compare(a[:], b[:])
	})
	return n, pos, found, nil
}

// child returns child i of the internal node n, from the cache or the
// store.
func (t *Tree) child(n *node, i int) (*node, error) {
	p := n.prefix.Child(i, t.cfg.BitQuantum)
	if c, ok := t.nodes[p]; ok {
		if !c.dirty {
			t.lruUnlink(c)
			t.lruPushFront(c)
		}
		return c, nil
	}
	if _, gone := t.deleted[p]; gone {
		return nil, corruptf(p, "node discarded by a join is still referenced")
	}
	t.keyBuf = appendNodeKey(t.keyBuf[:0], &t.cfg, p)
	v, ok, err := getValue(t.r, t.keyBuf, t.valBuf)
	t.valBuf = v[:0]
	if err != nil {
		return nil, fmt.Errorf("read node %q: %w", p.String(), err)
	}
	if !ok {
		return nil, corruptf(n.prefix, "child %d of internal node is missing", i)
	}
	c, err := decodeNode(&t.cfg, p, v)
	if err != nil {
		return nil, err
	}
	t.nodes[p] = c
	t.lruPushFront(c)
	return c, nil
}

// split turns the leaf n at the given depth into an internal node with
// 2^q new leaf children, exactly as SKS split_at_depth: the elements are
// distributed by their digit at this depth and the children are not split
// further, even if one holds more than SplitThreshold elements.
//
// Insert does not split a leaf at MaxPrefixBits, which 51 distinct 128-bit
// hashes can never reach; it would stay an oversized leaf.
func (t *Tree) split(n *node, depth int) {
	q := t.cfg.BitQuantum
	children := make([]*node, t.cfg.fanout())
	for i := range children {
		c := newEmptyLeaf(n.prefix.Child(i, q), len(t.points))
		c.elems = make([][16]byte, 0, t.cfg.SplitThreshold+1)
		children[i] = c
	}
	for i := range n.elems {
		c := children[hashDigit(&n.elems[i], depth, q)]
		x := ElementFromKeyHash(n.elems[i])
		for j, k := range t.points {
			c.svalues[j] = c.svalues[j].Mul(k.Sub(x))
		}
		c.elems = append(c.elems, n.elems[i]) // stays sorted: n.elems is sorted
		c.count++
	}
	for _, c := range children {
		t.nodes[c.prefix] = c
		t.markDirty(c)
	}
	n.leaf = false
	n.elems = nil
}

// subtree returns the elements below the internal node n except h, sorted,
// and the nodes below n, reading them from the cache or the store.
func (t *Tree) subtree(n *node, h *[16]byte) ([][16]byte, []*node, error) {
	var elems [][16]byte
	var below []*node
	var collect func(m *node) error
	collect = func(m *node) error {
		if m.leaf {
			elems = append(elems, m.elems...)
			return nil
		}
		for i := 0; i < t.cfg.fanout(); i++ {
			c, err := t.child(m, i)
			if err != nil {
				return err
			}
			below = append(below, c)
			if err := collect(c); err != nil {
				return err
			}
		}
		return nil
	}
	if err := collect(n); err != nil {
		return nil, nil, err
	}
	slices.SortFunc(elems, func(a, b [16]byte) int { return bytes.Compare(a[:], b[:]) })
	pos, found := slices.BinarySearchFunc(elems, *h, func(a, b [16]byte) int { return bytes.Compare(a[:], b[:]) })
	if !found {
		return nil, nil, corruptf(n.prefix, "subtree lacks element %s", hashString(*h))
	}
	elems = slices.Delete(elems, pos, pos+1)
	if len(elems) != n.count-1 {
		return nil, nil, corruptf(n.prefix, "node counts %d elements but its subtree holds %d", n.count, len(elems)+1)
	}
	return elems, below, nil
}

// markDirty pins n in the cache until the next Flush.
func (t *Tree) markDirty(n *node) {
	if n.dirty {
		return
	}
	t.lruUnlink(n)
	n.dirty = true
	t.dirty = append(t.dirty, n)
}

// forget drops n from the cache.
func (t *Tree) forget(n *node) {
	if t.nodes[n.prefix] == n {
		delete(t.nodes, n.prefix)
	}
	t.lruUnlink(n)
	n.removed = true
}

func (t *Tree) lruPushFront(n *node) {
	n.prev, n.next = &t.lru, t.lru.next
	n.next.prev = n
	t.lru.next = n
}

func (t *Tree) lruUnlink(n *node) {
	if n.prev == nil {
		return
	}
	n.prev.next, n.next.prev = n.next, n.prev
	n.prev, n.next = nil, nil
}

// evict drops least recently used clean nodes while the cache is over
// MaxCachedNodes. Dirty nodes and the root are never on the list.
func (t *Tree) evict() {
	if t.cfg.MaxCachedNodes == 0 {
		return
	}
	for len(t.nodes) > t.cfg.MaxCachedNodes && t.lru.prev != &t.lru {
		t.forget(t.lru.prev)
	}
}

// Flush writes every node changed since the last Flush into w, deletes the
// nodes discarded by joins, and then treats the cache as clean. w is the
// projection's batch, which also records the applied log index, so the
// tree and that index commit atomically.
//
// After Flush the caller must commit w before the next Insert or Delete,
// because the tree reads evicted nodes back from the store. If the commit
// fails, or Flush returns an error, the caller must call Reset.
func (t *Tree) Flush(w pebble.Writer) error {
	if len(t.dirty) == 0 && len(t.deleted) == 0 {
		return nil // nothing changed; also the case after Reset
	}
	// The options are ignored by a *pebble.Batch, which is what callers
	// pass; durability comes from the caller's commit.
	if !t.metaStored {
		if err := w.Set(metaKey(&t.cfg), appendMeta(t.valBuf[:0], &t.cfg), pebble.NoSync); err != nil {
			return fmt.Errorf("write ptree meta: %w", err)
		}
		t.metaStored = true
	}
	for p := range t.deleted {
		if _, live := t.nodes[p]; live {
			continue // discarded, then created again by a later split
		}
		t.keyBuf = appendNodeKey(t.keyBuf[:0], &t.cfg, p)
		if err := w.Delete(t.keyBuf, pebble.NoSync); err != nil {
			return fmt.Errorf("delete node %q: %w", p.String(), err)
		}
	}
	for _, n := range t.dirty {
		if n.removed {
			continue
		}
		t.keyBuf = appendNodeKey(t.keyBuf[:0], &t.cfg, n.prefix)
		t.valBuf = appendNodeValue(t.valBuf[:0], n)
		if err := w.Set(t.keyBuf, t.valBuf, pebble.NoSync); err != nil {
			return fmt.Errorf("write node %q: %w", n.prefix.String(), err)
		}
		n.dirty = false
		if n != t.root {
			t.lruPushFront(n)
		}
	}
	clear(t.dirty)
	t.dirty = t.dirty[:0]
	clear(t.deleted)
	t.evict()
	return nil
}

// Reset drops the cache and every change since the last Flush; the tree
// reads the store again on next use. Call it when the batch given to Flush
// was not committed.
func (t *Tree) Reset() {
	t.root = nil
	t.metaStored = false
	clear(t.nodes)
	for n := t.lru.next; n != &t.lru; {
		next := n.next
		n.prev, n.next = nil, nil
		n = next
	}
	t.lru.next, t.lru.prev = &t.lru, &t.lru
	clear(t.dirty)
	t.dirty = t.dirty[:0]
	clear(t.deleted)
	clear(t.path)
}

// mulInto multiplies sv[i] by m[i].
func mulInto(sv, m []Zp) {
	for i := range sv {
		sv[i] = sv[i].Mul(m[i])
	}
}

// hashString prints a key hash as SKS does: 32 uppercase hex digits.
func hashString(h [16]byte) string {
	var b [32]byte
	hex.Encode(b[:], h[:])
	return string(bytes.ToUpper(b[:]))
}
