package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStatsPageShowsMailsyncFailures: a failing sendmail_cmd is visible on
// the stats page (issue: failures visible in logs, metrics and the stats
// page), after the SKS sections the pool spiders read.
func TestStatsPageShowsMailsyncFailures(t *testing.T) {
	url, _ := startDaemonIn(t, t.TempDir(), func(dir string) {
		os.WriteFile(filepath.Join(dir, "mailsync"), []byte("pgp-public-keys@pks.example.org\n"), 0o644)
	}, "sendmail_cmd: /bin/false")
	data, _ := os.ReadFile(fixture(t, "grace.pgp"))
	resp, err := http.Post(url+"/pks/add", "application/pgp-keys", bytes.NewReader(data))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("upload: %v %v", err, resp)
	}
	resp.Body.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, page := httpGet(t, url+"/pks/lookup?op=stats")
		if strings.Contains(page, "<h3>Outgoing Mailsync</h3>") && strings.Contains(page, "1 failed") {
			if !strings.Contains(page, "pgp-public-keys@pks.example.org") {
				t.Fatalf("stats page lacks the mailsync peer:\n%s", page)
			}
			i, j := strings.Index(page, "Total number of keys"), strings.Index(page, "Outgoing Mailsync</h3>")
			if i < 0 || j < i {
				t.Fatalf("mailsync status must come after the key count")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats page never showed the failed mail:\n%s", page)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
