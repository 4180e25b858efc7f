package projections

import (
	"fmt"
	"runtime"
	"syscall"
)

// lowerThreadPriority locks the calling goroutine to its OS thread and
// raises that thread's nice value by n (up to 19), leaving every other
// thread of the process as it was: on Linux a nice value belongs to a
// thread, not to the process (setpriority(2), PRIO_PROCESS with a thread
// ID). It returns the thread's nice value now.
//
// The caller must never unlock the thread: a goroutine that returns while
// locked ends its thread instead of handing it back to the runtime, so no
// other goroutine is ever scheduled on a lowered thread.
func lowerThreadPriority(n int) (int, error) {
	runtime.LockOSThread()
	tid := syscall.Gettid()
	// The raw getpriority system call returns 20 - nice (1..40).
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
	if err != nil {
		return 0, fmt.Errorf("getpriority of thread %d: %w", tid, err)
	}
	nice := min(20-prio+n, 19)
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil {
		return 20 - prio, fmt.Errorf("setpriority of thread %d to %d: %w", tid, nice, err)
	}
	return nice, nil
}
