package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// SKS is a real SKS 1.1.6 started by ../shared/tools/sks-peer.
type SKS struct {
	Dir       string
	HKPPort   int
	ReconPort int
	HKPURL    string
	Info      map[string]string // the KEY=VALUE lines sks-peer printed
	tool      string
}

// SKSOptions are sks-peer start flags.
type SKSOptions struct {
	Keys     []string // --keys files or directories
	Peers    []string // --peer HOST:PORT
	NoGossip bool
	Extra    []string // further raw flags, e.g. "--gossip-interval", "0.02"
}

// StartSKS starts a real SKS on loopback and stops it (by the PIDs it
// recorded) at cleanup. It skips locally / fails under CI=true when sks or
// the tool is missing.
func StartSKS(tb testing.TB, opt SKSOptions) *SKS {
	tb.Helper()
	tool := SharedFile(tb, "tools/sks-peer")
	RequireProgram(tb, "sks")
	// sks-peer wants a short absolute path (unix sockets under it).
	dir, err := os.MkdirTemp("", "gv-sks-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	dir += "/s"
	s := &SKS{Dir: dir, HKPPort: FreePort(tb), ReconPort: FreePort(tb), tool: tool}
	args := []string{"start", "--dir", dir, "--hkp-port", fmt.Sprint(s.HKPPort), "--recon-port", fmt.Sprint(s.ReconPort), "--no-install"}
	for _, k := range opt.Keys {
		args = append(args, "--keys", k)
	}
	for _, p := range opt.Peers {
		args = append(args, "--peer", p)
	}
	if opt.NoGossip {
		args = append(args, "--no-gossip")
	}
	args = append(args, opt.Extra...)
	cmd := exec.Command(tool, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	tb.Cleanup(func() { exec.Command(tool, "stop", "--dir", dir).Run() })
	if err != nil {
		tb.Fatalf("sks-peer start: %v\n%s%s", err, out, stderr.String())
	}
	s.Info = make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		for _, f := range strings.Fields(sc.Text()) {
			if k, v, ok := strings.Cut(f, "="); ok {
				s.Info[k] = v
			}
		}
	}
	s.HKPURL = fmt.Sprintf("http://127.0.0.1:%d", s.HKPPort)
	return s
}

// Run runs another sks-peer sub-command (sync, count, wait-count, peers)
// on this server and returns its stdout.
func (s *SKS) Run(tb testing.TB, sub string, args ...string) string {
	tb.Helper()
	cmd := exec.Command(s.tool, append([]string{sub, "--dir", s.Dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("sks-peer %s: %v\n%s%s", sub, err, out, stderr.String())
	}
	return string(out)
}
