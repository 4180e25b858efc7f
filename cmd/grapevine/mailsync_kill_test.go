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

// TestMailsyncKilledBetweenSendAndCursor kills the daemon (SIGKILL, a real
// process) while its sendmail command runs, after the mail was handed over
// and before the cursor moved. After a restart the mail is sent again: at
// most a duplicate, never a loss (mailsync.md, at-least-once).
func TestMailsyncKilledBetweenSendAndCursor(t *testing.T) {
	mails := filepath.Join(t.TempDir(), "mails")
	// $PPID of the shell running sendmail_cmd is the daemon.
	killer := "sendmail_cmd: cat >> " + mails + "; kill -9 $PPID"
	d := newChildDaemon(t, killer)
	os.WriteFile(filepath.Join(d.dir, "mailsync"), []byte("pgp-public-keys@pks.example.org\n"), 0o644)
	d.start()
	d.waitServing()
	data, _ := os.ReadFile(fixture(t, "grace.pgp"))
	resp, err := http.Post(d.url+"/pks/add", "application/pgp-keys", bytes.NewReader(data))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("upload: %v %v", err, resp)
	}
	resp.Body.Close()
	select {
	case <-d.done: // killed by its own sendmail_cmd
		d.cmd = nil
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon was not killed by sendmail_cmd")
	}
	first, _ := os.ReadFile(mails)
	if n := strings.Count(string(first), "BEGIN PGP PUBLIC KEY BLOCK"); n != 1 {
		t.Fatalf("before the restart %d mails were handed over, want 1", n)
	}
	// Restart with a sendmail that only records.
	conf, _ := os.ReadFile(filepath.Join(d.dir, "sksconf"))
	os.WriteFile(filepath.Join(d.dir, "sksconf"), []byte(strings.Replace(string(conf), killer, "sendmail_cmd: cat >> "+mails, 1)), 0o644)
	d.start()
	d.waitServing()
	deadline := time.Now().Add(30 * time.Second)
	for {
		all, _ := os.ReadFile(mails)
		if n := strings.Count(string(all), "BEGIN PGP PUBLIC KEY BLOCK"); n == 2 {
			break
		} else if n > 2 {
			t.Fatalf("%d mails after the restart, want exactly one duplicate", n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mail was not sent again after the crash:\n%s", d.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.stop()
}
