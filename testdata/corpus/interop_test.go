package corpus_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// TestGnuPGImport imports a 200-key corpus into a throwaway GnuPG home and
// checks that GnuPG imports every key and finds no bad signature.
func TestGnuPGImport(t *testing.T) {
	gpg := testenv.RequireProgram(t, "gpg")
	b, st := generate(t, corpus.Options{N: 200, Seed: 5, RSAPoolSize: testPool})
	dir := t.TempDir()
	file := filepath.Join(dir, "corpus.pgp")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "gnupg")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopGnuPGDaemons(t, home) })
	gpgRun := func(args ...string) string {
		t.Helper()
		// --no-autostart: importing and checking public keys needs neither
		// gpg-agent nor dirmngr, so none should start.
		args = append([]string{"--homedir", home, "--batch", "--no-autostart", "--no-tty"}, args...)
		cmd := exec.Command(gpg, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return string(out)
	}

	// IMPORT_RES <count> <no_user_id> <imported> <imported_rsa> <unchanged>
	// <n_uids> <n_subk> <n_sigs> <n_revoc> ... (GnuPG doc/DETAILS).
	var res []string
	for _, line := range strings.Split(gpgRun("--status-fd", "1", "--import", file), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "[GNUPG:]" && f[1] == "IMPORT_RES" {
			res = f[2:]
		}
	}
	if len(res) < 3 {
		t.Fatal("gpg printed no IMPORT_RES status")
	}
	count, _ := strconv.Atoi(res[0])
	noUID, _ := strconv.Atoi(res[1])
	imported, _ := strconv.Atoi(res[2])
	if count != st.Keys || imported != st.Keys || noUID != 0 {
		t.Fatalf("gpg IMPORT_RES %v: want %d keys processed and imported, none without user ID", res, st.Keys)
	}

	// --check-sigs: field 2 of sig/rev records is "!" good, "-" bad, "?"
	// no usable key, "%" error. GnuPG finds no usable key for
	// certifications made by keys that have since expired or been revoked
	// (it will not use such keys as issuers), so "?" is fine for those.
	listing := gpgRun("--with-colons", "--check-sigs")
	validity := make(map[string]string) // key ID -> pub validity
	for _, line := range strings.Split(listing, "\n") {
		if f := strings.Split(line, ":"); f[0] == "pub" && len(f) > 4 {
			validity[f[4]] = f[1]
		}
	}
	counts := make(map[string]int)
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Split(line, ":")
		if (f[0] != "sig" && f[0] != "rev") || len(f) < 5 {
			continue
		}
		counts[f[1]]++
		switch f[1] {
		case "!":
		case "?":
			if v := validity[f[4]]; v != "e" && v != "r" {
				t.Errorf("gpg could not check a signature by %s (validity %q): %s", f[4], v, line)
			}
		default:
			t.Errorf("gpg reports a bad signature: %s", line)
		}
	}
	if got, want := counts["!"]+counts["?"], st.Signatures; got != want {
		t.Errorf("gpg lists %d signatures, the corpus has %d", got, want)
	}
	t.Logf("gpg: %d keys imported; signatures %v", imported, counts)
}

// stopGnuPGDaemons ends a gpg-agent or dirmngr running for home, by PID.
// None should run (see --no-autostart), so this is a safety net.
func stopGnuPGDaemons(t *testing.T, home string) {
	connect, err := exec.LookPath("gpg-connect-agent")
	if err != nil {
		return
	}
	for _, extra := range [][]string{nil, {"--dirmngr"}} {
		args := append([]string{"--homedir", home, "--no-autostart"}, extra...)
		out, err := exec.Command(connect, append(args, "getinfo pid", "/bye")...).Output()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			if pid, err := strconv.Atoi(strings.TrimPrefix(line, "D ")); err == nil && strings.HasPrefix(line, "D ") {
				if p, err := os.FindProcess(pid); err == nil {
					t.Logf("stopping GnuPG daemon %d for %s", pid, home)
					p.Kill()
				}
			}
		}
	}
}

// TestSequoiaInspect has Sequoia read a corpus: it must see every key, user
// ID and subkey, and find nothing wrong beyond keys that have expired.
func TestSequoiaInspect(t *testing.T) {
	sq := testenv.RequireProgram(t, "sq")
	b, st := generate(t, corpus.Options{N: 200, Seed: 5, RSAPoolSize: testPool})
	file := filepath.Join(t.TempDir(), "corpus.pgp")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sq, "inspect", file).Output()
	if err != nil {
		t.Fatalf("sq inspect: %v", err)
	}
	var certs, uids, subkeys int
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "OpenPGP Certificate.":
			certs++
		case strings.HasPrefix(line, "UserID:"):
			uids++
		case strings.HasPrefix(line, "Subkey:"):
			subkeys++
		case strings.HasPrefix(line, "Invalid:") && !strings.HasSuffix(line, "is not live"):
			t.Errorf("sq: %s", line)
		}
	}
	if certs != st.Keys || uids != st.UserIDs || subkeys != st.Subkeys {
		t.Errorf("sq sees %d certificates, %d user IDs, %d subkeys; the corpus has %d, %d, %d",
			certs, uids, subkeys, st.Keys, st.UserIDs, st.Subkeys)
	}
}

// TestSKSImport builds a real SKS 1.1.6 from a corpus (shared/tools/sks-peer:
// sks build, cleandb, pbuild) and checks that SKS keeps every key.
func TestSKSImport(t *testing.T) {
	b, st := generate(t, corpus.Options{N: 300, Seed: 5, RSAPoolSize: testPool})
	file := filepath.Join(t.TempDir(), "corpus.pgp")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sks := testenv.StartSKS(t, testenv.SKSOptions{Keys: []string{file}, NoGossip: true})
	if got, want := sks.Info["SKS_KEYS"], strconv.Itoa(st.Keys); got != want {
		t.Errorf("SKS built with %s keys, want %s", got, want)
	}
	if got, want := strings.TrimSpace(sks.Run(t, "count")), strconv.Itoa(st.Keys); got != want {
		t.Errorf("SKS counts %s keys, want %s", got, want)
	}
}
