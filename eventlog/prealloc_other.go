//go:build !linux

package eventlog

import "os"

// preallocate does nothing here (see prealloc_linux.go).
func preallocate(f *os.File, size int64) {}
