package farm

// The network: one namespace per host, each with lo and eth0 (a veth whose
// other end sits on a bridge in the switch namespace). Only `ip` creates
// and removes them; the test process itself stays in the root namespace
// and reaches a host by opening its sockets inside that host's namespace
// (setns on a locked thread, see host.dial).

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// subnet is the /24 every host's eth0 is on. It exists only inside the
// namespaces below.
const subnet = "10.213.0"

// lab is one test's set of namespaces.
type lab struct {
	t      *testing.T
	ip     string // path of the ip program
	prefix string // unique per test run: namespace names start with it
	sw     string // the switch namespace (bridge br0)
	hosts  []*host
}

// host is one namespace with an address on the switch.
type host struct {
	lab  *lab
	name string // short role name, e.g. "n1", "sks", "lb"
	ns   string // namespace name (lab.prefix + "-" + name)
	addr string // its address on eth0
	port string // the veth end on the switch side (in lab.sw)
}

// newLab creates the switch namespace. Everything it and its hosts create
// is removed at cleanup, also when the test fails.
func newLab(t *testing.T, ip string) *lab {
	t.Helper()
	// The PID names the process that owns the namespaces (should a killed
	// test leave some behind), and keeps two concurrent runs apart.
	l := &lab{t: t, ip: ip, prefix: fmt.Sprintf("gvf%d", os.Getpid())}
	l.sw = l.prefix + "-sw"
	l.addNS(l.sw)
	l.must("-n", l.sw, "link", "set", "lo", "up")
	l.must("-n", l.sw, "link", "add", "br0", "type", "bridge")
	l.must("-n", l.sw, "link", "set", "br0", "up")
	return l
}

// addNS creates a namespace and registers its deletion. Deleting a
// namespace destroys the veth ends in it, and with them their peers.
func (l *lab) addNS(ns string) {
	l.t.Helper()
	l.must("netns", "add", ns)
	l.t.Cleanup(func() {
		if out, err := exec.Command(l.ip, "netns", "del", ns).CombinedOutput(); err != nil {
			l.t.Errorf("ip netns del %s: %v %s", ns, err, out)
		}
	})
}

// must runs ip with args and fails the test on error.
func (l *lab) must(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(l.ip, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// addHost creates a host namespace with lo up and eth0 = subnet.octet/24
// plugged into the switch.
func (l *lab) addHost(name string, octet int) *host {
	l.t.Helper()
	h := &host{lab: l, name: name, ns: l.prefix + "-" + name, addr: fmt.Sprintf("%s.%d", subnet, octet), port: fmt.Sprintf("p%d", octet)}
	l.addNS(h.ns)
	l.must("-n", h.ns, "link", "set", "lo", "up")
	// Created inside the switch namespace with its peer moved straight into
	// the host's: the root namespace never sees either end.
	l.must("-n", l.sw, "link", "add", h.port, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
	l.must("-n", l.sw, "link", "set", h.port, "master", "br0")
	l.must("-n", l.sw, "link", "set", h.port, "up")
	l.must("-n", h.ns, "addr", "add", h.addr+"/24", "dev", "eth0")
	l.must("-n", h.ns, "link", "set", "eth0", "up")
	l.hosts = append(l.hosts, h)
	return h
}

// cut takes the host's switch port down: the host keeps its address but no
// packet reaches it or leaves it. heal brings the port back.
func (h *host) cut()  { h.lab.must("-n", h.lab.sw, "link", "set", h.port, "down") }
func (h *host) heal() { h.lab.must("-n", h.lab.sw, "link", "set", h.port, "up") }

// command returns a command that runs prog inside the host's namespace.
// `ip netns exec` execs prog after setns, so the command's PID is prog's.
func (h *host) command(prog string, args ...string) *exec.Cmd {
	return exec.Command(h.lab.ip, append([]string{"netns", "exec", h.ns, prog}, args...)...)
}

// dial opens a TCP connection from inside the host's namespace: the socket
// is created on a thread that has entered the namespace and then belongs
// to it for good, whichever thread later reads or writes it.
func (h *host) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + h.ns)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("enter %s: %w", h.ns, err)}
			return
		}
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		// A thread that cannot go back stays locked: Go ends it with this
		// goroutine instead of reusing it in the wrong namespace.
		if setns(self) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

func setns(f *os.File) error {
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

// client is an HTTP client whose connections start in the host's
// namespace. Keep-alives are off so that every request is a new connection
// (and nginx's balancing is seen per request).
func (h *host) client() *http.Client {
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			DialContext:       h.dial,
			DisableKeepAlives: true,
		},
	}
}

// get fetches url from inside the host and returns the status and body.
func (h *host) get(url string) (int, []byte, http.Header, error) {
	resp, err := h.client().Get(url)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), resp.Header, err
}

// post sends body to url from inside the host.
func (h *host) post(url, contentType string, body []byte) (int, []byte, http.Header, error) {
	resp, err := h.client().Post(url, contentType, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), resp.Header, err
}
