package main

import (
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"

	"github.com/rs/zerolog"
)

// Garbage collector settings of `grapevine serve`, unless the operator
// sets GOGC or GOMEMLIMIT (then Go's own handling of them applies).
//
// The daemon's Go heap is small — under 10 MB live after a start, Pebble's
// block cache lives outside it — so with Go's default GOGC=100 a collection
// ran every 9 MB of garbage: ten a second at 10k op=get requests a second,
// each taking a quarter of the CPU for several milliseconds, on a machine
// with 2 cores shared with the clients. At 400 the collector runs a quarter
// as often and op=get costs about 8 % less CPU (docs/benchmarks.md,
// optimisation log); the memory limit keeps a heap that has grown large
// (caches full, a burst of uploads) from growing five-fold before it is
// collected.
//
// GOGC=400 still meant a cycle every 30-40 MB of garbage, 16 per 100k
// op=get requests, five a second at 35k requests a second: with 4-8 ms of
// marking each, about 3 % of the time, enough to set the p99 of lookups.
// So while the live heap is small the heap goal is kept at least
// serveMinHeapGoal (heapGoalFloor): a cycle per 100 MB or more of garbage.
// What that costs is memory: the heap of an idle-but-busy daemon grows to
// that goal before it is collected (docs/benchmarks.md says how much).
const (
	serveGCPercent   = 400
	serveMemoryLimit = 1 << 30
	serveMinHeapGoal = 128 << 20
	// maxGCPercent bounds the GOGC the floor sets (a live heap of a few
	// hundred KiB, as in tests, would otherwise ask for tens of thousands).
	maxGCPercent = 5000
)

// tuneGC applies the serve settings for what getenv leaves unset and logs
// them. It returns the GC percent and memory limit now in force, and a
// function that stops the heap goal floor (a no-op when GOGC is set).
func tuneGC(getenv func(string) string, logger zerolog.Logger) (gcPercent int, memLimit int64, stop func()) {
	stop = func() {}
	floor := 0
	if getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
		stop, floor = startHeapGoalFloor(serveGCPercent, serveMinHeapGoal), serveMinHeapGoal
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(serveMemoryLimit)
	}
	m := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	rtmetrics.Read(m)
	gcPercent, memLimit = int(m[0].Value.Uint64()), int64(m[1].Value.Uint64())
	logger.Debug().Int("gc_percent", gcPercent).Int64("memory_limit", memLimit).Int("min_heap_goal", floor).Msg("garbage collector settings")
	return gcPercent, memLimit, stop
}

// gcPercentFor returns the GOGC that makes the heap goal after a cycle
// that left live bytes live at least minGoal, and never below base (the
// goal is live × (1 + GOGC/100)).
func gcPercentFor(live uint64, base int, minGoal uint64) int {
	if live == 0 {
		live = 1
	}
	if live >= minGoal {
		return base
	}
	return max(base, int(min(minGoal*100/live, maxGCPercent+100))-100)
}

// heapGoalFloor re-chooses GOGC after every GC cycle from the live heap
// that cycle found (gcPercentFor). It learns of each cycle through a
// cleanup attached to an object it drops: the cleanup runs after the cycle
// that found the object unreachable, and arms the next one. It is the
// effect of a "heap ballast" without the ballast: the goal follows the live
// heap, and once that is above minGoal/(1+base/100) GOGC is base again.
type heapGoalFloor struct {
	base    int
	minGoal uint64
	mu      sync.Mutex
	stopped bool
	percent int // what the floor last set
}

// startHeapGoalFloor starts a floor for the running process; the returned
// function stops it and puts GOGC back to base.
func startHeapGoalFloor(base int, minGoal uint64) (stop func()) {
	f := &heapGoalFloor{base: base, minGoal: minGoal, percent: base}
	f.arm()
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if !f.stopped {
			f.stopped = true
			debug.SetGCPercent(f.base)
		}
	}
}

// sentinel is what arm drops: large enough not to come from the tiny
// allocator, whose objects may share a block and never be collected alone.
type sentinel struct{ _ [32]byte }

func (f *heapGoalFloor) arm() {
	runtime.AddCleanup(new(sentinel), (*heapGoalFloor).cycle, f)
}

// cycle runs after each GC cycle.
func (f *heapGoalFloor) cycle() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	m := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(m)
	// SetGCPercent stops the world briefly: only for a change of more
	// than an eighth.
	if p := gcPercentFor(m[0].Value.Uint64(), f.base, f.minGoal); p*8 < f.percent*7 || p*8 > f.percent*9 {
		debug.SetGCPercent(p)
		f.percent = p
	}
	f.arm()
}
