package recon

import (
	"net/netip"
	"slices"
)

// Peer is one recon partner from the membership (spec recon.md §10).
type Peer struct {
	// Name identifies the peer in logs and in the Peer field of the events
	// of the keys fetched from it: "host:port" as the membership file
	// names it.
	Name string
	// Addrs are the IP addresses the peer's host resolved to. Incoming
	// connections are accepted from any of them, whatever the source
	// port (SKS membership.ml test); gossip dials one of them at random.
	Addrs []netip.Addr
	// Port is the peer's recon port.
	Port int
	// Filters, when not empty, replaces Config.Filters in the Config we
	// send this peer and in the check of its Config (spec recon.md §4.3:
	// Hockeypuck >= 2.2 needs its own string).
	Filters string
	// HTTPPort, when not 0, replaces Config.HTTPPort in the Config we send
	// this peer.
	HTTPPort int
}

// Members supplies the current membership. Peers is called for every
// incoming connection and every gossip round, so the caller can re-read
// the membership file and re-resolve names (spec recon.md §10.3) without
// restarting anything. It must be safe for concurrent use and should not
// block: resolve names ahead of time.
type Members interface {
	Peers() []Peer
}

// MembersFunc adapts a function to Members.
type MembersFunc func() []Peer

// Peers calls f.
func (f MembersFunc) Peers() []Peer { return f() }

// StaticMembers is a fixed membership.
type StaticMembers []Peer

// Peers returns m.
func (m StaticMembers) Peers() []Peer { return m }

// memberFor returns the member with address ip, compared without zone and
// with IPv4-mapped IPv6 addresses unmapped (a Go listener on "::" reports
// IPv4 callers as ::ffff:a.b.c.d; spec recon.md §10.3). Like SKS it looks
// at the IP only. If several members share the IP, nothing tells them
// apart: the first one's overrides are used, and the peer is named by the
// IP alone.
func memberFor(peers []Peer, ip netip.Addr) (Peer, bool) {
	ip = ip.Unmap().WithZone("")
	var found Peer
	n := 0
	for _, p := range peers {
		if slices.ContainsFunc(p.Addrs, func(a netip.Addr) bool { return a.Unmap().WithZone("") == ip }) {
			if n == 0 {
				found = p
			}
			n++
		}
	}
	if n > 1 {
		found.Name = ip.String()
	}
	return found, n > 0
}

// isSelf reports whether addr is one of our own recon addresses. An
// unspecified self address (a listener on 0.0.0.0 or ::) stands for every
// loopback address and every address in others.
func isSelf(self []netip.AddrPort, addr netip.AddrPort) bool {
	ip := addr.Addr().Unmap().WithZone("")
	for _, s := range self {
		if s.Port() != addr.Port() {
			continue
		}
		sip := s.Addr().Unmap().WithZone("")
		if sip == ip || (sip.IsUnspecified() && (ip.IsLoopback() || slices.ContainsFunc(self, func(o netip.AddrPort) bool {
			return o.Addr().Unmap().WithZone("") == ip
		}))) {
			return true
		}
	}
	return false
}
