package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPReloadsConfiguration sends a real SIGHUP to a child daemon
// after editing membership, mailsync and sksconf: the stats page shows the
// new peers at once, and the log says a port change waits for a restart.
func TestSIGHUPReloadsConfiguration(t *testing.T) {
	d := newChildDaemon(t)
	d.start()
	d.waitServing()
	_, page := httpGet(t, d.url+"/pks/lookup?op=stats")
	if strings.Contains(page, "127.0.0.9 11370") || strings.Contains(page, "new-partner@pks.example.org") {
		t.Fatal("peers shown before they were configured")
	}
	os.WriteFile(filepath.Join(d.dir, "membership"), []byte("127.0.0.9 11370\n"), 0o644)
	os.WriteFile(filepath.Join(d.dir, "mailsync"), []byte("new-partner@pks.example.org\n"), 0o644)
	conf, _ := os.ReadFile(filepath.Join(d.dir, "sksconf"))
	os.WriteFile(filepath.Join(d.dir, "sksconf"), append(conf, []byte("debuglevel: 4\nmax_matches: 42\nserver_contact: 0xNEWCONTACT\nrecon_port: 1\n")...), 0o644)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, page = httpGet(t, d.url+"/pks/lookup?op=stats")
		if strings.Contains(page, "127.0.0.9 11370") && strings.Contains(page, "new-partner@pks.example.org") && strings.Contains(page, "0xNEWCONTACT") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats page after SIGHUP:\n%s", page)
		}
		time.Sleep(50 * time.Millisecond)
	}
	logText := func() string {
		b, _ := os.ReadFile(filepath.Join(d.dir, daemonLogFile))
		return string(b)
	}
	for !strings.Contains(logText(), "takes effect at the next start") {
		if time.Now().After(deadline) {
			t.Fatalf("log does not say what waits for a restart:\n%s", logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(page, "<td>Recon port:</td><td>1</td>") {
		t.Error("the stats page shows a recon port that is not served until restart")
	}
	if !strings.Contains(logText(), `"debuglevel":4`) {
		t.Errorf("log does not show the new debuglevel:\n%s", logText())
	}
	d.stop()
}
