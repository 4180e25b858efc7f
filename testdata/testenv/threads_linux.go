package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// ThreadNices returns the nice value of every thread of process pid (0:
// this one), by thread ID, from /proc/PID/task/*/stat. A thread that ends
// while it is read is left out.
func ThreadNices(tb testing.TB, pid int) map[int]int {
	tb.Helper()
	proc := "self"
	if pid != 0 {
		proc = strconv.Itoa(pid)
	}
	dirs, err := filepath.Glob(filepath.Join("/proc", proc, "task", "*"))
	if err != nil || len(dirs) == 0 {
		tb.Fatalf("list threads: %v (%d found)", err, len(dirs))
	}
	nices := make(map[int]int, len(dirs))
	for _, d := range dirs {
		tid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue // ended
		}
		// The command name, in parentheses, may hold spaces; the fields
		// after it start with the state (field 3), so nice (field 19) is
		// the 17th.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 17 {
			tb.Fatalf("%s/stat: %d fields after the name: %q", d, len(f), s)
		}
		n, err := strconv.Atoi(f[16])
		if err != nil {
			tb.Fatalf("%s/stat: nice %q: %v", d, f[16], err)
		}
		nices[tid] = n
	}
	return nices
}

// ThreadsAtNice returns the IDs of the threads of process pid (0: this one)
// whose nice value is n.
func ThreadsAtNice(tb testing.TB, pid, n int) []int {
	tb.Helper()
	var tids []int
	for tid, v := range ThreadNices(tb, pid) {
		if v == n {
			tids = append(tids, tid)
		}
	}
	return tids
}

// OwnNice returns the nice value of the calling thread.
func OwnNice(tb testing.TB) int {
	tb.Helper()
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return 20 - prio // the raw system call returns 20 - nice
}
