package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// TestBulkImportDoesNotReadLogBack: an import into an empty basedir builds
// the projections from the events it appends, without reading the log
// back (the bulk path's log line counts the events it read from the log),
// and ends as a replay of that log does.
func TestBulkImportDoesNotReadLogBack(t *testing.T) {
	keyring := testenv.RequireFile(t, "/usr/share/keyrings/debian-keyring.gpg", "debian-keyring")
	dir := t.TempDir()
	_, errOut, err := grapevine(t, "import", "--basedir", dir, keyring)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, errOut)
	}
	var bulk map[string]any
	for _, line := range strings.Split(errOut, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["message"] == "bulk applied" {
			bulk = m
		}
	}
	if bulk == nil {
		t.Fatalf("no bulk build in the import's log:\n%s", errOut)
	}
	if n, ok := bulk["read_from_log"].(float64); !ok || n != 0 {
		t.Fatalf("bulk build read %v events back from the log, want 0", bulk["read_from_log"])
	}
	if got, want := fmt.Sprint(bulk["applied"]), statsOf(t, dir)["log_offset"]; got != want {
		t.Fatalf("bulk build applied up to %s, the log ends at %s", got, want)
	}
	if out, _, err := grapevine(t, "check", "--basedir", dir); err != nil {
		t.Fatalf("check after the import: %v\n%s", err, out)
	}
}

// TestImportLogSegments: an import writes the log in segments of
// importSegmentBytes (tidwall/wal's copy of the tail segment, grown by
// append, stays small), each overrun by at most one key; a log opened
// later with the default segment size reads them and appends after them.
func TestImportLogSegments(t *testing.T) {
	keyring := testenv.RequireFile(t, "/usr/share/keyrings/debian-keyring.gpg", "debian-keyring")
	dir := t.TempDir()
	if _, errOut, err := grapevine(t, "import", "--basedir", dir, keyring); err != nil {
		t.Fatalf("import: %v\n%s", err, errOut)
	}
	segs, err := filepath.Glob(filepath.Join(dir, logDir, strings.Repeat("[0-9]", 20)))
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) < 10 {
		t.Fatalf("%d log segments for the Debian keyring (28 MB), want at least 10", len(segs))
	}
	var small int
	for _, p := range segs[:len(segs)-1] {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() < importSegmentBytes*2 {
			small++
		}
	}
	if small < (len(segs)-1)*9/10 {
		t.Fatalf("%d of %d sealed segments under %d bytes, want nearly all", small, len(segs)-1, importSegmentBytes*2)
	}
	if out, _, err := grapevine(t, "stats", "--basedir", dir); err != nil {
		t.Fatalf("stats after the import: %v\n%s", err, out)
	}
}
