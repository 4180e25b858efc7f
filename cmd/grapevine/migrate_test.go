package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// TestMigrateFromSKSBasedir follows docs/operations.md "Migrating from SKS"
// on a basedir a real SKS 1.1.6 ran in (Debian layout, prepared by
// ../shared/tools/sks-peer): stop SKS, `sks dump`, `grapevine import` into
// the same basedir, `grapevine serve` it with its sksconf and membership
// untouched. grapevine then answers on SKS's port with SKS's keys, and its
// stats page shows SKS's settings.
func TestMigrateFromSKSBasedir(t *testing.T) {
	sks := testenv.StartSKS(t, testenv.SKSOptions{Keys: []string{fixture(t, "keys-a.pgp"), fixture(t, "keys-b.pgp")}, NoGossip: true})
	sks.Run(t, "stop")
	dir := sks.Dir
	conf, err := os.ReadFile(filepath.Join(dir, "etc/sks/sksconf"))
	if err != nil {
		t.Fatalf("sks-peer wrote no Debian-layout sksconf: %v", err)
	}
	dumpDir := filepath.Join(dir, "dumpout")
	os.MkdirAll(dumpDir, 0o755)
	cmd := exec.Command(testenv.RequireProgram(t, "sks"), "dump", "1000", dumpDir, "sks-dump", "-basedir", dir)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sks dump: %v\n%s", err, out)
	}
	out := mustRun(t, "import", "--basedir", dir, dumpDir)
	if !strings.Contains(out, "imported 6 keys") {
		t.Fatalf("import of the SKS dump: %q", out)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs syncBuffer
	go func() { done <- run(ctx, []string{"serve", "--basedir", dir}, &logs, &logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v\n%s", err, logs.String())
		}
	})
	url := sks.HKPURL
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url + "/pks/health")
		if err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grapevine does not answer on SKS's HKP port %s: %v\n%s", url, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, f := range []string{"keys-a.pgp", "keys-b.pgp"} {
		for _, k := range fixtureKeyList(t, f) {
			code, _ := httpGet(t, url+"/pks/lookup?op=get&options=mr&search=0x"+k.Fingerprint().String())
			if code != 200 {
				t.Errorf("%s: %d after migration", k.Fingerprint(), code)
			}
		}
	}
	_, stats := httpGet(t, url+"/pks/lookup?op=stats")
	for _, want := range []string{
		"<td>Hostname:</td><td>127.0.0.254</td>",
		fmt.Sprintf("<td>Nodename:</td><td>sks-peer-%d</td>", sks.HKPPort),
		fmt.Sprintf("<td>Recon port:</td><td>%d</td>", sks.ReconPort),
		"Total number of keys: 6",
	} {
		if !strings.Contains(stats, want) {
			t.Errorf("stats page lacks %q (sksconf was:\n%s)", want, conf)
		}
	}
}
