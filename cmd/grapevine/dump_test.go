package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDumpWriteFailureStops makes the second dump file impossible to create
// (a directory has its name): dump must fail with that error, stop, and not
// write the metadata file that marks a complete dump.
func TestDumpWriteFailureStops(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "import", "--basedir", dir, fixture(t, "keys-a.pgp"), fixture(t, "keys-b.pgp"))
	out := t.TempDir()
	if err := os.Mkdir(filepath.Join(out, "sks-dump-0001.pgp"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, _, err := grapevine(t, "dump", "--basedir", dir, "--out", out, "--keys-per-file", "2")
	if err == nil || !strings.Contains(err.Error(), "sks-dump-0001.pgp") {
		t.Fatalf("dump into a blocked file: %v, want an error naming sks-dump-0001.pgp", err)
	}
	if _, err := os.Stat(filepath.Join(out, "metadata-sks-dump.txt")); !os.IsNotExist(err) {
		t.Fatalf("metadata written after a failed dump: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "sks-dump-0002.pgp")); !os.IsNotExist(err) {
		t.Fatalf("dump went on after the failure: %v", err)
	}
}
