package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// TestMain lets the test binary act as the grapevine command for crash
// tests: GRAPEVINE_TEST_MAIN=1 runs main() with the remaining arguments.
func TestMain(m *testing.M) {
	if os.Getenv("GRAPEVINE_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// grapevine runs the command in-process and returns stdout, stderr and err.
func grapevine(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := grapevine(t, args...)
	if err != nil {
		t.Fatalf("grapevine %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func statsOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := mustRun(t, "stats", "--basedir", dir)
	m := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("stats line %q is not 'name: value'", line)
		}
		m[k] = v
	}
	return m
}

// settledStatsOf is statsOf once the key projection has applied the whole
// log. A daemon answers an upload once it is durable in the log and applies
// it a moment later; stats reports the projections as they are.
func settledStatsOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	st := statsOf(t, dir)
	for deadline := time.Now().Add(20 * time.Second); st["applied_keys"] != st["log_offset"] && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		st = statsOf(t, dir)
	}
	return st
}

// hashesOf returns the sorted SKS hashes of every key in a basedir, read
// through a full dump.
func hashesOf(t *testing.T, dir string, at string) []string {
	t.Helper()
	out := t.TempDir()
	args := []string{"dump", "--basedir", dir, "--out", out}
	if at != "" {
		args = append(args, "--at", at)
	}
	mustRun(t, args...)
	return hashesInDir(t, out)
}

func hashesInDir(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.pgp"))
	var hs []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		r := pgpkey.NewReader(fh)
		for {
			raw, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			k, err := pgpkey.Canonicalize(raw.Packets)
			if err != nil {
				t.Fatalf("%s: dumped key does not canonicalise: %v", f, err)
			}
			hs = append(hs, k.Hash().String())
		}
		fh.Close()
	}
	sort.Strings(hs)
	return hs
}

func fixture(t *testing.T, name string) string {
	return testenv.SharedFile(t, "fixtures/sks/test-keys/"+name)
}

func TestImportStatsDumpRoundTrip(t *testing.T) {
	dir := t.TempDir()
	out := mustRun(t, "import", "--basedir", dir, fixture(t, "keys-a.pgp"), fixture(t, "keys-b.pgp"))
	if !strings.Contains(out, "imported 6 keys") {
		t.Fatalf("import output %q", out)
	}
	st := statsOf(t, dir)
	for k, want := range map[string]string{"keys": "6", "log_offset": "6", "applied_keys": "6", "applied_search": "6", "applied_ptree": "6", "ptree_elements": "6"} {
		if st[k] != want {
			t.Errorf("stats %s = %q, want %q", k, st[k], want)
		}
	}
	if n := st["log_bytes"]; n == "" || n == "0" {
		t.Errorf("log_bytes = %q", n)
	}
	// Importing the same files again appends nothing.
	mustRun(t, "import", "--basedir", dir, fixture(t, "keys-a.pgp"))
	if got := statsOf(t, dir)["log_offset"]; got != "6" {
		t.Errorf("re-import grew the log to %s events", got)
	}

	// The hashes equal those SKS computed (test-keys.tsv).
	want := tsvHashes(t, fixture(t, "test-keys.tsv"), 6)
	got := hashesOf(t, dir, "")
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("dumped hashes\n%v\nwant (SKS)\n%v", got, want)
	}

	// dump → import into a fresh basedir gives the same hashes.
	dumpDir := t.TempDir()
	mustRun(t, "dump", "--basedir", dir, "--out", dumpDir, "--keys-per-file", "4")
	for _, f := range []string{"sks-dump-0000.pgp", "sks-dump-0001.pgp", "MD5SUMS", "metadata-sks-dump.txt"} {
		if _, err := os.Stat(filepath.Join(dumpDir, f)); err != nil {
			t.Fatalf("dump lacks %s", f)
		}
	}
	meta, _ := os.ReadFile(filepath.Join(dumpDir, "metadata-sks-dump.txt"))
	for _, s := range []string{"#Files-Count: 2\n", "#Key-Count: 6\n", "#Digest-algo: md5\n", "  sks-dump-0001.pgp\n", "#Dump-ended: "} {
		if !bytes.Contains(meta, []byte(s)) {
			t.Errorf("metadata lacks %q:\n%s", s, meta)
		}
	}
	if md5sum, err := exec.LookPath("md5sum"); err == nil {
		cmd := exec.Command(md5sum, "-c", "MD5SUMS")
		cmd.Dir = dumpDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("md5sum -c MD5SUMS: %v\n%s", err, out)
		}
	}
	fresh := t.TempDir()
	mustRun(t, "import", "--basedir", fresh, dumpDir)
	if got2 := hashesOf(t, fresh, ""); strings.Join(got2, ",") != strings.Join(want, ",") {
		t.Fatalf("re-imported dump hashes %v, want %v", got2, want)
	}
	// replay rebuilds the same state.
	mustRun(t, "replay", "--basedir", fresh)
	if got3 := hashesOf(t, fresh, ""); strings.Join(got3, ",") != strings.Join(want, ",") {
		t.Fatalf("hashes after replay %v, want %v", got3, want)
	}
}

func tsvHashes(t *testing.T, path string, n int) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var hs []string
	for _, line := range strings.Split(string(data), "\n") {
		// file, fingerprint, sks_hash, algo, uids
		f := strings.Split(line, "\t")
		if len(f) < 3 || len(f[2]) != 32 || (f[0] != "keys-a.pgp" && f[0] != "keys-b.pgp") {
			continue
		}
		hs = append(hs, strings.ToUpper(f[2]))
	}
	sort.Strings(hs)
	if len(hs) < n {
		t.Fatalf("%s: %d hashes, want at least %d", path, len(hs), n)
	}
	return hs
}

func TestDumpAtIndex(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "import", "--basedir", dir, fixture(t, "keys-a.pgp"))
	mid := time.Now()
	time.Sleep(10 * time.Millisecond)
	mustRun(t, "import", "--basedir", dir, fixture(t, "keys-b.pgp"))
	onlyA := t.TempDir()
	mustRun(t, "import", "--basedir", onlyA, fixture(t, "keys-a.pgp"))
	wantA := hashesOf(t, onlyA, "")
	for k := 0; k <= 6; k++ {
		got := hashesOf(t, dir, fmt.Sprint(k))
		if len(got) != k {
			t.Fatalf("dump at %d has %d keys", k, len(got))
		}
	}
	if got := hashesOf(t, dir, "3"); strings.Join(got, ",") != strings.Join(wantA, ",") {
		t.Fatalf("dump at 3 = %v, want the keys of keys-a.pgp %v", got, wantA)
	}
	if got := hashesOf(t, dir, mid.Format(time.RFC3339Nano)); strings.Join(got, ",") != strings.Join(wantA, ",") {
		t.Fatalf("dump at time between the imports = %v, want %v", got, wantA)
	}
	if _, _, err := grapevine(t, "dump", "--basedir", dir, "--out", t.TempDir(), "--at", "7"); err == nil {
		t.Fatal("dump past the log's end succeeded")
	}
}

func TestImportRejectsBadKeysAndKeepsTheRest(t *testing.T) {
	dir := t.TempDir()
	in := t.TempDir()
	good, err := os.ReadFile(fixture(t, "keys-a.pgp"))
	if err != nil {
		t.Fatal(err)
	}
	// A file mixing garbage, a key without user ID, a secret key and a
	// truncated key with good keys.
	firstKeyLen := firstKeyLength(t, good)
	var mixed bytes.Buffer
	mixed.Write([]byte{0x95, 0x00, 0x04, 0x04, 0x01, 0x02, 0x03}) // secret key packet
	mixed.Write([]byte{0x99, 0x00, 0x03, 0x04, 0x00, 0x00})       // public key packet, no user ID
	mixed.Write(good)
	mixed.Write(good[:firstKeyLen/2]) // truncated
	if err := os.WriteFile(filepath.Join(in, "mixed.pgp"), mixed.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in, "garbage.pgp"), bytes.Repeat([]byte{0x00, 0x13, 0x37}, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := grapevine(t, "import", "--basedir", dir, in)
	if err != nil {
		t.Fatalf("import aborted on bad keys: %v\n%s", err, errOut)
	}
	if got := statsOf(t, dir)["keys"]; got != "3" {
		t.Fatalf("keys = %s, want the 3 good ones; output %q\n%s", got, out, errOut)
	}
	if !strings.Contains(errOut, "mixed.pgp") || !strings.Contains(errOut, "rejected key") {
		t.Errorf("stderr does not report rejected keys with their file:\n%s", errOut)
	}
	if !strings.Contains(errOut, "secret key material refused") {
		t.Errorf("stderr does not say the secret key was refused:\n%s", errOut)
	}
	if !strings.Contains(out, "rejected") || strings.Contains(out, " 0 rejected") {
		t.Errorf("summary does not count rejected keys: %q", out)
	}
}

func firstKeyLength(t *testing.T, data []byte) int {
	r := pgpkey.NewReader(bytes.NewReader(data))
	k, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	return len(k.Raw)
}

func TestBadArgumentsExitWithOneLine(t *testing.T) {
	cases := [][]string{
		{},
		{"frobnicate"},
		{"import"},
		{"import", "--basedir", t.TempDir(), "/nonexistent/file.pgp"},
		{"dump", "--basedir", t.TempDir()},
		{"stats", "--basedir", "/nonexistent/basedir"},
		{"replay", "--basedir", t.TempDir()},
		{"dump", "--basedir", t.TempDir(), "--out", t.TempDir(), "--keys-per-file", "0"},
	}
	for _, args := range cases {
		_, _, err := grapevine(t, args...)
		if err == nil {
			t.Errorf("grapevine %q succeeded", args)
			continue
		}
		if msg := err.Error(); msg == "" || strings.Contains(msg, "\n") {
			t.Errorf("grapevine %q: error %q is not one line", args, msg)
		}
	}
}

func TestBasedirLockedByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "import", "--basedir", dir, fixture(t, "keys-a.pgp"))
	b, err := openBasedir(dir, zerolog.Nop(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, _, err = grapevine(t, "stats", "--basedir", dir)
	if err == nil || !strings.Contains(err.Error(), "in use by another grapevine process") {
		t.Fatalf("stats on a locked basedir: %v", err)
	}
}

// TestImportSurvivesSIGKILL kills import child processes at random
// moments (at least 20 times; 100 with GRAPEVINE_SOAK=1), restarts each
// one, and checks the end state equals a clean import and that the log
// holds no duplicate events. An import that finishes before its kill ends
// a pass: the next pass starts in a fresh directory.
func TestImportSurvivesSIGKILL(t *testing.T) {
	keyring := testenv.RequireFile(t, "/usr/share/keyrings/debian-keyring.gpg", "debian-keyring")
	clean := t.TempDir()
	mustRun(t, "import", "--basedir", clean, keyring)
	want := hashesOf(t, clean, "")
	wantEvents := statsOf(t, clean)["log_offset"]

	minKills := 20
	if soak() {
		minKills = 100
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	kills, passes := 0, 0
	for kills < minKills {
		dir := t.TempDir()
		passes++
		for round := 0; ; round++ {
			if round == 200 {
				t.Fatalf("pass %d: import did not finish in %d rounds", passes, round)
			}
			cmd := exec.Command(os.Args[0], "import", "--basedir", dir, keyring)
			cmd.Env = append(os.Environ(), "GRAPEVINE_TEST_MAIN=1")
			var errOut bytes.Buffer
			cmd.Stderr = &errOut
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			finished := false
			// Early kills land in start-up and the first chunks; later
			// ones get longer, so every pass finishes. Once there were
			// enough kills, the import runs to its end.
			var killAt <-chan time.Time
			if kills < minKills {
				killAt = time.After(time.Duration(50+rng.Intn(300+100*round)) * time.Millisecond)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("pass %d round %d: import failed: %v\n%s", passes, round, err, errOut.String())
				}
				finished = true
			case <-killAt:
				cmd.Process.Signal(syscall.SIGKILL)
				<-done
				kills++
			}
			if finished {
				break
			}
		}
		mustRun(t, "import", "--basedir", dir, keyring)
		if got := hashesOf(t, dir, ""); strings.Join(got, ",") != strings.Join(want, ",") {
			// Say whether the log or the projections lack them.
			st := statsOf(t, dir)
			t.Fatalf("pass %d, after %d kills: %d keys, want %d; hash sets differ (log_offset %s, want %s; applied_keys %s; keys %s)",
				passes, kills, len(got), len(want), st["log_offset"], wantEvents, st["applied_keys"], st["keys"])
		}
		if got := statsOf(t, dir)["log_offset"]; got != wantEvents {
			t.Fatalf("pass %d, after %d kills the log has %s events, a clean import %s: work was duplicated", passes, kills, got, wantEvents)
		}
		if out, _, err := grapevine(t, "check", "--basedir", dir); err != nil {
			t.Fatalf("pass %d: check after the kills: %v\n%s", passes, err, out)
		}
	}
	t.Logf("killed the import %d times in %d passes", kills, passes)
}
