package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// mailWithKeyOf returns a PKS "incremental" mail carrying the first key of
// a fixture file, armored, and that key's fingerprint.
func mailWithKeyOf(t *testing.T, file string) (string, string) {
	t.Helper()
	data, err := os.ReadFile(fixture(t, file))
	if err != nil {
		t.Fatal(err)
	}
	raws, err := pgpkey.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	k, err := pgpkey.ParseKey(raws[0])
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString("From: pgp-public-keys@pks.example.org\nTo: pgp-public-keys@keys.test\nSubject: incremental\nContent-type: application/pgp-keys\n\n")
	b.WriteString(armorKey(k.Marshal()))
	return b.String(), k.Fingerprint().String()
}

func armorKey(key []byte) string {
	var b bytes.Buffer
	w, _ := armor.Encode(&b, "PGP PUBLIC KEY BLOCK", nil)
	w.Write(key)
	w.Close()
	return b.String()
}

// mailIn runs `grapevine mail-in` in-process with mail on stdin.
func mailIn(t *testing.T, mail string, args ...string) (string, error) {
	t.Helper()
	old := mailInStdin
	mailInStdin = strings.NewReader(mail)
	defer func() { mailInStdin = old }()
	out, errOut, err := grapevine(t, append([]string{"mail-in"}, args...)...)
	if errOut != "" {
		t.Logf("stderr: %s", errOut)
	}
	return out, err
}

func exitStatus(err error) int {
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return exitCode(err)
}

// lastEvent reads the newest event of a basedir's log.
func lastEvent(t *testing.T, dir string) *eventlog.Event {
	t.Helper()
	b, err := openBasedir(dir, zerolog.Nop(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	e, err := b.log.Read(b.log.LastIndex())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestMailInDirect(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "import", "--basedir", dir, fixture(t, "keys-b.pgp"))
	before := statsOf(t, dir)
	mail, _ := mailWithKeyOf(t, "keys-a.pgp")

	out, err := mailIn(t, mail, "--basedir", dir)
	if err != nil {
		t.Fatalf("mail-in: %v", err)
	}
	if !strings.Contains(out, "1 keys stored") {
		t.Fatalf("mail-in said %q", out)
	}
	after := statsOf(t, dir)
	if before["keys"] == after["keys"] || after["applied_keys"] != after["log_offset"] && after["log_offset"] == before["log_offset"] {
		t.Fatalf("stats before %v after %v: key not stored", before, after)
	}
	e := lastEvent(t, dir)
	if e.Origin != eventlog.OriginMail || e.Peer != "pgp-public-keys@pks.example.org" {
		t.Fatalf("event origin %s peer %q, want mail from the sender", e.Origin, e.Peer)
	}
	// The same mail again stores nothing (SKS positional basedir form).
	if out, err := mailIn(t, mail, dir+"/messages"); err != nil || !strings.Contains(out, "0 keys stored, 1 unchanged") {
		t.Fatalf("second mail-in: %q, %v", out, err)
	}
	if got := statsOf(t, dir)["log_offset"]; got != after["log_offset"] {
		t.Fatalf("log grew from %s to %s on a repeated mail", after["log_offset"], got)
	}
}

func TestMailInRefusesBadMail(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "import", "--basedir", dir, fixture(t, "keys-b.pgp"))
	before := statsOf(t, dir)["log_offset"]
	good, _ := mailWithKeyOf(t, "keys-a.pgp")
	for _, tc := range []struct{ name, mail string }{
		{"NoKey", "From: a@b\nSubject: hi\n\nno key\n"},
		{"BrokenKey", good[:len(good)-200] + "!!!\n" + good[len(good)-200:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mailIn(t, tc.mail, "--basedir", dir)
			if got, want := exitStatus(err), exDataErr; got != want {
				t.Fatalf("exit status %d (%v), want %d", got, err, want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
	if got := statsOf(t, dir)["log_offset"]; got != before {
		t.Fatalf("log grew from %s to %s on refused mails", before, got)
	}
	if _, err := mailIn(t, good, "--basedir", filepath.Join(dir, "missing")); exitStatus(err) != exConfig {
		t.Fatalf("missing basedir: exit %d (%v), want %d", exitStatus(err), err, exConfig)
	}
}

func TestMailInThroughDaemon(t *testing.T) {
	hkpURL, dir := startDaemon(t)
	mail, fpr := mailWithKeyOf(t, "keys-a.pgp")
	out, err := mailIn(t, mail, "--basedir", dir)
	if err != nil || !strings.Contains(out, "1 keys stored") {
		t.Fatalf("mail-in through the daemon: %q, %v", out, err)
	}
	resp, err := http.Get(hkpURL + "/pks/lookup?op=get&options=mr&search=0x" + url.QueryEscape(fpr))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("BEGIN PGP PUBLIC KEY BLOCK")) {
		t.Fatalf("lookup after mail-in: %d\n%s", resp.StatusCode, body)
	}
	// A bad mail is refused before it reaches the daemon; a bad body sent
	// to /submit directly is refused by the daemon with 400.
	if _, err := submitToDaemon(context.Background(), dir, "x@y", []byte("garbage")); exitStatus(err) != exDataErr {
		t.Fatalf("garbage to /submit: %v, want exit %d", err, exDataErr)
	}
}
