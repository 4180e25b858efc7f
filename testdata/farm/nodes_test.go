package farm

// The programs on the hosts: grapevine nodes (the binary built from this
// checkout), a real SKS 1.1.6 through shared/tools/sks-peer, and nginx.
// Each is started inside its host's namespace, its PID kept, and exactly
// that PID ended at cleanup.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// Every host is its own machine, so every node uses the standard ports.
const (
	hkpPort     = 11371
	reconPort   = 11370
	metricsPort = 9100 // grapevine_metrics_address, on the host's loopback
	lbPort      = 11371
)

// buildGrapevine builds cmd/grapevine into a temporary directory.
func buildGrapevine(t *testing.T) string {
	t.Helper()
	goBin := testenv.RequireProgram(t, "go")
	out := filepath.Join(t.TempDir(), "grapevine")
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/grapevine")
	cmd.Dir = testenv.RepoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/grapevine: %v\n%s", err, b)
	}
	return out
}

// proc is a started program whose PID we own.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, valid after done is closed
}

func startProc(t *testing.T, cmd *exec.Cmd, logPath string) *proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.done) }()
	return p
}

// stop sends sig to the process and waits; SIGKILL after 10 s.
func (p *proc) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// node is one grapevine keyserver on its own host.
type node struct {
	t    *testing.T
	bin  string
	host *host
	dir  string // basedir
	conf string // extra sksconf lines
	proc *proc
}

// newNode writes the node's sksconf: HKP on its address and on its
// loopback (where the test looks at it directly, even while its link is
// cut), recon on its address, metrics on its loopback.
func newNode(t *testing.T, bin string, h *host, proxy *host, extraConf ...string) *node {
	t.Helper()
	n := &node{t: t, bin: bin, host: h, dir: filepath.Join(t.TempDir(), h.name)}
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := []string{
		"# written by the farm test: one node of a farm, on its own namespace",
		"hostname: " + h.addr,
		"nodename: " + h.name,
		"stdoutlog:", // the log goes to serve.log, whose tail a failure shows
		"hkp_address: " + h.addr + " 127.0.0.1",
		fmt.Sprintf("hkp_port: %d", hkpPort),
		"recon_address: " + h.addr,
		fmt.Sprintf("recon_port: %d", reconPort),
		fmt.Sprintf("grapevine_metrics_address: 127.0.0.1:%d", metricsPort),
		// nginx's address: the rate limit counts the client nginx names
		// in X-Forwarded-For, not nginx itself.
		"grapevine_trusted_proxies: " + proxy.addr,
		// Bounds the connect of a gossip round too (recon dials within
		// min(30 s, this)): a peer behind a cut link holds up this node's
		// gossip for 5 s at most, as docs/scale-out.md advises.
		"reconciliation_config_timeout: 5",
	}
	conf = append(conf, extraConf...)
	if err := os.WriteFile(filepath.Join(n.dir, "sksconf"), []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n.setPeers()
	return n
}

// setPeers writes the membership file: "IP PORT" of every peer.
func (n *node) setPeers(peers ...*host) {
	n.t.Helper()
	writeMembership(n.t, filepath.Join(n.dir, "membership"), peers)
}

func writeMembership(t *testing.T, path string, peers []*host) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# farm peers\n")
	for _, p := range peers {
		fmt.Fprintf(&b, "%s %d # %s\n", p.addr, reconPort, p.name)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	// SKS and grapevine notice an edit by the mtime, which SKS compares in
	// whole seconds: make sure it moves even for two writes in one second.
	future := time.Now().Add(time.Second)
	os.Chtimes(path, future, future)
}

// start runs `grapevine serve` in the node's namespace and waits until it
// answers HKP.
func (n *node) start() {
	n.t.Helper()
	cmd := n.host.command(n.bin, "serve", "--basedir", n.dir)
	n.proc = startProc(n.t, cmd, filepath.Join(n.dir, "serve.log"))
	p := n.proc
	n.t.Cleanup(func() { p.stop(syscall.SIGTERM) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _, _, err := n.host.get(n.local("/pks/health")); err == nil && code == 200 {
			return
		}
		if p.exited() {
			n.t.Fatalf("%s: grapevine serve exited: %v\n%s", n.host.name, p.err, n.logTail())
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: grapevine serve did not answer\n%s", n.host.name, n.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the daemon with SIGKILL: no shutdown at all.
func (n *node) kill() { n.proc.stop(syscall.SIGKILL) }

// signal sends sig (e.g. SIGHUP) to the running daemon.
func (n *node) signal(sig syscall.Signal) { n.proc.cmd.Process.Signal(sig) }

// local is a URL of the node's HKP on its own loopback.
func (n *node) local(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", hkpPort, path)
}

// has reports whether the node serves the key (asked on its loopback).
func (n *node) has(fpr string) bool {
	code, _, _, err := n.host.get(n.local("/pks/lookup?op=get&options=mr&search=0x" + fpr))
	return err == nil && code == 200
}

// metric sums the node's Prometheus samples of name whose labels include
// every `k="v"` in labels.
func (n *node) metric(name string, labels ...string) float64 {
	n.t.Helper()
	code, body, _, err := n.host.get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil || code != 200 {
		n.t.Fatalf("%s: /metrics: %d %v", n.host.name, code, err)
	}
	return sumMetric(body, name, labels...)
}

func sumMetric(body []byte, name string, labels ...string) float64 {
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// run runs a grapevine subcommand against the node's basedir (from the
// root namespace: while the daemon serves, the command talks to it over
// the unix socket in the basedir, which no network namespace separates).
func (n *node) run(args ...string) string {
	n.t.Helper()
	cmd := exec.Command(n.bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		n.t.Fatalf("%s: grapevine %s: %v\n%s%s", n.host.name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// gossipInterval returns the gossip interval the daemon says it uses (its
// "recon listening" log line; zerolog writes durations in milliseconds).
func (n *node) gossipInterval() time.Duration {
	n.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "serve.log"))
	if err != nil {
		n.t.Fatal(err)
	}
	var got time.Duration
	for _, line := range bytes.Split(b, []byte("\n")) {
		var e struct {
			Message        string  `json:"message"`
			GossipInterval float64 `json:"gossip_interval"`
		}
		if json.Unmarshal(line, &e) == nil && e.Message == "recon listening" {
			got = time.Duration(e.GossipInterval * float64(time.Millisecond))
		}
	}
	if got == 0 {
		n.t.Fatalf("%s: no \"recon listening\" line with a gossip_interval\n%s", n.host.name, n.logTail())
	}
	return got
}

func (n *node) logTail() string { return tail(filepath.Join(n.dir, "serve.log"), 30) }

func tail(path string, lines int) string {
	b, _ := os.ReadFile(path)
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return "---- " + path + ":\n" + strings.Join(l, "\n")
}

// sks is a real SKS 1.1.6 on its own host.
type sks struct {
	t    *testing.T
	tool string
	host *host
	dir  string
}

// startSKS starts SKS through sks-peer inside the host's namespace with
// keys, listening on the host's address. sks-peer takes only loopback
// addresses (its own safety rule), so it gets 127.0.0.1 — the namespace's
// own loopback — and extra sksconf lines that make SKS listen on the
// host's address too (SKS takes a list, sks.8) and bind its outgoing recon
// and hashquery connections to that address (recon_address comes first).
func startSKS(t *testing.T, h *host, gossipMinutes string, keys ...string) *sks {
	t.Helper()
	tool := testenv.SharedFile(t, "tools/sks-peer")
	testenv.RequireProgram(t, "sks")
	// Short absolute path: SKS's unix sockets live under it.
	base, err := os.MkdirTemp("", "gvf-sks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	s := &sks{t: t, tool: tool, host: h, dir: filepath.Join(base, "s")}
	args := []string{"start", "--dir", s.dir, "--addr", "127.0.0.1",
		"--hkp-port", strconv.Itoa(hkpPort), "--recon-port", strconv.Itoa(reconPort),
		"--gossip-interval", gossipMinutes, "--no-install",
		"--conf", "hkp_address: " + h.addr + " 127.0.0.1",
		"--conf", "recon_address: " + h.addr,
	}
	for _, k := range keys {
		args = append(args, "--keys", k)
	}
	cmd := h.command(tool, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	// sks-peer stop ends exactly the two PIDs it recorded in DIR/pids.
	t.Cleanup(func() { exec.Command(tool, "stop", "--dir", s.dir).Run() })
	if err != nil {
		t.Fatalf("sks-peer start in %s: %v\n%s%s", h.ns, err, out, stderr.String())
	}
	return s
}

// setPeers rewrites SKS's membership; SKS re-reads it when its mtime
// changes (checked before each gossip).
func (s *sks) setPeers(peers ...*host) {
	s.t.Helper()
	writeMembership(s.t, filepath.Join(s.dir, "etc/sks/membership"), peers)
}

// has reports whether SKS serves the key (asked on its host's loopback).
func (s *sks) has(fpr string) bool {
	code, _, _, err := s.host.get(fmt.Sprintf("http://127.0.0.1:%d/pks/lookup?op=get&options=mr&search=0x%s", hkpPort, fpr))
	return err == nil && code == 200
}

// balancer is nginx on its own host, spreading /pks over the nodes.
type balancer struct {
	host *host
	dir  string
}

// nginxConf is the farm's balancer configuration; docs/scale-out.md quotes
// it. %[1]s is the working directory, %[2]s the listen address, %[3]s the
// upstream server lines.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
  access_log %[1]s/access.log;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;

  upstream grapevine {
%[3]s
  }
  server {
    listen %[2]s;
    client_max_body_size 8m;
    location /pks {
      proxy_pass http://grapevine;
      # A node that is down or cut off: fail over quickly to the next one.
      # Connection errors are retried even for POST /pks/add, since the
      # request never reached the dead node.
      proxy_connect_timeout 1s;
      proxy_next_upstream error timeout;
      proxy_pass_header Server;
      proxy_ignore_client_abort on;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      add_header X-Upstream $upstream_addr always;
    }
  }
}
`

func startBalancer(t *testing.T, h *host, nodes []*node) *balancer {
	t.Helper()
	nginx := testenv.RequireProgram(t, "nginx")
	b := &balancer{host: h, dir: t.TempDir()}
	var servers strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&servers, "    server %s:%d max_fails=1 fail_timeout=5s;\n", n.host.addr, hkpPort)
	}
	conf := fmt.Sprintf(nginxConf, b.dir, fmt.Sprintf("%s:%d", h.addr, lbPort), strings.TrimRight(servers.String(), "\n"))
	path := filepath.Join(b.dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, h.command(nginx, "-p", b.dir, "-c", path, "-e", filepath.Join(b.dir, "error.log")), filepath.Join(b.dir, "nginx.out"))
	t.Cleanup(func() { p.stop(syscall.SIGQUIT) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := h.dial(t.Context(), "tcp", fmt.Sprintf("%s:%d", h.addr, lbPort))
		if err == nil {
			c.Close()
			return b
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("nginx did not start: %v\n%s\n%s", err, tail(filepath.Join(b.dir, "nginx.out"), 20), tail(filepath.Join(b.dir, "error.log"), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// url is a URL on the balancer.
func (b *balancer) url(path string) string {
	return fmt.Sprintf("http://%s:%d%s", b.host.addr, lbPort, path)
}
