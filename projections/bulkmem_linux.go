package projections

import "syscall"

// adviseHugePages marks m for transparent huge pages (MADV_HUGEPAGE). With
// the kernel's THP mode "madvise" (common, and this project's benchmark
// machine) only advised memory gets them; the call fails where THP is
// compiled out, and does nothing where it is "never".
func adviseHugePages(m []byte) error {
	return syscall.Madvise(m, syscall.MADV_HUGEPAGE)
}
