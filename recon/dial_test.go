package recon

import (
	"net/netip"
	"testing"
)

func TestSourceForPicksTheTargetsFamily(t *testing.T) {
	srcs := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("::1")}
	for _, c := range []struct{ target, want string }{
		{"127.0.0.9:11370", "127.0.0.2"},
		{"[::1]:11370", "::1"},
		{"[::ffff:127.0.0.9]:11370", "127.0.0.2"},
	} {
		got, ok := sourceFor(srcs, c.target)
		if !ok || got.String() != c.want {
			t.Errorf("sourceFor(%s) = %v, %v; want %s", c.target, got, ok, c.want)
		}
	}
	if _, ok := sourceFor(srcs[:1], "[::1]:11370"); ok {
		t.Error("an IPv6 target got an IPv4 source")
	}
}
