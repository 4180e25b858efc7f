package recon_test

import (
	"crypto/md5"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/recon"
	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

func numberedHashes(from, to int) []pgpkey.KeyHash {
	var out []pgpkey.KeyHash
	for i := from; i < to; i++ {
		out = append(out, pgpkey.KeyHash(md5.Sum(fmt.Appendf(nil, "key %d", i))))
	}
	return out
}

// dsNode is a recon.Server on loopback serving some datasets, with the
// reports of its sessions.
type dsNode struct {
	srv   *recon.Server
	addr  netip.AddrPort
	mu    sync.Mutex
	reps  []*recon.Report
	peers []recon.Peer
}

func (n *dsNode) Peers() []recon.Peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peers
}

// nextReport waits for the report of the session after the first seen
// ones (the accepting side reports after the dialling side returns).
func (n *dsNode) nextReport(t *testing.T, seen int) *recon.Report {
	t.Helper()
	var r *recon.Report
	waitFor(t, 20*time.Second, "the accepting side's report", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		if len(n.reps) > seen {
			r = n.reps[seen]
		}
		return r != nil
	})
	return r
}

func (n *dsNode) reports() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.reps)
}

func newDSNode(t *testing.T, ds ...recon.Dataset) *dsNode {
	t.Helper()
	n := &dsNode{}
	cfg := testConfig(t)
	cfg.OnReport = func(r *recon.Report) {
		n.mu.Lock()
		n.reps = append(n.reps, r)
		n.mu.Unlock()
	}
	srv, err := recon.NewServer(cfg, ds, nil, n)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.srv, n.addr = srv, netip.MustParseAddrPort(ln.Addr().String())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(t.Context(), ln) }()
	t.Cleanup(func() { ln.Close(); <-done })
	return n
}

func (n *dsNode) member(filters string) recon.Peer {
	return recon.Peer{Name: n.addr.String(), Addrs: []netip.Addr{n.addr.Addr()}, Port: int(n.addr.Port()), Filters: filters}
}

func sksDataset(t *testing.T, hs []pgpkey.KeyHash) recon.Dataset {
	return recon.Dataset{Name: "sks", Filters: wire.DefaultFilters, Tree: buildTree(t, hs)}
}

func hpDataset(t *testing.T, hs []pgpkey.KeyHash) recon.Dataset {
	return recon.Dataset{Name: "hockeypuck", Filters: pgpkey.HockeypuckFilters, HockeypuckRules: true, Tree: buildTree(t, hs)}
}

// TestDatasetPerPeer: a node serving both datasets reconciles an SKS-only
// peer from its SKS tree and a Hockeypuck-only peer from its Hockeypuck
// tree, whichever side dials (a peer without filters in the membership is
// learned after one failed round); peers whose datasets are incompatible
// fail the Config check with SKS's and Hockeypuck's own messages.
func TestDatasetPerPeer(t *testing.T) {
	sksSet, hpSet := numberedHashes(0, 40), numberedHashes(100, 130)
	both := newDSNode(t, sksDataset(t, sksSet), hpDataset(t, hpSet))
	sksOnly := newDSNode(t, sksDataset(t, sksSet[:37]))
	hpOnly := newDSNode(t, hpDataset(t, hpSet[2:]))
	for _, n := range []*dsNode{both, sksOnly, hpOnly} {
		n.peers = []recon.Peer{both.member(""), sksOnly.member(""), hpOnly.member("")}
	}
	missing := func(rep *recon.Report) int { return len(rep.Session.Missing) }

	// The SKS peer dials: the SKS tree answers, 3 hashes missing.
	seen := both.reports()
	rep, err := sksOnly.srv.ReconcileOnce(t.Context(), both.addr.String())
	if err != nil || rep.Dataset != "sks" || missing(rep) != 3 {
		t.Fatalf("SKS peer: dataset %s, %d missing, %v; want sks, 3", rep.Dataset, missing(rep), err)
	}
	if r := both.nextReport(t, seen); r.Dataset != "sks" {
		t.Errorf("accepting side used %s", r.Dataset)
	}
	// The Hockeypuck peer dials: the Hockeypuck tree answers.
	seen = both.reports()
	rep, err = hpOnly.srv.ReconcileOnce(t.Context(), both.addr.String())
	if err != nil || rep.Dataset != "hockeypuck" || missing(rep) != 2 {
		t.Fatalf("Hockeypuck peer: dataset %s, %d missing, %v; want hockeypuck, 2", rep.Dataset, missing(rep), err)
	}
	if r := both.nextReport(t, seen); r.Dataset != "hockeypuck" || r.Err() != nil {
		t.Errorf("accepting side used %s: %v", r.Dataset, r.Err())
	}
	// We dial the Hockeypuck peer, unconfigured: the first round offers
	// SKS's filters; both sides refuse, the peer as Hockeypuck does. The
	// second round uses what the peer asked for.
	seen = hpOnly.reports()
	_, err = both.srv.ReconcileOnce(t.Context(), hpOnly.addr.String())
	var ce *recon.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("first round: %v, want a Config failure", err)
	}
	if r := hpOnly.nextReport(t, seen); !errors.As(r.Err(), &ce) || ce.Reason != "mismatched filters" {
		t.Fatalf("first round, peer: %v, want \"mismatched filters\"", r.Err())
	}
	rep, err = both.srv.ReconcileOnce(t.Context(), hpOnly.addr.String())
	if err != nil || rep.Dataset != "hockeypuck" {
		t.Fatalf("second round: dataset %s, %v", rep.Dataset, err)
	}
	// With filters=Hockeypuck's in the membership it works at once.
	both.mu.Lock()
	both.peers[2] = hpOnly.member(pgpkey.HockeypuckFilters)
	both.mu.Unlock()
	if rep, err = both.srv.ReconcileOnce(t.Context(), hpOnly.addr.String()); err != nil || rep.Dataset != "hockeypuck" {
		t.Fatalf("configured: dataset %s, %v", rep.Dataset, err)
	}

	// SKS-only and Hockeypuck-only nodes cannot peer: each side says so
	// in its own words.
	// (wait for the accepting side's reports of the three rounds above)
	hpOnly.nextReport(t, seen+2)
	seen = hpOnly.reports()
	_, err = sksOnly.srv.ReconcileOnce(t.Context(), hpOnly.addr.String())
	if !errors.As(err, &ce) || ce.ByPeer || !strings.HasPrefix(ce.Reason, "filters do not match.\n\tlocal filters: [ yminsky.dedup yminsky.merge ]\n\tremote filters: [ drop:UAT ") {
		t.Fatalf("SKS node: %v, want SKS's \"filters do not match\"", err)
	}
	r := hpOnly.nextReport(t, seen)
	if !errors.As(r.Err(), &ce) || ce.ByPeer || ce.Reason != "mismatched filters" {
		t.Fatalf("Hockeypuck node: %v, want Hockeypuck's \"mismatched filters\"", r.Err())
	}
}
