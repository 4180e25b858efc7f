package recon_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/recon"
)

// TestEndToEnd1000Keys: two grapevine nodes with 1000 generated keys, 600
// and 600 of them (200 shared), over loopback with real HKP servers. One
// ReconcileOnce makes both hold all 1000: the initiator fetches at once,
// the acceptor after its session, each from the other's /pks/hashquery.
// A second session finds nothing to fetch.
func TestEndToEnd1000Keys(t *testing.T) {
	t.Parallel()
	keys, hashes := corpusKeys(t, 1000)
	a := newNode(t, keys[:600], nil)
	b := newNode(t, keys[400:], nil)
	a.setPeers(b.peerEntry())
	b.setPeers(a.peerEntry())
	want := sortHashes(hashes)

	ctx := t.Context()
	rep, err := a.recon.ReconcileOnce(ctx, b.reconAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Role != recon.Initiator || len(rep.Session.Missing) != 400 || rep.Fetch.Added != 400 {
		t.Errorf("initiator: role %s, missing %d, added %d; want initiator, 400, 400", rep.Role, len(rep.Session.Missing), rep.Fetch.Added)
	}
	if got := a.hashes(); !equalHashes(got, want) {
		t.Errorf("initiator holds %d hashes, want %d", len(got), len(want))
	}
	waitFor(t, 30*time.Second, "acceptor to fetch", func() bool { return len(b.hashes()) == 1000 })
	if got := b.hashes(); !equalHashes(got, want) {
		t.Errorf("acceptor holds %d hashes, want the 1000", len(got))
	}
	// Events carry the peer's name and origin recon.
	ev, err := a.log.Read(a.log.LastIndex())
	if err != nil {
		t.Fatal(err)
	}
	if ev.Origin.String() != "recon" || ev.Peer != b.reconAddr.String() {
		t.Errorf("last event: origin %s, peer %q", ev.Origin, ev.Peer)
	}

	rep, err = b.recon.ReconcileOnce(ctx, a.reconAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Session.Missing) != 0 || rep.Fetch.Asked != 0 {
		t.Errorf("second session: missing %d, asked %d; want 0", len(rep.Session.Missing), rep.Fetch.Asked)
	}
}

// TestGossipConverges: three nodes gossiping every ~100 ms converge on the
// union of their keys, each skipping itself in its membership.
func TestGossipConverges(t *testing.T) {
	keys, hashes := fixtureKeys(t, "keys-a.pgp")
	kb, hb := fixtureKeys(t, "keys-b.pgp")
	kc, hc := corpusKeys(t, 20)
	fast := func(c *recon.Config) { c.GossipInterval = 100 * time.Millisecond; c.GossipJitter = 0.05 }
	nodes := []*node{newNode(t, keys, fast), newNode(t, kb, fast), newNode(t, kc, fast)}
	var all []recon.Peer
	for _, n := range nodes {
		all = append(all, n.peerEntry())
	}
	for _, n := range nodes {
		n.setPeers(all...) // includes itself: gossip must skip it
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	for _, n := range nodes {
		go func() { n.recon.Gossip(ctx); done <- struct{}{} }()
	}
	want := sortHashes(slices.Concat(hashes, hb, hc))
	waitFor(t, 60*time.Second, "gossip to converge", func() bool {
		for _, n := range nodes {
			if !equalHashes(n.hashes(), want) {
				return false
			}
		}
		return true
	})
	cancel()
	for range nodes {
		<-done
	}
	for _, n := range nodes {
		if strings.Contains(n.logs.String(), "unauthorized") {
			t.Errorf("a node refused a member")
		}
	}
}

// TestNonMemberRefused: a node accepts sessions only from its members'
// addresses; others are closed without a byte and logged.
func TestNonMemberRefused(t *testing.T) {
	ka, _ := fixtureKeys(t, "keys-a.pgp")
	a, b := newNode(t, ka, nil), newNode(t, nil, nil)
	other := b.peerEntry()
	other.Addrs[0] = other.Addrs[0].Next() // 127.0.0.2: not where a dials from
	b.setPeers(other)
	rep, err := a.recon.ReconcileOnce(t.Context(), b.reconAddr.String())
	if !errors.Is(err, recon.ErrIncomplete) || rep.Session.Remote.HTTPPort != 0 {
		t.Errorf("err %v, want the connection closed before any Config", err)
	}
	waitFor(t, 10*time.Second, "refusal to be logged", func() bool {
		return strings.Contains(b.logs.String(), "recon attempt from unauthorized host")
	})
	if len(b.hashes()) != 0 {
		t.Errorf("refused peer's keys arrived")
	}
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
