package recon_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/projections/ptree"
	"github.com/grapevine-keyserver/grapevine/recon"
	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// node is a whole grapevine on loopback: log, projections with the runner
// following the log, a real HKP server and a recon server, like
// `grapevine serve`.
type node struct {
	t         *testing.T
	log       *eventlog.Log
	store     *projections.Store
	recon     *recon.Server
	hkpAddr   netip.AddrPort
	reconAddr netip.AddrPort
	logs      *syncBuffer

	mu    sync.Mutex
	peers []recon.Peer
}

// syncBuffer collects log lines for assertions.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newNode starts a node holding keys (binary, one key each).
func newNode(t *testing.T, keys [][]byte, mutate func(*recon.Config)) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{t: t, logs: &syncBuffer{}}
	logger := zerolog.New(zerolog.MultiLevelWriter(zerolog.NewTestWriter(t), n.logs)).Level(zerolog.InfoLevel)
	lcfg := eventlog.DefaultConfig()
	lcfg.Logger = logger
	lcfg.NoSync = true
	var err error
	if n.log, err = eventlog.Open(filepath.Join(dir, "log"), lcfg); err != nil {
		t.Fatal(err)
	}
	scfg := projections.DefaultConfig()
	scfg.Logger = logger.Level(zerolog.WarnLevel)
	scfg.Log = n.log
	if n.store, err = projections.Open(filepath.Join(dir, "db"), scfg); err != nil {
		t.Fatal(err)
	}
	n.load(keys)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); n.store.Follow(ctx, n.log) }()

	hln := listen(t)
	hcfg := hkp.DefaultConfig()
	hcfg.Logger = logger.Level(zerolog.WarnLevel)
	hsrv, err := hkp.New(hcfg, n.store, n.log, nil)
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); hsrv.Serve(ctx, hln) }()
	n.hkpAddr = netip.MustParseAddrPort(hln.Addr().String())

	rln := listen(t)
	n.reconAddr = netip.MustParseAddrPort(rln.Addr().String())
	cfg := testConfig(t)
	cfg.Logger = logger
	cfg.HTTPPort = int(n.hkpAddr.Port())
	if mutate != nil {
		mutate(&cfg)
	}
	if n.recon, err = recon.New(cfg, recon.PebbleTree(n.store.DB(), n.store.PtreeConfig()), n.store, n.log, recon.MembersFunc(n.members)); err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); n.recon.Serve(ctx, rln) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		n.store.Close()
		n.log.Close()
	})
	return n
}

func listen(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func (n *node) members() []recon.Peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peers
}

func (n *node) setPeers(peers ...recon.Peer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.peers = peers
}

// peerEntry is how another node lists n in its membership.
func (n *node) peerEntry() recon.Peer {
	return recon.Peer{Name: n.reconAddr.String(), Addrs: []netip.Addr{n.reconAddr.Addr()}, Port: int(n.reconAddr.Port())}
}

// load appends keys as imports and applies them.
func (n *node) load(keys [][]byte) {
	n.t.Helper()
	if len(keys) == 0 {
		return
	}
	evs := make([]*eventlog.Event, len(keys))
	for i, k := range keys {
		evs[i] = &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginImport, Peer: "test", Key: k}
	}
	if _, err := n.log.Append(context.Background(), evs...); err != nil {
		n.t.Fatal(err)
	}
	if _, err := n.store.CatchUp(context.Background(), n.log, nil); err != nil {
		n.t.Fatal(err)
	}
}

// add appends keys while the runner follows the log, and waits until
// they are applied.
func (n *node) add(keys [][]byte) {
	n.t.Helper()
	evs := make([]*eventlog.Event, len(keys))
	for i, k := range keys {
		evs[i] = &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Key: k}
	}
	idx, err := n.log.Append(context.Background(), evs...)
	if err != nil {
		n.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.store.WaitApplied(ctx, idx); err != nil {
		n.t.Fatal(err)
	}
}

// hashes returns every hash in the node's prefix tree, sorted.
func (n *node) hashes() []pgpkey.KeyHash {
	n.t.Helper()
	snap := n.store.DB().NewSnapshot()
	defer snap.Close()
	els, err := ptree.Elements(snap, n.store.PtreeConfig(), ptree.Prefix{})
	if err != nil {
		n.t.Fatal(err)
	}
	out := make([]pgpkey.KeyHash, len(els))
	for i, z := range els {
		h, ok := z.KeyHash()
		if !ok {
			n.t.Fatalf("element %s is no key hash", z)
		}
		out[i] = h
	}
	return sortHashes(out)
}

// splitKeys splits a binary key stream into one byte slice per key, and
// returns their SKS hashes too.
func splitKeys(tb testing.TB, data []byte) ([][]byte, []pgpkey.KeyHash) {
	tb.Helper()
	r := pgpkey.NewReader(bytes.NewReader(data))
	var keys [][]byte
	var hashes []pgpkey.KeyHash
	for {
		raw, err := r.Next()
		if err == io.EOF {
			return keys, hashes
		}
		if err != nil {
			tb.Fatal(err)
		}
		k, err := pgpkey.ParseKey(raw)
		if err != nil {
			tb.Fatal(err)
		}
		keys = append(keys, raw.Raw)
		hashes = append(hashes, k.Hash())
	}
}

func fixtureKeys(tb testing.TB, name string) ([][]byte, []pgpkey.KeyHash) {
	return splitKeys(tb, readShared(tb, "fixtures/sks/test-keys/"+name))
}

func debianKeys(tb testing.TB) ([][]byte, []pgpkey.KeyHash) {
	tb.Helper()
	b, err := os.ReadFile(testenv.RequireFile(tb, "/usr/share/keyrings/debian-keyring.gpg", "debian-keyring"))
	if err != nil {
		tb.Fatal(err)
	}
	return splitKeys(tb, b)
}

var (
	corpusOnce   sync.Once
	corpusData   []byte
	corpusErr    error
	corpusNeeded = 1000
)

// corpusKeys returns n generated keys (n <= 1000), the same on every run.
func corpusKeys(tb testing.TB, n int) ([][]byte, []pgpkey.KeyHash) {
	tb.Helper()
	corpusOnce.Do(func() {
		var buf bytes.Buffer
		_, corpusErr = corpus.Generate(context.Background(), &buf, corpus.Options{N: corpusNeeded, Seed: 42, RSAPoolSize: 2})
		corpusData = buf.Bytes()
	})
	if corpusErr != nil {
		tb.Fatal(corpusErr)
	}
	keys, hashes := splitKeys(tb, corpusData)
	return keys[:n], hashes[:n]
}
