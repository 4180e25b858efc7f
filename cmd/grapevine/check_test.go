package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble"
)

// importedBasedir returns a basedir holding the fixture keys.
func importedBasedir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	mustRun(t, "import", "--basedir", dir, fixture(t, "keys-a.pgp"), fixture(t, "keys-b.pgp"), fixture(t, "grace.pgp"))
	return dir
}

func TestCheckClean(t *testing.T) {
	dir := importedBasedir(t)
	out := mustRun(t, "check", "--basedir", dir)
	for _, want := range []string{
		"log: 7 events, checksums ok\n",
		"projections: identical to a replay of 7 events\n",
		"prefix tree: 7 elements, matches hash index\n",
		"keys: 7, matches the stored count\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	// No replay store is left behind.
	if left, _ := filepath.Glob(filepath.Join(dir, stateDir, "grapevine-check-*")); len(left) != 0 {
		t.Errorf("check left %v", left)
	}
	// Checking again finds the same.
	if again := mustRun(t, "check", "--basedir", dir); again != out {
		t.Errorf("second check:\n%s\nfirst:\n%s", again, out)
	}
}

// editDB opens the projections' Pebble database of dir directly, with the
// store closed, and lets edit change it.
func editDB(t *testing.T, dir string, edit func(db *pebble.DB)) {
	t.Helper()
	db, err := pebble.Open(filepath.Join(dir, dbDir), &pebble.Options{Logger: testPebbleLogger{t}})
	if err != nil {
		t.Fatal(err)
	}
	edit(db)
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// testPebbleLogger sends Pebble's errors to the test log and drops its
// chatter.
type testPebbleLogger struct{ t *testing.T }

func (l testPebbleLogger) Infof(string, ...any) {}

func (l testPebbleLogger) Errorf(format string, args ...any) { l.t.Logf("pebble: "+format, args...) }

func (l testPebbleLogger) Fatalf(format string, args ...any) { l.t.Fatalf("pebble: "+format, args...) }

// firstKey returns the first key of db with prefix p, and its value.
func firstKey(t *testing.T, db *pebble.DB, p string) ([]byte, []byte) {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte(p), UpperBound: []byte{p[0] + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if !it.First() {
		t.Fatalf("no key with prefix %q", p)
	}
	return append([]byte(nil), it.Key()...), append([]byte(nil), it.Value()...)
}

func TestCheckFindsDamagedProjections(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, db *pebble.DB)
		want []string // lines or parts of lines the report must have
	}{
		{
			name: "WordDeleted",
			edit: func(t *testing.T, db *pebble.DB) {
				k, _ := firstKey(t, db, "W")
				if err := db.Delete(k, pebble.Sync); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"projections: search index (words): W", "missing from the store (the replay has it)", "projections: 1 of "},
		},
		{
			name: "RecordChanged",
			edit: func(t *testing.T, db *pebble.DB) {
				k, v := firstKey(t, db, "K")
				v[len(v)-1] ^= 0x01
				if err := db.Set(k, v, pebble.Sync); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"projections: key index: K", "differs from the replay"},
		},
		{
			name: "PtreeElementRemoved",
			edit: func(t *testing.T, db *pebble.DB) {
				// The 7 fixture keys fit in the root leaf: drop its last
				// element and count, leaving the svalues as they were.
				root := []byte("Pn")
				v, closer, err := db.Get(root)
				if err != nil {
					t.Fatal(err)
				}
				v = append([]byte(nil), v...)
				closer.Close()
				if v[1] != 1 || v[2] != 7 {
					t.Fatalf("root node %x is not a leaf of 7 elements", v[:3])
				}
				v[2] = 6
				v = v[:len(v)-16]
				if err := db.Set(root, v, pebble.Sync); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{
				"projections: prefix tree: Pn differs from the replay",
				`prefix tree: node "": svalues differ from the product over its 6 elements`,
				"(SKS set) but the tree does not",
				"prefix tree: 6 elements, hash index has 7 SKS keys: they do not match",
			},
		},
		{
			name: "KeyCountWrong",
			edit: func(t *testing.T, db *pebble.DB) {
				if err := db.Set([]byte("mkeys"), binary.BigEndian.AppendUint64(nil, 99), pebble.Sync); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"projections: meta: mkeys differs from the replay", "key count: stored count 99, but the key index holds 7 live keys", "keys: 7 live, stored count 99"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := importedBasedir(t)
			editDB(t, dir, func(db *pebble.DB) { tc.edit(t, db) })
			out, errOut, err := grapevine(t, "check", "--basedir", dir)
			if err == nil {
				t.Fatalf("check passed a damaged store:\n%s", out)
			}
			if got, want := exitCode(err), 1; got != want {
				t.Errorf("exit status %d, want %d (%v)", got, want, err)
			}
			if !strings.Contains(err.Error(), "problem") {
				t.Errorf("error %q does not count problems", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("report lacks %q:\n%s\nstderr:\n%s", want, out, errOut)
				}
			}
			if !strings.Contains(out, "log: 7 events, checksums ok\n") {
				t.Errorf("log reported damaged:\n%s", out)
			}
		})
	}
}

// recordOffsets returns the byte offset of every record (after its
// uvarint length) in a segment file, and its length.
func recordOffsets(t *testing.T, b []byte) [][2]int {
	t.Helper()
	var out [][2]int
	for off := 0; off < len(b); {
		l, n := binary.Uvarint(b[off:])
		if n <= 0 {
			t.Fatalf("bad frame at %d", off)
		}
		out = append(out, [2]int{off + n, int(l)})
		off += n + int(l)
	}
	return out
}

func TestCheckFindsCorruptLogRecord(t *testing.T) {
	dir := importedBasedir(t)
	seg := filepath.Join(dir, logDir, "00000000000000000001")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	recs := recordOffsets(t, b)
	if len(recs) != 7 {
		t.Fatalf("segment holds %d records, want 7", len(recs))
	}
	// Flip a byte inside the key of the fourth record: its checksum fails,
	// and valid records follow it.
	r := recs[3]
	b[r[0]+r[1]/2] ^= 0x40
	if err := os.WriteFile(seg, b, 0o640); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(seg)

	out, errOut, err := grapevine(t, "check", "--basedir", dir)
	if err == nil {
		t.Fatalf("check passed a corrupt log:\n%s", out)
	}
	for _, want := range []string{
		"log: index 4 (segment 00000000000000000001 byte ",
		"checksum",
		"log: 7 records, 1 problem\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s\nstderr:\n%s", want, out, errOut)
		}
	}
	// check repairs nothing: the damaged record is still there.
	after, _ := os.ReadFile(seg)
	if string(after) != string(before) {
		t.Error("check changed the log")
	}
}

func TestCheckRefusesLockedBasedir(t *testing.T) {
	dir := importedBasedir(t)
	lock, err := lockBasedir(filepath.Join(dir, lockFile))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	out, _, err := grapevine(t, "check", "--basedir", dir)
	if err == nil {
		t.Fatalf("check ran on a locked basedir:\n%s", out)
	}
	// Locked by a process that is not a daemon (no admin socket): refused.
	if got := err.Error(); !strings.Contains(got, "in use by another grapevine process") {
		t.Errorf("error %q", got)
	}
	if exitCode(err) != 1 {
		t.Errorf("exit status %d, want 1", exitCode(err))
	}
}

// TestCheckThroughRunningDaemon: with the daemon holding the basedir,
// check runs inside it and reports a clean store.
func TestCheckThroughRunningDaemon(t *testing.T) {
	url, dir := startDaemonIn(t, t.TempDir(), func(dir string) {
		mustRun(t, "import", "--basedir", dir, fixture(t, "keys-a.pgp"))
	})
	_ = url
	out := mustRun(t, "check", "--basedir", dir)
	for _, want := range []string{"log: 3 events, 0 unreadable", "projections: 0 of", "prefix tree: 3 elements, hash index has 3 SKS keys", "keys: 3 live, stored count 3"} {
		if !strings.Contains(out, want) {
			t.Errorf("check through the daemon lacks %q:\n%s", want, out)
		}
	}
}
