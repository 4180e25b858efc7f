package farm

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// Gossip intervals of the farm. n1 and n2 take grapevine's seconds option,
// n3 SKS's minutes option (0.025 min = 1.5 s), SKS its own (0.05 min = 3 s,
// sks-peer's default): the test checks that both spellings work.
const (
	nodeGossip    = time.Second
	n3Gossip      = 1500 * time.Millisecond
	sksGossip     = 3 * time.Second
	sksGossipMins = "0.05"
)

// converge is how long a wait may take before the test gives up: a bound
// against hanging, not a timing assertion. The measured times are logged
// and reported in docs/scale-out.md.
const converge = 90 * time.Second

// farm is the running test setup.
type farm struct {
	t      *testing.T
	bin    string
	lab    *lab
	nodes  []*node // n1..n3, then n4 once it joins
	sks    *sks
	lb     *balancer
	client *host // where the test's requests through the balancer come from

	times []measurement
}

type measurement struct {
	scenario, target string
	took             time.Duration
}

// TestFarm runs three grapevine nodes and a real SKS 1.1.6 as separate
// hosts (network namespaces on one bridge), peered as a full mesh, with a
// real nginx balancing HKP over the grapevine nodes, and walks through the
// scale-out scenarios in order; each starts from the converged state the
// previous one left.
func TestFarm(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (the farm test creates network namespaces with ip netns)")
	}
	ip := testenv.RequireProgram(t, "ip")
	testenv.RequireProgram(t, "nginx")
	seedKeys := testenv.SharedFile(t, "fixtures/sks/test-keys/keys-a.pgp")
	f := &farm{t: t, bin: buildGrapevine(t)}
	keys := newKeys(t, 5)
	victim, changed := signedKeyPair(t)
	keys = append(keys, victim)

	f.lab = newLab(t, ip)
	hosts := []*host{f.lab.addHost("n1", 1), f.lab.addHost("n2", 2), f.lab.addHost("n3", 3)}
	n4host := f.lab.addHost("n4", 4)
	sksHost := f.lab.addHost("sks", 10)
	lbHost := f.lab.addHost("lb", 20)
	f.client = f.lab.addHost("client", 30)

	// SKS starts with the three fixture keys; the grapevine nodes start
	// empty and first catch up from it.
	f.sks = startSKS(t, sksHost, sksGossipMins, seedKeys)
	for i, h := range hosts {
		gossip := fmt.Sprintf("grapevine_gossip_interval_seconds: %g", nodeGossip.Seconds())
		if i == 2 {
			gossip = fmt.Sprintf("gossip_interval: %g", n3Gossip.Minutes())
		}
		f.nodes = append(f.nodes, newNode(t, f.bin, h, lbHost, gossip))
	}
	f.meshPeers()
	for _, n := range f.nodes {
		n.start()
	}
	f.lb = startBalancer(t, lbHost, f.nodes)
	t.Cleanup(f.report)

	// Both spellings of the interval took effect.
	for i, want := range []time.Duration{nodeGossip, nodeGossip, n3Gossip} {
		if got := f.nodes[i].gossipInterval(); got != want {
			t.Errorf("%s gossips every %v, want %v", f.nodes[i].host.name, got, want)
		}
	}
	seed := fixtureFingerprints(t, seedKeys)
	t.Run("InitialCatchUpFromSKS", func(t *testing.T) {
		f.waitEverywhere(t, "initial catch-up (3 keys from SKS)", seed, f.nodes, false)
	})
	if t.Failed() {
		return
	}

	t.Run("UploadThroughBalancer", func(t *testing.T) {
		upstream := f.upload(t, keys[0])
		t.Logf("upload of %s went to %s", keys[0].fpr, upstream)
		f.waitEverywhere(t, "upload through the balancer", []string{keys[0].fpr}, f.nodes, true)
	})

	t.Run("ReadsSpread", func(t *testing.T) {
		before := make([]float64, len(f.nodes))
		for i, n := range f.nodes {
			before[i] = n.metric("grapevine_http_requests_total", `op="get"`, `status="200"`)
		}
		const reads = 30
		seen := map[string]int{}
		for range reads {
			code, body, hdr, err := f.client.get(f.lb.url("/pks/lookup?op=get&options=mr&search=0x" + keys[0].fpr))
			if err != nil || code != 200 || !bytes.Contains(body, []byte("BEGIN PGP PUBLIC KEY BLOCK")) {
				t.Fatalf("read through the balancer: %d %v %.100q", code, err, body)
			}
			seen[hdr.Get("X-Upstream")]++
		}
		t.Logf("%d reads through nginx, by upstream: %v", reads, seen)
		var total float64
		for i, n := range f.nodes {
			got := n.metric("grapevine_http_requests_total", `op="get"`, `status="200"`) - before[i]
			total += got
			if got < 1 {
				t.Errorf("%s answered %v of the reads; every node should answer some", n.host.name, got)
			}
			if seen[fmt.Sprintf("%s:%d", n.host.addr, hkpPort)] < 1 {
				t.Errorf("nginx sent no read to %s: %v", n.host.name, seen)
			}
		}
		if total != reads {
			t.Errorf("the nodes answered %v gets, want %d", total, reads)
		}
	})

	t.Run("KillAndRestart", func(t *testing.T) {
		n2 := f.nodes[1]
		n2.kill()
		// nginx's attempt on n2 is refused and passed to the next node.
		f.upload(t, keys[1])
		f.waitEverywhere(t, "while n2 is down", []string{keys[1].fpr}, []*node{f.nodes[0], f.nodes[2]}, true)
		if n2.has(keys[1].fpr) {
			t.Fatal("n2 is down and serves the new key")
		}
		n2.start()
		f.waitEverywhere(t, "n2 restarted after SIGKILL", []string{keys[1].fpr}, []*node{n2}, false)
		n2.run("check", "--basedir", n2.dir)
	})

	t.Run("NewNodeFromDump", func(t *testing.T) {
		n1 := f.nodes[0]
		dump := filepath.Join(t.TempDir(), "dump")
		out := n1.run("dump", "--basedir", n1.dir, "--out", dump)
		t.Logf("dump of n1 while it serves: %s", strings.TrimSpace(out))
		// A key the dump does not have: the new node gets it by recon.
		f.upload(t, keys[2])
		// The node outlives this subtest: it belongs to the farm (f.t).
		n4 := newNode(f.t, f.bin, n4host, lbHost, fmt.Sprintf("grapevine_gossip_interval_seconds: %g", nodeGossip.Seconds()))
		n4.run("import", "--basedir", n4.dir, dump)
		f.nodes = append(f.nodes, n4)
		// Operator procedure: add the node to every peer's membership and
		// send SIGHUP (grapevine; SKS notices the mtime), then start it.
		f.meshPeers()
		for _, n := range f.nodes[:3] {
			n.signal(syscall.SIGHUP)
		}
		n4.start()
		for _, fpr := range append(seed, keys[0].fpr, keys[1].fpr) {
			if !n4.has(fpr) {
				t.Fatalf("n4 lacks %s from the dump", fpr)
			}
		}
		f.waitEverywhere(t, "new node from a dump, catching up", []string{keys[2].fpr}, []*node{n4}, false)
		f.waitEverywhere(t, "new node from a dump, rest of the farm", []string{keys[2].fpr}, f.nodes, true)
		n4.run("check", "--basedir", n4.dir)
	})
	if len(f.nodes) < 4 {
		return
	}

	t.Run("LinkCutAndHealed", func(t *testing.T) {
		n3 := f.nodes[2]
		n3.host.cut()
		// Through the balancer (nginx times out on n3 after 1 s and
		// moves on) and, on the other side of the cut, straight to n3.
		f.upload(t, keys[3])
		code, body, _, err := n3.host.post(n3.local("/pks/add"), formType, addForm(keys[4].raw))
		if err != nil || code != 200 {
			t.Fatalf("upload to n3 on its own side of the cut: %d %v %s", code, err, body)
		}
		others := []*node{f.nodes[0], f.nodes[1], f.nodes[3]}
		f.waitEverywhere(t, "during the cut (connected part)", []string{keys[3].fpr}, others, true)
		if n3.has(keys[3].fpr) {
			t.Fatal("n3 is cut off and has the key uploaded on the other side")
		}
		for _, n := range others {
			if n.has(keys[4].fpr) {
				t.Fatalf("%s has the key uploaded to n3 while n3 was cut off", n.host.name)
			}
		}
		n3.host.heal()
		f.waitEverywhere(t, "after healing the link", []string{keys[3].fpr, keys[4].fpr}, f.nodes, true)
		n3.run("check", "--basedir", n3.dir)
	})

	t.Run("DeletionStaysDeleted", func(t *testing.T) {
		victim := keys[5]
		f.upload(t, victim)
		f.waitEverywhere(t, "the key to delete, everywhere", []string{victim.fpr}, f.nodes, true)
		// Operator procedure: `grapevine delete` on every node (an admin
		// event in each node's own log; recon carries only key hashes).
		for _, n := range f.nodes {
			out := n.run("delete", "--basedir", n.dir, "--reason", "farm test: owner asked", victim.fpr)
			if !strings.Contains(out, "deleted") {
				t.Fatalf("%s: delete said %q", n.host.name, out)
			}
		}
		f.checkGone(t, victim)
		if !f.sks.has(victim.fpr) {
			t.Fatal("SKS lost the key; the point is that it still has it")
		}
		// Phase 1: SKS holds the key as it was. Several gossip rounds on
		// every node later, none serves it: the suppressed hash keeps the
		// trees equal, so nothing is fetched back.
		f.waitRounds(t, 3)
		f.checkGone(t, victim)
		if !f.sks.has(victim.fpr) {
			t.Fatal("SKS lost the key")
		}

		// Phase 2: SKS gets a changed copy (an extra, self-signed user ID),
		// a new key hash for the same fingerprint. A node's recon finds it
		// and fetches it from SKS, and must drop it: the fingerprint is
		// blocked (recon counts such a key as "unchanged": nothing to
		// store).
		code, body, _, err := f.client.post(fmt.Sprintf("http://%s:%d/pks/add", f.sks.host.addr, hkpPort), formType, addForm(changed))
		if err != nil || code != 200 {
			t.Fatalf("changed copy to SKS: %d %v %s", code, err, body)
		}
		code, body, _, err = f.client.get(fmt.Sprintf("http://%s:%d/pks/lookup?op=vindex&options=mr&search=0x%s", f.sks.host.addr, hkpPort, victim.fpr))
		if err != nil || code != 200 || !bytes.Contains(body, []byte("Changed In SKS")) {
			t.Fatalf("SKS does not show the changed copy: %d %v %s", code, err, body)
		}
		fromSKS := fmt.Sprintf(`peer="%s:%d"`, f.sks.host.addr, reconPort)
		dropped := make([]float64, len(f.nodes))
		for i, n := range f.nodes {
			dropped[i] = n.metric("grapevine_recon_fetched_keys_total", fromSKS, `result="unchanged"`)
		}
		fetched := func() []string {
			var who []string
			for i, n := range f.nodes {
				if n.metric("grapevine_recon_fetched_keys_total", fromSKS, `result="unchanged"`) > dropped[i] {
					who = append(who, n.host.name)
				}
			}
			return who
		}
		// Waiting for one node, not all: SKS now asks the nodes at every
		// recon for the deleted copy's old hash, which they keep in their
		// trees and never serve, and after each such recon it refuses
		// others for 10 s, so it reaches one node per ~10 s
		// (docs/scale-out.md). TestDeleteSurvivesGossip covers the same
		// path between two grapevine nodes.
		start := time.Now()
		f.waitFor(t, "a node fetched SKS's changed copy and dropped it", func() []string {
			if len(fetched()) == 0 {
				return []string{"any node"}
			}
			return nil
		})
		f.times = append(f.times, measurement{"changed copy in SKS fetched and dropped", strings.Join(fetched(), ","), time.Since(start)})
		f.waitRounds(t, 3)
		t.Logf("nodes that fetched and dropped the changed copy: %v", fetched())
		f.checkGone(t, victim)
		if !f.sks.has(victim.fpr) {
			t.Fatal("SKS lost the key")
		}
		// Uploading it again through the balancer is refused, whichever
		// node answers.
		for range len(f.nodes) {
			code, body, hdr, err := f.client.post(f.lb.url("/pks/add"), formType, addForm(victim.raw))
			if err != nil || code != 422 {
				t.Fatalf("re-upload of the deleted key via %s: %d %v %s", hdr.Get("X-Upstream"), code, err, body)
			}
		}
		for _, n := range f.nodes {
			n.run("check", "--basedir", n.dir)
		}
	})
}

// waitRounds waits until every node has had n more successful recon
// sessions.
func (f *farm) waitRounds(t testing.TB, n float64) {
	t.Helper()
	sessions := make([]float64, len(f.nodes))
	for i, nd := range f.nodes {
		sessions[i] = nd.metric("grapevine_recon_sessions_total", `result="ok"`)
	}
	f.waitFor(t, fmt.Sprintf("%v more recon sessions on every node", n), func() []string {
		var missing []string
		for i, nd := range f.nodes {
			if nd.metric("grapevine_recon_sessions_total", `result="ok"`) < sessions[i]+n {
				missing = append(missing, nd.host.name)
			}
		}
		return missing
	})
}

// meshPeers writes every node's and SKS's membership: everyone else.
func (f *farm) meshPeers() {
	all := []*host{f.sks.host}
	for _, n := range f.nodes {
		all = append(all, n.host)
	}
	others := func(self *host) []*host {
		var o []*host
		for _, h := range all {
			if h != self {
				o = append(o, h)
			}
		}
		return o
	}
	for _, n := range f.nodes {
		n.setPeers(others(n.host)...)
	}
	f.sks.setPeers(others(f.sks.host)...)
}

// upload posts a key through the balancer and returns the node nginx used.
func (f *farm) upload(t *testing.T, k testKey) string {
	t.Helper()
	code, body, hdr, err := f.client.post(f.lb.url("/pks/add"), formType, addForm(k.raw))
	if err != nil || code != 200 {
		t.Fatalf("upload through the balancer: %d %v %s", code, err, body)
	}
	return hdr.Get("X-Upstream")
}

// waitEverywhere waits until every node in nodes (and SKS, if withSKS)
// serves every key in fprs, and records how long each took.
func (f *farm) waitEverywhere(t testing.TB, scenario string, fprs []string, nodes []*node, withSKS bool) {
	t.Helper()
	type target struct {
		name string
		has  func(string) bool
	}
	var targets []target
	for _, n := range nodes {
		targets = append(targets, target{n.host.name, n.has})
	}
	if withSKS {
		targets = append(targets, target{"sks", f.sks.has})
	}
	start := time.Now()
	done := map[string]bool{}
	f.waitFor(t, scenario, func() []string {
		var missing []string
		for _, tg := range targets {
			if done[tg.name] {
				continue
			}
			ok := true
			for _, fpr := range fprs {
				if !tg.has(fpr) {
					ok = false
					break
				}
			}
			if ok {
				done[tg.name] = true
				f.times = append(f.times, measurement{scenario, tg.name, time.Since(start)})
			} else {
				missing = append(missing, tg.name)
			}
		}
		return missing
	})
}

// waitFor polls cond (which names what is still missing) until it returns
// nothing, and fails the test after converge.
func (f *farm) waitFor(t testing.TB, what string, cond func() []string) {
	t.Helper()
	f.waitForUpTo(t, what, converge, cond)
}

// waitForUpTo is waitFor with another bound.
func (f *farm) waitForUpTo(t testing.TB, what string, bound time.Duration, cond func() []string) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		missing := cond()
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for _, n := range f.nodes {
				logs.WriteString(n.logTail() + "\n")
			}
			logs.WriteString(tail(filepath.Join(f.sks.dir, "recon.log"), 30))
			t.Fatalf("%s: still missing on %v after %v\n%s", what, missing, bound, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkGone checks that no node and not the balancer serves the key.
func (f *farm) checkGone(t *testing.T, k testKey) {
	t.Helper()
	for _, n := range f.nodes {
		if n.has(k.fpr) {
			t.Fatalf("%s serves the deleted key", n.host.name)
		}
		code, _, _, err := n.host.get(n.local("/pks/lookup?op=index&options=mr&search=0x" + k.fpr))
		if err != nil || code != 404 {
			t.Fatalf("%s: index of the deleted key: %d %v", n.host.name, code, err)
		}
	}
	for range len(f.nodes) {
		code, _, hdr, err := f.client.get(f.lb.url("/pks/lookup?op=get&options=mr&search=0x" + k.fpr))
		if err != nil || code != 404 {
			t.Fatalf("the balancer (%s) serves the deleted key: %d %v", hdr.Get("X-Upstream"), code, err)
		}
	}
}

// report logs the measured convergence times, also in gossip intervals of
// the grapevine nodes (1 s) for docs/scale-out.md.
func (f *farm) report() {
	if len(f.times) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "convergence times (grapevine gossip %v, n3 %v, SKS %v):\n", nodeGossip, n3Gossip, sksGossip)
	for _, m := range f.times {
		fmt.Fprintf(&b, "  %-45s %-4s %6.2f s  (%.1f node gossip intervals)\n", m.scenario, m.target, m.took.Seconds(), m.took.Seconds()/nodeGossip.Seconds())
	}
	f.t.Log(b.String())
}

// testKey is a fresh public key for the scenarios.
type testKey struct {
	fpr string
	raw []byte
	key *pgpkey.Key
}

// newKeys generates n deterministic Ed25519 keys no fixture has.
func newKeys(t *testing.T, n int) []testKey {
	t.Helper()
	var buf bytes.Buffer
	if _, err := corpus.Generate(context.Background(), &buf, corpus.Options{N: n, Seed: 10, Mix: corpus.Mix{Ed25519: 1}}); err != nil {
		t.Fatal(err)
	}
	raws, err := pgpkey.Decode(buf.Bytes())
	if err != nil || len(raws) != n {
		t.Fatalf("generated keys: %d, %v", len(raws), err)
	}
	var keys []testKey
	for _, r := range raws {
		k, err := pgpkey.ParseKey(r)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, testKey{fpr: k.Fingerprint().String(), raw: k.Marshal(), key: k})
	}
	return keys
}

func fixtureFingerprints(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raws, err := pgpkey.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	var fprs []string
	for _, r := range raws {
		k, err := pgpkey.ParseKey(r)
		if err != nil {
			t.Fatal(err)
		}
		fprs = append(fprs, k.Fingerprint().String())
	}
	sort.Strings(fprs)
	return fprs
}

// signedKeyPair returns a new Ed25519 key and a later copy of it with a
// second, self-signed user ID: same fingerprint, another key hash, which
// SKS accepts (it refuses an unsigned user ID). Deterministic: a seeded
// ChaCha8 stream and fixed times.
func signedKeyPair(t *testing.T) (first testKey, changed []byte) {
	t.Helper()
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := &packet.Config{
		Algorithm: packet.PubKeyAlgoEdDSA,
		Rand:      rand.NewChaCha8([32]byte{'f', 'a', 'r', 'm'}),
		Time:      func() time.Time { return created },
	}
	e, err := openpgp.NewEntity("Farm Victim", "", "victim@farm.test", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	first = keyFromBytes(t, buf.Bytes())
	cfg.Time = func() time.Time { return created.Add(time.Hour) }
	if err := e.AddUserId("Changed In SKS", "", "changed@farm.test", cfg); err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	if k := keyFromBytes(t, buf.Bytes()); k.fpr != first.fpr {
		t.Fatalf("changed copy has fingerprint %s, want %s", k.fpr, first.fpr)
	}
	return first, buf.Bytes()
}

func keyFromBytes(t *testing.T, data []byte) testKey {
	t.Helper()
	raws, err := pgpkey.Decode(data)
	if err != nil || len(raws) != 1 {
		t.Fatalf("decode: %d keys, %v", len(raws), err)
	}
	k, err := pgpkey.ParseKey(raws[0])
	if err != nil {
		t.Fatal(err)
	}
	return testKey{fpr: k.Fingerprint().String(), raw: k.Marshal(), key: k}
}

// formType and addForm make a /pks/add body as gpg sends it (and as SKS
// requires): keytext=ARMOR, form-encoded.
const formType = "application/x-www-form-urlencoded"

func addForm(raw []byte) []byte {
	return []byte("keytext=" + url.QueryEscape(string(pgpkey.AppendArmor(nil, nil, raw))))
}
