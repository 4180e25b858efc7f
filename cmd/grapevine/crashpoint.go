package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Test-only crash points of `grapevine import`.
//
// GRAPEVINE_TEST_CRASHPOINT=NAME:N makes the import kill itself with SIGKILL
// the N-th time (from 1) it passes the point NAME, so that a test can crash
// it at exactly the windows that matter, without timing
// (TestImportCrashPoints). GRAPEVINE_TEST_IMPORT_CHUNK_KEYS=K caps chunks at
// K keys, so that a small corpus has many chunks. Both are read once when
// the import starts; unset, the hook is a nil pointer and each point costs
// one nil check. Nothing but tests sets them.
const (
	crashPointEnv      = "GRAPEVINE_TEST_CRASHPOINT"
	crashChunkKeysEnv  = "GRAPEVINE_TEST_IMPORT_CHUNK_KEYS"
	maxCrashChunkKeys  = importChunkKeys
	crashPointUsageFmt = "%s=%q: want NAME:N with N >= 1 and NAME one of %s"
)

// The points, in the order an import passes them.
const (
	// cpBulkBegun: the progress file says bulk, nothing is appended yet.
	cpBulkBegun = "bulk-begun"
	// cpKeySkipped: a resumed bulk run passed over one key its killed
	// predecessor had appended but not recorded (nothing saved since).
	cpKeySkipped = "key-skipped"
	// cpChunkAppended: a chunk's events are durable in the log; the
	// progress file does not record them, and (not bulk) they are not
	// applied.
	cpChunkAppended = "chunk-appended"
	// cpChunkApplied: not bulk, a chunk is applied to the projections but
	// not recorded in the progress file.
	cpChunkApplied = "chunk-applied"
	// cpChunkRecorded: the progress file records a chunk (also one whose
	// keys were all skipped, or all unchanged).
	cpChunkRecorded = "chunk-recorded"
	// cpFileDone: the progress file marks a file done.
	cpFileDone = "file-done"
	// cpLogComplete: bulk, every file's keys are durable in the log and
	// the projections are not built yet.
	cpLogComplete = "log-complete"
	// cpBulkIngested: bulk, the bulk builder's projections are ingested;
	// the events after its cutoff are not applied yet.
	cpBulkIngested = "bulk-ingested"
	// cpIndexing: bulk, after each batch applied from the log while
	// indexing what the bulk builder left.
	cpIndexing = "indexing"
	// cpIndexed: bulk, every event is applied; the progress file still
	// says bulk.
	cpIndexed = "indexed"
)

var crashPointNames = []string{cpBulkBegun, cpKeySkipped, cpChunkAppended, cpChunkApplied,
	cpChunkRecorded, cpFileDone, cpLogComplete, cpBulkIngested, cpIndexing, cpIndexed}

// crashPoints is the parsed hook; nil when the variables are unset.
type crashPoints struct {
	point     string
	n, passed int
	chunkKeys int // 0: the normal chunk sizes
}

// loadCrashPoints reads the test-only variables (nil, nil when unset).
func loadCrashPoints(getenv func(string) string) (*crashPoints, error) {
	spec, chunk := getenv(crashPointEnv), getenv(crashChunkKeysEnv)
	if spec == "" && chunk == "" {
		return nil, nil
	}
	cp := &crashPoints{}
	if spec != "" {
		name, count, _ := strings.Cut(spec, ":")
		n, err := strconv.Atoi(count)
		known := false
		for _, p := range crashPointNames {
			known = known || p == name
		}
		if err != nil || n < 1 || !known {
			return nil, fmt.Errorf(crashPointUsageFmt, crashPointEnv, spec, strings.Join(crashPointNames, ", "))
		}
		cp.point, cp.n = name, n
	}
	if chunk != "" {
		k, err := strconv.Atoi(chunk)
		if err != nil || k < 1 || k > maxCrashChunkKeys {
			return nil, fmt.Errorf("%s=%q: want a number of keys from 1 to %d", crashChunkKeysEnv, chunk, maxCrashChunkKeys)
		}
		cp.chunkKeys = k
	}
	return cp, nil
}

// pass kills the process at the N-th pass of the chosen point. SIGKILL, not
// exit: no deferred function, no flush, no Close runs, as in a real crash.
func (cp *crashPoints) pass(name string) {
	if cp == nil || name != cp.point {
		return
	}
	cp.passed++
	if cp.passed == cp.n {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		for { // the signal is on its way; do not run on meanwhile
			time.Sleep(time.Second)
		}
	}
}
