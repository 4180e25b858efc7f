//go:build !linux

package projections

import "errors"

// lowerThreadPriority is Linux only (nice_linux.go): elsewhere a nice value
// belongs to the whole process, and lowering it would slow serving too.
func lowerThreadPriority(n int) (int, error) {
	return 0, errors.New("per-thread priority is supported on Linux only")
}
