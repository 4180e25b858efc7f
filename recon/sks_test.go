package recon_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/recon"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// sksPeer is a real SKS 1.1.6 on loopback, run by shared/tools/sks-peer
// (see its sks-peer.md).
type sksPeer struct {
	t         *testing.T
	tool, dir string
	hkpPort   int
	reconPort int
}

// startSKS starts SKS holding the keys in files (none: empty), with peers
// in its membership, never gossiping by itself (sks-peer sync makes it).
func startSKS(t *testing.T, files []string, peers ...netip.AddrPort) *sksPeer {
	t.Helper()
	testenv.RequireProgram(t, "sks")
	s := &sksPeer{t: t, tool: testenv.SharedFile(t, "tools/sks-peer")}
	// SKS's unix sockets live under the directory: keep its path short.
	dir, err := os.MkdirTemp("", "gvsks")
	if err != nil {
		t.Fatal(err)
	}
	s.dir = filepath.Join(dir, "s")
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"recon.log", "db.log"} {
				if b, err := os.ReadFile(filepath.Join(s.dir, f)); err == nil {
					t.Logf("SKS %s (tail):\n%s", f, tail(string(b), 3000))
				}
			}
		}
		exec.Command(s.tool, "stop", "--dir", s.dir).Run()
		os.RemoveAll(dir)
	})
	for attempt := 0; ; attempt++ {
		s.hkpPort, s.reconPort = testenv.FreePort(t), testenv.FreePort(t)
		args := []string{"start", "--dir", s.dir, "--hkp-port", strconv.Itoa(s.hkpPort), "--recon-port", strconv.Itoa(s.reconPort), "--no-gossip", "--no-install", "--debuglevel", "4"}
		for _, f := range files {
			args = append(args, "--keys", f)
		}
		for _, p := range peers {
			args = append(args, "--peer", p.String())
		}
		start := time.Now()
		out, err := exec.Command(s.tool, args...).CombinedOutput()
		if err == nil {
			t.Logf("SKS started in %v: %s", time.Since(start).Round(time.Millisecond), lastLine(string(out)))
			return s
		}
		if attempt < 2 && strings.Contains(string(out), "already in use") {
			os.RemoveAll(s.dir)
			continue
		}
		t.Fatalf("sks-peer start: %v\n%s", err, out)
	}
}

func (s *sksPeer) reconAddr() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(s.reconPort))
}

// peerEntry is how a grapevine membership lists this SKS.
func (s *sksPeer) peerEntry() recon.Peer {
	return recon.Peer{Name: s.reconAddr().String(), Addrs: []netip.Addr{s.reconAddr().Addr()}, Port: s.reconPort}
}

func (s *sksPeer) run(args ...string) string {
	s.t.Helper()
	out, err := exec.Command(s.tool, append(args[:1:1], append([]string{"--dir", s.dir}, args[1:]...)...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("sks-peer %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sync makes SKS start a recon with its (only) member now.
func (s *sksPeer) sync() { s.run("sync") }

// waitCount waits until SKS holds at least n keys. timeout only guards
// against a hang: SKS fetches 100 keys at a time with a pause of seconds
// between batches, and on a loaded machine 1,000 keys took over 90 s.
func (s *sksPeer) waitCount(n int, timeout time.Duration) {
	s.t.Helper()
	s.run("wait-count", "--count", strconv.Itoa(n), "--timeout", strconv.Itoa(int(timeout.Seconds())))
}

// logHas reports whether SKS's recon log contains text.
func (s *sksPeer) logHas(text string) bool {
	b, _ := os.ReadFile(filepath.Join(s.dir, "recon.log"))
	return bytes.Contains(b, []byte(text))
}

func lastLine(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	var last string
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	return last
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func writeKeys(t *testing.T, keys [][]byte) string {
	f := filepath.Join(t.TempDir(), "keys.pgp")
	if err := os.WriteFile(f, slices.Concat(keys...), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func hasAll(have, want []pgpkey.KeyHash) bool {
	return len(minus(want, have)) == 0
}

// TestInteropSKS reconciles grapevine with a real SKS 1.1.6 in both roles.
// Both hold the 905 Debian keys; SKS also Alice, Bob and Carol, grapevine
// Dave, Erin and Frank (shared/fixtures/sks/test-keys).
func TestInteropSKS(t *testing.T) {
	t.Parallel()
	deb, debHashes := debianKeys(t)
	_, ha := fixtureKeys(t, "keys-a.pgp")
	kb, hb := fixtureKeys(t, "keys-b.pgp")
	g := newNode(t, slices.Concat(deb, kb), nil)
	s := startSKS(t, []string{"/usr/share/keyrings/debian-keyring.gpg", testenv.SharedFile(t, "fixtures/sks/test-keys/keys-a.pgp")}, g.reconAddr)
	g.setPeers(s.peerEntry())
	ctx := t.Context()

	// 1. We dial: SKS's acceptor walks its tree and we answer. We fetch
	// what only SKS has at once; SKS fetches what only we have 10 s later
	// (its fixed delay), from our HKP server.
	start := time.Now()
	rep, err := g.recon.ReconcileOnce(ctx, s.reconAddr().String())
	if err != nil {
		t.Fatalf("ReconcileOnce: %v", err)
	}
	t.Logf("we initiate: session %v, fetch %v, total %v; missing %d, added %d, told SKS of %d",
		rep.Session.Stats.Took.Round(time.Millisecond), rep.Fetch.Took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond),
		len(rep.Session.Missing), rep.Fetch.Added, rep.Session.Stats.ElementsSent)
	if got, want := rep.Session.Missing, sortHashes(ha); !equalHashes(got, want) {
		t.Errorf("we lacked %s, want %s", describeHashes(got), describeHashes(want))
	}
	if rep.Fetch.Added != 3 || rep.HTTPAddr != fmt.Sprintf("127.0.0.1:%d", s.hkpPort) {
		t.Errorf("fetch: added %d from %s", rep.Fetch.Added, rep.HTTPAddr)
	}
	if rep.Session.Stats.ElementsSent != 3 {
		t.Errorf("told SKS of %d hashes, want Dave, Erin and Frank", rep.Session.Stats.ElementsSent)
	}
	want := sortHashes(slices.Concat(debHashes, ha, hb))
	if !equalHashes(g.hashes(), want) {
		t.Errorf("grapevine holds %d keys, want %d", len(g.hashes()), len(want))
	}
	start = time.Now()
	s.waitCount(911, 180*time.Second)
	t.Logf("SKS (acceptor) had all 911 keys %v later", time.Since(start).Round(time.Millisecond))

	// 2. SKS dials: we walk our tree (the requester). SKS fetches what
	// it lacks at once, from our HKP.
	kc, hc := fixtureKeys(t, "grace.pgp")
	g.add(kc)
	start = time.Now()
	s.sync()
	s.waitCount(912, 180*time.Second)
	t.Logf("SKS initiates: SKS had our new key %v after sync", time.Since(start).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "our acceptor session to be logged", func() bool {
		return strings.Contains(g.logs.String(), `"role":"acceptor"`)
	})

	// 3. Same keys on both: nothing to fetch either way. SKS adds fetched
	// keys to its tree at its next catch-up (every 5 s), so retry until
	// its tree has caught up.
	want = sortHashes(slices.Concat(want, hc))
	var last *recon.Report
	waitFor(t, 30*time.Second, "a session with no difference", func() bool {
		rep, err := g.recon.ReconcileOnce(ctx, s.reconAddr().String())
		if err == nil {
			last = rep
			if len(rep.Session.Missing) == 0 && rep.Session.Stats.ElementsSent == 0 {
				return true
			}
		}
		time.Sleep(time.Second)
		return false
	})
	if last.Fetch.Asked != 0 || last.Fetch.Added != 0 || !equalHashes(g.hashes(), want) {
		t.Errorf("equal sets: asked %d, added %d; grapevine holds %d keys, want %d", last.Fetch.Asked, last.Fetch.Added, len(g.hashes()), len(want))
	}

	// 4a. SKS dials from an address that is not in our membership: we
	// close at once and log it.
	other := s.peerEntry()
	other.Addrs = []netip.Addr{netip.MustParseAddr("127.0.0.2")}
	g.setPeers(other)
	s.sync()
	waitFor(t, 10*time.Second, "grapevine to refuse SKS", func() bool {
		return strings.Contains(g.logs.String(), "recon attempt from unauthorized host")
	})

	// 4b. We dial an SKS whose membership does not list us: SKS closes
	// without a byte.
	s.run("peers", "--peer", "127.0.0.3:"+strconv.Itoa(int(g.reconAddr.Port())))
	time.Sleep(1100 * time.Millisecond) // SKS rereads membership when its mtime (1 s resolution) changes
	rep, err = g.recon.ReconcileOnce(ctx, s.reconAddr().String())
	if err == nil || rep.Session.Remote.HTTPPort != 0 {
		t.Errorf("session with an SKS that does not list us: err %v", err)
	}
	waitFor(t, 10*time.Second, "SKS to log the refusal", func() bool { return s.logHas("unauthorized host") })
}

// TestInteropSKSEmpty1000 is spec recon.md §8.6 against real SKS, with
// 1000 keys (the Debian keyring and 95 generated keys): an empty SKS
// catches up with grapevine, then an empty grapevine with that SKS, by
// recon alone. Our side runs with MaxMessageElements 200, so it answers
// SKS's big Poly requests with SyncFail and SKS recurses.
func TestInteropSKSEmpty1000(t *testing.T) {
	t.Parallel()
	deb, debHashes := debianKeys(t)
	kc, hc := corpusKeys(t, 95)
	keys, hashes := slices.Concat(deb, kc), sortHashes(slices.Concat(debHashes, hc))
	small := func(c *recon.Config) { c.MaxMessageElements = 200 }
	g := newNode(t, keys, small)
	g2 := newNode(t, nil, small)
	s := startSKS(t, nil, g.reconAddr)
	g.setPeers(s.peerEntry())
	g2.setPeers(s.peerEntry())

	// An empty SKS dials grapevine (1000 keys): we are the requester, and
	// our Elements go out in messages of at most 200.
	start := time.Now()
	s.sync()
	s.waitCount(1000, 300*time.Second)
	t.Logf("empty SKS had all 1000 keys %v after sync", time.Since(start).Round(time.Millisecond))

	// An empty grapevine dials that SKS, as soon as SKS's tree holds them.
	start = time.Now()
	var rep *recon.Report
	waitFor(t, 60*time.Second, "the empty grapevine to catch up", func() bool {
		var err error
		rep, err = g2.recon.ReconcileOnce(t.Context(), s.reconAddr().String())
		if err != nil {
			t.Logf("retrying: %v", err)
		}
		if hasAll(g2.hashes(), hashes) {
			return true
		}
		time.Sleep(time.Second)
		return false
	})
	t.Logf("empty grapevine caught up in %v (last session: %d requests, largest set %d, %d fetch requests)",
		time.Since(start).Round(time.Millisecond), rep.Session.Stats.Requests, rep.Session.Stats.MaxSetSize, rep.Fetch.Requests)
	if !equalHashes(g2.hashes(), hashes) {
		t.Errorf("grapevine holds %d keys, want %d", len(g2.hashes()), len(hashes))
	}
	if rep.Session.Stats.MaxSetSize > 200 {
		t.Errorf("largest set %d > 200", rep.Session.Stats.MaxSetSize)
	}
}
