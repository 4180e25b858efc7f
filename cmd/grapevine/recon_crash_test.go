package main

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// TestReconFetchSurvivesSIGKILL: node B (a child process) catches up with
// node A (905 Debian keys) by recon, 5 keys per hashquery, and is
// SIGKILLed at least 20 times while it fetches (100 with GRAPEVINE_SOAK=1):
// as soon as it has stored something new, or at a random moment after it
// serves. After the last restart it still converges, `grapevine check`
// passes, and the log holds each key once.
func TestReconFetchSurvivesSIGKILL(t *testing.T) {
	keyring := testenv.RequireFile(t, "/usr/share/keyrings/debian-keyring.gpg", "debian-keyring")
	urlA, dirA := startDaemonIn(t, t.TempDir(), func(dir string) {
		mustRun(t, "import", "--basedir", dir, keyring)
	}, "dontgossip:")
	want := keyCount(t, urlA)

	// 5 keys per hashquery: a fetch keeps 4 requests in flight and appends
	// what arrived together, so B stores ≈ 20 keys per kill at most and
	// cannot catch up before the harness reaches minKills (with 20 per
	// hashquery it sometimes did, failing the test with only ~15 kills).
	b := newChildDaemon(t, "grapevine_gossip_interval_seconds: 0.2", "http_fetch_size: 5")
	os.WriteFile(filepath.Join(b.dir, "membership"), []byte(fmt.Sprintf("127.0.0.1 %s\n", reconPortOf(t, dirA))), 0o644)
	os.WriteFile(filepath.Join(dirA, "membership"), []byte(fmt.Sprintf("127.0.0.1 %s\n", reconPortOf(t, b.dir))), 0o644)
	count := func() int {
		resp, err := http.Get(b.url + "/pks/lookup?op=stats&options=mr")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		var st struct {
			Total int `json:"total"`
		}
		json.NewDecoder(resp.Body).Decode(&st)
		return st.Total
	}
	minKills := 20
	if soak() {
		minKills = 100
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	kills := 0
	for round := 0; kills < minKills && round < 3*minKills; round++ {
		b.start()
		b.waitServing()
		// Kill as soon as B has fetched something new this round, or at a
		// random moment (often before the session or inside a fetch).
		before := count()
		deadline := time.Now().Add(time.Duration(50+rng.Intn(400)) * time.Millisecond)
		if round%2 == 0 {
			deadline = time.Now().Add(20 * time.Second)
		}
		for count() == before && before < want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if count() >= want {
			b.stop()
			break
		}
		b.kill()
		kills++
	}
	b.start()
	b.waitServing()
	deadline := time.Now().Add(60 * time.Second)
	for count() < want {
		if time.Now().After(deadline) {
			t.Fatalf("B has %d of %d keys after %d kills", count(), want, kills)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.stop()
	t.Logf("B converged to %d keys after %d kills during fetches", want, kills)
	if kills < minKills {
		t.Errorf("only %d kills: B caught up before the harness reached %d", kills, minKills)
	}
	st := statsOf(t, b.dir)
	if st["keys"] != fmt.Sprint(want) || st["log_offset"] != fmt.Sprint(want) {
		t.Fatalf("B: keys %s, log events %s; want %d each (no duplicate event)", st["keys"], st["log_offset"], want)
	}
	if out, _, err := grapevine(t, "check", "--basedir", b.dir); err != nil {
		t.Fatalf("check after the kills: %v\n%s", err, out)
	}
}
