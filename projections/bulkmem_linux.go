package projections

import (
	"os"
	"syscall"
)

// adviseHugePages marks m for transparent huge pages (MADV_HUGEPAGE). With
// the kernel's THP mode "madvise" (common, and this project's benchmark
// machine) only advised memory gets them; the call fails where THP is
// compiled out, and does nothing where it is "never".
func adviseHugePages(m []byte) error {
	return syscall.Madvise(m, syscall.MADV_HUGEPAGE)
}

// punchHole deallocates n bytes of f at off (FALLOC_FL_PUNCH_HOLE, the
// size kept): their page-cache pages are freed at once, dirty or not, and
// never written back.
func punchHole(f *os.File, off, n int64) error {
	const keepSize, punch = 0x1, 0x2 // FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		ferr = syscall.Fallocate(int(fd), keepSize|punch, off, n)
	}); err != nil {
		return err
	}
	return ferr
}
