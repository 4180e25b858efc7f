package recon

import (
	"github.com/cockroachdb/pebble"

	"github.com/grapevine-keyserver/grapevine/projections/ptree"
)

// Tree gives sessions a stable view of the local prefix tree. Each session
// takes one Snapshot and reads only from it, so the sizes and svalues it
// sends describe one tree (spec recon.md §5.7).
type Tree interface {
	Snapshot() (View, error)
}

// View is a read-only, unchanging view of the prefix tree. A session uses
// it from one goroutine and closes it at the end.
type View interface {
	// Node returns the node named p. It returns an error wrapping
	// ptree.ErrNodeNotFound when the tree has a leaf above p (SKS
	// get_node_key, spec recon.md §5.6).
	Node(p ptree.Prefix) (*ptree.Node, error)
	// Elements returns every element whose wire form starts with p,
	// whatever the tree's shape (p may lie below a leaf).
	Elements(p ptree.Prefix) ([]ptree.Zp, error)
	Close() error
}

// PebbleTree returns the Tree stored in db under cfg, the prefix tree the
// projection runner maintains (projections.Store.DB and PtreeConfig).
// Snapshots are Pebble snapshots: the runner's commits write the tree and
// its applied index atomically, so every snapshot holds a whole tree.
func PebbleTree(db *pebble.DB, cfg ptree.Config) Tree {
	return &pebbleTree{db: db, cfg: cfg}
}

type pebbleTree struct {
	db  *pebble.DB
	cfg ptree.Config
}

func (t *pebbleTree) Snapshot() (View, error) {
	return &pebbleView{snap: t.db.NewSnapshot(), cfg: t.cfg}, nil
}

// PtreeConfig lets New check the tree's parameters against Config.
func (t *pebbleTree) PtreeConfig() ptree.Config { return t.cfg }

type pebbleView struct {
	snap *pebble.Snapshot
	cfg  ptree.Config
}

func (v *pebbleView) Node(p ptree.Prefix) (*ptree.Node, error) {
	return ptree.ReadNode(v.snap, v.cfg, p)
}

func (v *pebbleView) Elements(p ptree.Prefix) ([]ptree.Zp, error) {
	return ptree.Elements(v.snap, v.cfg, p)
}

func (v *pebbleView) Close() error { return v.snap.Close() }
