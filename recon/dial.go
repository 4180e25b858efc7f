package recon

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// sourceDialer returns a dial function that binds each outgoing connection
// to the source address of the target's family, when one is configured.
func sourceDialer(timeout time.Duration, sources []netip.Addr) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: timeout}
		if src, ok := sourceFor(sources, addr); ok {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice(), Zone: src.Zone()}
		}
		return d.DialContext(ctx, network, addr)
	}
}

// sourceFor picks the source address of addr's family ("ip:port").
func sourceFor(sources []netip.Addr, addr string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.Addr{}, false
	}
	v4 := ap.Addr().Unmap().Is4()
	for _, s := range sources {
		if s.IsValid() && s.Unmap().Is4() == v4 {
			return s, true
		}
	}
	return netip.Addr{}, false
}
