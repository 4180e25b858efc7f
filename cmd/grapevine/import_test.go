package main

import (
	"encoding/json"
	"fmt"
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
