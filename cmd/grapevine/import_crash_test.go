package main

// Deterministic crash-and-resume tests of `grapevine import`: the import
// runs as a child process (this test binary with GRAPEVINE_TEST_MAIN=1, see
// TestMain) that kills itself with SIGKILL at a chosen crash point
// (GRAPEVINE_TEST_CRASHPOINT, crashpoint.go), once or several times in a
// row, and a last run without a crash point must end as a clean import.
// TestImportSurvivesSIGKILL (main_test.go) kills at random moments; this
// one reaches every window on every run.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// crashChunkKeys makes the corpus below many chunks: 16 keys a chunk.
const crashChunkKeys = 16

// crashCorpus is the input of the crash tests, written once per test.
type crashCorpus struct {
	base  []string // an earlier import, for the incremental (not bulk) path
	files []string // the import that is crashed
}

// newCrashCorpus writes, with chunks of crashChunkKeys keys:
//
//	p.pgp  keys 0–39 (the incremental tests import it first)
//	a.pgp  keys 0–119 with a rejected key after key 49: 8 chunks
//	b.asc  keys 120–179, one armor block: 4 chunks
//	c.pgp  keys 180–299, then key 5 with a second user ID and key 7 again:
//	       8 chunks
//
// In bulk the 302 events are enough for the bulk builder (256), which stops
// at key 5's second version and leaves the last two events to indexing
// from the log; so every bulk crash point is passed.
func newCrashCorpus(t *testing.T) crashCorpus {
	t.Helper()
	const n = 300
	ents := make([]*openpgp.Entity, n)
	raws := make([][]byte, n)
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}
	for i := range ents {
		e, err := openpgp.NewEntity(fmt.Sprintf("Import Crash %d", i), "", fmt.Sprintf("import-crash%d@example.org", i), cfg)
		if err != nil {
			t.Fatal(err)
		}
		ents[i], raws[i] = e, serializeEntity(t, e)
	}
	if err := ents[5].AddUserId("Import Crash 5 again", "", "import-crash5b@example.org", cfg); err != nil {
		t.Fatal(err)
	}
	key5v2 := serializeEntity(t, ents[5])

	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cat := func(keys ...[]byte) []byte { return bytes.Join(keys, nil) }
	// A public-key packet without a user ID: rejected, the reader resyncs.
	bad := []byte{0x99, 0x00, 0x03, 0x04, 0x00, 0x00}
	var c crashCorpus
	c.base = []string{write("p.pgp", cat(raws[:40]...))}
	a := cat(cat(raws[:50]...), bad, cat(raws[50:120]...))
	c.files = []string{
		write("a.pgp", a),
		write("b.asc", pgpkey.AppendArmor(nil, nil, raws[120:180]...)),
		write("c.pgp", cat(cat(raws[180:]...), key5v2, raws[7])),
	}
	return c
}

func serializeEntity(t *testing.T, e *openpgp.Entity) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// runImportChild runs `grapevine import` as a child process with the crash
// point point ("" for none) and returns how it ended: killed by SIGKILL or
// not, and its error output.
func runImportChild(t *testing.T, dir, point string, files []string) (killed bool, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"import", "--basedir", dir}, files...)...)
	cmd.Env = append(os.Environ(), "GRAPEVINE_TEST_MAIN=1",
		fmt.Sprintf("%s=%d", crashChunkKeysEnv, crashChunkKeys))
	if point != "" {
		cmd.Env = append(cmd.Env, crashPointEnv+"="+point)
	}
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true, errOut.String()
		}
	}
	if err != nil {
		t.Fatalf("import (crash point %q): %v\n%s", point, err, errOut.String())
	}
	return false, errOut.String()
}

// importEndState is what a crashed and resumed import must end with.
type importEndState struct {
	hashes []string
	stats  map[string]string // without log_bytes
}

func endStateOf(t *testing.T, dir string) importEndState {
	t.Helper()
	st := statsOf(t, dir)
	delete(st, "log_bytes") // events carry their time: sizes may differ
	return importEndState{hashesOf(t, dir, ""), st}
}

// TestImportCrashPoints crashes the import at every crash point (crashpoint.go),
// at several passes of each and twice or three times in a row at different
// points, in bulk (empty basedir) and incremental imports, and checks that
// a last run ends as a clean import: the same SKS hashes, the same number
// of log events (none lost, none twice), every projection applied to the
// log's end, and `grapevine check` passes.
func TestImportCrashPoints(t *testing.T) {
	corpus := newCrashCorpus(t)

	// Clean imports, the references (with the same chunk size).
	cleanBulk := t.TempDir()
	if killed, errOut := runImportChild(t, cleanBulk, "", corpus.files); killed {
		t.Fatalf("clean import was killed\n%s", errOut)
	}
	wantBulk := endStateOf(t, cleanBulk)
	if got := wantBulk.stats["log_offset"]; got != "302" {
		t.Fatalf("clean bulk import: log_offset %s, want 302 (every valid key of the corpus once)", got)
	}
	cleanIncr := t.TempDir()
	mustRun(t, "import", "--basedir", cleanIncr, corpus.base[0])
	if killed, errOut := runImportChild(t, cleanIncr, "", corpus.files); killed {
		t.Fatalf("clean import was killed\n%s", errOut)
	}
	wantIncr := endStateOf(t, cleanIncr)
	cleanSmall := t.TempDir()
	if killed, errOut := runImportChild(t, cleanSmall, "", corpus.base); killed {
		t.Fatalf("clean import was killed\n%s", errOut)
	}
	wantSmall := endStateOf(t, cleanSmall)
	if fmt.Sprint(wantIncr.hashes) != fmt.Sprint(wantBulk.hashes) {
		t.Fatalf("incremental and bulk clean imports differ: %d and %d keys", len(wantIncr.hashes), len(wantBulk.hashes))
	}

	// Each case is the crash points of consecutive runs; each run must
	// reach its point (die by SIGKILL) and the run after the last one
	// finishes. Chunks count from 1 in each run: in bulk, a.pgp is chunks
	// 1–8, b.asc 9–12, c.pgp 13–20.
	cases := []struct {
		name        string
		incremental bool
		points      []string
		small       bool // import p.pgp alone: 40 keys, too few for the bulk builder
	}{
		{"bulk-begun", false, []string{"bulk-begun:1"}, false},
		{"first chunk appended", false, []string{"chunk-appended:1"}, false},
		{"chunk appended", false, []string{"chunk-appended:3"}, false},
		{"armored chunk appended", false, []string{"chunk-appended:10"}, false},
		{"last chunk appended", false, []string{"chunk-appended:20"}, false},
		{"first chunk recorded", false, []string{"chunk-recorded:1"}, false},
		{"chunk recorded", false, []string{"chunk-recorded:11"}, false},
		{"file done", false, []string{"file-done:1"}, false},
		{"last file done", false, []string{"file-done:3"}, false},
		{"log complete", false, []string{"log-complete:1"}, false},
		{"bulk ingested", false, []string{"bulk-ingested:1"}, false},
		{"indexing", false, []string{"indexing:1"}, false},
		{"indexed", false, []string{"indexed:1"}, false},
		// A second kill inside a resumed run: the case of commit 5bf8685
		// (a chunk skipped whole, recorded, then a kill: the next run
		// skipped a chunk never appended).
		{"skipped chunk recorded", false, []string{"chunk-appended:3", "chunk-recorded:1"}, false},
		{"skipped chunk recorded three kills", false, []string{"chunk-appended:3", "chunk-recorded:1", "chunk-recorded:1"}, false},
		{"skipped armored chunk recorded", false, []string{"chunk-appended:11", "chunk-recorded:1"}, false},
		{"skipped last chunk of a file", false, []string{"chunk-appended:8", "file-done:1"}, false},
		{"mid skip", false, []string{"chunk-appended:3", "key-skipped:5"}, false},
		{"first append after skip", false, []string{"chunk-appended:3", "chunk-appended:1"}, false},
		{"recorded then appended", false, []string{"chunk-recorded:5", "chunk-appended:2"}, false},
		{"begun then appended", false, []string{"bulk-begun:1", "chunk-appended:2"}, false},
		{"log complete then ingested", false, []string{"log-complete:1", "bulk-ingested:1"}, false},
		{"appended then log complete", false, []string{"chunk-appended:20", "log-complete:1"}, false},
		// Incremental: the basedir holds p.pgp's keys before. Chunks:
		// a.pgp 1–8, b.asc 9–12, c.pgp 13–20, as above.
		{"incremental chunk appended", true, []string{"chunk-appended:2"}, false},
		{"incremental chunk applied", true, []string{"chunk-applied:4"}, false},
		{"incremental chunk recorded", true, []string{"chunk-recorded:6"}, false},
		{"incremental armored chunk appended", true, []string{"chunk-appended:10"}, false},
		{"incremental file done", true, []string{"file-done:2"}, false},
		{"incremental appended twice", true, []string{"chunk-appended:5", "chunk-appended:1"}, false},
		{"incremental appended then recorded", true, []string{"chunk-appended:5", "chunk-recorded:1"}, false},
		{"incremental applied then applied", true, []string{"chunk-applied:12", "chunk-applied:2"}, false},
		// Into an empty basedir, but indexed from the log (3 chunks).
		{"small chunk appended", false, []string{"chunk-appended:2"}, true},
		{"small log complete", false, []string{"log-complete:1"}, true},
		{"small indexing", false, []string{"indexing:1"}, true},
		{"small indexed", false, []string{"indexed:1"}, true},
		{"small skipped chunk recorded", false, []string{"chunk-appended:2", "chunk-recorded:1"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			want, files := wantBulk, corpus.files
			switch {
			case tc.incremental:
				mustRun(t, "import", "--basedir", dir, corpus.base[0])
				want = wantIncr
			case tc.small:
				want, files = wantSmall, corpus.base
			}
			for i, p := range tc.points {
				if killed, errOut := runImportChild(t, dir, p, files); !killed {
					t.Fatalf("run %d finished without passing crash point %s\n%s", i+1, p, errOut)
				}
				if p == "bulk-ingested:1" {
					// What the bulk builder ingested is durable: the
					// next run does not build it again. It covers the
					// events before key 5's second version (301).
					if a := statsOf(t, dir)["applied_keys"]; a != "300" {
						t.Errorf("killed after the bulk ingest: applied_keys %s, want 300", a)
					}
				}
			}
			if killed, errOut := runImportChild(t, dir, "", files); killed {
				t.Fatalf("the last run was killed\n%s", errOut)
			}
			got := endStateOf(t, dir)
			if fmt.Sprint(got.hashes) != fmt.Sprint(want.hashes) {
				t.Errorf("%d keys, a clean import %d: the hash sets differ (log_offset %s, want %s; applied_keys %s)",
					len(got.hashes), len(want.hashes), got.stats["log_offset"], want.stats["log_offset"], got.stats["applied_keys"])
			}
			if fmt.Sprint(got.stats) != fmt.Sprint(want.stats) {
				t.Errorf("stats after the crashes:\n%v\na clean import:\n%v", got.stats, want.stats)
			}
			for _, p := range projections.Projections {
				if a := got.stats["applied_"+string(p)]; a != got.stats["log_offset"] {
					t.Errorf("applied_%s = %s, log_offset %s", p, a, got.stats["log_offset"])
				}
			}
			if out, _, err := grapevine(t, "check", "--basedir", dir); err != nil {
				t.Errorf("check: %v\n%s", err, out)
			}
		})
	}
}

// TestCrashPointSpec: the hook is off unless set, and a malformed or
// unknown point is refused rather than silently never firing.
func TestCrashPointSpec(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	if cp, err := loadCrashPoints(env(nil)); cp != nil || err != nil {
		t.Fatalf("unset: %v, %v; want nil, nil", cp, err)
	}
	cp, err := loadCrashPoints(env(map[string]string{crashPointEnv: "chunk-appended:3", crashChunkKeysEnv: "16"}))
	if err != nil || cp.point != cpChunkAppended || cp.n != 3 || cp.chunkKeys != 16 {
		t.Fatalf("chunk-appended:3 with 16 keys a chunk: %+v, %v", cp, err)
	}
	cp.pass(cpChunkAppended)
	cp.pass(cpChunkRecorded)
	cp.pass(cpChunkAppended) // the second of three: still alive
	if cp.passed != 2 {
		t.Fatalf("passed = %d after two passes of the point", cp.passed)
	}
	var none *crashPoints
	none.pass(cpChunkAppended) // unset: a nil check, nothing else
	for _, bad := range []map[string]string{
		{crashPointEnv: "chunk-appended"},
		{crashPointEnv: "chunk-appended:0"},
		{crashPointEnv: "chunk-apended:1"},
		{crashPointEnv: "chunk-appended:x"},
		{crashChunkKeysEnv: "0"},
		{crashChunkKeysEnv: "100000"},
	} {
		if _, err := loadCrashPoints(env(bad)); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	// The command refuses it with a usage error before opening the basedir.
	t.Setenv(crashPointEnv, "nowhere:1")
	_, _, err = grapevine(t, "import", "--basedir", t.TempDir(), newCrashCorpusFile(t))
	if !strings.Contains(fmt.Sprint(err), crashPointEnv) || exitCode(err) != 2 {
		t.Fatalf("import with %s=nowhere:1: %v (exit %d), want a usage error naming the variable", crashPointEnv, err, exitCode(err))
	}
}

// newCrashCorpusFile is one small key file.
func newCrashCorpusFile(t *testing.T) string {
	t.Helper()
	e, err := openpgp.NewEntity("Crash Spec", "", "crash-spec@example.org", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "k.pgp")
	if err := os.WriteFile(p, serializeEntity(t, e), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImportBulkResumeAfterOtherWriters: the progress file of a killed
// bulk import is only trusted while every event after the index it
// records was appended by the import. Otherwise, once the projections are
// gone (they are derived: an operator may delete grapevine/db to rebuild
// them, and a daemon killed before flushing them leaves none) and another
// writer appended events, the next import believed it was resuming the
// bulk import and skipped as many keys as events had been appended since:
// keys never appended were lost.
//
// "finished by a normal run" is a bulk import killed after its log was
// complete and finished by a run that was no longer bulk (the
// projections were partly built), which leaves the bulk mark in the
// progress file (no chunk is left to record it gone); "killed mid-bulk"
// is a bulk import killed between chunks and resumed after the mail.
// Both lost one key of new.pgp before.
func TestImportBulkResumeAfterOtherWriters(t *testing.T) {
	corpus := newCrashCorpus(t)
	var raws [][]byte
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}
	for i := 0; i < 21; i++ {
		e, err := openpgp.NewEntity(fmt.Sprintf("Import After %d", i), "", fmt.Sprintf("import-after%d@example.org", i), cfg)
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, serializeEntity(t, e))
	}
	newFile := filepath.Join(t.TempDir(), "new.pgp")
	if err := os.WriteFile(newFile, bytes.Join(raws[1:], nil), 0o644); err != nil {
		t.Fatal(err)
	}
	mail := "From: pgp-public-keys@pks.example.org\nTo: pgp-public-keys@keys.test\nSubject: incremental\nContent-type: application/pgp-keys\n\n" + armorKey(raws[0])

	for _, tc := range []struct {
		name   string
		point  string
		finish bool     // run the import to its end before the mail
		files  []string // imported after the mail
		keys   string   // then
		events string
	}{
		{"finished by a normal run", cpIndexed + ":1", true, []string{newFile}, "321", "323"}, // 300 + mailed + 20 new; 302 + 1 + 20
		// Resumed normally: key 7's second copy is not novel, not appended.
		{"killed mid-bulk", cpChunkRecorded + ":5", false, append(corpus.files, newFile), "321", "322"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if killed, errOut := runImportChild(t, dir, tc.point, corpus.files); !killed {
				t.Fatalf("the import did not pass %s\n%s", tc.point, errOut)
			}
			if tc.finish {
				if killed, errOut := runImportChild(t, dir, "", corpus.files); killed {
					t.Fatalf("the second run was killed\n%s", errOut)
				}
			}
			// Another writer appends an event: a key by mail.
			if out, err := mailIn(t, mail, "--basedir", dir); err != nil {
				t.Fatalf("mail-in: %v\n%s", err, out)
			}
			if err := os.RemoveAll(filepath.Join(dir, dbDir)); err != nil {
				t.Fatal(err)
			}
			if killed, errOut := runImportChild(t, dir, "", tc.files); killed {
				t.Fatalf("the last import was killed\n%s", errOut)
			}
			st := statsOf(t, dir)
			if st["keys"] != tc.keys || st["log_offset"] != tc.events {
				t.Errorf("keys %s, log_offset %s; want %s keys and %s events", st["keys"], st["log_offset"], tc.keys, tc.events)
			}
			if out, _, err := grapevine(t, "check", "--basedir", dir); err != nil {
				t.Errorf("check: %v\n%s", err, out)
			}
		})
	}
}
