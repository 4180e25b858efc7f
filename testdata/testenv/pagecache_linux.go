package testenv

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PagesCached returns how many of path's pages are in the page cache, and
// how many it has (mincore over a mapping that touches none of them).
func PagesCached(tb testing.TB, path string) (cached, pages int) {
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

// DropsPages reports whether dir's file system drops a file's clean pages
// on POSIX_FADV_DONTNEED (tmpfs, for one, keeps them).
func DropsPages(tb testing.TB, dir string) bool {
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
	if c, _ := PagesCached(tb, path); c == 0 {
		return false // nothing cached to begin with
	}
	if unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED) != nil {
		return false
	}
	c, _ := PagesCached(tb, path)
	return c == 0
}
