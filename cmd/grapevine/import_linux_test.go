package main

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

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
	if !fsDropsPages(t, dir) {
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
		c, n := pagesCached(t, p)
		cached += c
		total += n
	}
	if cached != 0 {
		t.Fatalf("%d of the %d pages of the log's sealed segments are cached after the import, want 0", cached, total)
	}
}

// pagesCached returns how many of path's pages are in the page cache, and
// how many it has (mincore over a mapping that touches none of them).
func pagesCached(tb testing.TB, path string) (cached, pages int) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	if fi.Size() == 0 {
		return 0, 0
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		tb.Fatal(err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		tb.Fatal(e)
	}
	for _, v := range vec {
		cached += int(v & 1)
	}
	return cached, len(vec)
}

// fsDropsPages reports whether dir's file system drops a file's clean
// pages on POSIX_FADV_DONTNEED (tmpfs, for one, keeps them).
func fsDropsPages(tb testing.TB, dir string) bool {
	tb.Helper()
	path := filepath.Join(dir, "fadvise-probe")
	defer os.Remove(path)
	if err := os.WriteFile(path, make([]byte, 64<<10), 0o644); err != nil {
		tb.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		tb.Fatal(err)
	}
	if c, _ := pagesCached(tb, path); c == 0 {
		return false
	}
	if unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED) != nil {
		return false
	}
	c, _ := pagesCached(tb, path)
	return c == 0
}
