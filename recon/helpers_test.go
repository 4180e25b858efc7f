package recon_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/projections/ptree"
	"github.com/grapevine-keyserver/grapevine/recon"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// testConfig returns a Config with short timeouts and a test logger.
func testConfig(tb testing.TB) recon.Config {
	cfg := recon.DefaultConfig()
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.InfoLevel)
	cfg.ConfigTimeout = 10 * time.Second
	cfg.ReadTimeout = 30 * time.Second
	cfg.WriteTimeout = 30 * time.Second
	cfg.SessionTimeout = time.Minute
	cfg.DialTimeout = 5 * time.Second
	cfg.FetchTimeout = 20 * time.Second
	cfg.ApplyWait = 20 * time.Second
	cfg.Seed = 1
	return cfg
}

// sksConfig is testConfig with SKS 1.1.6's exact session behaviour.
func sksConfig(tb testing.TB) recon.Config {
	cfg := testConfig(tb)
	cfg.MaxMessageElements = 0
	return cfg
}

// memTree is a prefix tree built by the real ptree.Tree, copied into memory
// so that sessions can read it inside a synctest bubble (Pebble's own
// goroutines must stay outside the bubble).
type memTree struct {
	nodes map[ptree.Prefix]*ptree.Node
	elems []ptree.Zp // all elements, sorted by wire bytes
	cfg   ptree.Config
}

// treeOpts shapes a test tree: thresholds, and hashes inserted and later
// deleted (splits then joins give another shape for the same set).
type treeOpts struct {
	split, join int
	churn       []pgpkey.KeyHash
}

func buildTree(tb testing.TB, hashes []pgpkey.KeyHash) *memTree {
	return buildTreeOpts(tb, hashes, treeOpts{})
}

func buildTreeOpts(tb testing.TB, hashes []pgpkey.KeyHash, o treeOpts) *memTree {
	tb.Helper()
	cfg := ptree.DefaultConfig()
	if o.split > 0 {
		cfg.SplitThreshold, cfg.JoinThreshold = o.split, o.join
	}
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	tr, err := ptree.Open(db, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	commit := func() {
		b := db.NewBatch()
		if err := tr.Flush(b); err != nil {
			tb.Fatal(err)
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			tb.Fatal(err)
		}
	}
	for i, h := range slices.Concat(hashes, o.churn) {
		if err := tr.Insert(h); err != nil {
			tb.Fatalf("insert %x: %v", h, err)
		}
		if i%20000 == 19999 {
			commit()
		}
	}
	commit()
	for _, h := range o.churn {
		if err := tr.Delete(h); err != nil {
			tb.Fatal(err)
		}
	}
	commit()
	snap := db.NewSnapshot()
	defer snap.Close()
	mt := &memTree{nodes: make(map[ptree.Prefix]*ptree.Node), cfg: cfg}
	var walk func(p ptree.Prefix)
	walk = func(p ptree.Prefix) {
		n, err := ptree.ReadNode(snap, cfg, p)
		if err != nil {
			tb.Fatalf("read node %q: %v", p, err)
		}
		mt.nodes[p] = n
		if n.IsLeaf {
			mt.elems = append(mt.elems, n.Elements...)
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(ptree.Prefix{})
	slices.SortFunc(mt.elems, func(a, b ptree.Zp) int { return bytes.Compare(a.Bytes(), b.Bytes()) })
	if len(mt.elems) != len(hashes) {
		tb.Fatalf("tree holds %d elements, inserted %d", len(mt.elems), len(hashes))
	}
	return mt
}

func (t *memTree) Snapshot() (recon.View, error) { return memView{t}, nil }

type memView struct{ t *memTree }

func (v memView) Node(p ptree.Prefix) (*ptree.Node, error) {
	if p.Bits()%v.t.cfg.BitQuantum != 0 {
		return nil, fmt.Errorf("%w: %q", ptree.ErrBadPrefix, p)
	}
	if n, ok := v.t.nodes[p]; ok {
		return n, nil
	}
	return nil, fmt.Errorf("%w: %q", ptree.ErrNodeNotFound, p)
}

// Elements walks down from the root to p, or to the leaf above it, and
// collects the subtree's elements under p, as ptree.Elements does.
func (v memView) Elements(p ptree.Prefix) ([]ptree.Zp, error) {
	n := v.t.nodes[ptree.Prefix{}]
	q := v.t.cfg.BitQuantum
	for d := 0; !n.IsLeaf && (d+1)*q <= p.Bits(); d++ {
		idx := 0
		for i := range q {
			idx = idx<<1 | p.Bit(d*q+i)
		}
		n = v.t.nodes[n.Children[idx]]
	}
	var out []ptree.Zp
	var collect func(n *ptree.Node)
	collect = func(n *ptree.Node) {
		if n.IsLeaf {
			for _, z := range n.Elements {
				if p.Matches(z) {
					out = append(out, z)
				}
			}
			return
		}
		for _, c := range n.Children {
			collect(v.t.nodes[c])
		}
	}
	collect(n)
	return out, nil
}

func (v memView) Close() error { return nil }

// randomHashes returns n distinct random key hashes.
func randomHashes(rng *rand.Rand, n int) []pgpkey.KeyHash {
	seen := make(map[pgpkey.KeyHash]bool, n)
	out := make([]pgpkey.KeyHash, 0, n)
	for len(out) < n {
		var h pgpkey.KeyHash
		for i := range h {
			h[i] = byte(rng.Uint32())
		}
		if seen[h] {
			continue
		}
		seen[h] = true
		out = append(out, h)
	}
	return out
}

// sortHashes sorts bytewise, as Result.Missing is.
func sortHashes(hs []pgpkey.KeyHash) []pgpkey.KeyHash {
	hs = slices.Clone(hs)
	slices.SortFunc(hs, func(a, b pgpkey.KeyHash) int { return bytes.Compare(a[:], b[:]) })
	return hs
}

// minus returns a \ b.
func minus(a, b []pgpkey.KeyHash) []pgpkey.KeyHash {
	in := make(map[pgpkey.KeyHash]bool, len(b))
	for _, h := range b {
		in[h] = true
	}
	var out []pgpkey.KeyHash
	for _, h := range a {
		if !in[h] {
			out = append(out, h)
		}
	}
	return sortHashes(out)
}

// pairResult is what both ends of a session returned.
type pairResult struct {
	acc, ini       *recon.Result
	accErr, iniErr error
}

// runPair runs a session between an acceptor and an initiator over
// net.Pipe and returns both results. Call it inside synctest.Test.
func runPair(ctx context.Context, accCfg recon.Config, accTree recon.Tree, iniCfg recon.Config, iniTree recon.Tree) pairResult {
	a, b := net.Pipe()
	var pr pairResult
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		v, _ := accTree.Snapshot()
		defer v.Close()
		s := &recon.Session{Role: recon.Acceptor, Config: accCfg, View: v}
		pr.acc, pr.accErr = s.Run(ctx, a)
	}()
	go func() {
		defer wg.Done()
		v, _ := iniTree.Snapshot()
		defer v.Close()
		s := &recon.Session{Role: recon.Initiator, Config: iniCfg, View: v}
		pr.ini, pr.iniErr = s.Run(ctx, b)
	}()
	wg.Wait()
	return pr
}

func equalHashes(a, b []pgpkey.KeyHash) bool {
	return slices.Equal(a, b)
}

func describeHashes(hs []pgpkey.KeyHash) string {
	if len(hs) > 8 {
		return fmt.Sprintf("%d hashes (%s ...)", len(hs), hs[0])
	}
	s := make([]string, len(hs))
	for i, h := range hs {
		s[i] = h.String()
	}
	return fmt.Sprintf("%d hashes [%s]", len(hs), strings.Join(s, " "))
}

func readShared(tb testing.TB, rel string) []byte {
	tb.Helper()
	b, err := os.ReadFile(testenv.SharedFile(tb, rel))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// sharedFileOrNil returns a shared file's bytes, or nil when it is absent:
// fuzz seeds use it, since the fixture tests already report a missing
// shared directory.
func sharedFileOrNil(tb testing.TB, rel string) []byte {
	dir := os.Getenv("GRAPEVINE_SHARED")
	if dir == "" {
		dir = filepath.Join(filepath.Dir(testenv.RepoRoot(tb)), "shared")
	}
	b, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		return nil
	}
	return b
}

// hashesFromTSV reads the sks_hash column of a fixture TSV. If file is not
// empty, only rows whose first column equals it are taken.
func hashesFromTSV(tb testing.TB, rel, column, file string) []pgpkey.KeyHash {
	tb.Helper()
	lines := strings.Split(strings.TrimSpace(string(readShared(tb, rel))), "\n")
	hdr := strings.Split(lines[0], "\t")
	col, fcol := slices.Index(hdr, column), slices.Index(hdr, "file")
	if col < 0 {
		tb.Fatalf("%s: no column %q", rel, column)
	}
	var out []pgpkey.KeyHash
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if file != "" && f[fcol] != file {
			continue
		}
		h, err := pgpkey.ParseKeyHash(f[col])
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, h)
	}
	return out
}
