package main

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble"
)

// TestReplayRebuildsOldSchema follows the migration after a layout change
// (projections/layout.go schemaVersion; docs/operations.md): commands
// refuse a store written by another schema version and say to run replay,
// and `grapevine replay` rebuilds it from the log, after which everything
// answers as before.
func TestReplayRebuildsOldSchema(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "import", "--basedir", dir, fixture(t, "keys-a.pgp"), fixture(t, "keys-b.pgp"))
	want := hashesOf(t, dir, "")
	editDB(t, dir, func(db *pebble.DB) {
		if err := db.Set([]byte("mschema"), binary.BigEndian.AppendUint64(nil, 2), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	})
	if _, errOut, err := grapevine(t, "stats", "--basedir", dir); err == nil || !strings.Contains(err.Error()+errOut, "run replay") {
		t.Fatalf("stats on an old-schema store: %v %s; want a refusal that says to run replay", err, errOut)
	}
	if out := mustRun(t, "replay", "--basedir", dir); !strings.Contains(out, "keys") {
		t.Fatalf("replay: %q", out)
	}
	if got := hashesOf(t, dir, ""); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("hashes after the rebuild %v, want %v", got, want)
	}
	mustRun(t, "check", "--basedir", dir)
}
