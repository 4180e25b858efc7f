package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// FreePort returns a loopback TCP port that was free a moment ago, for a
// server that a test starts with its port in a configuration file (SKS,
// nginx, grapevine's sksconf).
//
// The port is taken below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range, 32768 and up by default), never from a
// listener on port 0: a port the kernel picked that way and that was then
// closed can be given to the next outgoing connection — of this test or
// of any other test binary that `go test ./...` runs at the same time —
// before the server meant for it binds it, and the server then fails with
// "bind: address already in use". A CI run lost 30 minutes to that.
//
// Ports are handed out in turn from a random start, so that the test
// binaries running at once seldom try the same ones, and never twice in
// one process.
func FreePort(tb testing.TB) int {
	tb.Helper()
	p, err := ports.next()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// portLow is the lowest port FreePort hands out. A port in use (say a
// keyserver on 11371) fails the probe and is skipped.
const portLow = 10000

type portAllocator struct {
	mu     sync.Mutex
	cursor int // the next port to try
	high   int // the first port not handed out: the ephemeral range's start
}

// ports is the process's one allocator: uniqueness within a process is
// what it is for.
var ports portAllocator

func (a *portAllocator) next() (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.high == 0 {
		a.high = ephemeralLow()
		a.cursor = portLow + rand.IntN(a.high-portLow)
	}
	for tries := 0; tries < a.high-portLow; tries++ {
		p := a.cursor
		a.cursor++
		if a.cursor >= a.high {
			a.cursor = portLow // a very long run: ports handed out long ago are free again
		}
		ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // someone else's
		}
		ln.Close()
		return p, nil
	}
	return 0, fmt.Errorf("testenv: no free TCP port on 127.0.0.1 in %d..%d", portLow, a.high-1)
}

// ephemeralLow is the first port of the kernel's ephemeral range, 32768
// where it cannot be read (or is implausibly low).
func ephemeralLow() int {
	const fallback = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallback
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return fallback
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil || low < portLow+1000 {
		return fallback
	}
	return low
}
