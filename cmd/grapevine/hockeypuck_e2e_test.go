package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// TestSKSAndHockeypuckPeers (issue 11): a grapevine node M serving both
// datasets, peered with a grapevine node S in SKS mode and a node H in
// Hockeypuck mode (grapevine_recon_mode), converges with both by gossip:
// keys imported at M and at S and a key uploaded to H reach every node,
// M's Hockeypuck tree equals H's and its SKS tree equals S's, and further
// rounds append nothing to any log.
//
// gentoo-l1 (from Hockeypuck's tests) has a photo ID and invalid
// self-signatures: its Hockeypuck hash differs from its SKS hash, so M
// fetches it from H by the Hockeypuck hash and S then from M by the SKS
// hash of what H holds. test-key-revoked is hard-revoked: Hockeypuck keeps
// no user ID of it, so what M fetches from H is no SKS key (grapevine's SKS
// dataset wants a user ID) and reaches M's Hockeypuck dataset only: H and
// M hold 8 Hockeypuck keys, M and S 7 SKS keys.
func TestSKSAndHockeypuckPeers(t *testing.T) {
	gossip := "grapevine_gossip_interval_seconds: 1"
	metricsM := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	urlM, dirM := startDaemonIn(t, t.TempDir(), func(dir string) {
		mustRun(t, "import", "--basedir", dir, fixture(t, "keys-a.pgp"))
	}, gossip, "grapevine_metrics_address: "+metricsM)
	urlS, dirS := startDaemonIn(t, t.TempDir(), func(dir string) {
		mustRun(t, "import", "--basedir", dir, fixture(t, "keys-b.pgp"))
	}, gossip, "grapevine_recon_mode: sks")
	urlH, dirH := startDaemonIn(t, t.TempDir(), nil, gossip, "grapevine_recon_mode: hockeypuck")

	for _, name := range []string{"gentoo-l1.asc", "test-key-revoked.asc"} {
		key, err := os.ReadFile("../../projections/pgpkey/testdata/hockeypuck/" + name)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.PostForm(urlH+"/pks/add", url.Values{"keytext": {string(key)}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("upload %s to H: %s", name, resp.Status)
		}
	}

	// All on 127.0.0.1: M tells its two members apart by the filters
	// their Configs carry (H is listed with Hockeypuck's, for the
	// sessions M starts).
	member := func(dir string) string { return "127.0.0.1 " + reconPortOf(t, dir) }
	os.WriteFile(filepath.Join(dirM, "membership"), []byte(member(dirS)+"\n"+member(dirH)+" filters=hockeypuck\n"), 0o644)
	os.WriteFile(filepath.Join(dirS, "membership"), []byte(member(dirM)+"\n"), 0o644)
	os.WriteFile(filepath.Join(dirH, "membership"), []byte(member(dirM)+"\n"), 0o644)

	converged := func() (bool, string) {
		m, s, h := statsOf(t, dirM), statsOf(t, dirS), statsOf(t, dirH)
		state := fmt.Sprintf("keys M %s S %s H %s; SKS trees M %s S %s; Hockeypuck trees M %s H %s",
			m["keys"], s["keys"], h["keys"], m["ptree_elements"], s["ptree_elements"],
			m["hockeypuck_ptree_elements"], h["hockeypuck_ptree_elements"])
		ok := m["keys"] == "7" && s["keys"] == "7" && h["keys"] == "8" &&
			m["ptree_elements"] == s["ptree_elements"] && m["ptree_elements"] == "7" &&
			m["hockeypuck_ptree_elements"] == h["hockeypuck_ptree_elements"] && h["hockeypuck_ptree_elements"] == "8" &&
			m["applied_hockeypuck"] == m["log_offset"] && h["applied_hockeypuck"] == h["log_offset"]
		return ok, state
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ok, state := converged()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no convergence: %s", state)
		}
		time.Sleep(300 * time.Millisecond)
	}
	for _, u := range []string{urlM, urlS, urlH} {
		resp, err := http.Get(u + "/pks/lookup?op=get&options=mr&search=0xabd00913019d6354ba1d9a132839fe0d796198b1")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s does not serve gentoo-l1: %v %v", u, err, resp.Status)
		}
		resp.Body.Close()
	}

	// Repeated rounds fetch nothing: wait for M to run more sessions with
	// both peers, then no log has grown.
	logs := func() [3]string {
		return [3]string{statsOf(t, dirM)["log_offset"], statsOf(t, dirS)["log_offset"], statsOf(t, dirH)["log_offset"]}
	}
	sessions := func() float64 {
		var n float64
		for _, smp := range scrape(t, "http://"+metricsM+"/metrics")["grapevine_recon_sessions_total"] {
			n += smp.value
		}
		return n
	}
	before, s0 := logs(), sessions()
	deadline = time.Now().Add(2 * time.Minute)
	for sessions() < s0+8 {
		if time.Now().After(deadline) {
			t.Fatalf("M ran %v sessions, want 8 more", sessions()-s0)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if after := logs(); after != before {
		t.Errorf("logs grew after convergence (M, S, H): %v, then %v", before, after)
	}
	if ok, state := converged(); !ok {
		t.Errorf("no longer converged: %s", state)
	}
}
