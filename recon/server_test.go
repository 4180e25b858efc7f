package recon_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/grapevine-keyserver/grapevine/recon"
)

// addrConn gives a net.Pipe end a TCP remote address, as an accepted
// connection has.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

func tcpAddr(s string) *net.TCPAddr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

// TestGossipSchedule: gossip picks a random member that is not ourselves,
// every GossipInterval ± 5 % after the previous attempt ended, and the
// picked member's Server accepts it (membership by IP).
func TestGossipSchedule(t *testing.T) {
	rng := rand.New(rand.NewPCG(30, 30))
	shared := randomHashes(rng, 300)
	treeA, treeB := buildTree(t, shared), buildTree(t, shared)
	synctest.Test(t, func(t *testing.T) {
		self := netip.MustParseAddrPort("10.0.0.1:11370")
		peerB := recon.Peer{Name: "b.example:11370", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, Port: 11370}
		cfgA := testConfig(t)
		cfgA.SelfAddrs = []netip.AddrPort{self}
		a, err := recon.New(cfgA, treeA, nil, nil, recon.StaticMembers{
			{Name: "a.example:11370", Addrs: []netip.Addr{self.Addr()}, Port: 11370}, // ourselves
			peerB,
		})
		if err != nil {
			t.Fatal(err)
		}
		b, err := recon.New(testConfig(t), treeB, nil, nil, recon.StaticMembers{
			{Name: "a.example:11370", Addrs: []netip.Addr{self.Addr()}, Port: 11370},
		})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var dials []time.Time
		var wg sync.WaitGroup
		a.SetDial(func(ctx context.Context, addr string) (net.Conn, error) {
			if addr != "10.0.0.2:11370" {
				t.Errorf("gossip dialled %s", addr)
			}
			mu.Lock()
			dials = append(dials, time.Now())
			mu.Unlock()
			ours, theirs := net.Pipe()
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := b.ServeConn(t.Context(), addrConn{theirs, tcpAddr("10.0.0.1:40000")}); err != nil {
					t.Errorf("b: %v", err)
				}
			}()
			return addrConn{ours, tcpAddr(addr)}, nil
		})
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
		defer cancel()
		a.Gossip(ctx)
		wg.Wait()
		if len(dials) < 18 || len(dials) > 22 {
			t.Fatalf("%d gossip attempts in 20 minutes, want about 20", len(dials))
		}
		start := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) // synctest's epoch
		prev := start
		for i, d := range dials {
			gap := d.Sub(prev)
			if gap < 57*time.Second || gap > 63*time.Second+time.Second {
				t.Errorf("attempt %d came %v after the previous one", i, gap)
			}
			prev = d
		}
	})
}

// TestServeConnBusyAndMembership: a connection from a non-member is closed
// without a byte; one beyond MaxConcurrentSessions is closed at once.
func TestServeConnBusyAndMembership(t *testing.T) {
	tree := buildTree(t, nil)
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t)
		cfg.MaxConcurrentSessions = 1
		s, err := recon.New(cfg, tree, nil, nil, recon.StaticMembers{{Name: "m", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.7")}, Port: 11370}})
		if err != nil {
			t.Fatal(err)
		}
		// Not a member: closed, nothing written.
		ours, theirs := net.Pipe()
		go func() {
			if _, err := s.ServeConn(t.Context(), addrConn{ours, tcpAddr("192.0.2.8:1234")}); !errors.Is(err, recon.ErrNotMember) {
				t.Errorf("non-member: %v", err)
			}
		}()
		if n, err := theirs.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Errorf("non-member read %d bytes, %v", n, err)
		}
		// A member (IPv4-mapped, any port) whose session stalls holds the
		// only slot; the next connection is refused at once.
		stalled, stalledPeer := net.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := s.ServeConn(t.Context(), addrConn{stalled, tcpAddr("[::ffff:192.0.2.7]:5555")})
			done <- err
		}()
		stalledPeer.Read(make([]byte, 130)) // our Config arrives: the session runs
		ours, theirs = net.Pipe()
		if _, err := s.ServeConn(t.Context(), addrConn{ours, tcpAddr("192.0.2.7:6666")}); !errors.Is(err, recon.ErrBusy) {
			t.Errorf("second session: %v, want ErrBusy", err)
		}
		theirs.Close()
		if err := <-done; !errors.Is(err, recon.ErrIncomplete) {
			t.Errorf("stalled session: %v, want ErrIncomplete after the Config timeout", err)
		}
		stalledPeer.Close()
	})
}
