package main

import (
	"runtime/debug"
	rtmetrics "runtime/metrics"

	"github.com/rs/zerolog"
)

// Garbage collector settings of `grapevine serve`, unless the operator
// sets GOGC or GOMEMLIMIT (then Go's own handling of them applies).
//
// The daemon's Go heap is small — about 8 MB live under lookups, Pebble's
// block cache lives outside it — so with Go's default GOGC=100 a collection
// ran every 9 MB of garbage: ten a second at 10k op=get requests a second,
// each taking a quarter of the CPU for several milliseconds, on a machine
// with 2 cores shared with the clients. At 400 the collector runs a quarter
// as often and op=get costs about 8 % less CPU (docs/benchmarks.md,
// optimisation log); the memory limit keeps a heap that has grown large
// (caches full, a burst of uploads) from growing five-fold before it is
// collected.
const (
	serveGCPercent   = 400
	serveMemoryLimit = 1 << 30
)

// tuneGC applies the serve settings for what getenv leaves unset and logs
// them. It returns the GC percent and memory limit now in force.
func tuneGC(getenv func(string) string, logger zerolog.Logger) (gcPercent int, memLimit int64) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(serveMemoryLimit)
	}
	m := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	rtmetrics.Read(m)
	gcPercent, memLimit = int(m[0].Value.Uint64()), int64(m[1].Value.Uint64())
	logger.Debug().Int("gc_percent", gcPercent).Int64("memory_limit", memLimit).Msg("garbage collector settings")
	return gcPercent, memLimit
}
