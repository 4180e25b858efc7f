// Package ptree owns the SKS prefix tree ("ptree") of the key hashes of the
// stored keys, and the finite-field mathematics that set reconciliation
// runs on it (spec recon.md §3, §5, §6).
//
// It has three parts:
//
//   - Zp, the field F_p with p = 530512889551602322505127520352579437339,
//     held as three 64-bit limbs in Montgomery form, so the hot path does no
//     big-integer arithmetic. ElementFromKeyHash maps a KeyHash (keyhash.md
//     §5) to its element; Bytes and ZpFromBytes are the 17-byte wire form.
//   - Tree, the projection's writer, and ReadNode, ReadRoot and Elements,
//     the readers recon uses on a pebble.Snapshot. Build writes the whole
//     tree of a sorted set at once, as inserting it in order would (the
//     bulk path into an empty store); BuildStream does the same reading
//     the set from a source three times, with bounded memory.
//   - Interpolate, Factor and Reconcile: pure functions that decode the
//     difference between two nodes from their svalues (SKS decode.ml).
//
// # Use
//
// The projection runner owns one Tree and applies events in log order:
//
//	tr, err := ptree.Open(db, cfg)              // cfg from ptree.DefaultConfig()
//	…
//	err = tr.Insert(keyHash)                    // a key was stored
//	err = tr.Delete(oldHash)                    // a key version was replaced
//	b := db.NewBatch()
//	err = tr.Flush(b)                           // every node changed since the last Flush
//	b.Set(appliedIndexKey, …)                   // same batch: tree and index commit together
//	if err := b.Commit(pebble.Sync); err != nil {
//		tr.Reset()                              // forget the changes; reread the store
//	}
//
// A recon session takes a snapshot after a commit and reads only from it,
// so the svalues and sizes it sends all describe one tree (spec recon.md
// §5.7):
//
//	snap := db.NewSnapshot()
//	root, err := ptree.ReadRoot(snap, cfg)
//	n, err := ptree.ReadNode(snap, cfg, prefix)  // ErrNodeNotFound below a leaf
//	els, err := ptree.Elements(snap, cfg, prefix)
//	localOnly, remoteOnly, err := ptree.Reconcile(n.SValues, remoteSamples,
//		n.NumElements, remoteSize, ptree.SamplePoints(cfg.NumSamples()))
//	// errors.Is(err, ptree.ErrLowMBar): answer FullElements or SyncFail
//
// Tree is not safe for concurrent use. The readers and the mathematics are
// stateless and safe for concurrent use.
//
// # Pebble layout
//
// All keys start with Config.KeyPrefix (written KP below). Format version 1:
//
//	KP ‖ 'm'              meta: the tree's parameters
//	KP ‖ 'n' ‖ d₀ d₁ … dₖ₋₁  the node at depth k: dᵢ is the child index
//	                      (0 … 2^BitQuantum−1) taken at depth i, one byte
//	                      per level; the root is KP ‖ 'n'
//
// Node keys sort in pre-order: a node, then the subtrees of its children in
// ascending child order. So a subtree is the run of keys that start with its
// root's key, and if a node is absent, the greatest smaller key is the leaf
// above it. Elements uses both facts to answer with one iterator.
//
// Meta value:
//
//	offset size
//	0      1    format = 1
//	1      1    BitQuantum
//	2      1    number of svalues (MBar+1)
//	3      var  SplitThreshold, uvarint
//	…      var  JoinThreshold, uvarint
//
// Open fails with ErrConfigMismatch if it differs from the Config. It is
// written with the first Flush that changes anything.
//
// Node value:
//
//	offset size
//	0      1    format = 1
//	1      1    kind: 0 internal, 1 leaf
//	2      var  NumElements, uvarint
//	…      1    s = number of svalues (MBar+1)
//	…      17·s svalues in sample-point order, each the 17-byte wire form
//	…      16·n leaves only: the n = NumElements key hashes, ascending bytewise
//
// Internal nodes store no child list: all 2^BitQuantum children exist
// (spec recon.md §5.2). Leaf elements are stored as the 16 key-hash bytes,
// which are the first 16 bytes of the element's wire form; the 17th is
// always zero. Decoding checks the length, the order, that each element lies
// under the node's prefix, and that each svalue is below p; failures wrap
// ErrCorrupt. An empty store is an empty tree: its root is an empty leaf
// with all svalues 1.
//
// This layout is grapevine's own; SKS's PTree Berkeley DB files
// (prefixTree.ml marshal_node) cannot be read, and need not be: the tree is
// rebuilt from the key database, as SKS pbuild does (spec recon.md §13).
//
// # Compatibility
//
// Everything a peer can observe follows SKS 1.1.6:
//
//   - Element mapping and bit order (spec recon.md §3.2, §5.3): the digest
//     read little-endian is the element; the tree partitions by the wire
//     form's bits MSB-first, and child index bits are MSB-first, as SKS
//     PrefixTree.string_index. conflux numbers children LSB-first; that only
//     changes its internal order, not prefixes.
//   - Split and join (spec recon.md §5.4, §5.5): a leaf splits when it goes
//     above 50 elements, into 4 leaves that are not split further even if
//     one holds 51; an internal node on a delete path that drops to 25 or
//     fewer becomes a leaf. Counts and svalues therefore match any peer's
//     tree with the same set (the key property of §5.2), while leaf/internal
//     status depends on history, as in SKS.
//   - Deviation: SKS multiplies the svalues along the path before it notices
//     a duplicate insert or a missing delete, and is left corrupt. Insert
//     and Delete here check first and leave the tree unchanged, returning
//     ErrDuplicate or ErrMissing.
//   - ReadNode follows SKS get_node_key: ErrNodeNotFound when a leaf is
//     reached above the requested depth, and an error for a prefix whose
//     length is not a multiple of BitQuantum (spec recon.md §5.6). conflux
//     instead returns the deepest ancestor. Elements is shape-independent
//     and filters to the prefix, the lenient answer of spec recon.md §8.3.
//   - Decoding (spec recon.md §6): Interpolate solves SKS's linear system
//     with free variables set to zero and fails on an inconsistent row, then
//     divides out the gcd; Reconcile holds back the last sample point for the
//     check, requires both polynomials to split into distinct linear factors
//     (SKS factor_check) and reports every failure as ErrLowMBar, as SKS
//     reports Low_mbar. It also rejects a decode with more local-only or
//     remote-only elements than the node holds, which SKS does not check.
package ptree
