package testenv

import (
	"fmt"
	"net"
	"testing"
)

// TestFreePortBelowEphemeralRange: the ports are distinct, bindable, and
// never ones the kernel could give an outgoing connection.
func TestFreePortBelowEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 200 {
		p := FreePort(t)
		if p < portLow || p >= low {
			t.Fatalf("port %d outside %d..%d", p, portLow, low-1)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	// A port handed out is free: a server can bind it.
	p := FreePort(t)
	ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatalf("bind the port FreePort gave: %v", err)
	}
	defer ln.Close()
}

// TestFreePortSkipsTakenPorts: a port someone listens on is passed over.
func TestFreePortSkipsTakenPorts(t *testing.T) {
	a := &portAllocator{}
	first, err := a.next()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", first+1))
	if err != nil {
		t.Skipf("port %d taken already: %v", first+1, err)
	}
	defer ln.Close()
	second, err := a.next()
	if err != nil {
		t.Fatal(err)
	}
	if second == first+1 {
		t.Fatalf("handed out port %d while it was listened on", second)
	}
}
