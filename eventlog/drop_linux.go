package eventlog

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache asks the kernel to drop f's cached pages wholly inside
// [off, off+n) (n 0: to the end of the file). Dirty pages are not dropped
// (the kernel starts writing them back instead).
func dropCache(f *os.File, off, n int64) error {
	return unix.Fadvise(int(f.Fd()), off, n, unix.FADV_DONTNEED)
}
