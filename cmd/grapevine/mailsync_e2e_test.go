package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// requireExim returns the path of Debian's exim4. Under CI=true a missing
// exim4 is installed (package exim4-daemon-light, also in
// .ci/install-deps); locally the test skips.
func requireExim(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("exim4"); err != nil && testenv.InCI() {
		cmd := exec.Command("apt-get", "install", "-y", "-qq", "--no-install-recommends", "exim4-daemon-light")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("apt-get install exim4-daemon-light: %v\n%s", err, out)
		}
	}
	return testenv.RequireProgram(t, "exim4")
}

// eximConf is a private exim configuration for `exim4 -C`: local delivery
// only. The single router accepts pgp-public-keys@b.test and pipes the mail
// into node B's `grapevine mail-in`; there is no DNS router and no SMTP
// transport, so no mail can leave the machine (any other address fails
// as unrouteable). With -C exim gives up root and delivers as its own user.
const eximConf = `primary_hostname = a.test
qualify_domain = a.test
spool_directory = %[1]s/spool
log_file_path = %[1]s/log/%%slog
keep_environment =

begin routers
pks_b:
  driver = accept
  local_parts = pgp-public-keys
  domains = b.test
  transport = mail_in_b

begin transports
mail_in_b:
  driver = pipe
  command = /usr/bin/env GRAPEVINE_TEST_MAIN=1 %[1]s/grapevine.test mail-in --basedir %[2]s
  current_directory = /
  temp_errors = 75
  return_fail_output
  log_output
`

// TestMailsyncThroughExim: node A gets an upload over HKP and mails it, by
// its sendmail_cmd, through a real exim, which delivers it locally into a
// pipe to node B's `grapevine mail-in`; B stores it through its admin
// socket and serves it. B learns it with Origin mail and does not mail it
// on (loop prevention is unit-tested in package mailsync).
func TestMailsyncThroughExim(t *testing.T) {
	exim := requireExim(t)
	// exim runs the pipe as its own user: the work directory, the test
	// binary and B's admin socket must be reachable by it.
	work, err := os.MkdirTemp("", "grapevine-mailsync-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	for _, d := range []string{work, filepath.Join(work, "spool"), filepath.Join(work, "log")} {
		os.MkdirAll(d, 0o777)
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "grapevine.test"), self, 0o755); err != nil {
		t.Fatal(err)
	}
	dirA, dirB := filepath.Join(work, "a"), filepath.Join(work, "b")
	for _, d := range []string{dirA, dirB} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	confPath := filepath.Join(work, "exim.conf")
	if err := os.WriteFile(confPath, []byte(fmt.Sprintf(eximConf, work, dirB)), 0o644); err != nil {
		t.Fatal(err)
	}

	urlB, _ := startDaemonIn(t, dirB, nil)
	if err := os.Chmod(filepath.Join(dirB, adminSocket), 0o666); err != nil {
		t.Fatal(err)
	}
	urlA, _ := startDaemonIn(t, dirA, func(dir string) {
		if err := os.WriteFile(filepath.Join(dir, "mailsync"), []byte("# node B\npgp-public-keys@b.test\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		// NB: SKS 1.1.6 reads mailsync only when a membership file exists.
		os.WriteFile(filepath.Join(dir, "membership"), nil, 0o644)
	},
		"sendmail_cmd: "+exim+" -C "+confPath+" -odi -t -oi",
		"from_addr: pgp-public-keys@a.test",
	)

	mail, fpr := mailWithKeyOf(t, "keys-a.pgp")
	_, armored, _ := strings.Cut(mail, "\n\n")
	resp, err := http.PostForm(urlA+"/pks/add", url.Values{"keytext": {armored}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("upload to A: %d %s", resp.StatusCode, body)
	}

	lookup := urlB + "/pks/lookup?op=get&options=mr&search=0x" + fpr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(lookup)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte("BEGIN PGP PUBLIC KEY BLOCK")) {
				break
			}
		}
		if time.Now().After(deadline) {
			mainlog, _ := os.ReadFile(filepath.Join(work, "log", "mainlog"))
			paniclog, _ := os.ReadFile(filepath.Join(work, "log", "paniclog"))
			t.Fatalf("B does not serve %s after 30 s\nexim mainlog:\n%s\npaniclog:\n%s", fpr, mainlog, paniclog)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// exim logs the delivery once the pipe command has exited.
	var mainlog []byte
	for {
		mainlog, _ = os.ReadFile(filepath.Join(work, "log", "mainlog"))
		if bytes.Contains(mainlog, []byte("=> pgp-public-keys <pgp-public-keys@b.test> R=pks_b T=mail_in_b")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exim did not log the pipe delivery:\n%s", mainlog)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("exim mainlog:\n%s", mainlog)
}
