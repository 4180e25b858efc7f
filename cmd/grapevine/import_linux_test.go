package main

import (
	"path/filepath"
	"testing"

	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// TestImportLeavesLogUncached: a bulk import drops the pages of the log it
// has made durable from the page cache as it goes (eventlog.Config
// DropWritten), so that its later writes reuse them: of the log's segments
// at most the last one keeps any. (That the log reads back whole after:
// eventlog's TestDropWrittenLeavesSegmentsUncached.)
func TestImportLeavesLogUncached(t *testing.T) {
	keyring := testenv.RequireFile(t, "/usr/share/keyrings/debian-keyring.gpg", "debian-keyring")
	dir := t.TempDir()
	if !testenv.DropsPages(t, dir) {
		t.Skip("this file system keeps clean pages on POSIX_FADV_DONTNEED")
	}
	if _, errOut, err := grapevine(t, "import", "--basedir", dir, keyring); err != nil {
		t.Fatalf("import: %v\n%s", err, errOut)
	}
	segs, err := filepath.Glob(filepath.Join(dir, logDir, "[0-9]*"))
	if err != nil || len(segs) < 3 {
		t.Fatalf("log segments: %v, %v; want at least 3", segs, err)
	}
	cached, total := 0, 0
	for _, p := range segs[:len(segs)-1] {
		c, n := testenv.PagesCached(t, p)
		cached += c
		total += n
	}
	if cached != 0 {
		t.Fatalf("%d of the %d pages of the log's sealed segments are cached after the import, want 0", cached, total)
	}
}
