package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// reconPortOf reads the recon port startDaemon wrote into sksconf.
func reconPortOf(t *testing.T, dir string) string {
	t.Helper()
	conf, err := os.ReadFile(filepath.Join(dir, "sksconf"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^recon_port: (\d+)$`).FindSubmatch(conf)
	if m == nil {
		t.Fatalf("no recon_port in %s", conf)
	}
	return string(m[1])
}

func keyCount(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url + "/pks/lookup?op=stats&options=mr")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Total int `json:"total"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st.Total
}

// TestTwoDaemonsGossip: two `grapevine serve` with different keys, peered
// through their membership files (picked up by the file watcher), converge
// by gossip alone.
func TestTwoDaemonsGossip(t *testing.T) {
	gossip := "grapevine_gossip_interval_seconds: 1"
	metricsA := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	urlA, dirA := startDaemonIn(t, t.TempDir(), func(dir string) {
		mustRun(t, "import", "--basedir", dir, fixture(t, "keys-a.pgp"))
	}, gossip, "grapevine_metrics_address: "+metricsA)
	urlB, dirB := startDaemonIn(t, t.TempDir(), func(dir string) {
		mustRun(t, "import", "--basedir", dir, fixture(t, "keys-b.pgp"))
	}, gossip)
	os.WriteFile(filepath.Join(dirA, "membership"), []byte(fmt.Sprintf("127.0.0.1 %s\n", reconPortOf(t, dirB))), 0o644)
	os.WriteFile(filepath.Join(dirB, "membership"), []byte(fmt.Sprintf("127.0.0.1 %s\n", reconPortOf(t, dirA))), 0o644)
	deadline := time.Now().Add(60 * time.Second)
	for {
		a, b := keyCount(t, urlA), keyCount(t, urlB)
		if a == 6 && b == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no convergence: A has %d keys, B has %d", a, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Recon shows in A's metrics: sessions, and B's 3 keys fetched.
	mfs := scrape(t, "http://"+metricsA+"/metrics")
	var sessions, fetched float64
	for _, smp := range mfs["grapevine_recon_sessions_total"] {
		sessions += smp.value
	}
	for _, smp := range mfs["grapevine_recon_fetched_keys_total"] {
		if smp.labels["result"] == "added" {
			fetched += smp.value
		}
	}
	if sessions < 1 || fetched != 3 {
		t.Errorf("recon metrics: %v sessions, %v keys fetched; want >= 1 and 3", sessions, fetched)
	}
	// The gossip-learned keys are served.
	for _, k := range fixtureKeyList(t, "keys-b.pgp") {
		resp, err := http.Get(urlA + "/pks/lookup?op=get&options=mr&search=0x" + k.Fingerprint().String())
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("A does not serve %s after gossip: %v", k.Fingerprint(), err)
		}
		resp.Body.Close()
	}
}
